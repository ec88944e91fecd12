"""The torch backend: the neural-memory recurrence in chunk-parallel (dual) form.

Inside a chunk every gradient is taken at the weights entering it, so token s's gradient for
layer l is an outer product: -grad_{W_l} l_s = a_s^T e_s, with a_s the layer's input and e_s the
back-propagated error (the descent direction). With

    S_t = eta_t S_{t-1} - theta_t grad l_t,    W_t = (1 - alpha_t) W_{t-1} + S_t,

the weights after token t are, relative to the chunk start (W_0, S_0),

    W_t = gamma_t W_0 + delta_t S_0 + sum_{s<=t} C[t, s] theta_s a_s^T e_s,

where C = Keep @ Eta is the product of two lower-triangular segment-product matrices
(Keep[t, r] = prod_{r<j<=t} (1 - alpha_j), Eta[r, s] = prod_{s<j<=r} eta_j), gamma_t is the
cumulative product of (1 - decay) and delta = Keep @ cumprod(momentum). Reading token t's query
through W_t layer by layer then needs only chunk-sized matrix products:

    z_t = gamma_t h_t W_0 + delta_t h_t S_0 + sum_s C[t, s] theta_s (h_t . a_s) e_s,

so no per-token weights are ever materialised. With an ``anchor`` A the forgetting gate pulls the
weights toward A instead of zero, W_t = (1 - alpha_t) W_{t-1} + alpha_t A + S_t, which adds
(1 - gamma_t) A to W_t and (1 - gamma_t) h_t A to z_t. Autograd differentiates this form directly: it is
the reference of ``chunked_function.py``, whose hand-written backward serves training by default.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

from .activations import Activation, get_activation
from .state import MemoryState


def segment_products(x: Tensor) -> Tensor:
    """(..., n) -> (..., n, n) with out[t, s] = prod_{s < j <= t} x_j for t >= s, and 0 above."""
    n = x.shape[-1]
    strictly_lower = torch.ones(n, n, dtype=torch.bool, device=x.device).tril(-1)
    factors = torch.where(strictly_lower, x.unsqueeze(-1), torch.ones((), dtype=x.dtype, device=x.device))
    return torch.cumprod(factors, dim=-2).tril()


def memory_mlp(x: Tensor, weights: list[Tensor], act: Activation) -> Tensor:
    """f_W(x): h_l = act(h_{l-1} W_l) for every layer but the last, which is linear."""
    for W in weights[:-1]:
        x = act.fn(x @ W)
    return x @ weights[-1]


class KeyPath(NamedTuple):
    """The keys through the memory at the gradient weights G: per layer its input a_l and error
    e_l (-grad_{G_l} = a_l^T e_l); per hidden layer its pre-activation z_l and e_{l+1} G_{l+1}^T."""
    inputs: list[Tensor]
    pre_activations: list[Tensor]
    back: list[Tensor]
    errors: list[Tensor]

    def at(self, c: int) -> KeyPath:
        """Chunk c of a path batched over chunks (dim 2)."""
        return KeyPath(*([x[:, :, c] for x in xs] for xs in self))


def key_path(k: Tensor, v: Tensor, weights: list[Tensor], act: Activation) -> KeyPath:
    """The keys through the memory at ``weights``: -grad_{W_l} ||f_W(k_s) - v_s||^2 = a_s^l (x) e_s^l."""
    inputs, pre_activations = [], []
    h = k
    for W in weights[:-1]:
        inputs.append(h)
        z = h @ W
        pre_activations.append(z)
        h = act.fn(z)
    inputs.append(h)
    err = 2 * (v - h @ weights[-1])
    errors, back = [err], []
    for W, z in zip(reversed(weights[1:]), reversed(pre_activations)):
        back.append(err @ W.mT)
        err = back[-1] * act.grad(z)
        errors.append(err)
    return KeyPath(inputs, pre_activations, back[::-1], errors[::-1])


def _scaled_product(scale: Tensor, x: Tensor, W: Tensor) -> Tensor:
    """diag(scale) x W, scaling x or the product, whichever is narrower."""
    return (scale * x) @ W if x.shape[-1] <= W.shape[-1] else scale * (x @ W)


def _weighted_outer_sum(a: Tensor, scale: Tensor, e: Tensor) -> Tensor:
    """sum_s scale_s a_s^T e_s = a^T diag(scale) e, scaling the narrower of a and e."""
    return (scale * a).mT @ e if a.shape[-1] <= e.shape[-1] else a.mT @ (scale * e)


def _add_outer_sum(base: Tensor, a: Tensor, scale: Tensor, e: Tensor) -> Tensor:
    """base + a^T diag(scale) e as one fused product (baddbmm); base is (B, H, Di, Do)."""
    a, e = (scale * a, e) if a.shape[-1] <= e.shape[-1] else (a, scale * e)
    return torch.baddbmm(base.flatten(0, 1), a.flatten(0, 1).mT, e.flatten(0, 1)).view(base.shape)


def input_bounded(path: KeyPath) -> list[Tensor]:
    """Each layer's errors divided by max(1, ||a_s||^2), a_s its input for token s: a step then moves
    the layer's output at a_s by at most theta_s times its error, as a unit key's step does."""
    return [e / a.square().sum(-1, keepdim=True).clamp_min(1.0) for a, e in zip(path.inputs, path.errors)]


def input_bounded_backward(inputs: list[Tensor], bounded: list[Tensor],
                           d_bounded: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Per layer, the gradients of the raw errors e and of the inputs a from those of the bounded
    errors b = e / n, n = max(1, ||a||^2): d e = d b / n, and d a = -2 a (d b . b) / n where ||a||^2 > 1."""
    d_errors, d_inputs = [], []
    for a, b, d_b in zip(inputs, bounded, d_bounded):
        norm = a.square().sum(-1, keepdim=True)
        n = norm.clamp_min(1.0)
        d_errors.append(d_b / n)
        d_inputs.append(torch.where(norm > 1, -2 * (d_b * b).sum(-1, keepdim=True) / n, 0.0) * a)
    return d_errors, d_inputs


def _chunks(q, k, v, lr, momentum, decay, weights, surprise, act, chunk_weights=None, anchor=None, bound=False):
    """N consecutive chunks of n tokens: per-token outputs, and a function that gives the (weights,
    surprise) after them (the last chunk's update runs only when the state is wanted).

    Tensors are (B, H, N, n, D) and gates (B, H, N, n); ``surprise`` is None when it is zero;
    ``chunk_weights`` (N = 1 only) are the weights the gradients are taken at when they are not
    the entering ones (a chunk resumed part-way); ``anchor`` (None: zero) the weights the decay pulls
    toward, (H, D_{l-1}, D_l) per layer; ``bound`` divides each layer's gradients by its inputs'
    squared norms (:func:`input_bounded`). Only the key gradients and the end-of-chunk
    updates run chunk after chunk; the coefficients and every read are batched over the N chunks.
    """
    keep = 1 - decay
    momentum_seg = segment_products(momentum)
    keep_seg = segment_products(keep)
    coef = (keep_seg @ momentum_seg) * lr.unsqueeze(-2)   # C[t, s] theta_s
    gamma = torch.cumprod(keep, dim=-1).unsqueeze(-1)
    momentum_cum = torch.cumprod(momentum, dim=-1).unsqueeze(-1)
    delta = keep_seg @ momentum_cum
    w_coef = coef[..., -1, :].unsqueeze(-1)                     # how the last W and S weigh each token
    s_coef = (momentum_seg[..., -1, :] * lr).unsqueeze(-1)
    g_end, d_end, p_end = (x[..., -1:, :] for x in (gamma, delta, momentum_cum))

    entering_w, entering_s, inputs, errors = [], [], [], []
    per_chunk = list(zip(*(t.unbind(2) for t in (k, v, w_coef, s_coef, g_end, d_end, p_end))))
    for c, (k_c, v_c, w_c, s_c, g, d, p) in enumerate(per_chunk):
        if c:
            weights, surprise = state_after_chunk(weights, surprise, inputs[-1], errors[-1], *per_chunk[c - 1][2:],
                                                  anchor=anchor)
        entering_w.append(weights)
        entering_s.append(surprise)
        path = key_path(k_c, v_c, chunk_weights or weights, act)
        inputs.append(path.inputs)
        errors.append(input_bounded(path) if bound else path.errors)

    B, H, N = q.shape[:3]
    with_surprise = any(S is not None for S in entering_s)
    h = q
    for layer in range(len(weights)):
        a = torch.stack([chunk[layer] for chunk in inputs], dim=2)
        e = torch.stack([chunk[layer] for chunk in errors], dim=2)
        W0 = torch.stack([w[layer].expand(B, H, -1, -1) for w in entering_w], dim=2)
        z = _scaled_product(gamma, h, W0) + (coef * (h @ a.mT)) @ e
        if with_surprise:
            S0 = torch.stack([torch.zeros_like(W0[:, :, 0]) if S is None else S[layer] for S in entering_s], 2)
            z = z + _scaled_product(delta, h, S0)
        if anchor is not None:
            z = z + _scaled_product(1 - gamma, h, anchor[layer].unsqueeze(1))
        h = act.fn(z) if layer < len(weights) - 1 else z
    return h, functools.partial(state_after_chunk, weights, surprise, inputs[-1], errors[-1], *per_chunk[-1][2:],
                                anchor=anchor)


def state_after_chunk(weights, surprise, a, e, w, s, g, d, p, anchor=None):
    """The state leaving a chunk (surprise None: zero; anchor None: zero): W' = g W + (1 - g) A + d S +
    a^T diag(w) e and S' = p S + a^T diag(s) e."""
    kept = [g * W for W in weights] if anchor is None else [torch.lerp(A, W, g) for W, A in zip(weights, anchor)]
    if surprise is None:
        return ([_add_outer_sum(K, a_l, w, e_l) for K, a_l, e_l in zip(kept, a, e)],
                [_weighted_outer_sum(a_l, s, e_l) for a_l, e_l in zip(a, e)])
    return ([_add_outer_sum(torch.addcmul(K, d, S), a_l, w, e_l) for K, S, a_l, e_l in zip(kept, surprise, a, e)],
            [_add_outer_sum(p * S, a_l, s, e_l) for S, a_l, e_l in zip(surprise, a, e)])


def chunked_neural_memory(q: Tensor, k: Tensor, v: Tensor, lr: Tensor, momentum: Tensor,
                          decay: Tensor, weights: list[Tensor], *, chunk_size: int,
                          state: MemoryState | None = None, activation: str = "silu",
                          anchor: list[Tensor] | None = None, bound_by_input_norm: bool = False,
                          autograd: bool = True) -> tuple[Tensor, MemoryState]:
    """The torch backend of :func:`titans_seq.memory.neural_memory` (arguments as there).

    Autograd differentiates this module's form. With ``autograd=False`` (the ``torch_recompute``
    backend) the chunks run through ``chunked_function.ChunkSweep`` and its hand-written backward
    instead, which keeps only the chunk-start states: less memory, but slower on a CPU today
    (docs/benchmarks.md); its backward covers decay toward zero only (no ``anchor``).
    """
    from .chunked_function import fused_chunks   # it builds on this module's helpers

    tensors = [q, k, v, lr, momentum, decay, *weights, *(anchor or [])]
    if state is not None:
        tensors += [*state.weights, *state.surprise, *state.chunk_weights]
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    assert anchor is None or autograd, "the hand-written backward covers decay toward zero only"
    sweep = fused_chunks if needs_grad and not autograd else _chunks
    if bound_by_input_norm:
        sweep = functools.partial(sweep, bound=True)
    with torch.autocast(q.device.type, enabled=False):   # the memory learns in float32 under mixed precision
        return _run(q, k, v, lr, momentum, decay, weights, chunk_size, state, activation, sweep, anchor)


def _run(q, k, v, lr, momentum, decay, weights, chunk_size, state, activation, sweep, anchor):
    act = get_activation(activation)
    out_dtype = q.dtype
    dtype = torch.promote_types(q.dtype, torch.float32)
    if state is not None:
        dtype = torch.promote_types(dtype, state.weights[0].dtype)
    q, k, v = (x.transpose(1, 2).to(dtype) for x in (q, k, v))                 # (B, H, T, D)
    lr, momentum, decay = (g.transpose(1, 2).to(dtype) for g in (lr, momentum, decay))

    if state is None:
        w = [W.to(dtype).unsqueeze(0) for W in weights]
        s, chunk_weights = None, None
    else:
        w = [W.to(dtype) for W in state.weights]
        s = [S.to(dtype) for S in state.surprise]
        chunk_weights = [W.to(dtype) for W in state.chunk_weights]
    if anchor is not None:
        sweep = functools.partial(sweep, anchor=[A.to(dtype) for A in anchor])

    layout = MemoryState.layout(state, q.shape[2], chunk_size)
    pieces = layout.pieces()
    # torch.split, not slicing: its backward concatenates instead of zero-filling T-long buffers.
    splits = zip(*(x.split([size for size, _ in pieces], dim=2) for x in (q, k, v, lr, momentum, decay)))
    outputs, finish = [], None
    for i, ((size, n), piece) in enumerate(zip(pieces, splits)):
        piece = [x.unflatten(2, (size // n, n)) for x in piece]
        if finish is not None:
            w, s = finish()
        entering = w
        y, finish = sweep(*piece, w, s, act, chunk_weights=chunk_weights if i == 0 and layout.resumes else None)
        outputs.append(y.flatten(2, 3))
    y = torch.cat(outputs, dim=2).transpose(1, 2).to(out_dtype)

    grad_enabled = torch.is_grad_enabled()

    def final_state():   # the last chunk's update, run only when the caller uses the state
        with torch.set_grad_enabled(grad_enabled), torch.autocast(y.device.type, enabled=False):
            w, s = finish()
            next_weights = layout.next_chunk_weights(w, entering, chunk_weights)
            return w, s, [G.expand_as(W) for G, W in zip(next_weights, w)]   # initial weights are shared by the batch

    return y, MemoryState.deferred(final_state, layout.position + layout.length, chunk_size)
