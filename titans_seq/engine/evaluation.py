"""Evaluating a saved checkpoint: ``titans-seq eval RECIPE --checkpoint DIR``."""
from __future__ import annotations

from pathlib import Path

from .config import Recipe
from .distributed import close_process, init_process
from .records import write_record
from .runs import find_checkpoint
from .trainer import Trainer


def evaluate_checkpoint(recipe: Recipe, checkpoint: Path, split: str = "test", out: Path | None = None) -> dict:
    """Metrics of ``split`` with the checkpoint's weights (a checkpoint folder, or a run folder's best),
    as a result record written to ``out``."""
    checkpoint = find_checkpoint(checkpoint)
    env = init_process(recipe.run.device)
    try:
        record = Trainer(recipe, env).evaluate_checkpoint(checkpoint, split)
        if env.is_main:
            write_record(out or checkpoint.parent / f"{checkpoint.name}_{split}_results.json", record)
    finally:
        close_process()
    return record
