"""A token-in, token-out model around the Backbone and the next-token loss (optionally with the state
carried from batch to batch): the head and losses shared by the text, passkey, DNA-LM and recall tasks."""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from titans_seq.backbones import Backbone, Documents, TitansConfig

IGNORE = -100                      # a target position that no loss counts


@dataclass
class DocumentStreamState:
    """The state of a LanguageModel that restarts at documents: the backbone's, and each row's last
    token (whether the next piece starts a document)."""
    backbone: list
    last_token: Tensor


class LanguageModel(nn.Module):
    """Embedding -> Backbone -> logits, through the same (tied) embedding matrix or a head of its own.

    Tied, the embedding is also the output projection and starts at std d_model^-0.5; untied (the
    recall demo's small vocabularies), a linear ``head`` follows and the embedding keeps torch's
    initialisation. ``state`` and ``return_state`` pass through to the backbone, so a sequence can be
    read in pieces. With a ``document_end`` token, a row packed with documents runs each document
    as if alone (the token after every ``document_end`` starts a new one; see ``Documents``).
    """

    def __init__(self, vocab_size: int, config: TitansConfig, tie_embeddings: bool = True,
                 document_end: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.d_model)
        if tie_embeddings:   # before the backbone is built: the random stream, so the weights, stay as they were
            nn.init.normal_(self.embed.weight, std=config.d_model ** -0.5)
        self.backbone = Backbone(config)
        self.head = None if tie_embeddings else nn.Linear(config.d_model, vocab_size, bias=False)
        self.document_end = document_end

    def forward(self, ids: Tensor, state: list | DocumentStreamState | None = None, return_state: bool = False):
        documents = None
        if self.document_end is not None:
            documents = Documents.after(ids, self.document_end, None if state is None else state.last_token)
            state = None if state is None else state.backbone
        out = self.backbone(self.embed(ids), state=state, return_state=return_state, documents=documents)
        hidden, state = out if return_state else (out, None)
        logits = hidden @ self.embed.weight.T if self.head is None else self.head(hidden)
        if return_state and self.document_end is not None:
            state = DocumentStreamState(state, ids[:, -1])
        return (logits, state) if return_state else logits


def next_token_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of (inputs, targets) over every target that is not ``IGNORE``."""
    inputs, targets = batch
    return _cross_entropy(model(inputs), targets)


def _cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def detach_state(state: Any) -> Any:
    """A backbone state (lists, dataclasses and tensors, nested) cut from the autograd graph."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(part) for part in state)
    if is_dataclass(state):
        return replace(state, **{f.name: detach_state(getattr(state, f.name)) for f in fields(state)})
    return state


class CarriedStateLoss:
    """The next-token loss with the state carried from batch to batch (truncated back-propagation
    through time): each training batch starts where the previous one ended, for up to ``batches``
    batches in a row, then one starts afresh.

    No gradient crosses batches (the carried state is detached), so memory and time per step are
    those of one sequence; but the model trains on states it would otherwise meet only past its
    training length, which is what length generalisation of a recurrent state needs (Buitrago &
    Gu, 2025, "Understanding and Improving Length Generalization in Recurrent Models"). A batch of
    another size than the carried state's, or after a non-finite loss, starts afresh. ``batches=0``
    is the plain loss.
    """

    def __init__(self, batches: int):
        self.batches, self.carried, self.state, self.size = batches, 0, None, 0

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        if self.batches == 0:
            return next_token_loss(model, batch)
        inputs, targets = batch
        carry = self.state is not None and self.carried < self.batches and self.size == len(inputs)
        logits, state = model(inputs, state=self.state if carry else None, return_state=True)
        loss = _cross_entropy(logits, targets)
        finite = bool(torch.isfinite(loss))           # a diverged state is dropped, not carried on
        self.carried = self.carried + 1 if carry else 0
        self.state, self.size = (detach_state(state), len(inputs)) if finite else (None, 0)
        return loss

