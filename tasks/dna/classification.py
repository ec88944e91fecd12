"""DNA sequence classification: labelled sequences in, Backbone (or the CNN baseline) over bases or k-mers,
pooled head, MCC and friends.

The sequences come from a table or table folder, or are cut from a genome (``data.genome``) by
a BED file, a Genomic Benchmarks interval CSV or an interval folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from titans_seq.backbones import Backbone, TitansConfig
from titans_seq.data import DataSource
from titans_seq.engine.registry import register_task
from titans_seq.engine.stability import stability_advice
from titans_seq.engine.task import Task
from titans_seq.errors import TrainingError, UserError

from .cnn import DNACNN, CNNConfig, check_cnn_config
from .intervals import reverse_complement
from .labelled_intervals import read_labelled_intervals
from .pooling import POOLINGS, pool
from .tables import LabelledSequences, read_labelled
from .tokenizer import PAD, DNATokenizer, reverse_complement_tokens

ARCHITECTURES = ("backbone", "cnn")


@dataclass
class DNAClassificationConfig:
    name: str = "dna_classification"
    architecture: str = "backbone"   # backbone: the model.variant Backbone | cnn: the Genomic Benchmarks CNN (task.cnn)
    pooling: str = "mean"            # mean | max | last: how token states become one sequence vector
    k: int = 1                       # bases per token: 1, or non-overlapping k-mers
    rc_augment: bool = True          # train on the reverse complement of a random half of each batch
    rc_average: bool = False         # at evaluation, average the logits of a sequence and its reverse complement
    rc_conjoin: bool = False         # train on both strands' averaged logits too (implies rc_average)
    cnn: CNNConfig = field(default_factory=CNNConfig)   # the CNN's sizes (architecture cnn; model.* is then unused)


@dataclass
class DNAClassificationData(DataSource):
    dataset: str | None = "gue/prom_core_notata"
    path: str | None = None              # a table, a train/dev/test folder, or <split>/<class>/ folders
    genome: str | None = None            # a FASTA: path is then a BED file, an interval CSV or <split>/<class>.csv.gz
    sequence_column: str | None = None   # tables: found by name (sequence, seq) when not given
    label_column: str | None = None      # tables: found by name (label, class) when not given
    max_length: int = 0                  # bases; longer sequences are cut; 0: the longest in the data
    val_fraction: float = 0.1            # of train, held out for validation when there is no val split
    test_fraction: float = 0.1           # of a single table, held out for testing
    split_seed: int = 0


def _class_names(labels: list[str]) -> list[str]:
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def _carve(data: LabelledSequences, fraction: float, seed: int) -> tuple[LabelledSequences, LabelledSequences]:
    order = np.random.default_rng(seed).permutation(len(data.sequences))
    cut = max(1, int(round(fraction * len(order))))
    pick = lambda idx: LabelledSequences([data.sequences[i] for i in idx], [data.labels[i] for i in idx])  # noqa: E731
    return pick(order[cut:]), pick(order[:cut])


class SequenceClassifier(nn.Module):
    """Embedding -> Backbone -> pooling over the real (non-pad) tokens -> linear head."""

    def __init__(self, vocab_size: int, n_classes: int, config: TitansConfig, pooling: str):
        super().__init__()
        self.pooling = pooling
        self.embed = nn.Embedding(vocab_size, config.d_model, padding_idx=PAD)
        self.backbone = Backbone(config)
        self.head = nn.Linear(config.d_model, n_classes)

    def forward(self, ids: Tensor) -> Tensor:
        real = ids != PAD
        return self.head(pool(self.backbone(self.embed(ids), lengths=real.sum(1)), real, self.pooling))


@register_task
class DNAClassificationTask(Task):
    name = "dna_classification"
    config_class = DNAClassificationConfig
    data_class = DNAClassificationData
    reads_whole_sequences = True

    def __init__(self, config: DNAClassificationConfig, data: DNAClassificationData):
        super().__init__(config, data)
        if config.architecture not in ARCHITECTURES:
            raise UserError(f"task.architecture={config.architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
        if config.pooling not in POOLINGS:
            raise UserError(f"task.pooling={config.pooling!r} is not one of {', '.join(POOLINGS)}")
        if config.architecture == "cnn":
            check_cnn_config(config.cnn)
        self.tokenizer = DNATokenizer(config.k)
        self.dataset_name = Path(self.data.path).name
        self.splits = self._load_splits()
        self.classes = _class_names(self.splits["train"].labels)
        if len(self.classes) < 2:
            raise UserError(f"{data.path}: the label column has one class ({self.classes[0]!r}); "
                            "classification needs at least two")

    def _load_splits(self) -> dict[str, LabelledSequences]:
        d = self.data
        if d.genome is not None:
            splits = read_labelled_intervals(d.path, d.genome)
        else:
            splits = read_labelled(d.path, d.sequence_column, d.label_column)
        if "all" in splits:
            splits["train"], splits["test"] = _carve(splits.pop("all"), d.test_fraction, d.split_seed)
        if "train" not in splits or "test" not in splits:
            raise UserError(f"{d.path}: needs a train and a test split; found {', '.join(sorted(splits))}")
        if "val" not in splits:
            splits["train"], splits["val"] = _carve(splits["train"], d.val_fraction, d.split_seed)
        return splits

    def _encode(self, sequences: list[str], bases: int, split: str) -> Tensor:
        """Right-padded token ids of the sequences, each cut to its first ``bases`` bases."""
        ids = torch.full((len(sequences), self.tokenizer.token_count(bases)), PAD, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            tokens = self.tokenizer.encode(sequence[:bases], where=f"{self.data.path} ({split} split, record {row + 1})")
            ids[row, :len(tokens)] = tokens
        return ids

    def _tensors(self, split: str, bases: int, rc_from_strings: bool) -> TensorDataset:
        """(ids, labels), or (ids, reverse-complement ids, labels) where token-level RC would not be exact."""
        data, index = self.splits[split], {name: i for i, name in enumerate(self.classes)}
        unseen = sorted(set(data.labels) - set(index))
        if unseen:
            raise UserError(f"{self.data.path}: the {split} split has labels the train split lacks: {unseen[:5]}")
        labels = torch.tensor([index[label] for label in data.labels])
        ids = self._encode(data.sequences, bases, split)
        if not rc_from_strings:
            return TensorDataset(ids, labels)
        reverse = self._encode([reverse_complement(s[:bases]) for s in data.sequences], bases, split)
        return TensorDataset(ids, reverse, labels)

    def datasets(self):
        lengths = [len(s) for split in self.splits.values() for s in split.sequences]
        bases = min(max(lengths), self.data.max_length) if self.data.max_length else max(lengths)
        # a sequence whose length is no multiple of k has other k-mer boundaries on the reverse strand
        uses_rc = self.config.rc_augment or self.config.rc_average or self.config.rc_conjoin
        rc_from_strings = uses_rc and any(min(n, bases) % self.tokenizer.k for n in lengths)
        return {split: self._tensors(split, bases, rc_from_strings) for split in ("train", "val", "test")}

    def reverse_complement_ids(self, batch) -> Tensor:
        """The token ids of the reverse complements of a batch's sequences."""
        return batch[1] if len(batch) == 3 else reverse_complement_tokens(batch[0], self.tokenizer.k)

    def model_label(self, variant: str) -> str:
        return "cnn" if self.config.architecture == "cnn" else variant

    def build_model(self, model_config: TitansConfig) -> nn.Module:
        if self.config.architecture == "cnn":
            return DNACNN(self.tokenizer.vocab_size, len(self.classes), self.config.cnn, self.config.pooling)
        return SequenceClassifier(self.tokenizer.vocab_size, len(self.classes), model_config, self.config.pooling)

    def _logits(self, model: nn.Module, batch, both_strands: bool) -> Tensor:
        """The batch's logits, or the mean of its sequences' and their reverse complements' logits."""
        out = model(batch[0]).float()
        return (out + model(self.reverse_complement_ids(batch)).float()) / 2 if both_strands else out

    def loss(self, model: nn.Module, batch) -> Tensor:
        ids, labels = batch[0], batch[-1]
        if self.config.rc_conjoin:
            return F.cross_entropy(self._logits(model, batch, both_strands=True), labels)
        if self.config.rc_augment:
            flip = torch.rand(len(ids), device=ids.device) < 0.5
            ids = torch.where(flip.unsqueeze(-1), self.reverse_complement_ids(batch), ids)
        return F.cross_entropy(model(ids).float(), labels)

    def predict(self, model: nn.Module, batches: Iterable) -> tuple[Tensor, np.ndarray]:
        """Each sequence's logits (both strands' mean where the task averages them) and its label, in order."""
        logits, labels = [], []
        both_strands = self.config.rc_average or self.config.rc_conjoin
        for batch in batches:
            logits.append(self._logits(model, batch, both_strands).cpu())
            labels.append(batch[-1].cpu())
        logits, labels = torch.cat(logits), torch.cat(labels).numpy()
        broken = (~torch.isfinite(logits)).any(-1).sum().item()
        if broken:
            raise TrainingError(f"the model's outputs are not finite for {broken} of {len(logits)} sequences; "
                                f"{stability_advice(model)}")
        return logits, labels

    def evaluate(self, model: nn.Module, batches: Iterable) -> dict[str, float]:
        logits, labels = self.predict(model, batches)
        probs = logits.softmax(-1).numpy()
        predicted = probs.argmax(-1)
        metrics = {"loss": F.cross_entropy(logits, torch.from_numpy(labels)).item(),
                   "accuracy": accuracy_score(labels, predicted),
                   "mcc": matthews_corrcoef(labels, predicted),
                   "macro_f1": f1_score(labels, predicted, average="macro")}
        if len(np.unique(labels)) == len(self.classes):   # AUROC needs every class present
            metrics["auroc"] = (roc_auc_score(labels, probs[:, 1]) if len(self.classes) == 2
                                else roc_auc_score(labels, probs, multi_class="ovr"))
        return {name: float(value) for name, value in metrics.items()}
