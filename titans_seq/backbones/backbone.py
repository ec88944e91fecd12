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

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        y, state = self.mixer(self.mixer_norm(x), state)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), state


class Backbone(nn.Module):
    """(B, T, d_model) -> (B, T, d_model), causal; ``state`` carries a sequence across calls.

    The state is a list with one entry per block (memory states, attention caches); feeding a
    sequence in pieces with the returned state gives the same outputs as one call.
    """

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.config = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(self, x: Tensor, state: list | None = None, return_state: bool = False,
                documents: Documents | None = None):
        """``documents``: where packed documents start; each then runs as if alone (``documents.py``)."""
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(f"expected input (B, T, {self.config.d_model}); got {tuple(x.shape)}")
        if documents is not None and documents.splits(x, with_state=state is not None):
            y, state = run_documents(self._run, x, documents, state, return_state)
        else:
            y, state = self._run(x, state)
        return (y, state) if return_state else y

    def _run(self, x: Tensor, state: list | None) -> tuple[Tensor, list]:
        states = state or [None] * len(self.blocks)
        new_states = []
        for block, block_state in zip(self.blocks, states):
            x, block_state = block(x, block_state)
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
