"""The task registry: tasks register themselves; the engine finds them without naming any."""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .task import Task

_TASKS: dict[str, type[Task]] = {}
ENTRY_POINT_GROUP = "titans_seq.tasks"


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available to recipes under ``cls.name``."""
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise ValueError(f"two tasks are registered as {cls.name!r}: {_TASKS[cls.name]} and {cls}")
    _TASKS[cls.name] = cls
    return cls


def discover_tasks() -> None:
    """Import every module of the ``titans_seq.tasks`` package and of third-party entry points."""
    package = importlib.import_module("titans_seq.tasks")
    for module in pkgutil.walk_packages(package.__path__, prefix="titans_seq.tasks."):
        importlib.import_module(module.name)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        point.load()


def get_task(name: str) -> type[Task]:
    discover_tasks()
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(_TASKS)) or 'none'}")
    return _TASKS[name]


def task_names() -> list[str]:
    discover_tasks()
    return sorted(_TASKS)
