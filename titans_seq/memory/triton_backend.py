"""The Triton backend: fused forward and backward kernels tied together by an autograd Function.

The forward kernel keeps the memory in float32 and saves the state entering every chunk, the
only per-chunk tensors kept; the backward kernel walks the chunks in reverse and recomputes
each one from its saved state, so memory grows linearly in T. The backward algorithm, shared
with the torch backend's hand-written backward, is described once, in ``chunked_function.py``.

Where the torch backend runs instead: ``ops.resolve_backend`` sends a memory deeper than
:data:`MAX_DEPTH` there before any kernel is chosen; a kernel that fits the GPU at no tile size
(:class:`KernelDoesNotFit`, raised by :func:`launch_fitting`) sends that call's forward, or its
backward, there with a warning (:func:`_warn_torch_runs`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
import triton
from torch import Tensor
from triton.runtime.errors import OutOfResources

from .chunked import chunked_neural_memory
from .state import ChunkLayout, MemoryState
from .triton_backward_kernels import memory_bwd_depth1_kernel, memory_bwd_depth2_kernel
from .triton_kernels import GELU, RELU, SILU, memory_fwd_depth1_kernel, memory_fwd_depth2_kernel

ACTIVATION_CODES = {"silu": SILU, "gelu": GELU, "relu": RELU}
MAX_DEPTH = 2
MIN_BLOCK = 16                               # tl.dot's smallest tile


def _block(n: int, cap: int | None = None) -> int:
    """A power-of-two tile size >= 16 (tl.dot's minimum) covering n, at most ``cap``."""
    size = max(MIN_BLOCK, triton.next_power_of_2(n))
    return min(size, cap) if cap else size


_FITTING_BLOCK: dict[tuple, int] = {}      # launch key -> the BLOCK_H that fitted the GPU


class KernelDoesNotFit(RuntimeError):
    """The GPU lacks the shared memory for a kernel even at the smallest tiles."""


def launch_fitting(kernel, grid: tuple[int], args: tuple, options: dict) -> None:
    """Launch ``kernel``, halving its BLOCK_H tile while the GPU lacks the shared memory for it.

    Triton checks a compiled kernel's shared memory against the device before it launches, so a
    refused launch ran nothing and can be retried. The tile that fitted is remembered per launch
    configuration. At the smallest tile a refusal becomes :class:`KernelDoesNotFit`, upon which
    the call runs on the torch backend instead (see the module docstring).
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
                   activation: str = "silu", resumed: bool = False, bound: bool = False) -> dict:
    """The compile-time constants and warp count of a kernel launch (benchmarks/kernel_resources.py reads them too).

    ``dh`` is the hidden width of a depth-2 memory (unused at depth 1). BLOCK_H is the widest tile
    of the hidden (depth 2) or value (depth 1) columns; the caps keep the head size 64, chunk 64
    kernels in bfloat16 within an H100's 227 KB of shared memory (compiled for sm_90 by
    benchmarks/kernel_resources.py), and :func:`launch_fitting` narrows them where a GPU has less.
    """
    options = dict(RESUMED=resumed, BOUND=bound, ACT=ACTIVATION_CODES[activation],
                   PRECISION="ieee" if dtype in (torch.float32, torch.float64) else "tf32",
                   BT=_block(chunk_size), BK=_block(dk))
    if depth == 1:
        return {**options, "BLOCK_H": _block(dv, 32 if backward else 64)}
    return {**options, "BV": _block(dv), "BLOCK_H": _block(dh, 16 if backward else 64), "num_warps": 8}


def _uninitialised(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A buffer that a kernel writes in full (tests/memory/test_triton.py poisons these to check that)."""
    return torch.empty(shape, dtype=dtype, device=device)


@dataclass(frozen=True)
class Launch:
    """Everything about a call that is not a tensor: what its kernels compile for and where its chunks fall."""

    depth: int
    activation: str
    layout: ChunkLayout
    carries_state: bool     # the call continues a state: its surprise is an input
    bound: bool = False     # steps bounded by input norm

    @property
    def resumed(self) -> bool:
        return self.layout.resumes


class StateInputs(NamedTuple):
    """The state a call starts from: the entering weights (B or 1, H, Din, Dout), the entering
    surprise (None: zero) and the chunk weights of a resumed first chunk (None: not resumed)."""
    weights: list[Tensor]
    surprise: list[Tensor] | None
    chunk_weights: list[Tensor] | None

    @staticmethod
    def unpack(launch: Launch, tensors: tuple[Tensor, ...]) -> StateInputs:
        L = launch.depth
        surprise = list(tensors[L:2 * L]) if launch.carries_state else None
        chunk_weights = list(tensors[(1 + launch.carries_state) * L:]) if launch.resumed else None
        return StateInputs(list(tensors[:L]), surprise, chunk_weights)

    def flat(self) -> list[Tensor]:
        return [*self.weights, *(self.surprise or []), *(self.chunk_weights or [])]


class Saved(NamedTuple):
    """What the forward keeps for the backward: the token tensors (q, k, v, lr, momentum, decay) and
    per layer the float32 buffers (B, H, N + 2, Din, Dout) of W and S; slot c holds the state entering
    chunk c, slot N the final one, and W's slot N + 1 a resumed first chunk's chunk weights."""
    tokens: tuple[Tensor, ...]
    w_bufs: list[Tensor]
    s_bufs: list[Tensor]

    @staticmethod
    def unpack(tensors: tuple[Tensor, ...]) -> Saved:
        L = (len(tensors) - 6) // 2
        return Saved(tuple(tensors[:6]), list(tensors[6:6 + L]), list(tensors[6 + L:]))

    def flat(self) -> list[Tensor]:
        return [*self.tokens, *self.w_bufs, *self.s_bufs]


def _chunk_weights_jump(launch: Launch, buf: Tensor) -> int:
    """Elements from a state buffer's slot 0 to the chunk weights in its last slot (0: not resumed)."""
    return (launch.layout.n_chunks + 1) * buf.shape[-2] * buf.shape[-1] if launch.resumed else 0


def memory_forward(tokens: tuple[Tensor, ...], state: StateInputs, launch: Launch) -> tuple[Tensor, Saved]:
    """Run the forward kernel on contiguous token tensors (q, k, v, lr, momentum, decay).

    Returns y (B, T, H, Dv) in q's dtype and what the backward needs (:class:`Saved`).
    """
    q, k, v, lr, momentum, decay = tokens
    B, T, H, DK = q.shape
    DV = v.shape[-1]
    N, device = launch.layout.n_chunks, q.device
    y = _uninitialised((B, T, H, DV), q.dtype, device)
    w_bufs, s_bufs = [], []
    for layer, W in enumerate(state.weights):
        shape = (B, H, N + 2, *W.shape[-2:])
        w_buf, s_buf = _uninitialised(shape, torch.float32, device), _uninitialised(shape, torch.float32, device)
        w_buf[:, :, 0] = W.detach().float()
        s_buf[:, :, 0] = 0.0 if state.surprise is None else state.surprise[layer].detach().float()
        if state.chunk_weights is not None:
            w_buf[:, :, N + 1] = state.chunk_weights[layer].detach().float()
        w_bufs.append(w_buf)
        s_bufs.append(s_buf)

    DH = state.weights[0].shape[-1]
    options = kernel_options(launch.depth, False, q.dtype, launch.layout.chunk_size, DK, DH, DV,
                             launch.activation, launch.resumed, launch.bound)
    sizes = (T, H, N, launch.layout.first, launch.layout.chunk_size)
    strides = (*q.stride()[:3], *v.stride()[:3], *lr.stride())   # y is laid out as v
    jumps = [_chunk_weights_jump(launch, buf) for buf in w_bufs]
    if launch.depth == 1:
        launch_fitting(memory_fwd_depth1_kernel, (B * H,), (
            *tokens, y, w_bufs[0], s_bufs[0], *sizes, DK, DV, *jumps, *strides), options)
    else:
        launch_fitting(memory_fwd_depth2_kernel, (B * H,), (
            *tokens, y, w_bufs[0], s_bufs[0], w_bufs[1], s_bufs[1], *sizes, DK, DH, DV, *jumps, *strides), options)
    return y, Saved(tokens, w_bufs, s_bufs)


class StateGradients(NamedTuple):
    """Per layer, float32 gradients of the final weights, the final surprise and the weights
    entering the last chunk (as outputs), or of the entering state and chunk weights (as inputs)."""
    weights: list[Tensor]
    surprise: list[Tensor]
    chunk_weights: list[Tensor]


def memory_backward(saved: Saved, dy: Tensor, d_out: StateGradients,
                    launch: Launch) -> tuple[tuple[Tensor, ...], StateGradients]:
    """Run the backward kernel over the chunks in reverse: float32 gradients of the six token
    tensors, and of the entering weights, entering surprise and a resumed chunk's chunk weights."""
    q, k, v, lr, momentum, decay = saved.tokens
    B, T, H, DK = q.shape
    DV = v.shape[-1]
    N, chunk_size = launch.layout.n_chunks, launch.layout.chunk_size
    dy = dy.contiguous()
    d_tokens = [_uninitialised(x.shape, torch.float32, x.device) for x in saved.tokens]
    dw_bufs, ds_bufs = [], []
    for layer, buf in enumerate(saved.w_bufs):
        dw = torch.zeros(B, H, 2, *buf.shape[-2:], dtype=torch.float32, device=q.device)
        ds = torch.zeros_like(dw)
        dw[:, :, 0] = d_out.weights[layer]
        ds[:, :, 0] = d_out.surprise[layer]
        dw_bufs.append(dw)
        ds_bufs.append(ds)

    DH = saved.w_bufs[0].shape[-1]
    options = kernel_options(launch.depth, True, q.dtype, chunk_size, DK, DH, DV, launch.activation, launch.resumed,
                             launch.bound)
    sizes = (T, H, N, launch.layout.first, chunk_size)
    strides = (*q.stride()[:3], *v.stride()[:3], *lr.stride())
    jumps = [_chunk_weights_jump(launch, buf) for buf in saved.w_bufs]

    def run_chunks(c_lo: int, c_hi: int) -> None:
        if launch.depth == 1:
            launch_fitting(memory_bwd_depth1_kernel, (B * H,), (
                *saved.tokens, dy, saved.w_bufs[0], saved.s_bufs[0], *d_tokens, dw_bufs[0], ds_bufs[0],
                *sizes, DK, DV, *jumps, c_lo, c_hi, *strides), options)
        else:
            scratch = torch.empty(2, B * H, _block(chunk_size), DH, dtype=torch.float32, device=q.device)
            launch_fitting(memory_bwd_depth2_kernel, (B * H,), (
                *saved.tokens, dy, saved.w_bufs[0], saved.s_bufs[0], saved.w_bufs[1], saved.s_bufs[1], *d_tokens,
                dw_bufs[0], ds_bufs[0], dw_bufs[1], ds_bufs[1], scratch[0], scratch[1],
                *sizes, DK, DH, DV, *jumps, c_lo, c_hi, *strides), options)

    run_chunks(N - 1, N)
    for dw, extra in zip(dw_bufs, d_out.chunk_weights):   # the last chunk's entering weights were an output too
        dw[:, :, 0] += extra
    if N > 1:
        run_chunks(0, N - 1)
    return tuple(d_tokens), StateGradients([dw[:, :, 0] for dw in dw_bufs], [ds[:, :, 0] for ds in ds_bufs],
                                           [dw[:, :, 1] for dw in dw_bufs])


def _warn_torch_runs(error: KernelDoesNotFit, part: str) -> None:
    warnings.warn(f"{error}; {part} runs on the torch backend", stacklevel=4)


class TritonMemoryFunction(torch.autograd.Function):
    """Inputs: the :class:`Launch`, the six token tensors, then the :class:`StateInputs` flattened.

    Outputs: y, then per layer the final weights, the final surprise, and the weights entering the
    last chunk (the state's chunk weights when the call ends inside a chunk).
    """

    @staticmethod
    def forward(ctx, launch: Launch, *tensors: Tensor):
        tokens = tuple(x.contiguous() for x in tensors[:6])   # the kernels share one layout
        y, saved = memory_forward(tokens, StateInputs.unpack(launch, tensors[6:]), launch)
        N = launch.layout.n_chunks
        ctx.launch = launch
        ctx.save_for_backward(*saved.flat())
        ctx.input_shapes = [t.shape for t in tensors[6:]]
        return (y, *(buf[:, :, N] for buf in saved.w_bufs), *(buf[:, :, N] for buf in saved.s_bufs),
                *(buf[:, :, N - 1] for buf in saved.w_bufs))

    @staticmethod
    def backward(ctx, dy: Tensor, *d_state: Tensor | None):
        launch, saved = ctx.launch, Saved.unpack(ctx.saved_tensors)
        L = launch.depth
        dense = [torch.zeros_like(saved.w_bufs[i % L][:, :, 0]) if g is None else g.float()
                 for i, g in enumerate(d_state)]
        try:
            d_tokens, d_in = memory_backward(saved, dy, StateGradients(dense[:L], dense[L:2 * L], dense[2 * L:]),
                                             launch)
        except KernelDoesNotFit as error:
            _warn_torch_runs(error, "this backward pass")
            return (None, *_torch_backward(launch, saved, ctx.input_shapes, dy, d_state))
        grads = [d.to(x.dtype) for d, x in zip(d_tokens, saved.tokens)]
        grads += [d.sum(0) if len(shape) == 3 else d for d, shape in zip(d_in.weights, ctx.input_shapes)]
        grads += (d_in.surprise if launch.carries_state else []) + (d_in.chunk_weights if launch.resumed else [])
        return (None, *grads)


def _torch_backward(launch: Launch, saved: Saved, input_shapes: list, dy: Tensor,
                    d_state: tuple[Tensor | None, ...]) -> list[Tensor | None]:
    """The gradients of TritonMemoryFunction's inputs, by recomputing the call on the torch backend.

    The saved buffers hold the state the call started from: slot 0 of W and S, and the last slot
    of W for the chunk weights of a resumed chunk. The outputs map one to one onto the torch
    backend's: y, the final weights and surprise, and its chunk weights (which are the weights
    entering the last chunk wherever the caller uses those).
    """
    tokens = [x.detach().requires_grad_() for x in saved.tokens]
    layout = launch.layout
    with torch.enable_grad():
        weights = [buf[:, :, 0].clone().requires_grad_() for buf in saved.w_bufs]
        surprise = [buf[:, :, 0].clone().requires_grad_() for buf in saved.s_bufs]
        chunk_weights = [buf[:, :, -1].clone().requires_grad_() for buf in saved.w_bufs] if launch.resumed else weights
        state = MemoryState(weights, surprise, chunk_weights, layout.position, layout.chunk_size)
        y, final = chunked_neural_memory(*tokens, weights, chunk_size=layout.chunk_size, state=state,
                                         activation=launch.activation, bound_by_input_norm=launch.bound)
        outputs = [y, *final.weights, *final.surprise, *final.chunk_weights]
        inputs = [*tokens, *StateInputs(weights, surprise if launch.carries_state else None,
                                        chunk_weights if launch.resumed else None).flat()]
        pairs = [(out, grad) for out, grad in zip(outputs, (dy, *d_state)) if grad is not None]
        grads = torch.autograd.grad([out for out, _ in pairs], inputs, [grad for _, grad in pairs],
                                    allow_unused=True)
    grads = [None if g is None else g.to(x.dtype) for g, x in zip(grads, inputs)]
    for i in range(6, 6 + launch.depth):         # initial weights shared by the batch: (H, D_in, D_out)
        if grads[i] is not None and len(input_shapes[i - 6]) == 3:
            grads[i] = grads[i].sum(0)
    return grads


def triton_neural_memory(q: Tensor, k: Tensor, v: Tensor, lr: Tensor, momentum: Tensor,
                         decay: Tensor, weights: list[Tensor], *, chunk_size: int,
                         state: MemoryState | None = None, activation: str = "silu",
                         bound_by_input_norm: bool = False) -> tuple[Tensor, MemoryState]:
    """The Triton backend of :func:`titans_seq.memory.neural_memory` (arguments as there; the
    depth and device were checked by ``ops.resolve_backend``)."""
    layout = MemoryState.layout(state, q.shape[1], chunk_size)
    launch = Launch(len(weights), activation, layout, carries_state=state is not None, bound=bound_by_input_norm)
    if state is None:
        inputs = StateInputs(weights, None, None)
    else:
        inputs = StateInputs(state.weights, state.surprise, state.chunk_weights if layout.resumes else None)
    try:
        y, *final = TritonMemoryFunction.apply(launch, q, k, v, lr, momentum, decay, *inputs.flat())
    except KernelDoesNotFit as error:
        _warn_torch_runs(error, "this call")
        return chunked_neural_memory(q, k, v, lr, momentum, decay, weights, chunk_size=chunk_size,
                                     state=state, activation=activation, bound_by_input_norm=bound_by_input_norm)
    L = len(weights)
    new_w, new_s, last_entering = final[:L], final[L:2 * L], final[2 * L:]
    chunk_weights = layout.next_chunk_weights(new_w, last_entering, inputs.chunk_weights)
    return y, MemoryState(new_w, new_s, chunk_weights, layout.position + layout.length, chunk_size)
