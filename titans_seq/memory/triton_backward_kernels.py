"""Triton kernels of the neural-memory backward pass (memory depth 1 and 2).

One program per (batch, head) walks the chunks in reverse. Each chunk is recomputed from the
state saved at its start by the forward kernel, then differentiated by hand: the reads, the
end-of-chunk update, the analytic key gradients (second order through the activation) and the
coefficient matrices down to the gates. The gradients with respect to the state (dW, dS) are
carried from chunk to chunk in float32 buffers (B, H, 2, D_in, D_out), updated tile by tile in
place; slot 1 collects the gradient of the weights a resumed first chunk took its gradients at.
The algorithm, step by step, is the docstring of ``chunked_function.py`` (the torch twin). With
BOUND, the gradient of each bounded error b = e / n (n = max(1, ||a||^2)) is collected apart from
the raw error chain's, then split into d e = d b / n and d a = -2 a (d b . b) / n where ||a||^2 > 1.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_kernels import (_act, _act_grad, _input_scale, _load_tile, _open_chunk, _program_offsets,
                             _segment_products, _store_tile)


@triton.jit
def _act_grad2(z, ACT: tl.constexpr):
    if ACT == 0:
        s = tl.sigmoid(z)
        return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    elif ACT == 1:
        return tl.exp(-0.5 * z * z) * 0.3989422804014327 * (2.0 - z * z)
    else:
        return z * 0.0


@triton.jit
def _zero_gradients(BT: tl.constexpr, BK: tl.constexpr):
    """Zeroed accumulators: dq, dk (BT x BK); d gamma, d delta and the end-of-chunk token weights
    (BT); the three end-of-chunk scalars."""
    rows = tl.zeros((BT, BK), dtype=tl.float32)
    tokens = tl.zeros((BT,), dtype=tl.float32)
    scalar = tl.sum(tokens, axis=0)
    return rows, rows, tokens, tokens, tokens, tokens, scalar, scalar, scalar


@triton.jit
def _previous(x, BT: tl.constexpr):
    """x_{t-1} (0 at t = 0)."""
    t = tl.arange(0, BT)
    return tl.sum(tl.where(t[:, None] - 1 == t[None, :], x[None, :], 0.0), axis=1)


@triton.jit
def _gate_gradient(x, d_seg, d_cum, BT: tl.constexpr, PRECISION: tl.constexpr):
    """d/dx_j of sum(d_seg * seg(x)) + sum(d_cum * cumprod(x)), without dividing by x_j.

    The products containing x_j, less x_j itself, split at j: seg[t, s] without x_j is
    seg[t, j] * excl[j, s], with excl[j, s] = prod_{s < i < j} x_i; likewise cumprod.
    """
    t = tl.arange(0, BT)
    seg = _segment_products(x, BT)
    before = _previous(x, BT)
    excl = tl.where(t[:, None] > t[None, :],
                    tl.cumprod(tl.where(t[:, None] - 1 > t[None, :], before[:, None], 1.0), axis=0), 0.0)
    cum_before = tl.where(t == 0, 1.0, _previous(tl.cumprod(x, axis=0), BT))
    mixed = tl.dot(d_seg, tl.trans(excl), input_precision=PRECISION)
    return tl.sum(seg * mixed, axis=0) + cum_before * tl.sum(seg * d_cum[:, None], axis=0)


@triton.jit
def _coefficients_backward(lr, momentum, decay, length, d_coef, d_gamma, d_delta, d_wc, d_sc, d_g, d_d, d_p,
                           BT: tl.constexpr, PRECISION: tl.constexpr):
    """Gradients of theta, momentum, decay from those of the outputs of `_chunk_coefficients`."""
    t = tl.arange(0, BT)
    lower = t[:, None] >= t[None, :]
    last = t == length - 1
    keep = 1.0 - decay
    momentum_seg = _segment_products(momentum, BT)
    keep_seg = _segment_products(keep, BT)
    mixed = tl.dot(keep_seg, momentum_seg, input_precision=PRECISION)
    momentum_cum = tl.cumprod(momentum, axis=0)

    # The end-of-chunk coefficients are entries of the full ones.
    d_coef = tl.where(lower, d_coef + tl.where(last[:, None], d_wc[None, :], 0.0), 0.0)
    d_lr = d_sc * tl.sum(tl.where(last[:, None], momentum_seg, 0.0), axis=0) + tl.sum(d_coef * mixed, axis=0)
    d_gamma = d_gamma + tl.where(last, d_g, 0.0)
    d_delta = d_delta + tl.where(last, d_d, 0.0)
    d_momentum_cum = tl.where(last, d_p, 0.0) + tl.sum(keep_seg * d_delta[:, None], axis=0)
    d_mixed = d_coef * lr[None, :]
    d_keep_seg = tl.dot(d_mixed, tl.trans(momentum_seg), input_precision=PRECISION) + d_delta[:, None] * momentum_cum[None, :]
    d_momentum_seg = (tl.dot(tl.trans(keep_seg), d_mixed, input_precision=PRECISION)
                 + tl.where(last[:, None], (d_sc * lr)[None, :], 0.0))
    d_keep_seg = tl.where(lower, d_keep_seg, 0.0)
    d_momentum_seg = tl.where(lower, d_momentum_seg, 0.0)
    d_momentum = _gate_gradient(momentum, d_momentum_seg, d_momentum_cum, BT, PRECISION)
    d_decay = -_gate_gradient(keep, d_keep_seg, d_gamma, BT, PRECISION)
    return d_lr, d_momentum, d_decay


@triton.jit
def _input_norm_gradient(a, squared_norm, scale, dot):
    """The input's gradient through the bound, -2 a (d b . b) / n where ||a||^2 > 1 (dot: d b . b per token)."""
    return tl.where(squared_norm > 1.0, -2.0 * scale * dot, 0.0)[:, None] * a


@triton.jit
def _store_rows(ptr, value, start, length, stride_t, D, BT: tl.constexpr, BD: tl.constexpr):
    _store_tile(ptr + start * stride_t, value, tl.arange(0, BT), tl.arange(0, BD), length, D, stride_t)


@triton.jit
def _store_gates(dlr_ptr, dmomentum_ptr, ddecay_ptr, d_lr, d_momentum, d_decay, start, length, stride_gt,
                 BT: tl.constexpr):
    t = tl.arange(0, BT)
    real = t < length
    tl.store(dlr_ptr + (start + t) * stride_gt, d_lr, mask=real)
    tl.store(dmomentum_ptr + (start + t) * stride_gt, d_momentum, mask=real)
    tl.store(ddecay_ptr + (start + t) * stride_gt, d_decay, mask=real)


@triton.jit
def memory_bwd_depth1_kernel(
    q_ptr, k_ptr, v_ptr, lr_ptr, momentum_ptr, decay_ptr, dy_ptr, w_ptr, s_ptr,
    dq_ptr, dk_ptr, dv_ptr, dlr_ptr, dmomentum_ptr, ddecay_ptr, dw_ptr, ds_ptr,
    T, H, N, FIRST, CHUNK, DK, DV, CHUNK_WEIGHTS_JUMP, C_LO, C_HI,
    stride_b, stride_t, stride_h, stride_vb, stride_vt, stride_vh, stride_gb, stride_gt, stride_gh,
    RESUMED: tl.constexpr, BOUND: tl.constexpr, ACT: tl.constexpr, PRECISION: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Chunks C_HI - 1 down to C_LO of a linear memory; dw/ds hold the gradients of the state after C_HI - 1."""
    pid, io, vo, gates = _program_offsets(H, stride_b, stride_h, stride_vb, stride_vh, stride_gb, stride_gh)
    grads = pid * 2 * DK * DV
    t = tl.arange(0, BT)
    dk_ = tl.arange(0, BK)
    cols = tl.arange(0, BLOCK_H)
    for i in range(C_HI - C_LO):
        c = C_HI - 1 - i
        start, length, q, k, lr, momentum, decay, coef, gamma, delta, w_coef, s_coef, g_end, d_end, p_end = _open_chunk(
            c, q_ptr + io, k_ptr + io, lr_ptr + gates, momentum_ptr + gates, decay_ptr + gates, T, FIRST, CHUNK, DK,
            stride_t, stride_gt, BT, BK, PRECISION)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        scores = coef * qk
        here = (pid * (N + 2) + c) * DK * DV
        d_scores = tl.zeros((BT, BT), dtype=tl.float32)
        d_q, d_k, d_gamma, d_delta, d_wc, d_sc, d_g, d_d, d_p = _zero_gradients(BT, BK)
        if BOUND:
            key_norm = tl.sum(k * k, axis=1)
            key_scale = _input_scale(key_norm)
            key_dot = tl.zeros((BT,), dtype=tl.float32)
        for j in range(0, DV, BLOCK_H):
            W = _load_tile(w_ptr + here + j, dk_, cols, DK, DV - j, DV)
            S = _load_tile(s_ptr + here + j, dk_, cols, DK, DV - j, DV)
            if RESUMED:
                G = _load_tile(w_ptr + here + tl.where(c == 0, CHUNK_WEIGHTS_JUMP, 0) + j, dk_, cols, DK, DV - j, DV)
            else:
                G = W
            v = _load_tile(v_ptr + vo + start * stride_vt + j, t, cols, length, DV - j, stride_vt)
            dy = _load_tile(dy_ptr + vo + start * stride_vt + j, t, cols, length, DV - j, stride_vt)
            dW_next = _load_tile(dw_ptr + grads + j, dk_, cols, DK, DV - j, DV)
            dS_next = _load_tile(ds_ptr + grads + j, dk_, cols, DK, DV - j, DV)
            err = 2.0 * (v - tl.dot(k, G, input_precision=PRECISION))
            if BOUND:   # what the reads and the update take; d_err below is its gradient until made raw
                err = err * key_scale[:, None]
            d_gamma += tl.sum(dy * tl.dot(q, W, input_precision=PRECISION), axis=1)
            d_delta += tl.sum(dy * tl.dot(q, S, input_precision=PRECISION), axis=1)
            d_q += (gamma[:, None] * tl.dot(dy, tl.trans(W), input_precision=PRECISION)
                    + delta[:, None] * tl.dot(dy, tl.trans(S), input_precision=PRECISION))
            d_scores += tl.dot(dy, tl.trans(err), input_precision=PRECISION)
            k_dW = tl.dot(k, dW_next, input_precision=PRECISION)
            k_dS = tl.dot(k, dS_next, input_precision=PRECISION)
            d_err = (tl.dot(tl.trans(scores), dy, input_precision=PRECISION)
                     + w_coef[:, None] * k_dW + s_coef[:, None] * k_dS)
            d_wc += tl.sum(k_dW * err, axis=1)
            d_sc += tl.sum(k_dS * err, axis=1)
            d_k += (w_coef[:, None] * tl.dot(err, tl.trans(dW_next), input_precision=PRECISION)
                    + s_coef[:, None] * tl.dot(err, tl.trans(dS_next), input_precision=PRECISION))
            if BOUND:
                key_dot += tl.sum(d_err * err, axis=1)
                d_err = d_err * key_scale[:, None]
            d_k -= 2.0 * tl.dot(d_err, tl.trans(G), input_precision=PRECISION)
            d_g += tl.sum(tl.sum(dW_next * W, axis=1), axis=0)
            d_d += tl.sum(tl.sum(dW_next * S, axis=1), axis=0)
            d_p += tl.sum(tl.sum(dS_next * S, axis=1), axis=0)
            _store_tile(dv_ptr + vo + start * stride_vt + j, 2.0 * d_err, t, cols, length, DV - j, stride_vt)

            d_G = -2.0 * tl.dot(tl.trans(k), d_err, input_precision=PRECISION)
            dW = g_end * dW_next + tl.dot(tl.trans(q), gamma[:, None] * dy, input_precision=PRECISION)
            dS = d_end * dW_next + p_end * dS_next + tl.dot(tl.trans(q), delta[:, None] * dy, input_precision=PRECISION)
            if RESUMED:   # chunk 0 took its gradients at other weights: slot 1
                to_slot1 = tl.where(c == 0, 1, 0)
                dW += d_G * (1 - to_slot1)
                _store_tile(dw_ptr + grads + DK * DV + j, d_G, dk_, cols, DK, (DV - j) * to_slot1, DV)
            else:
                dW += d_G
            _store_tile(dw_ptr + grads + j, dW, dk_, cols, DK, DV - j, DV)
            _store_tile(ds_ptr + grads + j, dS, dk_, cols, DK, DV - j, DV)

        if BOUND:
            d_k += _input_norm_gradient(k, key_norm, key_scale, key_dot)
        d_qk = d_scores * coef
        d_q += tl.dot(d_qk, k, input_precision=PRECISION)
        d_k += tl.dot(tl.trans(d_qk), q, input_precision=PRECISION)
        d_lr, d_momentum, d_decay = _coefficients_backward(lr, momentum, decay, length, d_scores * qk, d_gamma, d_delta,
                                                      d_wc, d_sc, d_g, d_d, d_p, BT, PRECISION)
        _store_rows(dq_ptr + io, d_q, start, length, stride_t, DK, BT, BK)
        _store_rows(dk_ptr + io, d_k, start, length, stride_t, DK, BT, BK)
        _store_gates(dlr_ptr + gates, dmomentum_ptr + gates, ddecay_ptr + gates, d_lr, d_momentum, d_decay,
                     start, length, stride_gt, BT)
        tl.debug_barrier()   # the next chunk reads the state gradients stored here


@triton.jit
def memory_bwd_depth2_kernel(
    q_ptr, k_ptr, v_ptr, lr_ptr, momentum_ptr, decay_ptr, dy_ptr, w1_ptr, s1_ptr, w2_ptr, s2_ptr,
    dq_ptr, dk_ptr, dv_ptr, dlr_ptr, dmomentum_ptr, ddecay_ptr, dw1_ptr, ds1_ptr, dw2_ptr, ds2_ptr,
    scratch_da_ptr, scratch_dz_ptr,
    T, H, N, FIRST, CHUNK, DK, DH, DV, CHUNK_WEIGHTS_JUMP1, CHUNK_WEIGHTS_JUMP2, C_LO, C_HI,
    stride_b, stride_t, stride_h, stride_vb, stride_vt, stride_vh, stride_gb, stride_gt, stride_gh,
    RESUMED: tl.constexpr, BOUND: tl.constexpr, ACT: tl.constexpr, PRECISION: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """Chunks C_HI - 1 down to C_LO of a two-layer memory, in three passes over the hidden tiles.

    Pass A recomputes the keys' last-layer error; pass B differentiates the reads, the update and
    the first layer's error, leaving the key path's partial gradients (dA, dZ) in scratch; once
    the last layer's error gradient is complete, pass C finishes the key path.
    """
    pid, io, vo, gates = _program_offsets(H, stride_b, stride_h, stride_vb, stride_vh, stride_gb, stride_gh)
    grads1 = pid * 2 * DK * DH
    grads2 = pid * 2 * DH * DV
    scratch = pid * BT * DH
    t = tl.arange(0, BT)
    dk_ = tl.arange(0, BK)
    dv_ = tl.arange(0, BV)
    hid = tl.arange(0, BLOCK_H)
    for i in range(C_HI - C_LO):
        c = C_HI - 1 - i
        start, length, q, k, lr, momentum, decay, coef, gamma, delta, w_coef, s_coef, g_end, d_end, p_end = _open_chunk(
            c, q_ptr + io, k_ptr + io, lr_ptr + gates, momentum_ptr + gates, decay_ptr + gates, T, FIRST, CHUNK, DK,
            stride_t, stride_gt, BT, BK, PRECISION)
        v = _load_tile(v_ptr + vo + start * stride_vt, t, dv_, length, DV, stride_vt)
        dy = _load_tile(dy_ptr + vo + start * stride_vt, t, dv_, length, DV, stride_vt)
        here1 = (pid * (N + 2) + c) * DK * DH
        here2 = (pid * (N + 2) + c) * DH * DV
        jump1 = tl.where(c == 0, CHUNK_WEIGHTS_JUMP1, 0)
        jump2 = tl.where(c == 0, CHUNK_WEIGHTS_JUMP2, 0)
        if RESUMED:   # 1: chunk 0's key-path gradients go to slot 1
            to_slot1 = tl.where(c == 0, 1, 0)
        else:
            to_slot1 = tl.where(c == 0, 0, 0)
        kt = tl.trans(k)

        # Pass A: the last layer's error of the keys (and, bounded, what the reads and the update take).
        out = tl.zeros((BT, BV), dtype=tl.float32)
        hidden_norm = tl.zeros((BT,), dtype=tl.float32)
        for j in range(0, DH, BLOCK_H):
            G1 = _load_tile(w1_ptr + here1 + jump1 + j, dk_, hid, DK, DH - j, DH)
            G2 = _load_tile(w2_ptr + here2 + jump2 + j * DV, hid, dv_, DH - j, DV, DV)
            a = _act(tl.dot(k, G1, input_precision=PRECISION), ACT)
            out += tl.dot(a, G2, input_precision=PRECISION)
            hidden_norm += tl.sum(a * a, axis=1)
        err2 = 2.0 * (v - out)
        written2 = err2
        if BOUND:
            hidden_scale = _input_scale(hidden_norm)
            written2 = err2 * hidden_scale[:, None]
            key_norm = tl.sum(k * k, axis=1)
            key_scale = _input_scale(key_norm)
            key_dot = tl.zeros((BT,), dtype=tl.float32)

        qk = tl.dot(q, kt, input_precision=PRECISION)
        scores1 = coef * qk
        d_scores2 = tl.dot(dy, tl.trans(written2), input_precision=PRECISION)
        d_hidden_scores = d_scores2 * coef
        d_coef = tl.zeros((BT, BT), dtype=tl.float32)
        d_scores1 = tl.zeros((BT, BT), dtype=tl.float32)
        d_err2 = tl.zeros((BT, BV), dtype=tl.float32)       # through the error chain
        d_written2 = tl.zeros((BT, BV), dtype=tl.float32)   # through the reads and the update
        d_q, d_k, d_gamma, d_delta, d_wc, d_sc, d_g, d_d, d_p = _zero_gradients(BT, BK)

        # Pass B: reads, update and the first layer's error, tile by tile.
        for j in range(0, DH, BLOCK_H):
            W1 = _load_tile(w1_ptr + here1 + j, dk_, hid, DK, DH - j, DH)
            S1 = _load_tile(s1_ptr + here1 + j, dk_, hid, DK, DH - j, DH)
            W2 = _load_tile(w2_ptr + here2 + j * DV, hid, dv_, DH - j, DV, DV)
            S2 = _load_tile(s2_ptr + here2 + j * DV, hid, dv_, DH - j, DV, DV)
            G1 = _load_tile(w1_ptr + here1 + jump1 + j, dk_, hid, DK, DH - j, DH)
            G2 = _load_tile(w2_ptr + here2 + jump2 + j * DV, hid, dv_, DH - j, DV, DV)
            dW1_next = _load_tile(dw1_ptr + grads1 + j, dk_, hid, DK, DH - j, DH)
            dS1_next = _load_tile(ds1_ptr + grads1 + j, dk_, hid, DK, DH - j, DH)
            dW2_next = _load_tile(dw2_ptr + grads2 + j * DV, hid, dv_, DH - j, DV, DV)
            dS2_next = _load_tile(ds2_ptr + grads2 + j * DV, hid, dv_, DH - j, DV, DV)

            z = tl.dot(k, G1, input_precision=PRECISION)
            a = _act(z, ACT)
            slope = _act_grad(z, ACT)
            back = tl.dot(err2, tl.trans(G2), input_precision=PRECISION)
            err1 = back * slope
            if BOUND:   # what the reads and the update take; d_err1 below is its gradient until made raw
                err1 = err1 * key_scale[:, None]
            q_W1 = tl.dot(q, W1, input_precision=PRECISION)
            q_S1 = tl.dot(q, S1, input_precision=PRECISION)
            zq = gamma[:, None] * q_W1 + delta[:, None] * q_S1 + tl.dot(scores1, err1, input_precision=PRECISION)
            hq = _act(zq, ACT)
            d_gamma += tl.sum(dy * tl.dot(hq, W2, input_precision=PRECISION), axis=1)
            d_delta += tl.sum(dy * tl.dot(hq, S2, input_precision=PRECISION), axis=1)
            hidden_scores = tl.dot(hq, tl.trans(a), input_precision=PRECISION)
            d_coef += d_scores2 * hidden_scores
            d_written2 += tl.dot(tl.trans(coef * hidden_scores), dy, input_precision=PRECISION)

            d_hq = (gamma[:, None] * tl.dot(dy, tl.trans(W2), input_precision=PRECISION)
                    + delta[:, None] * tl.dot(dy, tl.trans(S2), input_precision=PRECISION)
                    + tl.dot(d_hidden_scores, a, input_precision=PRECISION))
            a_dW2 = tl.dot(a, dW2_next, input_precision=PRECISION)
            a_dS2 = tl.dot(a, dS2_next, input_precision=PRECISION)
            d_a = (tl.dot(tl.trans(d_hidden_scores), hq, input_precision=PRECISION)
                   + w_coef[:, None] * tl.dot(written2, tl.trans(dW2_next), input_precision=PRECISION)
                   + s_coef[:, None] * tl.dot(written2, tl.trans(dS2_next), input_precision=PRECISION))
            d_written2 += w_coef[:, None] * a_dW2 + s_coef[:, None] * a_dS2
            d_wc += tl.sum(a_dW2 * written2, axis=1)
            d_sc += tl.sum(a_dS2 * written2, axis=1)

            d_zq = d_hq * _act_grad(zq, ACT)
            d_gamma += tl.sum(d_zq * q_W1, axis=1)
            d_delta += tl.sum(d_zq * q_S1, axis=1)
            d_q += (gamma[:, None] * tl.dot(d_zq, tl.trans(W1), input_precision=PRECISION)
                    + delta[:, None] * tl.dot(d_zq, tl.trans(S1), input_precision=PRECISION))
            d_scores1 += tl.dot(d_zq, tl.trans(err1), input_precision=PRECISION)
            k_dW1 = tl.dot(k, dW1_next, input_precision=PRECISION)
            k_dS1 = tl.dot(k, dS1_next, input_precision=PRECISION)
            d_err1 = (tl.dot(tl.trans(scores1), d_zq, input_precision=PRECISION)
                      + w_coef[:, None] * k_dW1 + s_coef[:, None] * k_dS1)
            d_wc += tl.sum(k_dW1 * err1, axis=1)
            d_sc += tl.sum(k_dS1 * err1, axis=1)
            d_k += (w_coef[:, None] * tl.dot(err1, tl.trans(dW1_next), input_precision=PRECISION)
                    + s_coef[:, None] * tl.dot(err1, tl.trans(dS1_next), input_precision=PRECISION))
            if BOUND:
                key_dot += tl.sum(d_err1 * err1, axis=1)
                d_err1 = d_err1 * key_scale[:, None]
            d_g += tl.sum(tl.sum(dW1_next * W1, axis=1), axis=0) + tl.sum(tl.sum(dW2_next * W2, axis=1), axis=0)
            d_d += tl.sum(tl.sum(dW1_next * S1, axis=1), axis=0) + tl.sum(tl.sum(dW2_next * S2, axis=1), axis=0)
            d_p += tl.sum(tl.sum(dS1_next * S1, axis=1), axis=0) + tl.sum(tl.sum(dS2_next * S2, axis=1), axis=0)

            # err1 = (err2 G2^T) * act'(z): second order through the activation.
            d_back = d_err1 * slope
            d_z = d_err1 * back * _act_grad2(z, ACT)
            d_err2 += tl.dot(d_back, G2, input_precision=PRECISION)
            d_G2 = tl.dot(tl.trans(d_back), err2, input_precision=PRECISION)
            _store_tile(scratch_da_ptr + scratch, d_a, t, hid + j, BT, DH, DH)
            _store_tile(scratch_dz_ptr + scratch, d_z, t, hid + j, BT, DH, DH)

            dW1 = g_end * dW1_next + tl.dot(tl.trans(q), gamma[:, None] * d_zq, input_precision=PRECISION)
            dS1 = d_end * dW1_next + p_end * dS1_next + tl.dot(tl.trans(q), delta[:, None] * d_zq, input_precision=PRECISION)
            dW2 = g_end * dW2_next + tl.dot(tl.trans(gamma[:, None] * hq), dy, input_precision=PRECISION)
            dS2 = d_end * dW2_next + p_end * dS2_next + tl.dot(tl.trans(delta[:, None] * hq), dy, input_precision=PRECISION)
            dW2 += d_G2 * (1 - to_slot1)
            _store_tile(dw2_ptr + grads2 + DH * DV + j * DV, d_G2, hid, dv_, (DH - j) * to_slot1, DV, DV)
            _store_tile(dw1_ptr + grads1 + j, dW1, dk_, hid, DK, DH - j, DH)
            _store_tile(ds1_ptr + grads1 + j, dS1, dk_, hid, DK, DH - j, DH)
            _store_tile(dw2_ptr + grads2 + j * DV, dW2, hid, dv_, DH - j, DV, DV)
            _store_tile(ds2_ptr + grads2 + j * DV, dS2, hid, dv_, DH - j, DV, DV)

        if BOUND:
            hidden_dot = tl.sum(d_written2 * written2, axis=1)
            d_written2 = d_written2 * hidden_scale[:, None]
        d_err2 += d_written2
        _store_tile(dv_ptr + vo + start * stride_vt, 2.0 * d_err2, t, dv_, length, DV, stride_vt)
        tl.debug_barrier()   # pass C reads what other threads of this program stored in pass B

        # Pass C: the keys' forward path, now that d_err2 is complete.
        for j in range(0, DH, BLOCK_H):
            G1 = _load_tile(w1_ptr + here1 + jump1 + j, dk_, hid, DK, DH - j, DH)
            G2 = _load_tile(w2_ptr + here2 + jump2 + j * DV, hid, dv_, DH - j, DV, DV)
            z = tl.dot(k, G1, input_precision=PRECISION)
            a = _act(z, ACT)
            d_a = (_load_tile(scratch_da_ptr + scratch, t, hid + j, BT, DH, DH)
                   - 2.0 * tl.dot(d_err2, tl.trans(G2), input_precision=PRECISION))
            if BOUND:
                d_a += _input_norm_gradient(a, hidden_norm, hidden_scale, hidden_dot)
            d_z = _load_tile(scratch_dz_ptr + scratch, t, hid + j, BT, DH, DH) + d_a * _act_grad(z, ACT)
            d_k += tl.dot(d_z, tl.trans(G1), input_precision=PRECISION)
            d_G1 = tl.dot(kt, d_z, input_precision=PRECISION)
            d_G2 = -2.0 * tl.dot(tl.trans(a), d_err2, input_precision=PRECISION)
            slot1 = to_slot1 * DK * DH
            slot2 = to_slot1 * DH * DV
            dW1 = _load_tile(dw1_ptr + grads1 + slot1 + j, dk_, hid, DK, DH - j, DH) + d_G1
            dW2 = _load_tile(dw2_ptr + grads2 + slot2 + j * DV, hid, dv_, DH - j, DV, DV) + d_G2
            _store_tile(dw1_ptr + grads1 + slot1 + j, dW1, dk_, hid, DK, DH - j, DH)
            _store_tile(dw2_ptr + grads2 + slot2 + j * DV, dW2, hid, dv_, DH - j, DV, DV)

        if BOUND:
            d_k += _input_norm_gradient(k, key_norm, key_scale, key_dot)
        d_qk = d_scores1 * coef
        d_q += tl.dot(d_qk, k, input_precision=PRECISION)
        d_k += tl.dot(tl.trans(d_qk), q, input_precision=PRECISION)
        d_lr, d_momentum, d_decay = _coefficients_backward(lr, momentum, decay, length, d_coef + d_scores1 * qk, d_gamma,
                                                      d_delta, d_wc, d_sc, d_g, d_d, d_p, BT, PRECISION)
        _store_rows(dq_ptr + io, d_q, start, length, stride_t, DK, BT, BK)
        _store_rows(dk_ptr + io, d_k, start, length, stride_t, DK, BT, BK)
        _store_gates(dlr_ptr + gates, dmomentum_ptr + gates, ddecay_ptr + gates, d_lr, d_momentum, d_decay,
                     start, length, stride_gt, BT)
        tl.debug_barrier()   # the next chunk reads the state gradients stored here
