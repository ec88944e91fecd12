"""The Triton backend: the fused forward kernel tied to a chunk-recomputing backward.

The forward kernel keeps the memory in float32 and saves the state entering every chunk. The
backward walks the chunks in reverse and recomputes each one from its saved state with the
torch dual form (`chunked._chunks`), so memory stays linear in T and the gradients are those of
the reference implementation.
"""
from __future__ import annotations

import os
import warnings

import torch
import triton
from torch import Tensor

from .chunked import _chunks, chunked_neural_memory
from .activations import get_activation
from .state import MemoryState
from .triton_kernels import GELU, RELU, SILU, memory_fwd_depth1_kernel, memory_fwd_depth2_kernel

ACTIVATION_CODES = {"silu": SILU, "gelu": GELU, "relu": RELU}
MAX_DEPTH = 2


def _block(n: int, cap: int | None = None) -> int:
    """A power-of-two tile size >= 16 (tl.dot's minimum) covering n, at most ``cap``."""
    size = max(16, triton.next_power_of_2(n))
    return min(size, cap) if cap else size


def _chunk_layout(T: int, chunk_size: int, position: int) -> tuple[int, int]:
    """(tokens in the first chunk, number of chunks) for T tokens starting at ``position``."""
    first = min(T, chunk_size - position % chunk_size)
    return first, 1 + -(-(T - first) // chunk_size)


def memory_forward(q: Tensor, k: Tensor, v: Tensor, lr: Tensor, eta: Tensor, alpha: Tensor,
                   weights: list[Tensor], momentum: list[Tensor] | None,
                   grad_weights: list[Tensor] | None, *, chunk_size: int, position: int,
                   activation: str, fill_nan: bool = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Run the forward kernel.

    ``weights``/``momentum`` are the state entering the first chunk, (B or 1, H, Din, Dout);
    ``grad_weights`` the weights the first chunk takes its gradients at, when it resumes a chunk.
    Returns y (B, T, H, Dv) in q's dtype, and per layer the float32 state buffers
    (B, H, N + 2, Din, Dout) of W and S (slot c: entering chunk c). ``fill_nan`` poisons every
    output first, so that a test can see that the kernel wrote all of it.
    """
    B, T, H, DK = q.shape
    DV = v.shape[-1]
    first, N = _chunk_layout(T, chunk_size, position)
    q, k, v = (x.contiguous() for x in (q, k, v))
    lr, eta, alpha = (g.contiguous() for g in (lr, eta, alpha))
    fill = float("nan") if fill_nan else 0.0
    y = torch.full((B, T, H, DV), fill, dtype=q.dtype, device=q.device)
    w_bufs, s_bufs = [], []
    for layer, W in enumerate(weights):
        shape = (B, H, N + 2, *W.shape[-2:])
        w_buf = torch.full(shape, fill, dtype=torch.float32, device=q.device)
        s_buf = torch.full(shape, fill, dtype=torch.float32, device=q.device)
        w_buf[:, :, 0] = W.detach().float()
        s_buf[:, :, 0] = 0.0 if momentum is None else momentum[layer].detach().float()
        if grad_weights is not None:
            w_buf[:, :, N + 1] = grad_weights[layer].detach().float()
        w_bufs.append(w_buf)
        s_bufs.append(s_buf)

    def jump(buf: Tensor) -> int:   # from slot 0 to the last slot, in elements
        return (N + 1) * buf.shape[-2] * buf.shape[-1] if grad_weights is not None else 0

    common = dict(HAS_GRAD_WEIGHTS=grad_weights is not None, ACT=ACTIVATION_CODES[activation],
                  PRECISION="ieee" if q.dtype in (torch.float32, torch.float64) else "tf32",
                  BT=_block(chunk_size), BK=_block(DK))
    strides = (*q.stride()[:3], *v.stride()[:3], *lr.stride())   # y is laid out as v
    if len(weights) == 1:
        memory_fwd_depth1_kernel[(B * H,)](
            q, k, v, lr, eta, alpha, y, w_bufs[0], s_bufs[0],
            T, H, N, first, chunk_size, DK, DV, jump(w_bufs[0]), *strides,
            BLOCK_H=_block(DV, 64), **common)
    else:
        DH = weights[0].shape[-1]
        memory_fwd_depth2_kernel[(B * H,)](
            q, k, v, lr, eta, alpha, y, w_bufs[0], s_bufs[0], w_bufs[1], s_bufs[1],
            T, H, N, first, chunk_size, DK, DH, DV, jump(w_bufs[0]), jump(w_bufs[1]), *strides,
            BV=_block(DV), BLOCK_H=_block(DH, 64), **common)
    return y, w_bufs, s_bufs


class TritonMemoryFunction(torch.autograd.Function):
    """Inputs: q, k, v, lr, eta, alpha, then L initial weights, L momenta (if any), L gradient weights (if any).

    Outputs: y, then per layer the final weights, the final momentum, and the weights entering
    the last chunk (the state's chunk weights when the call ends inside a chunk).
    """

    @staticmethod
    def forward(ctx, meta: dict, *tensors: Tensor):
        q, k, v, lr, eta, alpha = tensors[:6]
        L = meta["depth"]
        weights = list(tensors[6:6 + L])
        momentum = list(tensors[6 + L:6 + 2 * L]) if meta["has_momentum"] else None
        grad_weights = list(tensors[6 + (2 if meta["has_momentum"] else 1) * L:]) or None
        y, w_bufs, s_bufs = memory_forward(q, k, v, lr, eta, alpha, weights, momentum, grad_weights,
                                           chunk_size=meta["chunk_size"], position=meta["position"],
                                           activation=meta["activation"])
        N = w_bufs[0].shape[2] - 2
        ctx.meta = meta
        ctx.save_for_backward(q, k, v, lr, eta, alpha, *w_bufs, *s_bufs)
        ctx.input_shapes = [t.shape for t in tensors]
        final_w = [buf[:, :, N] for buf in w_bufs]
        final_s = [buf[:, :, N] for buf in s_bufs]
        last_entering = [buf[:, :, N - 1] for buf in w_bufs]
        return (y, *final_w, *final_s, *last_entering)

    @staticmethod
    def backward(ctx, dy: Tensor, *d_state: Tensor):
        meta = ctx.meta
        L, chunk_size = meta["depth"], meta["chunk_size"]
        q, k, v, lr, eta, alpha = ctx.saved_tensors[:6]
        w_bufs = ctx.saved_tensors[6:6 + L]
        s_bufs = ctx.saved_tensors[6 + L:6 + 2 * L]
        N = w_bufs[0].shape[2] - 2
        T = q.shape[1]
        first, _ = _chunk_layout(T, chunk_size, meta["position"])
        act = get_activation(meta["activation"])
        resumed = meta["has_grad_weights"]

        def zeros_if_none(grads, bufs):
            return [torch.zeros_like(b[:, :, 0]) if g is None else g.float() for g, b in zip(grads, bufs)]

        d_w = zeros_if_none(d_state[:L], w_bufs)
        d_s = zeros_if_none(d_state[L:2 * L], s_bufs)
        d_last_entering = zeros_if_none(d_state[2 * L:], w_bufs)
        inputs = (q, k, v, lr, eta, alpha)
        d_inputs = [torch.zeros(x.shape, dtype=torch.float32, device=x.device) for x in inputs]
        d_grad_weights = None
        for c in reversed(range(N)):
            start = 0 if c == 0 else first + (c - 1) * chunk_size
            end = min(T, first if c == 0 else start + chunk_size)
            pieces = [x[:, start:end].float().transpose(1, 2).unsqueeze(2).requires_grad_() for x in inputs]
            W_c = [buf[:, :, c].clone().requires_grad_() for buf in w_bufs]
            S_c = [buf[:, :, c].clone().requires_grad_() for buf in s_bufs]
            G_c = [buf[:, :, N + 1].clone().requires_grad_() for buf in w_bufs] if resumed and c == 0 else None
            with torch.enable_grad():
                y_c, W_next, S_next = _chunks(*pieces, W_c, S_c, act, grad_weights=G_c)
            outputs = [y_c, *W_next, *S_next]
            grads_out = [dy[:, start:end].float().transpose(1, 2).unsqueeze(2), *d_w, *d_s]
            wrt = [*pieces, *W_c, *S_c, *(G_c or [])]
            grads = torch.autograd.grad(outputs, wrt, grads_out, allow_unused=True)
            for d_full, g in zip(d_inputs, grads[:6]):
                if g is not None:
                    d_full[:, start:end] = g.squeeze(2).transpose(1, 2)
            d_w = zeros_if_none(grads[6:6 + L], w_bufs)
            if c == N - 1:
                d_w = [d + extra for d, extra in zip(d_w, d_last_entering)]
            d_s = zeros_if_none(grads[6 + L:6 + 2 * L], s_bufs)
            if G_c is not None:
                d_grad_weights = zeros_if_none(grads[6 + 2 * L:], w_bufs)

        grads = [d.to(x.dtype) for d, x in zip(d_inputs, inputs)]
        shapes = ctx.input_shapes[6:]
        grads += [d.sum(0) if len(shape) == 3 else d for d, shape in zip(d_w, shapes[:L])]
        if meta["has_momentum"]:
            grads += d_s
        if resumed:
            grads += d_grad_weights
        return (None, *grads)


def triton_neural_memory(q: Tensor, k: Tensor, v: Tensor, lr: Tensor, momentum: Tensor,
                         decay: Tensor, weights: list[Tensor], *, chunk_size: int,
                         state: MemoryState | None = None,
                         activation: str = "silu") -> tuple[Tensor, MemoryState]:
    """The Triton backend of :func:`titans_seq.memory.neural_memory` (arguments as there)."""
    if len(weights) > MAX_DEPTH:
        warnings.warn(f"the Triton memory kernel covers depth <= {MAX_DEPTH}; depth {len(weights)} "
                      "runs on the torch backend", stacklevel=3)
        return chunked_neural_memory(q, k, v, lr, momentum, decay, weights, chunk_size=chunk_size,
                                     state=state, activation=activation)
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("the triton memory backend needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    position = 0 if state is None else state.position
    resumed = position % chunk_size != 0
    if state is None:
        tensors = [*weights]
    else:
        tensors = [*state.weights, *state.momentum, *(state.chunk_weights if resumed else [])]
    meta = dict(depth=len(weights), chunk_size=chunk_size, position=position, activation=activation,
                has_momentum=state is not None, has_grad_weights=resumed)
    y, *final = TritonMemoryFunction.apply(meta, q, k, v, lr, momentum, decay, *tensors)
    L = len(weights)
    new_w, new_s, last_entering = final[:L], final[L:2 * L], final[2 * L:]
    end = position + q.shape[1]
    if end % chunk_size == 0:
        chunk_weights = new_w
    elif resumed and end - position < chunk_size - position % chunk_size:
        chunk_weights = state.chunk_weights     # the resumed chunk is still unfinished
    else:
        chunk_weights = last_entering
    return y, MemoryState(new_w, new_s, chunk_weights, end, chunk_size)
