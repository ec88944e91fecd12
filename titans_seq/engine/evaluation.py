"""Evaluating a saved checkpoint: ``titans-seq eval RECIPE --checkpoint DIR``."""
from __future__ import annotations

import time
from pathlib import Path

from .config import Recipe
from .distributed import init_process
from .records import write_record
from .runs import find_checkpoint
from .trainer import Trainer, evaluate


def evaluate_checkpoint(recipe: Recipe, checkpoint: Path, split: str = "test", out: Path | None = None) -> dict:
    """Metrics of ``split`` with the checkpoint's weights (a checkpoint folder, or a run folder's best),
    as a result record written to ``out``."""
    checkpoint = find_checkpoint(checkpoint)
    env = init_process(recipe.run.device)
    trainer = Trainer(recipe, env)
    trainer.load_weights(checkpoint)
    dataset = trainer.splits[split]
    started = time.perf_counter()
    metrics, tokens = evaluate(trainer.task, trainer.model, dataset, recipe, env.device)
    record = trainer.record(split, metrics, tokens / max(time.perf_counter() - started, 1e-9),
                            checkpoint=str(checkpoint))
    if env.is_main:
        write_record(out or checkpoint.parent / f"{checkpoint.name}_{split}_results.json", record)
    return record
