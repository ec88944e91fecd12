"""NeuralMemory: the paper's long-term memory layer (LMM) around the functional operator."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import neural_memory, retrieve
from .short_conv import ShortConv
from .state import MemoryState
from .write_budget import budgeted_lr


@dataclass
class NeuralMemoryState:
    conv: Tensor            # the last inputs of the q/k/v short convolution
    memory: MemoryState
    budget: tuple[Tensor, Tensor] | None = None   # the unfinished chunk's keys and counted steps (write budget)


DECAY_TARGETS = ("zero", "init")


class NeuralMemory(nn.Module):
    """Learns to memorise at test time: keys/values written into an MLP by gradient descent.

    x -> q, k, v = SiLU(conv(W x)) per head (q, k L2-normalised); data-dependent, per-head gates
    lr theta = lr_max * sigmoid(.) (lr_max defaults to 1 / chunk_size), momentum eta = sigmoid(.) and
    decay alpha = sigmoid(.); the operator writes (k, v)
    and reads q through the updated memory; then per-head RMSNorm, a sigmoid gate computed from x,
    and the output projection. The initial memory weights are parameters (the outer loop learns them).
    ``damped_momentum`` scales theta by (1 - eta), so that momentum, which re-applies a gradient
    about 1 / (1 - eta) times, never takes a step larger than lr_max (see docs/concepts/memory.md).
    ``chunk_budget`` bounds instead the sum of the steps a chunk takes along each key, momentum's
    re-applications counted (``write_budget.py``), so that lr_max may allow strong single writes.
    ``decay_target`` is what the decay forgets toward: ``zero`` (the paper's) or ``init``, the learnt
    initial weights, so that a long sequence fades the memory's writes but never the function it starts from.
    ``bound_by_input_norm`` divides each memory layer's step by max(1, |its input|^2), so that the hidden
    layers, whose inputs are not unit keys, move their outputs no further than a unit key's step does.
    """

    def __init__(self, d_model: int, n_heads: int, head_dim: int | None = None, depth: int = 2,
                 expansion: int = 4, chunk_size: int = 64, conv_kernel: int = 4, lr_max: float | None = None,
                 activation: str = "silu", backend: str = "auto", eps: float = 1e-6, damped_momentum: bool = False,
                 chunk_budget: float | None = None, decay_target: str = "zero", bound_by_input_norm: bool = False):
        super().__init__()
        if decay_target not in DECAY_TARGETS:
            raise ValueError(f"decay_target must be one of {', '.join(DECAY_TARGETS)}; got {decay_target!r}")
        head_dim = head_dim or d_model // n_heads
        inner = n_heads * head_dim
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim, chunk_size
        # Gradients inside a chunk are summed at stale weights, and per-token momentum re-applies each
        # of them about 1 / (1 - eta) times: see docs/concepts/memory.md, "Stability of the inner loop".
        self.lr_max, self.damped_momentum = lr_max or 1.0 / chunk_size, damped_momentum
        self.activation, self.backend, self.chunk_budget = activation, backend, chunk_budget
        self.decay_target, self.bound_by_input_norm = decay_target, bound_by_input_norm
        self.to_qkv = nn.Linear(d_model, 3 * inner, bias=False)
        self.conv = ShortConv(3 * inner, conv_kernel)
        self.to_gates = nn.Linear(d_model, 3 * n_heads)
        with torch.no_grad():   # start near lr = lr_max / 2, momentum = 0.5, decay = 0.001
            self.to_gates.weight.mul_(0.1)
            self.to_gates.bias.copy_(torch.tensor([0.0, 0.0, -math.log(999)]).repeat_interleave(n_heads))
        dims = [head_dim] + [head_dim * expansion] * (depth - 1) + [head_dim]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(n_heads, a, b) / math.sqrt(a)) for a, b in zip(dims[:-1], dims[1:]))
        self.norm = nn.RMSNorm(head_dim, eps=eps)
        self.to_out_gate = nn.Linear(d_model, inner, bias=False)
        self.out = nn.Linear(inner, d_model, bias=False)

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(*x.shape[:2], self.n_heads, -1)

    def _read_out(self, y: Tensor, x: Tensor) -> Tensor:
        gated = self.norm(y).flatten(2) * torch.sigmoid(self.to_out_gate(x))
        return self.out(gated)

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The per-token, per-head gates lr (theta), momentum (eta) and decay (alpha), each (B, T, H)."""
        lr, momentum, decay = torch.sigmoid(self.to_gates(x)).chunk(3, dim=-1)
        return self.lr_max * lr * (1 - momentum if self.damped_momentum else 1), momentum, decay

    def forward(self, x: Tensor, state: NeuralMemoryState | None = None) -> tuple[Tensor, NeuralMemoryState]:
        """(B, T, d_model) -> (B, T, d_model) and the state after the last token."""
        qkv, conv = self.conv(self.to_qkv(x), None if state is None else state.conv)
        q, k, v = (self._heads(t) for t in F.silu(qkv).chunk(3, dim=-1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        lr, momentum, decay = self.gates(x)
        budget = None
        if self.chunk_budget is not None:
            position = 0 if state is None else state.memory.position
            lr, budget = budgeted_lr(lr, momentum, k, self.chunk_budget, self.chunk_size, position,
                                     None if state is None else state.budget)
        weights = list(self.weights)
        y, memory = neural_memory(q, k, v, lr, momentum, decay, weights,
                                  chunk_size=self.chunk_size, activation=self.activation,
                                  state=None if state is None else state.memory,
                                  anchor=weights if self.decay_target == "init" else None,
                                  bound_by_input_norm=self.bound_by_input_norm, backend=self.backend)
        return self._read_out(y, x), NeuralMemoryState(conv, memory, budget)

    def queries(self, x: Tensor, cache: Tensor | None = None, convolve: bool = False) -> tuple[Tensor, Tensor | None]:
        """x's normalised read queries (B, T, H, D), and the convolution's cache after x (None if not ``convolve``).

        With ``convolve`` the queries pass through the short convolution's query filters as in
        ``forward`` (``cache``: x's previous projected inputs); without it they are the bare projection,
        so that a read needs no state beyond the memory.
        """
        inner = self.n_heads * self.head_dim
        q = F.linear(x, self.to_qkv.weight[:inner])
        if convolve:
            q, cache = self.conv(q, cache, channels=slice(0, inner))
        return F.normalize(self._heads(F.silu(q)), dim=-1), cache if convolve else None

    def retrieve(self, x: Tensor, memory: MemoryState | None = None, q: Tensor | None = None) -> Tensor:
        """M*(q): read x's queries (``q``, default ``queries(x)``) through ``memory``, without writing.

        ``memory`` None reads the initial memory.
        """
        q = self.queries(x)[0] if q is None else q
        y = retrieve(q, list(self.weights) if memory is None else memory, self.activation)
        return self._read_out(y, x)
