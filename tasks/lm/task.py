"""Language modelling: next-token prediction on a packed, sharded corpus (perplexity and bits per byte).

Bits per byte = total nats / (ln 2 * UTF-8 bytes of the evaluated text), comparable across
tokenisers: each target token counts the bytes it stands for (the end-of-document token none).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from titans_seq.backbones import TitansConfig
from titans_seq.data import DataSource
from titans_seq.engine.distributed import first_process_only
from titans_seq.engine.registry import register_task
from titans_seq.engine.task import Task
from titans_seq.errors import UserError

from ..language_model import CarriedStateLoss, LanguageModel
from .corpus import Corpus
from .shards import PackedSequences, TokenShards, cached_shards
from .tokenizers import BYTE, load_tokenizer


@dataclass
class LMConfig:
    name: str = "lm"
    tokenizer: str = BYTE              # byte | a SentencePiece .model | a tokenizers .json
    carry_state: int = 0               # training batches in a row that start from the previous one's final state


@dataclass
class LMCorpusData(DataSource):
    dataset: str | None = "text/tinyshakespeare"
    path: str | None = None            # a text file, a folder, or a .jsonl file (wins over dataset)
    val_path: str | None = None        # separate validation / test corpora; without them the end of
    test_path: str | None = None       # the training stream is held out (val_fraction, test_fraction)
    text_field: str = "text"           # the JSONL field holding a document's text
    seq_len: int = 512                 # tokens per training sequence
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    cache_dir: str = "~/.cache/titans_seq/shards"   # token shards, written once per corpus and tokeniser
    reset_at_documents: bool = True    # each packed document runs as if alone: no attention, convolution
                                       # or memory crosses an end-of-document token


def token_loss_sums(logits: Tensor, targets: Tensor, token_bytes: Tensor) -> tuple[float, int, int]:
    """(summed nats, target tokens, UTF-8 bytes of the targets) of one batch."""
    nats = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()
    return nats, targets.numel(), int(token_bytes.to(targets.device)[targets].sum())


def lm_metrics(nats: float, tokens: int, text_bytes: int) -> dict[str, float]:
    """Loss (nats per token), perplexity and bits per byte from summed counts."""
    loss = nats / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
            "bits_per_byte": nats / (math.log(2) * max(text_bytes, 1))}


def carried_state_loss(batches: int) -> CarriedStateLoss:
    """The training loss for ``task.carry_state`` (batches in a row that carry the state; 0: none)."""
    if batches < 0:
        raise UserError(f"task.carry_state={batches}: give a number of batches, 0 or more")
    return CarriedStateLoss(batches)


@register_task
class LanguageModelTask(Task):
    name = "lm"
    config_class = LMConfig
    data_class = LMCorpusData

    def __init__(self, config: LMConfig, data: LMCorpusData):
        super().__init__(config, data)
        self.tokenizer = load_tokenizer(config.tokenizer)
        self.token_bytes = torch.from_numpy(self.tokenizer.token_bytes())
        self.next_token_loss = carried_state_loss(config.carry_state)
        if config.carry_state and data.reset_at_documents:
            raise UserError(f"task.carry_state={config.carry_state} carries one state through every row, which "
                            "cannot restart at each row's own documents: set data.reset_at_documents=false too")
        self.dataset_name = self.data.path

    @property
    def context_length(self) -> int:
        """The sequence length the model trains on."""
        return self.data.seq_len

    def _shards(self, path: str) -> TokenShards:
        corpus = Corpus(path, self.data.text_field)
        if dist.is_initialized():             # one process writes the shards, the others wait, then all read
            first_process_only(lambda: cached_shards(corpus, self.tokenizer, self.data.cache_dir))
        return cached_shards(corpus, self.tokenizer, self.data.cache_dir)

    def datasets(self):
        d = self.data
        if not 0 <= d.val_fraction < 1 or not 0 <= d.test_fraction < 1 or d.val_fraction + d.test_fraction >= 1:
            raise UserError(f"data.val_fraction={d.val_fraction} and data.test_fraction={d.test_fraction} "
                            "must each be in [0, 1) and leave some training text")
        train = self._shards(d.path)
        n = len(train)
        held_out = (0.0 if d.test_path else d.test_fraction) + (0.0 if d.val_path else d.val_fraction)
        train_end = int(n * (1 - held_out))
        test_end = train_end + (0 if d.test_path else int(n * d.test_fraction))
        splits = {
            "train": PackedSequences(train, d.seq_len, 0, train_end),
            "test": PackedSequences(self._shards(d.test_path), d.seq_len) if d.test_path
            else PackedSequences(train, d.seq_len, train_end, test_end),
            "val": PackedSequences(self._shards(d.val_path), d.seq_len) if d.val_path
            else PackedSequences(train, d.seq_len, test_end, n),
        }
        empty = [split for split, data in splits.items() if len(data) == 0]
        if empty:
            raise UserError(f"corpus {d.path}: {n} tokens leave no {' or '.join(empty)} sequence of "
                            f"data.seq_len={d.seq_len} tokens; use a smaller seq_len or a larger corpus")
        return splits

    def build_model(self, model_config: TitansConfig) -> nn.Module:
        document_end = self.tokenizer.eos_id if self.data.reset_at_documents else None
        return LanguageModel(self.tokenizer.vocab_size, model_config, document_end=document_end)

    def loss(self, model: nn.Module, batch) -> Tensor:
        return self.next_token_loss(model, batch)

    def evaluate(self, model: nn.Module, batches: Iterable) -> dict[str, float]:
        nats, tokens, text_bytes = 0.0, 0, 0
        for inputs, targets in batches:
            batch_nats, batch_tokens, batch_bytes = token_loss_sums(model(inputs), targets, self.token_bytes)
            nats, tokens, text_bytes = nats + batch_nats, tokens + batch_tokens, text_bytes + batch_bytes
        return lm_metrics(nats, tokens, text_bytes)
