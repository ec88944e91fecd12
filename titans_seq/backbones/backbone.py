"""Backbone: a stack of pre-norm blocks around one sequence mixer per variant."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from titans_seq.files import write_atomically_with
from titans_seq.layers import SwiGLU, swiglu_hidden

from .config import TitansConfig
from .documents import Documents, run_documents
from .lmm import lmm_mixer
from .mac import MACMixer
from .mag import MAGMixer
from .mal import MALMixer
from .swa import swa_mixer
from .transformer import transformer_mixer

MIXERS: dict[str, Callable[[TitansConfig], nn.Module]] = {
    "lmm": lmm_mixer, "mac": MACMixer, "mag": MAGMixer, "mal": MALMixer,
    "transformer": transformer_mixer, "swa": swa_mixer,
}
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class Block(nn.Module):
    """RMSNorm -> mixer -> residual -> RMSNorm -> SwiGLU -> residual."""

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer = MIXERS[cfg.variant](cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden or swiglu_hidden(cfg.d_model))

    def forward(self, x: Tensor, state: Any = None, backward: Tensor | None = None) -> tuple[Tensor, Any]:
        """``backward``: a (B, T) index that reverses each row (:func:`reversal`); the mixer then also reads
        the rows reversed, and its two outputs are averaged (a bidirectional backbone)."""
        h = self.mixer_norm(x)
        y, state = self.mixer(h, state)
        if backward is not None:
            y = (y + reverse_rows(self.mixer(reverse_rows(h, backward), None)[0], backward)) / 2
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), state


def reversal(lengths: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor:
    """A (batch, length) index that reverses each row's first ``lengths[b]`` positions (all of them
    where ``lengths`` is None) and leaves the right padding after them in place: its own inverse."""
    positions = torch.arange(length, device=device).expand(batch, length)
    if lengths is None:
        return positions.flip(-1)
    real = lengths.to(device).view(batch, 1)
    return torch.where(positions < real, real - 1 - positions, positions)


def reverse_rows(x: Tensor, index: Tensor) -> Tensor:
    """(B, T, C) rows reordered by a (B, T) index from :func:`reversal`."""
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class Backbone(nn.Module):
    """(B, T, d_model) -> (B, T, d_model), causal; ``state`` carries a sequence across calls.

    The state is a list with one entry per block (memory states, attention caches); feeding a
    sequence in pieces with the returned state gives the same outputs as one call. A bidirectional
    backbone (``config.bidirectional``) is not causal: it reads whole sequences, with no state.
    """

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.config = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(self, x: Tensor, state: list | None = None, return_state: bool = False,
                documents: Documents | None = None, lengths: Tensor | None = None):
        """``documents``: where packed documents start; each then runs as if alone (``documents.py``).
        ``lengths``: each row's real tokens, the rest right padding, which a bidirectional backbone
        leaves out of its backward read (a causal one never reads padding before a real token)."""
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(f"expected input (B, T, {self.config.d_model}); got {tuple(x.shape)}")
        if self.config.bidirectional:
            if state is not None or return_state or documents is not None:
                raise ValueError("a bidirectional backbone reads whole sequences: it takes no state and no "
                                 "packed documents")
            return self._run(x, None, reversal(lengths, x.shape[0], x.shape[1], x.device))[0]
        if documents is not None and documents.splits(x, with_state=state is not None):
            y, state = run_documents(self._run, x, documents, state, return_state)
        else:
            y, state = self._run(x, state)
        return (y, state) if return_state else y

    def _run(self, x: Tensor, state: list | None, backward: Tensor | None = None) -> tuple[Tensor, list]:
        states = state or [None] * len(self.blocks)
        new_states = []
        for block, block_state in zip(self.blocks, states):
            x, block_state = block(x, block_state, backward)
            new_states.append(block_state)
        return self.norm(x), new_states

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors into ``directory``, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()}
        write_atomically_with(directory / WEIGHTS_FILE, lambda path: save_file(tensors, path))
        config = json.dumps(self.config.to_dict(), indent=2)
        write_atomically_with(directory / CONFIG_FILE, lambda path: Path(path).write_text(config))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> Backbone:
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} does not exist: not a saved titans_seq backbone")
        model = cls(TitansConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text())))
        model.load_state_dict(load_file(directory / WEIGHTS_FILE, device=str(map_location)))
        return model.to(map_location)
