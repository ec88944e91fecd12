"""The recall task: the shared token model (an untied head), cross-entropy at the queries, accuracy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from titans_seq.backbones import TitansConfig
from titans_seq.engine.registry import register_task
from titans_seq.engine.task import Task

from ..language_model import IGNORE, LanguageModel, next_token_loss
from .data import recall_dataset, recall_sequences, vocabulary_size


@dataclass
class RecallConfig:
    name: str = "recall"
    n_keys: int = 64          # distinct key tokens
    n_values: int = 64        # distinct value tokens
    n_pairs: int = 16         # key-value pairs per sequence
    n_queries: int = 16       # queries after the pairs
    n_train: int = 8192       # generated sequences per split
    n_val: int = 512
    n_test: int = 512
    seed: int = 1234          # the data's seed (the run's seed drives initialisation and order)


@register_task
class RecallTask(Task):
    name = "recall"
    config_class = RecallConfig
    dataset_name = "synthetic-mqar"

    def build_model(self, model_config: TitansConfig) -> nn.Module:
        return LanguageModel(vocabulary_size(self.config.n_keys, self.config.n_values), model_config,
                             tie_embeddings=False)

    def datasets(self):
        c = self.config
        sizes = {"train": c.n_train, "val": c.n_val, "test": c.n_test}
        return {split: recall_dataset(n, c.n_keys, c.n_values, c.n_pairs, c.n_queries, c.seed + i)
                for i, (split, n) in enumerate(sizes.items())}

    def loss(self, model: nn.Module, batch) -> Tensor:
        return next_token_loss(model, batch)

    def evaluate(self, model: nn.Module, batches: Iterable) -> dict[str, float]:
        loss_sum, correct, queries = 0.0, 0, 0
        for tokens, targets in batches:
            logits = model(tokens).float()
            asked = targets != IGNORE
            loss_sum += F.cross_entropy(logits[asked], targets[asked], reduction="sum").item()
            correct += (logits[asked].argmax(-1) == targets[asked]).sum().item()
            queries += asked.sum().item()
        return {"loss": loss_sum / max(queries, 1), "accuracy": correct / max(queries, 1)}

    def describe(self, model: nn.Module, device: torch.device) -> str:
        c = self.config
        tokens, targets = recall_sequences(1, c.n_keys, c.n_values, c.n_pairs, c.n_queries, seed=c.seed + 99)
        with torch.no_grad():
            predicted = model(tokens.to(device)).argmax(-1).cpu()
        pairs = tokens[0, :2 * c.n_pairs].view(-1, 2).tolist()
        asked = targets[0] != IGNORE
        lines = ["pairs read:   " + " ".join(f"k{k}->v{v - c.n_keys}" for k, v in pairs[:8])
                 + (" ..." if len(pairs) > 8 else "")]
        for key, want, got in list(zip(tokens[0][asked].tolist(), targets[0][asked].tolist(),
                                        predicted[0][asked].tolist()))[:6]:
            mark = "ok" if want == got else "wrong"
            lines.append(f"asked k{key}: recalled v{got - c.n_keys} (true v{want - c.n_keys}) {mark}")
        return "\n".join(lines)
