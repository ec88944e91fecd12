"""Passkey retrieval as a training task: learn to recall a hidden five-digit key at short lengths.

Each sequence is an S-NIAH ``pk`` prompt (noise haystack, key at a random depth, question) followed
by the answer. By default only the answer's tokens are trained on; ``loss_on: all`` trains on
every next token as a language model does (the repeated haystack and the needle's own repetition
teach copying long before the sparse answer signal does). ``haystack`` may name a text file whose
sentences fill the training prompts instead of the noise paragraph. A model trained here at <= 2K tokens is
then asked at far greater lengths, reading the prompt through its state: after training with
``test_lengths`` (test metrics ``accuracy@<length>``, as suites tabulate them), or later by
``titans-seq niah``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from titans_seq.backbones import TitansConfig
from titans_seq.data import resolve_path
from titans_seq.engine.registry import register_task
from titans_seq.engine.task import Task
from titans_seq.errors import UserError

from ..language_model import IGNORE, LanguageModel
from .generation import LoadedModel
from .niah import Haystack, make_sample, read_haystack
from .niah_eval import evaluate_niah, length_accuracy, write_report
from .task import carried_state_loss
from .tokenizers import ByteTokenizer

ANSWER_TOKENS = 6            # " 12345" in bytes
ANSWER_ROOM = 64             # tokens left for the start token and the written answer within a fixed context


@dataclass
class PasskeyConfig:
    name: str = "passkey"
    seq_len: int = 1024      # tokens per training sequence, prompt and answer
    min_seq_len: int = 0     # > 0: each training prompt's length drawn in [min_seq_len, seq_len], the rest padding,
                             # so the answer's place in MAC's segments varies (0: every prompt seq_len long)
    n_train: int = 50_000    # sequences per split, generated on the fly from the seed
    n_val: int = 128
    n_test: int = 256
    seed: int = 0
    loss_on: str = "answer"  # answer | all (every next token; validation and test score the answer only)
    carry_state: int = 0     # training batches in a row that start from the previous one's final state
    haystack: str = "noise"  # noise (the repeated paragraph the pk needle is asked in) or a text file to fill with
    # after training, the best model is also asked at these lengths (S-NIAH pk, read through its state):
    test_lengths: list[int] = field(default_factory=list)   # test metrics accuracy@<length>; niah/ in the run
    test_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    test_samples: int = 4    # prompts per (length, depth)


class PasskeySequences(Dataset):
    """(inputs, targets) of passkey prompts; targets are IGNORE except at the answer.

    With ``min_length`` each prompt (start token, haystack, question and answer) is drawn between
    ``min_length`` and ``seq_len`` tokens long and padded after its answer with end tokens, whose
    targets are IGNORE: the answer ends anywhere in the last ``seq_len - min_length`` positions.
    """

    def __init__(self, count: int, seq_len: int, seed: str, loss_on: str = "answer", haystack: Haystack | None = None,
                 min_length: int = 0):
        self.count, self.seq_len, self.seed, self.loss_on = count, seq_len, seed, loss_on
        self.min_length = min_length
        self.tokenizer = ByteTokenizer()
        self.haystack = haystack or Haystack.for_kind("pk", self.tokenizer)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        rng = random.Random(f"{self.seed}-{i}")
        length = rng.randint(self.min_length, self.seq_len) if self.min_length else self.seq_len
        sample = make_sample("pk", length - ANSWER_TOKENS, rng.random(), self.tokenizer, self.haystack, rng)
        answer = self.tokenizer.encode(" " + sample.needle.answer)
        ids = torch.tensor([self.tokenizer.eos_id, *sample.ids, *answer])
        if self.loss_on == "all":
            targets = ids[1:]
        else:
            targets = torch.full((length,), IGNORE)
            targets[-ANSWER_TOKENS:] = ids[-ANSWER_TOKENS:]
        padding = self.seq_len - length
        return (F.pad(ids[:-1], (0, padding), value=self.tokenizer.eos_id), F.pad(targets, (0, padding), value=IGNORE))


def training_haystack(choice: str, tokenizer: ByteTokenizer) -> Haystack:
    """``noise``: the repeated paragraph of the pk task; otherwise the sentences of a text file."""
    if choice == "noise":
        return Haystack.for_kind("pk", tokenizer)
    path = resolve_path(choice)
    if not path.exists():
        raise UserError(f"task.haystack={choice}: no such file; give noise, a text file or a folder of them, "
                        "or a dataset key (niah/paul_graham_essays) to hide the keys in")
    return Haystack(read_haystack(path), tokenizer)


@register_task
class PasskeyTask(Task):
    name = "passkey"
    config_class = PasskeyConfig
    dataset_name = "synthetic-passkey"

    def __init__(self, config: PasskeyConfig, data=None):
        super().__init__(config, data)
        if config.seq_len < 128:
            raise UserError(f"task.seq_len={config.seq_len}: a passkey prompt needs at least 128 tokens")
        if config.min_seq_len and not 128 <= config.min_seq_len <= config.seq_len:
            raise UserError(f"task.min_seq_len={config.min_seq_len}: give 0 (every prompt seq_len long) or a length "
                            f"from 128 to task.seq_len={config.seq_len}")
        if config.loss_on not in ("answer", "all"):
            raise UserError(f"task.loss_on={config.loss_on!r}: choose answer or all")
        self.tokenizer = ByteTokenizer()
        self.next_token_loss = carried_state_loss(config.carry_state)

    @property
    def context_length(self) -> int:
        """The sequence length the model trains on."""
        return self.config.seq_len

    def datasets(self):
        c = self.config
        haystack = training_haystack(c.haystack, self.tokenizer)
        return {split: PasskeySequences(count, c.seq_len, f"{c.seed}-{split}",
                                        c.loss_on if split == "train" else "answer", haystack,
                                        c.min_seq_len if split == "train" else 0)
                for split, count in (("train", c.n_train), ("val", c.n_val), ("test", c.n_test))}

    def build_model(self, model_config: TitansConfig) -> nn.Module:
        return LanguageModel(self.tokenizer.vocab_size, model_config)

    def loss(self, model: nn.Module, batch) -> Tensor:
        return self.next_token_loss(model, batch)

    def final_metrics(self, model: nn.Module, run_dir: Path) -> dict[str, float]:
        """Accuracy at each of ``test_lengths`` (a transformer only up to its training length); niah/ in the run."""
        c = self.config
        context = c.seq_len if model.backbone.config.variant == "transformer" else None
        lengths = [n for n in c.test_lengths if context is None or n + ANSWER_ROOM <= context]
        if not lengths:
            return {}
        results = evaluate_niah(LoadedModel(model, self.tokenizer, None, context), ["pk"], lengths, c.test_depths,
                                c.test_samples, c.seed)
        write_report(results, run_dir / "niah")
        return {f"accuracy@{length}": value for length, value in length_accuracy(results).items()}

    def evaluate(self, model: nn.Module, batches: Iterable) -> dict[str, float]:
        """Loss over answer tokens; accuracy: keys whose every digit is the argmax (what greedy decoding writes)."""
        nats, tokens, correct, count = 0.0, 0, 0, 0
        for inputs, targets in batches:
            logits = model(inputs)[:, -ANSWER_TOKENS:].float()
            wanted = targets[:, -ANSWER_TOKENS:]
            nats += F.cross_entropy(logits.flatten(0, 1), wanted.flatten(), reduction="sum").item()
            tokens += wanted.numel()
            correct += (logits.argmax(-1) == wanted).all(-1).sum().item()
            count += len(wanted)
        return {"loss": nats / max(tokens, 1), "accuracy": correct / max(count, 1)}
