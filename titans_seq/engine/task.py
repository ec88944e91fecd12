"""The task interface: what a domain plugs into the engine (data, model edges, loss, metrics)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from titans_seq.backbones import TitansConfig
from titans_seq.data import with_resolved_path

EXAMPLE_FIGURE = "example.png"   # what a run shows of itself (final_metrics may write it); suite reports include one


class Task(ABC):
    """A domain's task: its config dataclass, data splits, a model around a Backbone, loss, metrics.

    Subclasses set ``name`` (what recipes write as ``task.name``), ``config_class`` (a dataclass of
    the task's options), optionally ``data_class`` (a dataclass of its data options: the recipe's
    ``data`` section) and ``dataset_name``, and ``reads_whole_sequences`` where nothing it predicts
    lies ahead in its input (a classifier, a forecaster: ``model.bidirectional`` is allowed there).
    They are registered with :func:`titans_seq.engine.registry.register_task`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    data_class: ClassVar[type | None] = None
    dataset_name: ClassVar[str] = ""
    reads_whole_sequences: ClassVar[bool] = False

    def __init__(self, config: Any, data: Any = None):
        self.config = config
        self.data = with_resolved_path(data)   # a dataset key becomes a local path (fetched once)

    @abstractmethod
    def build_model(self, model_config: TitansConfig) -> nn.Module:
        """The backbone with this domain's edges: an embedding or patcher in front, a head behind."""

    @abstractmethod
    def datasets(self) -> dict[str, Dataset]:
        """The ``train``, ``val`` and ``test`` splits; items collate with the default collate."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """The scalar training loss of one batch."""

    @abstractmethod
    def evaluate(self, model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
        """Named metrics over ``batches`` (the engine puts the model in eval mode, without grad)."""

    def final_metrics(self, model: nn.Module, run_dir: Path) -> dict[str, float]:
        """Test metrics beyond the test split's, taken once with the best weights (the model in eval mode,
        without grad): e.g. recall far past the training length. A task may write what shows the
        run (``run_dir / EXAMPLE_FIGURE``, a report folder) into ``run_dir``. By default none."""
        return {}

    def tokens(self, batch: Any) -> int:
        """How many tokens a batch holds, for throughput figures; by default batch x length of its first tensor."""
        first = batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values()))
        return first.shape[0] * (first.shape[1] if first.dim() > 1 else 1)

    def model_label(self, variant: str) -> str:
        """The model's name in result records: the backbone variant, unless the task swaps the backbone out."""
        return variant

    def describe(self, model: nn.Module, device: torch.device) -> str:
        """What the trained model does, in a few lines, for people (used by the demo)."""
        return ""
