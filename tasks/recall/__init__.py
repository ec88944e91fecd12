"""Associative recall: a synthetic task generated in memory, the engine's built-in demo."""
from . import cli
from .task import RecallConfig, RecallTask

__all__ = ["RecallConfig", "RecallTask", "cli"]
