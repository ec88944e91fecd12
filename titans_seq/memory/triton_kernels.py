"""Triton kernels of the neural-memory forward pass (memory depth 1 and 2).

One program per (batch, head) walks the chunks in order. Inside a chunk everything is a `tl.dot`
of chunk-sized tiles: the keys through the memory at the chunk-start weights, the analytic
backward of the squared loss, the b x b momentum/decay coefficient matrix, the per-token exact
reads y_t = f_{W_t}(q_t) and the end-of-chunk update (the dual form of `chunked.py`). The hidden
layer of a depth-2 memory, and the value columns of a depth-1 memory, are walked in tiles of
BLOCK_H so that no whole weight matrix has to sit in registers.

The memory state lives in float32 buffers of shape (B, H, N + 2, D_in, D_out): chunk c reads
slot c and writes slot c + 1, and the last slot holds the weights that a chunk resumed part-way
takes its gradients at. Those chunk-start states are all that the backward pass needs to
recompute a chunk. A short chunk is padded with tokens that come after its real ones (so no real
output sees them) and the end-of-chunk update reads the coefficients of its last real token.

With BOUND (steps bounded by input norm) the reads and the update take each layer's error divided
by max(1, ||a||^2), a that layer's input: the key for the first layer, the hidden activation,
whose norm needs every hidden tile, for the second. The error chain itself stays raw.
"""
from __future__ import annotations

import triton
import triton.language as tl

SILU, GELU, RELU = 0, 1, 2


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 0:
        return z * tl.sigmoid(z)
    elif ACT == 1:
        return 0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))
    else:
        return tl.maximum(z, 0.0)


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    if ACT == 0:
        s = tl.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    elif ACT == 1:
        cdf = 0.5 * (1.0 + tl.math.erf(z * 0.7071067811865476))
        return cdf + z * tl.exp(-0.5 * z * z) * 0.3989422804014327
    else:
        return tl.where(z > 0, 1.0, 0.0)


@triton.jit
def _load_tile(ptr, rows, cols, n_rows, n_cols, stride_row):
    """A float32 (rows x cols) tile of a row-major matrix, zero outside (n_rows, n_cols)."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * stride_row + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _store_tile(ptr, value, rows, cols, n_rows, n_cols, stride_row):
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(ptr + rows[:, None] * stride_row + cols[None, :], value, mask=mask)


@triton.jit
def _segment_products(x, BT: tl.constexpr):
    """out[t, s] = prod_{s < j <= t} x_j for t >= s, 0 above: a cumulative product, exact for zeros."""
    t = tl.arange(0, BT)
    factors = tl.where(t[:, None] > t[None, :], x[:, None], 1.0)
    return tl.where(t[:, None] >= t[None, :], tl.cumprod(factors, axis=0), 0.0)


@triton.jit
def _chunk_coefficients(lr, momentum, decay, length, BT: tl.constexpr, PRECISION: tl.constexpr):
    """The chunk's coefficients: C theta (b x b), gamma, delta, and those of its last real token."""
    t = tl.arange(0, BT)
    keep = 1.0 - decay
    momentum_seg = _segment_products(momentum, BT)
    keep_seg = _segment_products(keep, BT)
    coef = tl.dot(keep_seg, momentum_seg, input_precision=PRECISION) * lr[None, :]
    gamma = tl.cumprod(keep, axis=0)
    momentum_cum = tl.cumprod(momentum, axis=0)
    delta = tl.sum(keep_seg * momentum_cum[None, :], axis=1)
    last = t == length - 1
    w_coef = tl.sum(tl.where(last[:, None], coef, 0.0), axis=0)
    s_coef = tl.sum(tl.where(last[:, None], momentum_seg, 0.0), axis=0) * lr
    g_end = tl.sum(tl.where(last, gamma, 0.0), axis=0)
    d_end = tl.sum(tl.where(last, delta, 0.0), axis=0)
    p_end = tl.sum(tl.where(last, momentum_cum, 0.0), axis=0)
    return coef, gamma, delta, w_coef, s_coef, g_end, d_end, p_end


@triton.jit
def _input_scale(squared_norm):
    """1 / max(1, ||a||^2) per token: what the bound by input norm multiplies a layer's errors by."""
    return 1.0 / tl.maximum(squared_norm, 1.0)


@triton.jit
def _chunk_bounds(c, T, FIRST, CHUNK):
    """Chunk c covers [start, start + length): chunk 0 has FIRST tokens, later ones CHUNK (the last may be short)."""
    start = tl.where(c == 0, 0, FIRST + (c - 1) * CHUNK)
    length = tl.minimum(tl.where(c == 0, FIRST, CHUNK), T - start)
    return start, length


@triton.jit
def _load_chunk(q_ptr, k_ptr, lr_ptr, momentum_ptr, decay_ptr, start, length, stride_t, stride_gt, DK,
                BT: tl.constexpr, BK: tl.constexpr):
    """q, k (BT x BK) and the gates (BT) of tokens [start, start + length); padding is neutral."""
    t = tl.arange(0, BT)
    dk = tl.arange(0, BK)
    q = _load_tile(q_ptr + start * stride_t, t, dk, length, DK, stride_t)
    k = _load_tile(k_ptr + start * stride_t, t, dk, length, DK, stride_t)
    real = t < length
    lr = tl.load(lr_ptr + (start + t) * stride_gt, mask=real, other=0.0).to(tl.float32)
    momentum = tl.load(momentum_ptr + (start + t) * stride_gt, mask=real, other=1.0).to(tl.float32)
    decay = tl.load(decay_ptr + (start + t) * stride_gt, mask=real, other=0.0).to(tl.float32)
    return q, k, lr, momentum, decay


@triton.jit
def _program_offsets(H, stride_b, stride_h, stride_vb, stride_vh, stride_gb, stride_gh):
    """This program's (batch, head): its index and the offsets of its q/k, v/y and gate rows."""
    pid = tl.program_id(0)
    b, h = pid // H, pid % H
    return pid, b * stride_b + h * stride_h, b * stride_vb + h * stride_vh, b * stride_gb + h * stride_gh


@triton.jit
def _open_chunk(c, q_ptr, k_ptr, lr_ptr, momentum_ptr, decay_ptr, T, FIRST, CHUNK, DK, stride_t, stride_gt,
                BT: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr):
    """Chunk c's bounds, queries, keys, gates and coefficients (see `_chunk_coefficients`)."""
    start, length = _chunk_bounds(c, T, FIRST, CHUNK)
    q, k, lr, momentum, decay = _load_chunk(q_ptr, k_ptr, lr_ptr, momentum_ptr, decay_ptr, start, length,
                                       stride_t, stride_gt, DK, BT, BK)
    coef, gamma, delta, w_coef, s_coef, g_end, d_end, p_end = _chunk_coefficients(lr, momentum, decay, length, BT, PRECISION)
    return start, length, q, k, lr, momentum, decay, coef, gamma, delta, w_coef, s_coef, g_end, d_end, p_end


@triton.jit
def memory_fwd_depth1_kernel(
    q_ptr, k_ptr, v_ptr, lr_ptr, momentum_ptr, decay_ptr, y_ptr, w_ptr, s_ptr,
    T, H, N, FIRST, CHUNK, DK, DV, CHUNK_WEIGHTS_JUMP,
    stride_b, stride_t, stride_h, stride_vb, stride_vt, stride_vh, stride_gb, stride_gt, stride_gh,
    RESUMED: tl.constexpr, BOUND: tl.constexpr, ACT: tl.constexpr, PRECISION: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """A linear memory W (DK x DV), walked in BLOCK_H-wide column tiles (each column tile is independent).

    With RESUMED, chunk 0 takes its gradients at the weights CHUNK_WEIGHTS_JUMP elements past its
    own slot (the buffer's last slot) rather than at the weights entering it.
    """
    pid, io, vo, gates = _program_offsets(H, stride_b, stride_h, stride_vb, stride_vh, stride_gb, stride_gh)
    t = tl.arange(0, BT)
    dk = tl.arange(0, BK)
    cols = tl.arange(0, BLOCK_H)
    for c in range(N):
        start, length, q, k, lr, momentum, decay, coef, gamma, delta, w_coef, s_coef, g_end, d_end, p_end = _open_chunk(
            c, q_ptr + io, k_ptr + io, lr_ptr + gates, momentum_ptr + gates, decay_ptr + gates, T, FIRST, CHUNK, DK,
            stride_t, stride_gt, BT, BK, PRECISION)
        scores = coef * tl.dot(q, tl.trans(k), input_precision=PRECISION)
        kt = tl.trans(k)
        here = (pid * (N + 2) + c) * DK * DV
        there = here + DK * DV
        for j in range(0, DV, BLOCK_H):
            W = _load_tile(w_ptr + here + j, dk, cols, DK, DV - j, DV)
            S = _load_tile(s_ptr + here + j, dk, cols, DK, DV - j, DV)
            if RESUMED:
                G = _load_tile(w_ptr + here + tl.where(c == 0, CHUNK_WEIGHTS_JUMP, 0) + j, dk, cols, DK, DV - j, DV)
            else:
                G = W
            v = _load_tile(v_ptr + vo + start * stride_vt + j, t, cols, length, DV - j, stride_vt)
            err = 2.0 * (v - tl.dot(k, G, input_precision=PRECISION))
            if BOUND:
                err = err * _input_scale(tl.sum(k * k, axis=1))[:, None]
            y = (gamma[:, None] * tl.dot(q, W, input_precision=PRECISION)
                 + delta[:, None] * tl.dot(q, S, input_precision=PRECISION)
                 + tl.dot(scores, err, input_precision=PRECISION))
            _store_tile(y_ptr + vo + start * stride_vt + j, y, t, cols, length, DV - j, stride_vt)
            W_new = g_end * W + d_end * S + tl.dot(kt, w_coef[:, None] * err, input_precision=PRECISION)
            S_new = p_end * S + tl.dot(kt, s_coef[:, None] * err, input_precision=PRECISION)
            _store_tile(w_ptr + there + j, W_new, dk, cols, DK, DV - j, DV)
            _store_tile(s_ptr + there + j, S_new, dk, cols, DK, DV - j, DV)
        tl.debug_barrier()   # the next chunk reads the state stored here by other threads


@triton.jit
def memory_fwd_depth2_kernel(
    q_ptr, k_ptr, v_ptr, lr_ptr, momentum_ptr, decay_ptr, y_ptr, w1_ptr, s1_ptr, w2_ptr, s2_ptr,
    T, H, N, FIRST, CHUNK, DK, DH, DV, CHUNK_WEIGHTS_JUMP1, CHUNK_WEIGHTS_JUMP2,
    stride_b, stride_t, stride_h, stride_vb, stride_vt, stride_vh, stride_gb, stride_gt, stride_gh,
    RESUMED: tl.constexpr, BOUND: tl.constexpr, ACT: tl.constexpr, PRECISION: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """A two-layer memory W1 (DK x DH), act, W2 (DH x DV), walked in BLOCK_H-wide hidden tiles."""
    pid, io, vo, gates = _program_offsets(H, stride_b, stride_h, stride_vb, stride_vh, stride_gb, stride_gh)
    t = tl.arange(0, BT)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    hid = tl.arange(0, BLOCK_H)
    for c in range(N):
        start, length, q, k, lr, momentum, decay, coef, gamma, delta, w_coef, s_coef, g_end, d_end, p_end = _open_chunk(
            c, q_ptr + io, k_ptr + io, lr_ptr + gates, momentum_ptr + gates, decay_ptr + gates, T, FIRST, CHUNK, DK,
            stride_t, stride_gt, BT, BK, PRECISION)
        v = _load_tile(v_ptr + vo + start * stride_vt, t, dv, length, DV, stride_vt)
        here1 = (pid * (N + 2) + c) * DK * DH
        here2 = (pid * (N + 2) + c) * DH * DV
        there1, there2 = here1 + DK * DH, here2 + DH * DV
        jump1 = tl.where(c == 0, CHUNK_WEIGHTS_JUMP1, 0)
        jump2 = tl.where(c == 0, CHUNK_WEIGHTS_JUMP2, 0)

        # The keys through the memory at the gradient weights give the last layer's error.
        out = tl.zeros((BT, BV), dtype=tl.float32)
        hidden_norm = tl.zeros((BT,), dtype=tl.float32)
        for j in range(0, DH, BLOCK_H):
            G1 = _load_tile(w1_ptr + here1 + jump1 + j, dk, hid, DK, DH - j, DH)
            G2 = _load_tile(w2_ptr + here2 + jump2 + j * DV, hid, dv, DH - j, DV, DV)
            a = _act(tl.dot(k, G1, input_precision=PRECISION), ACT)
            out += tl.dot(a, G2, input_precision=PRECISION)
            hidden_norm += tl.sum(a * a, axis=1)
        err2 = 2.0 * (v - out)
        written2 = err2   # the errors that the reads and the update take
        if BOUND:
            written2 = err2 * _input_scale(hidden_norm)[:, None]
            key_scale = _input_scale(tl.sum(k * k, axis=1))

        # Per hidden tile: the first layer's error, the reads through W_t, the new state.
        kt = tl.trans(k)
        scores1 = coef * tl.dot(q, kt, input_precision=PRECISION)
        y = tl.zeros((BT, BV), dtype=tl.float32)
        hidden_scores = tl.zeros((BT, BT), dtype=tl.float32)
        for j in range(0, DH, BLOCK_H):
            W1 = _load_tile(w1_ptr + here1 + j, dk, hid, DK, DH - j, DH)
            S1 = _load_tile(s1_ptr + here1 + j, dk, hid, DK, DH - j, DH)
            W2 = _load_tile(w2_ptr + here2 + j * DV, hid, dv, DH - j, DV, DV)
            S2 = _load_tile(s2_ptr + here2 + j * DV, hid, dv, DH - j, DV, DV)
            if RESUMED:
                G1 = _load_tile(w1_ptr + here1 + jump1 + j, dk, hid, DK, DH - j, DH)
                G2 = _load_tile(w2_ptr + here2 + jump2 + j * DV, hid, dv, DH - j, DV, DV)
            else:
                G1 = W1
                G2 = W2
            z = tl.dot(k, G1, input_precision=PRECISION)
            a = _act(z, ACT)
            err1 = tl.dot(err2, tl.trans(G2), input_precision=PRECISION) * _act_grad(z, ACT)
            if BOUND:
                err1 = err1 * key_scale[:, None]
            zq = (gamma[:, None] * tl.dot(q, W1, input_precision=PRECISION)
                  + delta[:, None] * tl.dot(q, S1, input_precision=PRECISION)
                  + tl.dot(scores1, err1, input_precision=PRECISION))
            hq = _act(zq, ACT)
            y += (gamma[:, None] * tl.dot(hq, W2, input_precision=PRECISION)
                  + delta[:, None] * tl.dot(hq, S2, input_precision=PRECISION))
            at = tl.trans(a)
            hidden_scores += tl.dot(hq, at, input_precision=PRECISION)
            W1_new = g_end * W1 + d_end * S1 + tl.dot(kt, w_coef[:, None] * err1, input_precision=PRECISION)
            S1_new = p_end * S1 + tl.dot(kt, s_coef[:, None] * err1, input_precision=PRECISION)
            W2_new = g_end * W2 + d_end * S2 + tl.dot(at, w_coef[:, None] * written2, input_precision=PRECISION)
            S2_new = p_end * S2 + tl.dot(at, s_coef[:, None] * written2, input_precision=PRECISION)
            _store_tile(w1_ptr + there1 + j, W1_new, dk, hid, DK, DH - j, DH)
            _store_tile(s1_ptr + there1 + j, S1_new, dk, hid, DK, DH - j, DH)
            _store_tile(w2_ptr + there2 + j * DV, W2_new, hid, dv, DH - j, DV, DV)
            _store_tile(s2_ptr + there2 + j * DV, S2_new, hid, dv, DH - j, DV, DV)
        y += tl.dot(coef * hidden_scores, written2, input_precision=PRECISION)
        _store_tile(y_ptr + vo + start * stride_vt, y, t, dv, length, DV, stride_vt)
        tl.debug_barrier()   # the next chunk reads the state stored here by other threads
