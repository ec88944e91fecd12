"""Opening a trained run: the one loader behind every command that reads a checkpoint.

``titans-seq eval``, ``generate``, ``niah``, ``babilong``, ``lm-eval``, ``forecast --checkpoint``
and the GluonTS predictor all go through :func:`open_run`: given a run folder (its best
checkpoint, else its latest) or a checkpoint folder, it rebuilds the recipe the run was trained
with (the checkpoint's ``config.json``), the task and the model with the checkpoint's weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from titans_seq.errors import UserError

from .checkpoint import BEST, COMPLETE, CONFIG, latest_checkpoint, read_checkpoint_config, read_model_state
from .config import Recipe, build_recipe
from .distributed import choose_device
from .registry import get_task
from .task import Task


@dataclass
class OpenedRun:
    """What a checkpoint holds, ready to use: the model is in eval mode on the chosen device."""

    recipe: Recipe
    task: Task
    model: nn.Module
    checkpoint: Path


def find_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a complete checkpoint; for a run folder, its best checkpoint, else its latest."""
    path = Path(path)
    if (path / COMPLETE).is_file():
        return path
    if (path / BEST / COMPLETE).is_file():
        return path / BEST
    latest = latest_checkpoint(path) if path.is_dir() else None
    if latest is None:
        raise UserError(f"{path}: not a complete checkpoint folder, nor a run folder holding one "
                        f"(e.g. runs/NAME or runs/NAME/{BEST})")
    return latest


def saved_recipe(checkpoint: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """The recipe a checkpoint was trained with, ``overrides`` applied; its ``model.init_from`` is dropped,
    since the checkpoint's own weights are what a reader wants."""
    checkpoint = find_checkpoint(checkpoint)
    saved = read_checkpoint_config(checkpoint)
    if not isinstance(saved.get("model"), dict) or not isinstance(saved.get("task"), dict):
        raise UserError(f"{checkpoint / CONFIG}: not a run's config (no task and model sections)")
    saved["model"]["init_from"] = None
    try:
        raw = OmegaConf.merge(OmegaConf.create(saved), OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as error:
        raise UserError(f"{checkpoint / CONFIG}: {str(error).splitlines()[0]}") from None
    return build_recipe(raw, str(checkpoint / CONFIG))


def open_run(path: str | Path, overrides: Iterable[str] = (), device: str = "auto", task: str | None = None,
             with_data: bool = True) -> OpenedRun:
    """The recipe, task and model of a run or checkpoint folder; ``task`` names the task it must be.

    ``with_data=False`` builds the task without its data section (nothing is resolved or fetched), for
    readers that bring their own inputs, such as the GluonTS predictor.
    """
    checkpoint = find_checkpoint(path)
    recipe = saved_recipe(checkpoint, overrides)
    if task is not None and recipe.task.name != task:
        raise UserError(f"{checkpoint}: trained for task {recipe.task.name!r}, not {task}")
    opened = get_task(recipe.task.name)(recipe.task, recipe.data if with_data else None)
    model = opened.build_model(recipe.model.backbone())
    model.load_state_dict(read_model_state(checkpoint))
    return OpenedRun(recipe, opened, model.to(choose_device(device)).eval(), checkpoint)
