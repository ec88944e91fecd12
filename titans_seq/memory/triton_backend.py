"""The Triton backend: fused forward and backward kernels tied together by an autograd Function.

The forward kernel keeps the memory in float32 and saves the state entering every chunk, the
only per-chunk tensors kept; the backward kernel walks the chunks in reverse and recomputes
each one from its saved state, so memory grows linearly in T. The backward algorithm, shared
with the torch backend's hand-written backward, is described once, in ``chunked_function.py``.
"""
from __future__ import annotations

import os
import warnings

import torch
import triton
from torch import Tensor
from triton.runtime.errors import OutOfResources

from .chunked import chunked_neural_memory
from .state import MemoryState
from .triton_backward_kernels import memory_bwd_depth1_kernel, memory_bwd_depth2_kernel
from .triton_kernels import GELU, RELU, SILU, memory_fwd_depth1_kernel, memory_fwd_depth2_kernel

ACTIVATION_CODES = {"silu": SILU, "gelu": GELU, "relu": RELU}
MAX_DEPTH = 2
MIN_BLOCK = 16                               # tl.dot's smallest tile


def _block(n: int, cap: int | None = None) -> int:
    """A power-of-two tile size >= 16 (tl.dot's minimum) covering n, at most ``cap``."""
    size = max(MIN_BLOCK, triton.next_power_of_2(n))
    return min(size, cap) if cap else size


def _chunk_layout(T: int, chunk_size: int, position: int) -> tuple[int, int]:
    """(tokens in the first chunk, number of chunks) for T tokens starting at ``position``."""
    first = min(T, chunk_size - position % chunk_size)
    return first, 1 + -(-(T - first) // chunk_size)


_FITTING_BLOCK: dict[tuple, int] = {}      # launch key -> the BLOCK_H that fitted the GPU


class KernelDoesNotFit(RuntimeError):
    """The GPU lacks the shared memory for a kernel even at the smallest tiles."""


def launch_fitting(kernel, grid: tuple[int], args: tuple, options: dict) -> None:
    """Launch ``kernel``, halving its BLOCK_H tile while the GPU lacks the shared memory for it.

    Triton checks a compiled kernel's shared memory against the device before it launches, so a
    refused launch ran nothing and can be retried. The tile that fitted is remembered per launch
    configuration. At the smallest tile a refusal becomes :class:`KernelDoesNotFit`, upon which
    the call runs on the torch backend instead (see :func:`triton_neural_memory`).
    """
    key = (kernel.fn.__name__ if hasattr(kernel, "fn") else repr(kernel), tuple(sorted(options.items())))
    block = _FITTING_BLOCK.get(key, options["BLOCK_H"])
    while True:
        try:
            kernel[grid](*args, **{**options, "BLOCK_H": block})
        except OutOfResources as error:
            if block <= MIN_BLOCK:
                raise KernelDoesNotFit(f"{key[0]} does not fit this GPU even with {MIN_BLOCK}-wide tiles ({error})") from None
            block //= 2
            continue
        _FITTING_BLOCK[key] = block
        return


def kernel_options(depth: int, backward: bool, dtype: torch.dtype, chunk_size: int, dk: int, dh: int, dv: int,
                   activation: str = "silu", has_grad_weights: bool = False) -> dict:
    """The compile-time constants and warp count of a kernel launch (benchmarks/kernel_resources.py reads them too).

    ``dh`` is the hidden width of a depth-2 memory (unused at depth 1). BLOCK_H is the widest tile
    of the hidden (depth 2) or value (depth 1) columns; the caps keep the head size 64, chunk 64
    kernels in bfloat16 within an H100's 227 KB of shared memory (compiled for sm_90 by
    benchmarks/kernel_resources.py), and :func:`launch_fitting` narrows them where a GPU has less.
    """
    options = dict(HAS_GRAD_WEIGHTS=has_grad_weights, ACT=ACTIVATION_CODES[activation],
                   PRECISION="ieee" if dtype in (torch.float32, torch.float64) else "tf32",
                   BT=_block(chunk_size), BK=_block(dk))
    if depth == 1:
        return {**options, "BLOCK_H": _block(dv, 32 if backward else 64)}
    return {**options, "BV": _block(dv), "BLOCK_H": _block(dh, 16 if backward else 64), "num_warps": 8}


def memory_forward(q: Tensor, k: Tensor, v: Tensor, lr: Tensor, eta: Tensor, alpha: Tensor,
                   weights: list[Tensor], momentum: list[Tensor] | None,
                   grad_weights: list[Tensor] | None, *, chunk_size: int, position: int,
                   activation: str, fill_nan: bool = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Run the forward kernel.

    ``weights``/``momentum`` are the state entering the first chunk, (B or 1, H, Din, Dout);
    ``grad_weights`` the weights the first chunk takes its gradients at, when it resumes a chunk.
    q, k, v and the gates must be contiguous. Returns y (B, T, H, Dv) in q's dtype, and per layer the float32 state buffers
    (B, H, N + 2, Din, Dout) of W and S (slot c: entering chunk c). ``fill_nan`` poisons every
    output first, so that a test can see that the kernel wrote all of it.
    """
    B, T, H, DK = q.shape
    DV = v.shape[-1]
    first, N = _chunk_layout(T, chunk_size, position)
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

    DH = weights[0].shape[-1]
    options = kernel_options(len(weights), False, q.dtype, chunk_size, DK, DH, DV, activation,
                             grad_weights is not None)
    strides = (*q.stride()[:3], *v.stride()[:3], *lr.stride())   # y is laid out as v
    if len(weights) == 1:
        launch_fitting(memory_fwd_depth1_kernel, (B * H,), (
            q, k, v, lr, eta, alpha, y, w_bufs[0], s_bufs[0],
            T, H, N, first, chunk_size, DK, DV, jump(w_bufs[0]), *strides), options)
    else:
        launch_fitting(memory_fwd_depth2_kernel, (B * H,), (
            q, k, v, lr, eta, alpha, y, w_bufs[0], s_bufs[0], w_bufs[1], s_bufs[1],
            T, H, N, first, chunk_size, DK, DH, DV, jump(w_bufs[0]), jump(w_bufs[1]), *strides), options)
    return y, w_bufs, s_bufs


def memory_backward(saved: tuple[Tensor, ...], dy: Tensor, d_final_w: list[Tensor], d_final_s: list[Tensor],
                    d_last_entering: list[Tensor], *, chunk_size: int, position: int, activation: str,
                    has_grad_weights: bool, fill_nan: bool = False):
    """Run the backward kernel over the chunks in reverse.

    ``saved`` is (q, k, v, lr, eta, alpha, W buffers..., S buffers...) from :func:`memory_forward`;
    the d_* lists are the gradients of its final weights, final momentum and the weights entering
    its last chunk. Returns float32 gradients of q, k, v, lr, eta, alpha and, per layer, of the
    entering weights, the entering momentum and the gradient weights of a resumed first chunk.
    ``fill_nan`` poisons the token gradients first, so that a test can see that all were written.
    """
    q, k, v, lr, eta, alpha = saved[:6]
    L = (len(saved) - 6) // 2
    w_bufs, s_bufs = saved[6:6 + L], saved[6 + L:]
    B, T, H, DK = q.shape
    DV = v.shape[-1]
    first, N = _chunk_layout(T, chunk_size, position)
    dy = dy.contiguous()
    fill = float("nan") if fill_nan else 0.0
    d_qkv = [torch.full(x.shape, fill, dtype=torch.float32, device=x.device) for x in (q, k, v)]
    d_gates = [torch.full(g.shape, fill, dtype=torch.float32, device=g.device) for g in (lr, eta, alpha)]
    dw_bufs, ds_bufs = [], []
    for layer, buf in enumerate(w_bufs):
        dw = torch.zeros(B, H, 2, *buf.shape[-2:], dtype=torch.float32, device=q.device)
        ds = torch.zeros_like(dw)
        dw[:, :, 0] = d_final_w[layer]
        ds[:, :, 0] = d_final_s[layer]
        dw_bufs.append(dw)
        ds_bufs.append(ds)

    def jump(buf: Tensor) -> int:
        return (N + 1) * buf.shape[-2] * buf.shape[-1] if has_grad_weights else 0

    DH = w_bufs[0].shape[-1]
    options = kernel_options(L, True, q.dtype, chunk_size, DK, DH, DV, activation, has_grad_weights)
    strides = (*q.stride()[:3], *v.stride()[:3], *lr.stride())

    def launch(c_lo: int, c_hi: int) -> None:
        if L == 1:
            launch_fitting(memory_bwd_depth1_kernel, (B * H,), (
                q, k, v, lr, eta, alpha, dy, w_bufs[0], s_bufs[0], *d_qkv, *d_gates, dw_bufs[0], ds_bufs[0],
                T, H, N, first, chunk_size, DK, DV, jump(w_bufs[0]), c_lo, c_hi, *strides), options)
        else:
            scratch = torch.empty(2, B * H, _block(chunk_size), DH, dtype=torch.float32, device=q.device)
            launch_fitting(memory_bwd_depth2_kernel, (B * H,), (
                q, k, v, lr, eta, alpha, dy, w_bufs[0], s_bufs[0], w_bufs[1], s_bufs[1], *d_qkv, *d_gates,
                dw_bufs[0], ds_bufs[0], dw_bufs[1], ds_bufs[1], scratch[0], scratch[1],
                T, H, N, first, chunk_size, DK, DH, DV, jump(w_bufs[0]), jump(w_bufs[1]), c_lo, c_hi, *strides),
                options)

    launch(N - 1, N)
    for dw, extra in zip(dw_bufs, d_last_entering):   # the last chunk's entering weights were an output too
        dw[:, :, 0] += extra
    if N > 1:
        launch(0, N - 1)
    return (*d_qkv, *d_gates, [dw[:, :, 0] for dw in dw_bufs], [ds[:, :, 0] for ds in ds_bufs],
            [dw[:, :, 1] for dw in dw_bufs])


class TritonMemoryFunction(torch.autograd.Function):
    """Inputs: q, k, v, lr, eta, alpha, then L initial weights, L momenta (if any), L gradient weights (if any).

    Outputs: y, then per layer the final weights, the final momentum, and the weights entering
    the last chunk (the state's chunk weights when the call ends inside a chunk).
    """

    @staticmethod
    def forward(ctx, meta: dict, *tensors: Tensor):
        q, k, v, lr, eta, alpha = (x.contiguous() for x in tensors[:6])   # the kernels share one layout
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
        L = meta["depth"]
        saved = ctx.saved_tensors
        w_bufs = saved[6:6 + L]

        def dense(grads):
            return [torch.zeros_like(b[:, :, 0]) if g is None else g.float() for g, b in zip(grads, w_bufs)]

        try:
            *d_inputs, d_w, d_s, d_gw = memory_backward(
                saved, dy, dense(d_state[:L]), dense(d_state[L:2 * L]), dense(d_state[2 * L:]),
                chunk_size=meta["chunk_size"], position=meta["position"], activation=meta["activation"],
                has_grad_weights=meta["has_grad_weights"])
        except KernelDoesNotFit as error:
            warnings.warn(f"{error}; this backward pass runs on the torch backend", stacklevel=2)
            return (None, *_torch_backward(meta, saved, ctx.input_shapes, dy, d_state))
        grads = [d.to(x.dtype) for d, x in zip(d_inputs, saved[:6])]
        shapes = ctx.input_shapes[6:]
        grads += [d.sum(0) if len(shape) == 3 else d for d, shape in zip(d_w, shapes[:L])]
        if meta["has_momentum"]:
            grads += d_s
        if meta["has_grad_weights"]:
            grads += d_gw
        return (None, *grads)


def _torch_backward(meta: dict, saved: tuple[Tensor, ...], input_shapes: list, dy: Tensor,
                    d_state: tuple[Tensor | None, ...]) -> list[Tensor | None]:
    """The gradients of TritonMemoryFunction's inputs, by recomputing the call on the torch backend.

    The saved buffers hold the state the call started from: slot 0 of W and S, and the last slot
    of W for the gradient weights of a resumed chunk. The outputs map one to one onto the torch
    backend's: y, the final weights and momentum, and its chunk weights (which are the weights
    entering the last chunk wherever the caller uses those).
    """
    L, has_momentum, resumed = meta["depth"], meta["has_momentum"], meta["has_grad_weights"]
    q, k, v, lr, eta, alpha = (x.detach().requires_grad_() for x in saved[:6])
    w_bufs, s_bufs = saved[6:6 + L], saved[6 + L:]
    with torch.enable_grad():
        weights = [buf[:, :, 0].clone().requires_grad_() for buf in w_bufs]
        momentum = [buf[:, :, 0].clone().requires_grad_() for buf in s_bufs]
        grad_weights = [buf[:, :, -1].clone().requires_grad_() for buf in w_bufs] if resumed else weights
        state = MemoryState(weights, momentum, grad_weights, meta["position"], meta["chunk_size"])
        y, final = chunked_neural_memory(q, k, v, lr, eta, alpha, weights, chunk_size=meta["chunk_size"],
                                         state=state, activation=meta["activation"])
        outputs = [y, *final.weights, *final.momentum, *final.chunk_weights]
        inputs = [q, k, v, lr, eta, alpha, *weights, *(momentum if has_momentum else []),
                  *(grad_weights if resumed else [])]
        pairs = [(out, grad) for out, grad in zip(outputs, (dy, *d_state)) if grad is not None]
        grads = torch.autograd.grad([out for out, _ in pairs], inputs, [grad for _, grad in pairs],
                                    allow_unused=True)
    grads = [None if g is None else g.to(x.dtype) for g, x in zip(grads, inputs)]
    for i in range(6, 6 + L):                    # initial weights shared by the batch: (H, D_in, D_out)
        if grads[i] is not None and len(input_shapes[i]) == 3:
            grads[i] = grads[i].sum(0)
    return grads


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
    try:
        y, *final = TritonMemoryFunction.apply(meta, q, k, v, lr, momentum, decay, *tensors)
    except KernelDoesNotFit as error:
        warnings.warn(f"{error}; this call runs on the torch backend", stacklevel=3)
        return chunked_neural_memory(q, k, v, lr, momentum, decay, weights, chunk_size=chunk_size,
                                     state=state, activation=activation)
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
