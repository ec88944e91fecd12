"""The torch backend: the neural-memory recurrence in chunk-parallel (dual) form.

Inside a chunk every gradient is taken at the weights entering it, so token s's gradient for
layer l is an outer product a_s^T e_s of that layer's input and its back-propagated error. With

    S_t = eta_t S_{t-1} - theta_t G_t,    W_t = (1 - alpha_t) W_{t-1} + S_t,

the weights after token t are, relative to the chunk start (W_0, S_0),

    W_t = gamma_t W_0 + delta_t S_0 - sum_{s<=t} C[t, s] theta_s a_s^T e_s,

where C = Keep @ Eta is the product of two lower-triangular segment-product matrices
(Keep[t, r] = prod_{r<j<=t} (1 - alpha_j), Eta[r, s] = prod_{s<j<=r} eta_j), gamma_t is the
cumulative product of (1 - alpha) and delta = Keep @ cumprod(eta). Reading token t's query
through W_t layer by layer then needs only chunk-sized matrix products:

    z_t = gamma_t h_t W_0 + delta_t h_t S_0 - sum_s C[t, s] theta_s (h_t . a_s) e_s,

so no per-token weights are ever materialised. Autograd differentiates this form directly.
"""
from __future__ import annotations

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
    """Layer inputs a^l and errors e^l with grad_{W_l} ||f_W(k_s) - v_s||^2 = a_s^l (x) e_s^l."""
    inputs, pre_activations = [], []
    h = k
    for W in weights[:-1]:
        inputs.append(h)
        z = h @ W
        pre_activations.append(z)
        h = act.fn(z)
    inputs.append(h)
    err = 2 * (h @ weights[-1] - v)
    errors = [err]
    for W, z in zip(reversed(weights[1:]), reversed(pre_activations)):
        err = (err @ W.mT) * act.grad(z)
        errors.append(err)
    errors.reverse()
    return inputs, errors


def _chunk(q, k, v, lr, eta, alpha, grad_weights, weights, momentum, act):
    """One chunk of n tokens: per-token outputs and the (weights, momentum) after its last token.

    Tensors are (B, H, n, D) and gates (B, H, n); ``momentum`` is None when it is zero.
    """
    inputs, errors = _key_gradients(k, v, grad_weights, act)
    keep = 1 - alpha
    eta_seg = segment_products(eta)
    keep_seg = segment_products(keep)
    coef = (keep_seg @ eta_seg) * lr.unsqueeze(-2)   # C[t, s] theta_s
    gamma = torch.cumprod(keep, dim=-1)
    eta_cum = torch.cumprod(eta, dim=-1)
    delta = (keep_seg @ eta_cum.unsqueeze(-1)).squeeze(-1)

    h = q
    for layer, (W0, a, e) in enumerate(zip(weights, inputs, errors)):
        z = gamma.unsqueeze(-1) * (h @ W0) - (coef * (h @ a.mT)) @ e
        if momentum is not None:
            z = z + delta.unsqueeze(-1) * (h @ momentum[layer])
        h = act.fn(z) if layer < len(weights) - 1 else z

    last_coef = coef[..., -1, :].unsqueeze(-1)                      # (B, H, n, 1)
    last_surprise = (eta_seg[..., -1, :] * lr).unsqueeze(-1)
    g_end, d_end, p_end = (x[..., -1, None, None] for x in (gamma, delta, eta_cum))
    new_weights, new_momentum = [], []
    for layer, (W0, a, e) in enumerate(zip(weights, inputs, errors)):
        W = g_end * W0 - a.mT @ (last_coef * e)
        S = -(a.mT @ (last_surprise * e))
        if momentum is not None:
            W = W + d_end * momentum[layer]
            S = S + p_end * momentum[layer]
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
    outputs = []
    start = 0
    while start < T:
        end = min(T, start + chunk_size - (position + start) % chunk_size)
        piece = slice(start, end)
        y, w, s = _chunk(q[:, :, piece], k[:, :, piece], v[:, :, piece], lr[:, :, piece],
                         momentum[:, :, piece], decay[:, :, piece], w_grad, w, s, act)
        outputs.append(y)
        if (position + end) % chunk_size == 0:
            w_grad = w
        start = end

    y = torch.cat(outputs, dim=2).transpose(1, 2).to(out_dtype)
    w_grad = [G.expand_as(W) for G, W in zip(w_grad, w)]   # the initial weights are shared by the batch
    return y, MemoryState(w, s, w_grad, position + T, chunk_size)
