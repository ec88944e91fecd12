"""A token-in, token-out model around the Backbone, with tied embeddings: the language-model head
shared by the text, passkey and DNA tasks."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Backbone
from .config import TitansConfig

IGNORE = -100                      # a target position that no loss counts


class LanguageModel(nn.Module):
    """Embedding -> Backbone -> logits through the same (tied) embedding matrix.

    ``state`` and ``return_state`` pass through to the backbone, so a sequence can be read in pieces.
    """

    def __init__(self, vocab_size: int, config: TitansConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.d_model)
        nn.init.normal_(self.embed.weight, std=config.d_model ** -0.5)
        self.backbone = Backbone(config)

    def forward(self, ids: Tensor, state: list | None = None, return_state: bool = False):
        out = self.backbone(self.embed(ids), state=state, return_state=return_state)
        hidden, state = out if return_state else (out, None)
        logits = hidden @ self.embed.weight.T
        return (logits, state) if return_state else logits


def next_token_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of (inputs, targets) over every target that is not ``IGNORE``."""
    inputs, targets = batch
    return F.cross_entropy(model(inputs).flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
