"""The task registry: tasks register themselves; the engine finds them without naming any."""
from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .task import Task

_TASKS: dict[str, type[Task]] = {}
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []
ENTRY_POINT_GROUP = "titans_seq.tasks"


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available to recipes under ``cls.name``."""
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise ValueError(f"two tasks are registered as {cls.name!r}: {_TASKS[cls.name]} and {cls}")
    _TASKS[cls.name] = cls
    return cls


def register_commands(add: Callable[[argparse._SubParsersAction], None]) -> Callable:
    """Decorator: ``add(subparsers)`` adds a task's own ``titans-seq`` subcommands, each setting ``run``
    (a function of the parsed arguments; it may return an exit code)."""
    if add not in _COMMANDS:
        _COMMANDS.append(add)
    return add


def task_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Every registered task's command hook, built-in tasks and plugins alike."""
    discover_tasks()
    return list(_COMMANDS)


def discover_tasks() -> None:
    """Load every module of the entry-point group: the built-in tasks' and any plugin's, alike."""
    points = entry_points(group=ENTRY_POINT_GROUP)
    if not points:
        raise RuntimeError(f"no {ENTRY_POINT_GROUP!r} entry points: titans_seq is not installed "
                           "(pip install -e . registers its tasks)")
    for point in points:
        point.load()


def get_task(name: str) -> type[Task]:
    discover_tasks()
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(_TASKS)) or 'none'}")
    return _TASKS[name]


def task_names() -> list[str]:
    discover_tasks()
    return sorted(_TASKS)
