"""DNA language-model pretraining: next-token prediction on windows of a reference genome (bits per base).

A token is one base, or a non-overlapping k-mer with ``task.k``; the loss is per token and
``bits_per_base`` divides it by k, so runs with different k compare.

Validation and test windows come from held-out contigs when the recipe names some; a genome of
one contig (a bacterium) holds out the end of every contig instead: the last ``val_fraction``
for validation, the ``test_fraction`` before it for testing, never seen in training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from titans_seq.backbones import TitansConfig
from titans_seq.data import DataSource
from titans_seq.engine.registry import register_task
from titans_seq.engine.task import Task
from titans_seq.errors import UserError

from ..language_model import LanguageModel, next_token_loss
from .genome import Genome, split_contigs
from .tokenizer import DNATokenizer


@dataclass
class DNAPretrainingConfig:
    name: str = "dna_lm"
    k: int = 1                        # bases per token: 1, or non-overlapping k-mers


@dataclass
class DNAGenomeData(DataSource):
    dataset: str | None = "dna/ecoli_k12"
    path: str | None = None           # a FASTA file, plain, gzip or bgzip (wins over dataset)
    window: int = 1024                # bases per training sequence, a multiple of task.k
    train_windows: int = 4096         # random windows drawn from the training region
    held_out_contigs: list[str] = field(default_factory=list)   # validation + test contigs
    val_fraction: float = 0.02        # without held-out contigs: the end of each contig
    test_fraction: float = 0.02
    seed: int = 0


@register_task
class DNAPretrainingTask(Task):
    name = "dna_lm"
    config_class = DNAPretrainingConfig
    data_class = DNAGenomeData

    def __init__(self, config: DNAPretrainingConfig, data: DNAGenomeData):
        super().__init__(config, data)
        self.tokenizer = DNATokenizer(config.k)
        if data.window < 1 or data.window % config.k:
            raise UserError(f"data.window={data.window} must be a positive multiple of task.k={config.k}")
        self.genome = Genome.open(self.data.path)
        self.dataset_name = next(iter(self.genome.contigs))

    def _regions(self) -> dict[str, list[tuple[str, int, int]]]:
        """(contig, start, end) regions of each split."""
        d, contigs = self.data, self.genome.contigs
        if d.held_out_contigs:
            train, held = split_contigs(self.genome, d.held_out_contigs)
            half = max(1, len(held) // 2)
            return {"train": [(c, 0, contigs[c]) for c in train],
                    "val": [(c, 0, contigs[c]) for c in held[:half]],
                    "test": [(c, 0, contigs[c]) for c in held[half:] or held[:half]]}
        regions = {"train": [], "val": [], "test": []}
        for contig, length in contigs.items():
            val_start = int(length * (1 - d.val_fraction))
            test_start = int(length * (1 - d.val_fraction - d.test_fraction))
            regions["train"].append((contig, 0, test_start))
            regions["test"].append((contig, test_start, val_start))
            regions["val"].append((contig, val_start, length))
        return regions

    def _span(self) -> int:
        """Bases a window's tokens cover: the inputs, and one token more for the last target."""
        return self.data.window + self.tokenizer.k

    def _windows(self, regions, split: str) -> list[tuple[str, int]]:
        w = self._span()
        usable = [(c, s, e) for c, s, e in regions if e - s >= w]
        if not usable:
            raise UserError(f"{self.data.path}: no {split} region holds a window of {w} bases; "
                            "use a smaller data.window or larger held-out fractions")
        if split != "train":              # tiled, in order
            return [(c, start) for c, s, e in usable for start in range(s, e - w + 1, w)]
        rng = np.random.default_rng(self.data.seed)
        sizes = np.array([e - s - w + 1 for _, s, e in usable], dtype=float)
        picks = rng.choice(len(usable), size=self.data.train_windows, p=sizes / sizes.sum())
        return [(usable[i][0], usable[i][1] + int(rng.integers(0, sizes[i]))) for i in picks]

    def datasets(self):
        regions, w = self._regions(), self._span()
        out = {}
        for split in ("train", "val", "test"):
            rows = [self.tokenizer.encode(self.genome.fetch(c, s, s + w), where=f"{self.data.path} {c}:{s}-{s + w}")
                    for c, s in self._windows(regions[split], split)]
            ids = torch.stack(rows)
            out[split] = TensorDataset(ids[:, :-1], ids[:, 1:])
        return out

    def build_model(self, model_config: TitansConfig) -> nn.Module:
        return LanguageModel(self.tokenizer.vocab_size, model_config)

    def loss(self, model: nn.Module, batch) -> Tensor:
        return next_token_loss(model, batch)

    def evaluate(self, model: nn.Module, batches: Iterable) -> dict[str, float]:
        total, correct, count = 0.0, 0, 0
        for inputs, targets in batches:
            logits = model(inputs).float().flatten(0, 1)
            total += F.cross_entropy(logits, targets.flatten(), reduction="sum").item()
            correct += (logits.argmax(-1) == targets.flatten()).sum().item()
            count += targets.numel()
        loss = total / count
        return {"loss": loss, "bits_per_base": loss / math.log(2) / self.tokenizer.k, "accuracy": correct / count}
