"""The torch backend: the neural-memory recurrence in chunk-parallel (dual) form.

Inside a chunk every gradient is taken at the weights entering it, so token s's gradient for
layer l is an outer product: -grad_{W_l} l_s = a_s^T e_s, with a_s the layer's input and e_s the
back-propagated error (the descent direction). With

    S_t = eta_t S_{t-1} - theta_t grad l_t,    W_t = (1 - alpha_t) W_{t-1} + S_t,

the weights after token t are, relative to the chunk start (W_0, S_0),

    W_t = gamma_t W_0 + delta_t S_0 + sum_{s<=t} C[t, s] theta_s a_s^T e_s,

where C = Keep @ Eta is the product of two lower-triangular segment-product matrices
(Keep[t, r] = prod_{r<j<=t} (1 - alpha_j), Eta[r, s] = prod_{s<j<=r} eta_j), gamma_t is the
cumulative product of (1 - alpha) and delta = Keep @ cumprod(eta). Reading token t's query
through W_t layer by layer then needs only chunk-sized matrix products:

    z_t = gamma_t h_t W_0 + delta_t h_t S_0 + sum_s C[t, s] theta_s (h_t . a_s) e_s,

so no per-token weights are ever materialised. Autograd differentiates this form directly.
"""
from __future__ import annotations

import itertools

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


def _key_gradients(k: Tensor, v: Tensor, weights: list[Tensor], act: Activation):
    """Layer inputs a^l and descent directions e^l: -grad_{W_l} ||f_W(k_s) - v_s||^2 = a_s^l (x) e_s^l."""
    inputs, pre_activations = [], []
    h = k
    for W in weights[:-1]:
        inputs.append(h)
        z = h @ W
        pre_activations.append(z)
        h = act.fn(z)
    inputs.append(h)
    err = 2 * (v - h @ weights[-1])
    errors = [err]
    for W, z in zip(reversed(weights[1:]), reversed(pre_activations)):
        err = (err @ W.mT) * act.grad(z)
        errors.append(err)
    errors.reverse()
    return inputs, errors


def _scaled_product(scale: Tensor, x: Tensor, W: Tensor) -> Tensor:
    """diag(scale) x W, scaling x or the product, whichever is narrower."""
    return (scale * x) @ W if x.shape[-1] <= W.shape[-1] else scale * (x @ W)


def _weighted_outer_sum(a: Tensor, scale: Tensor, e: Tensor) -> Tensor:
    """sum_s scale_s a_s^T e_s = a^T diag(scale) e, scaling the narrower of a and e."""
    return (scale * a).mT @ e if a.shape[-1] <= e.shape[-1] else a.mT @ (scale * e)


def _chunk(q, k, v, lr, eta, alpha, grad_weights, weights, momentum, act):
    """One chunk of n tokens: per-token outputs and the (weights, momentum) after its last token.

    Tensors are (B, H, n, D) and gates (B, H, n); ``momentum`` is None when it is zero.
    """
    inputs, errors = _key_gradients(k, v, grad_weights, act)
    keep = 1 - alpha
    eta_seg = segment_products(eta)
    keep_seg = segment_products(keep)
    coef = (keep_seg @ eta_seg) * lr.unsqueeze(-2)   # C[t, s] theta_s
    gamma = torch.cumprod(keep, dim=-1).unsqueeze(-1)
    eta_cum = torch.cumprod(eta, dim=-1).unsqueeze(-1)
    delta = keep_seg @ eta_cum
    w_coef = coef[..., -1, :].unsqueeze(-1)                     # how the last W and S weigh each token
    s_coef = (eta_seg[..., -1, :] * lr).unsqueeze(-1)
    g_end, d_end, p_end = (x[..., -1:, :] for x in (gamma, delta, eta_cum))

    h = q
    new_weights, new_momentum = [], []
    for layer, (W0, a, e) in enumerate(zip(weights, inputs, errors)):
        z = _scaled_product(gamma, h, W0) + (coef * (h @ a.mT)) @ e
        W = g_end * W0 + _weighted_outer_sum(a, w_coef, e)
        S = _weighted_outer_sum(a, s_coef, e)
        if momentum is not None:
            S0 = momentum[layer]
            z = z + _scaled_product(delta, h, S0)
            W = W + d_end * S0
            S = S + p_end * S0
        h = act.fn(z) if layer < len(weights) - 1 else z
        new_weights.append(W)
        new_momentum.append(S)
    return h, new_weights, new_momentum


def chunked_neural_memory(q: Tensor, k: Tensor, v: Tensor, lr: Tensor, momentum: Tensor,
                          decay: Tensor, weights: list[Tensor], *, chunk_size: int,
                          state: MemoryState | None = None,
                          activation: str = "silu") -> tuple[Tensor, MemoryState]:
    """The torch backend of :func:`titans_seq.memory.neural_memory` (arguments as there)."""
    act = get_activation(activation)
    out_dtype = q.dtype
    dtype = torch.promote_types(q.dtype, torch.float32)
    if state is not None:
        dtype = torch.promote_types(dtype, state.weights[0].dtype)
    q, k, v = (x.transpose(1, 2).to(dtype) for x in (q, k, v))                 # (B, H, T, D)
    lr, momentum, decay = (g.transpose(1, 2).to(dtype) for g in (lr, momentum, decay))

    if state is None:
        w = [W.to(dtype).unsqueeze(0) for W in weights]
        s, w_grad, position = None, w, 0
    else:
        w = [W.to(dtype) for W in state.weights]
        s = [S.to(dtype) for S in state.momentum]
        w_grad = [W.to(dtype) for W in state.chunk_weights]
        position = state.position

    T = q.shape[2]
    first = min(T, chunk_size - position % chunk_size)
    sizes = [first] + [chunk_size] * ((T - first) // chunk_size)
    if sum(sizes) < T:
        sizes.append(T - sum(sizes))
    # torch.split, not slicing: its backward concatenates instead of zero-filling T-long buffers.
    pieces = zip(*(x.split(sizes, dim=2) for x in (q, k, v, lr, momentum, decay)))
    outputs = []
    for seen, piece in zip(itertools.accumulate(sizes), pieces):
        y, w, s = _chunk(*piece, w_grad, w, s, act)
        outputs.append(y)
        if (position + seen) % chunk_size == 0:
            w_grad = w

    y = torch.cat(outputs, dim=2).transpose(1, 2).to(out_dtype)
    w_grad = [G.expand_as(W) for G, W in zip(w_grad, w)]   # the initial weights are shared by the batch
    return y, MemoryState(w, s, w_grad, position + T, chunk_size)
