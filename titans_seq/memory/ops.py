"""The functional neural-memory operator and its backend dispatcher."""
from __future__ import annotations

import functools
import os
import warnings
from typing import Callable

import torch
from torch import Tensor

from .activations import get_activation
from .chunked import chunked_neural_memory, memory_mlp
from .state import MemoryState

BACKENDS: dict[str, Callable[..., tuple[Tensor, MemoryState]]] = {
    "torch": chunked_neural_memory,
    "torch_recompute": functools.partial(chunked_neural_memory, autograd=False),   # chunk-start states only
}
TRITON_MAX_DEPTH = 0          # the deepest memory the Triton kernels cover (0: triton is not installed)
try:
    from .triton_backend import MAX_DEPTH as TRITON_MAX_DEPTH, triton_neural_memory
except ImportError:   # no triton: the torch backend serves every device
    pass
else:
    BACKENDS["triton"] = triton_neural_memory


AUTOGRAD_BACKENDS = ("torch",)   # the backends that run decay toward an anchor, which the hand-written backwards lack


def resolve_backend(backend: str, device: torch.device, depth: int = 1, needs: tuple[str, ...] = ()) -> str:
    """The backend that runs a memory of ``depth`` layers on ``device`` with the options ``needs`` names
    (those only autograd differentiates: "decay toward an anchor"):
    ``auto`` picks the fastest one available. This is the one place that sends a call from
    the Triton kernels to the torch backend before it starts (a kernel too large for the GPU is found
    at launch: see ``triton_backend``)."""
    if backend == "auto":
        return "triton" if device.type == "cuda" and depth <= TRITON_MAX_DEPTH and not needs else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown memory backend {backend!r}; choose one of {['auto', *BACKENDS]}")
    if needs and backend not in AUTOGRAD_BACKENDS:
        raise ValueError(f"the {backend} memory backend has no {' and no '.join(needs)}; "
                         f"they run on {' or '.join(AUTOGRAD_BACKENDS)} (or auto)")
    if backend == "triton":
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("the triton memory backend needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
        if depth > TRITON_MAX_DEPTH:
            warnings.warn(f"the Triton memory kernel covers depth <= {TRITON_MAX_DEPTH}; depth {depth} "
                          "runs on the torch backend", stacklevel=3)
            return "torch"
    return backend


def _check_shapes(q, k, v, gates, weights, chunk_size, state):
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q, k must be (B, T, H, Dk) and v (B, T, H, Dv); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    B, T, H, Dk = q.shape
    if T == 0:
        raise ValueError("the sequence is empty (T = 0)")
    for name, g in gates.items():
        if g.shape != (B, T, H):
            raise ValueError(f"{name} must be (B, T, H) = {(B, T, H)}; got {tuple(g.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    dims = [Dk] + [W.shape[-1] for W in weights]
    for layer, W in enumerate(weights):
        if W.shape != (H, dims[layer], dims[layer + 1]):
            raise ValueError(f"memory layer {layer} must be (H, D_in, D_out) = "
                             f"{(H, dims[layer], dims[layer + 1])}; got {tuple(W.shape)}")
    if dims[-1] != v.shape[-1]:
        raise ValueError(f"the last memory layer maps to {dims[-1]} features but v has {v.shape[-1]}")
    if state is not None:
        if state.chunk_size != chunk_size:
            raise ValueError(f"the state was built with chunk_size={state.chunk_size}, not {chunk_size}")
        if [tuple(W.shape) for W in state.weights] != [(B, *W.shape) for W in weights]:
            raise ValueError("the state does not match this batch size or these memory shapes")


def neural_memory(q: Tensor, k: Tensor, v: Tensor, lr: Tensor, momentum: Tensor, decay: Tensor,
                  weights: list[Tensor], *, chunk_size: int, state: MemoryState | None = None,
                  activation: str = "silu", anchor: list[Tensor] | None = None,
                  bound_by_input_norm: bool = False, backend: str = "torch") -> tuple[Tensor, MemoryState]:
    """Write (k, v) into the memory token by token and read q_t through the memory after token t.

    Args:
        q: (B, T, H, Dk) queries.
        k: (B, T, H, Dk) keys.
        v: (B, T, H, Dv) values.
        lr: (B, T, H) learning rates theta_t in [0, 1].
        momentum: (B, T, H) momentum gates eta_t in [0, 1].
        decay: (B, T, H) forgetting gates alpha_t in [0, 1].
        weights: L tensors (H, D_{l-1}, D_l), D_0 = Dk and D_L = Dv: the initial memory, shared by
            the batch (ignored when ``state`` is given).
        chunk_size: gradients inside a chunk [nb, (n+1)b) are taken at the weights entering it.
        state: the state returned by a previous call, to continue that sequence.
        activation: of the memory MLP's hidden layers.
        anchor: L tensors shaped as ``weights``, toward which the decay pulls the memory:
            W_t = (1 - alpha_t) W_{t-1} + alpha_t anchor + S_t. None: toward zero, the paper's.
        bound_by_input_norm: divide each layer's gradient for token t by max(1, ||a_t||^2), a_t that
            layer's input (the key for the first, a hidden activation after), so that a step moves
            no layer's output by more than theta_t times its error.
        backend: ``torch``, ``auto`` or another registered backend.

    Returns:
        y: (B, T, H, Dv) with y_t = f_{W_t}(q_t), in q's dtype; and the state after the last token.
    """
    _check_shapes(q, k, v, {"lr": lr, "momentum": momentum, "decay": decay}, weights, chunk_size, state)
    if anchor is not None and [A.shape for A in anchor] != [W.shape for W in weights]:
        raise ValueError("the anchor must hold one tensor per memory layer, shaped as the weights")
    get_activation(activation)
    needs = ("decay toward an anchor",) if anchor is not None else ()
    run = BACKENDS[resolve_backend(backend, q.device, len(weights), needs)]
    return run(q, k, v, lr, momentum, decay, weights, chunk_size=chunk_size, state=state,
               activation=activation, bound_by_input_norm=bound_by_input_norm,
               **({} if anchor is None else {"anchor": anchor}))


def retrieve(q: Tensor, state_or_weights: MemoryState | list[Tensor], activation: str = "silu") -> Tensor:
    """M*(q): read (B, T, H, Dk) queries through the memory without updating it."""
    if isinstance(state_or_weights, MemoryState):
        weights = state_or_weights.weights                       # (B, H, Di, Do)
    else:
        weights = [W.unsqueeze(0) for W in state_or_weights]     # (1, H, Di, Do)
    dtype = torch.promote_types(q.dtype, weights[0].dtype)
    y = memory_mlp(q.transpose(1, 2).to(dtype), [W.to(dtype) for W in weights], get_activation(activation))
    return y.transpose(1, 2).to(q.dtype)
