"""The torch chunk sweep with a hand-written backward; ``chunked.py`` is its autograd reference.

This docstring describes the backward algorithm of both this module and the Triton backward
kernels (``triton_backward_kernels.py``), which run the same steps tile by tile.

Forward. Chunk after chunk, the keys pass through the memory at the chunk's weights G (the
weights entering it, or the chunk weights of a chunk resumed part-way), giving each layer's
input a_l and error e_l; the end-of-chunk update is

    W' = g W + d S + a^T diag(w) e,    S' = p S + a^T diag(s) e,

with w = C[last, :] theta, s = Eta[last, :] theta, g = gamma_last, d = delta_last, p = prod eta
(the coefficients of ``chunked.py``). The reads z_l = gamma (h_l W_l) + delta (h_l S_l) +
(C theta . h_l a_l^T) e_l are batched over the chunks. Only the state entering every chunk
(W, S) is saved.

Backward, walking the chunks in reverse with dW, dS the gradients of the state leaving the chunk:

1. Recompute the chunk from its saved start state: coefficients, the key path (a_l, the
   pre-activations and the errors e_l) and the reads.
2. Reads, layer by layer from the last: the gradients of gamma and delta (row sums of
   dz . hW and dz . hS), of the start state (h^T gamma dz, h^T delta dz), of C theta
   ((dz e^T) . h a^T), of the errors ((C theta . h a^T)^T dz), of the layer inputs a, and the
   query path through the activation (act').
3. The end-of-chunk update: a and e receive diag(w) e dW^T + diag(s) e dS^T and
   diag(w) a dW + diag(s) a dS; w and s receive row sums of (a dW) . e and (a dS) . e;
   g, d, p receive sum(dW . W), sum(dW . S), sum(dS . S); the state leaving the chunk passes
   g dW to W and d dW + p dS to S.
4. The key path: with steps bounded by input norm the reads and the update take each error
   divided by n = max(1, ||a_l||^2), so the gradient of that bounded error b becomes one of the
   raw error (d b / n) and of the input (-2 a (d b . b) / n where ||a||^2 > 1). Then the error
   chain e_l = (e_{l+1} G_{l+1}^T) . act'(z_l), on the raw errors, is differentiated second
   order through the activation (act''), then the squared loss and the forward path; its
   gradient of G joins dW (or the resumed chunk's chunk weights).
5. The coefficients down to the gates lr, momentum and decay, without dividing by a gate: a
   segment product containing gate j, less gate j, splits at j into two segment products
   (``_gate_gradient``).

In this module steps 1, 2 and 5 run batched over all the chunks of a sweep (they need only the
saved states); steps 3 and 4 carry dW and dS from chunk to chunk.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .activations import Activation
from .chunked import KeyPath, input_bounded, input_bounded_backward, key_path, segment_products, state_after_chunk


class Coefficients(NamedTuple):
    """A chunk's gate coefficients (``chunked.py``): matrices (..., n, n), vectors (..., n)."""
    momentum_seg: Tensor
    keep_seg: Tensor
    mixed: Tensor     # Keep @ Eta
    coef: Tensor      # C theta
    gamma: Tensor
    momentum_cum: Tensor
    delta: Tensor
    w_end: Tensor     # how the end-of-chunk W weighs each token's outer product
    s_end: Tensor     # and the end-of-chunk S


def chunk_coefficients(lr: Tensor, momentum: Tensor, decay: Tensor) -> Coefficients:
    """The coefficients of chunks of gates (..., n)."""
    keep = 1 - decay
    momentum_seg, keep_seg = segment_products(momentum), segment_products(keep)
    mixed = keep_seg @ momentum_seg
    coef = mixed * lr.unsqueeze(-2)
    momentum_cum = torch.cumprod(momentum, dim=-1)
    delta = (keep_seg @ momentum_cum.unsqueeze(-1)).squeeze(-1)
    return Coefficients(momentum_seg, keep_seg, mixed, coef, torch.cumprod(keep, dim=-1), momentum_cum, delta,
                        coef[..., -1, :], momentum_seg[..., -1, :] * lr)


def _key_path_backward(path: KeyPath, weights: list[Tensor], d_inputs: list[Tensor], d_errors: list[Tensor],
                       act: Activation) -> tuple[list[Tensor], Tensor, Tensor]:
    """The gradients of the weights, k and v from those of the path's inputs and errors."""
    L = len(weights)
    d_inputs, d_errors = list(d_inputs), list(d_errors)
    d_weights, d_pre = [0] * L, [0] * (L - 1)
    for l in range(L - 1):                 # the error chain, second order through the activation
        z = path.pre_activations[l]
        d_back = d_errors[l] * act.grad(z)
        d_pre[l] = d_errors[l] * path.back[l] * act.grad2(z)
        d_errors[l + 1] = d_errors[l + 1] + d_back @ weights[l + 1]
        d_weights[l + 1] = d_back.mT @ path.errors[l + 1]
    d_out = -2 * d_errors[-1]
    d_weights[-1] = d_weights[-1] + path.inputs[-1].mT @ d_out
    d_inputs[-1] = d_inputs[-1] + d_out @ weights[-1].mT
    for l in reversed(range(L - 1)):       # the forward path
        d_z = d_pre[l] + d_inputs[l + 1] * act.grad(path.pre_activations[l])
        d_weights[l] = d_weights[l] + path.inputs[l].mT @ d_z
        d_inputs[l] = d_inputs[l] + d_z @ weights[l].mT
    return d_weights, d_inputs[0], -d_out


class Reads(NamedTuple):
    """The queries through the memory after each token: per layer its input h_l and h_l a_l^T; per
    layer that ``reads`` finished, its pre-activation z_l (the last one is the output)."""
    inputs: list[Tensor]
    scores: list[Tensor]
    pre_activations: list[Tensor]


def reads(q: Tensor, cf: Coefficients, weights: list[Tensor], surprise: list[Tensor], path: KeyPath,
          act: Activation, output: bool = True) -> Reads:
    """z_l = gamma (h_l W_l) + delta (h_l S_l) + (C theta . h_l a_l^T) e_l, batched over chunks.

    Without ``output`` the last layer stops at its scores h a^T: all that the backward needs of it.
    """
    out = Reads([], [], [])
    gamma, delta = cf.gamma.unsqueeze(-1), cf.delta.unsqueeze(-1)
    h = q
    for l, (W, S, a, e) in enumerate(zip(weights, surprise, path.inputs, path.errors)):
        scores = h @ a.mT
        out.inputs.append(h)
        out.scores.append(scores)
        if l == len(weights) - 1 and not output:
            break
        z = (gamma * (h @ W)).addcmul_(delta, h @ S).add_((cf.coef * scores) @ e)
        out.pre_activations.append(z)
        if l < len(weights) - 1:
            h = act.fn(z)
    return out


def _reads_backward(dy: Tensor, cf: Coefficients, weights: list[Tensor], surprise: list[Tensor],
                    path: KeyPath, r: Reads, act: Activation):
    """Gradients of q, of the key path's inputs and errors, of the state, C theta, gamma and delta."""
    L = len(weights)
    gamma, delta = cf.gamma.unsqueeze(-1), cf.delta.unsqueeze(-1)
    d_inputs, d_errors, d_weights, d_surprise = [None] * L, [None] * L, [None] * L, [None] * L
    d_coef = d_gamma = d_delta = 0
    d_z = dy
    for l in reversed(range(L)):
        h, scores = r.inputs[l], r.scores[l]
        d_hW, d_hS = d_z @ weights[l].mT, d_z @ surprise[l].mT     # sum(d_z . h W) = sum(h . d_z W^T)
        d_gamma = d_gamma + (h * d_hW).sum(-1)
        d_delta = d_delta + (h * d_hS).sum(-1)
        d_weights[l] = h.mT @ (gamma * d_z)
        d_surprise[l] = h.mT @ (delta * d_z)
        d_mixed = d_z @ path.errors[l].mT
        d_coef = d_coef + d_mixed * scores
        d_scores = d_mixed * cf.coef
        d_errors[l] = (cf.coef * scores).mT @ d_z
        d_inputs[l] = d_scores.mT @ h
        d_h = (gamma * d_hW).addcmul_(delta, d_hS).add_(d_scores @ path.inputs[l])
        if l:
            d_z = d_h * act.grad(r.pre_activations[l - 1])
    return d_h, d_inputs, d_errors, d_weights, d_surprise, d_coef, d_gamma, d_delta


def _gate_gradient(x: Tensor, seg: Tensor, d_seg: Tensor, d_cum: Tensor) -> Tensor:
    """d/dx_j of sum(d_seg . seg(x)) + sum(d_cum . cumprod(x)), without dividing by x_j.

    seg[t, s] less x_j (s < j <= t) is seg[t, j] excl[j, s] with excl[j, s] = prod_{s<i<j} x_i
    = seg[j - 1, s]; cumprod[t] less x_j is seg[t, j] prod_{i<j} x_i.
    """
    excl = F.pad(seg[..., :-1, :], (0, 0, 1, 0))
    before = F.pad(torch.cumprod(x, dim=-1)[..., :-1], (1, 0), value=1.0)
    return (seg * (d_seg @ excl.mT)).sum(-2) + before * (seg * d_cum.unsqueeze(-1)).sum(-2)


def _coefficients_backward(lr, momentum, decay, cf: Coefficients, d_coef, d_gamma, d_delta, d_w_end, d_s_end,
                           d_g, d_d, d_p) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of theta, momentum, decay from those of the coefficients and of the end-of-chunk ones."""
    d_coef = d_coef.clone()
    d_coef[..., -1, :] += d_w_end
    d_coef = d_coef.tril()
    d_gamma, d_delta = d_gamma.clone(), d_delta.clone()
    d_gamma[..., -1] += d_g
    d_delta[..., -1] += d_d
    d_lr = d_s_end * cf.momentum_seg[..., -1, :] + (d_coef * cf.mixed).sum(-2)
    d_momentum_cum = (cf.keep_seg * d_delta.unsqueeze(-1)).sum(-2)
    d_momentum_cum[..., -1] += d_p
    d_mixed = d_coef * lr.unsqueeze(-2)
    d_keep_seg = d_mixed @ cf.momentum_seg.mT + d_delta.unsqueeze(-1) * cf.momentum_cum.unsqueeze(-2)
    d_momentum_seg = cf.keep_seg.mT @ d_mixed
    d_momentum_seg[..., -1, :] += d_s_end * lr
    d_momentum = _gate_gradient(momentum, cf.momentum_seg, d_momentum_seg, d_momentum_cum)
    d_decay = -_gate_gradient(1 - decay, cf.keep_seg, d_keep_seg, d_gamma)
    return d_lr, d_momentum, d_decay


def _dot(x: Tensor, y: Tensor) -> Tensor:
    """sum(x . y) over the last two dims, as a product (no temporary of x's size)."""
    return (x.flatten(-2).unsqueeze(-2) @ y.flatten(-2).unsqueeze(-1))[..., 0, 0]


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """The gradient of a state shared by the batch (leading size 1) summed back to that shape."""
    return grad.sum(0, keepdim=True) if shape[0] == 1 and grad.shape[0] != 1 else grad


def _end_of_chunk(cf: Coefficients, c: int):
    """Chunk c's w, s (..., n, 1) and g, d, p (..., 1, 1)."""
    tokens = (x[:, :, c, :, None] for x in (cf.w_end, cf.s_end))
    state = (x[:, :, c, -1, None, None] for x in (cf.gamma, cf.delta, cf.momentum_cum))
    return (*tokens, *state)


def _stack(states: list[list[Tensor]], batch: tuple[int, int]) -> list[Tensor]:
    """Per layer, the states of consecutive chunks stacked on dim 2: (B, H, N, D_in, D_out)."""
    return [torch.stack([s[l].expand(*batch, -1, -1) for s in states], dim=2) for l in range(len(states[0]))]


def _written(path: KeyPath, bound: bool) -> KeyPath:
    """The key path with the errors that the reads and the update use (bounded by input norm, or raw)."""
    return path._replace(errors=input_bounded(path)) if bound else path


def _forward_sweep(q, k, v, lr, momentum, decay, weights, surprise, chunk_weights, act, bound):
    """y, the state entering every chunk, and the state after the last."""
    cf = chunk_coefficients(lr, momentum, decay)
    entering_w, entering_s, paths = [], [], []
    for c in range(q.shape[2]):
        entering_w.append(weights)
        entering_s.append(surprise)
        path = _written(key_path(k[:, :, c], v[:, :, c], chunk_weights or weights, act), bound)
        paths.append(path)
        weights, surprise = state_after_chunk(weights, surprise, path.inputs, path.errors, *_end_of_chunk(cf, c))
    batch = q.shape[:2]
    W0, S0 = _stack(entering_w, batch), _stack(entering_s, batch)
    path = KeyPath(*([torch.stack([p[i][l] for p in paths], dim=2) for l in range(len(paths[0][i]))]
                     for i in range(len(KeyPath._fields))))
    y = reads(q, cf, W0, S0, path, act).pre_activations[-1]
    return y, W0, S0, weights, surprise


def _backward_sweep(saved, dy, d_final_w, d_final_s, resumed: bool, act: Activation, bound: bool):
    """Gradients of q, k, v, the gates, the entering weights and surprise, and the gradient weights."""
    q, k, v, lr, momentum, decay, *states = saved
    L = len(d_final_w)
    W0, S0, G = states[:L], states[L:2 * L], states[2 * L:]
    chunk_weights = [g.unsqueeze(2) for g in G] if resumed else W0
    cf = chunk_coefficients(lr, momentum, decay)
    path = key_path(k, v, chunk_weights, act)
    written = _written(path, bound)
    d_q, d_a, d_e, dW_read, dS_read, d_coef, d_gamma, d_delta = _reads_backward(
        dy, cf, W0, S0, written, reads(q, cf, W0, S0, written, act, output=False), act)

    N = q.shape[2]
    d_w, d_s = list(d_final_w), list(d_final_s)
    d_k, d_v, d_w_end, d_s_end, d_g, d_d, d_p = ([None] * N for _ in range(7))
    for c in reversed(range(N)):
        at = lambda xs: [x[:, :, c] for x in xs]  # noqa: E731
        chunk, errors = path.at(c), at(written.errors)
        w, s, g, d, p = _end_of_chunk(cf, c)
        a_dW = [a @ dW for a, dW in zip(chunk.inputs, d_w)]
        a_dS = [a @ dS for a, dS in zip(chunk.inputs, d_s)]
        d_inputs = [da + w * (e @ dW.mT) + s * (e @ dS.mT)
                    for da, e, dW, dS in zip(at(d_a), errors, d_w, d_s)]
        d_errors = [de + w * x + s * y for de, x, y in zip(at(d_e), a_dW, a_dS)]
        d_w_end[c] = sum((x * e).sum(-1) for x, e in zip(a_dW, errors))
        d_s_end[c] = sum((y * e).sum(-1) for y, e in zip(a_dS, errors))
        if bound:
            d_errors, d_bound = input_bounded_backward(chunk.inputs, errors, d_errors)
            d_inputs = [x + y for x, y in zip(d_inputs, d_bound)]
        d_g[c] = sum(_dot(dW, W) for dW, W in zip(d_w, at(W0)))
        d_d[c] = sum(_dot(dW, S) for dW, S in zip(d_w, at(S0)))
        d_p[c] = sum(_dot(dS, S) for dS, S in zip(d_s, at(S0)))
        d_G, d_k[c], d_v[c] = _key_path_backward(chunk, at(chunk_weights), d_inputs, d_errors, act)
        # In place on a fresh product: out-of-place addcmul on these strided slices is many times slower.
        d_s = [(d * dW).add_(dS_r).addcmul_(p, dS) for dS_r, dW, dS in zip(at(dS_read), d_w, d_s)]
        d_w = [(g * dW).add_(dW_r).add_(0 if resumed else dG) for dW_r, dW, dG in zip(at(dW_read), d_w, d_G)]

    stacked = lambda xs: torch.stack(xs, dim=2)  # noqa: E731
    d_lr, d_momentum, d_decay = _coefficients_backward(
        lr, momentum, decay, cf, d_coef, d_gamma, d_delta, *map(stacked, (d_w_end, d_s_end, d_g, d_d, d_p)))
    return d_q, stacked(d_k), stacked(d_v), d_lr, d_momentum, d_decay, d_w, d_s, d_G if resumed else []


class Sweep(NamedTuple):
    """A chunk sweep's non-tensor input: the memory's depth and activation, whether a surprise
    enters it (else zero), whether its single chunk resumes part-way (its chunk weights enter) and
    whether its steps are bounded by input norm."""
    depth: int
    act: Activation
    has_surprise: bool
    resumed: bool
    bound: bool


class ChunkSweep(torch.autograd.Function):
    """N consecutive chunks of the memory, differentiated by hand (the module docstring).

    Inputs: the :class:`Sweep`, q, k, v (B, H, N, n, D), the gates (B, H, N, n), then L entering
    weights, L entering surprises (if any), L chunk weights (if resumed).
    Outputs: y, then the L weights and L surprises after the last chunk.
    """

    @staticmethod
    def forward(ctx, sweep: Sweep, *tensors: Tensor):
        L = sweep.depth
        q, k, v, lr, momentum, decay = tensors[:6]
        weights = list(tensors[6:6 + L])
        surprise = list(tensors[6 + L:6 + 2 * L]) if sweep.has_surprise else [torch.zeros_like(W) for W in weights]
        chunk_weights = list(tensors[6 + (1 + sweep.has_surprise) * L:]) if sweep.resumed else None
        y, W0, S0, final_w, final_s = _forward_sweep(q, k, v, lr, momentum, decay, weights, surprise, chunk_weights,
                                                     sweep.act, sweep.bound)
        ctx.sweep = sweep
        ctx.shapes = [t.shape for t in tensors[6:]]
        ctx.save_for_backward(q, k, v, lr, momentum, decay, *W0, *S0, *(chunk_weights or []))
        return (y, *final_w, *final_s)

    @staticmethod
    def backward(ctx, dy: Tensor, *d_state: Tensor):
        sweep, L = ctx.sweep, ctx.sweep.depth
        *d_tokens, d_w, d_s, d_gw = _backward_sweep(ctx.saved_tensors, dy, d_state[:L], d_state[L:], sweep.resumed,
                                                    sweep.act, sweep.bound)
        d_states = [*d_w, *(d_s if sweep.has_surprise else []), *d_gw]
        return (None, *d_tokens, *(_sum_to(d, shape) for d, shape in zip(d_states, ctx.shapes)))


def fused_chunks(q, k, v, lr, momentum, decay, weights, surprise, act, chunk_weights=None, bound=False):
    """``chunked._chunks`` (same arguments and results, no anchor) through :class:`ChunkSweep`; the state
    after the sweep is an output of the autograd function, so it is computed whether used or not."""
    L = len(weights)
    assert chunk_weights is None or q.shape[2] == 1, "only a single chunk resumes part-way"
    sweep = Sweep(L, act, surprise is not None, chunk_weights is not None, bound)
    y, *state = ChunkSweep.apply(sweep, q, k, v, lr, momentum, decay, *weights, *(surprise or []),
                                 *(chunk_weights or []))
    return y, lambda: (state[:L], state[L:])
