"""MAC's mixer against a literal transcription of the paper's Eqs. 21-25, outputs and gradients.

Per segment S of the input: h = M*_{t-1}(q(S)) with the memory entering the segment (Eq. 21);
attention over [persistent || h || S] (Eqs. 22-23), where token s sees the persistent tokens,
h_{<=s} and x_{<=s} (h_s is read with x_s's query, so it is masked as x_s is); the memory is
written with the attention output y, token by token (Eq. 24, through the sequential reference
of the memory operator); o = y (x) M*_t(y), read with the memory after each token's write (Eq. 25).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from tests.memory.reference import mlp, sequential_memory
from titans_seq import Backbone, TitansConfig
from titans_seq.layers.rope import apply_rope


def causal_depthwise_conv(x, conv):
    """(B, T, C) through ShortConv's filters as a plain left-padded conv1d."""
    padded = F.pad(x.transpose(1, 2), (conv.kernel - 1, 0))
    return F.conv1d(padded, conv.weight, conv.bias, groups=x.shape[-1]).transpose(1, 2)


def memory_read_out(memory, y, x):
    gated = memory.norm(y).flatten(2) * torch.sigmoid(memory.to_out_gate(x))
    return memory.out(gated)


def memory_reference(memory, x):
    """The memory layer over the whole of x: each token's read after its write, and the final weights."""
    inner = memory.n_heads * memory.head_dim
    qkv = F.silu(causal_depthwise_conv(memory.to_qkv(x), memory.conv))
    q, k, v = (t.view(*x.shape[:2], memory.n_heads, -1) for t in qkv.split(inner, dim=-1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    lr, momentum, decay = memory.gates(x)
    y, weights, _ = sequential_memory(q, k, v, lr, momentum, decay, list(memory.weights), memory.chunk_size,
                                      memory.activation)
    return memory_read_out(memory, y, x), weights


def memory_read(memory, x, weights):
    """M*(q(x)) with the bare query projection, through per-batch weights (B, H, Di, Do)."""
    inner = memory.n_heads * memory.head_dim
    q = F.normalize(F.silu(x @ memory.to_qkv.weight[:inner].T).view(*x.shape[:2], memory.n_heads, -1), dim=-1)
    read = mlp(weights, q.transpose(1, 2), torch.nn.functional.silu).transpose(1, 2)
    return memory_read_out(memory, read, x)


def attention_over_context(attention, x, h):
    """Eqs. 22-23: x's queries over [persistent || h || x], with explicit scores and mask."""
    B, L, d = x.shape
    H = attention.n_heads
    heads = lambda t: t.view(B, -1, H, d // H).transpose(1, 2)          # noqa: E731
    positions = torch.arange(L)
    q_x, k_x, v_x = (heads(t) for t in attention.qkv(x).chunk(3, dim=-1))
    _, k_h, v_h = (heads(t) for t in attention.qkv(h).chunk(3, dim=-1))
    _, k_p, v_p = (heads(t) for t in attention.qkv(attention.persistent.expand(B, -1, -1)).chunk(3, dim=-1))
    rope = lambda t: apply_rope(t, positions, attention.rope_base)    # noqa: E731
    keys = torch.cat((k_p, rope(k_h), rope(k_x)), dim=-2)
    values = torch.cat((v_p, v_h, v_x), dim=-2)
    sees = torch.arange(L)[None, :] <= torch.arange(L)[:, None]          # (query s, token s'): s' <= s
    mask = torch.cat((torch.ones(L, attention.persistent.shape[0], dtype=torch.bool), sees, sees), dim=-1)
    scores = rope(q_x) @ keys.transpose(-1, -2) / math.sqrt(d // H)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return attention.out((weights @ values).transpose(1, 2).reshape(B, L, d))


def mac_reference(mixer, x):
    """Eqs. 21-25, segment by segment."""
    L = mixer.segment_len
    memory = mixer.memory
    weights = [w.unsqueeze(0).expand(x.shape[0], *w.shape) for w in memory.weights]   # the initial memory
    ys, outputs = [], []
    for start in range(0, x.shape[1], L):
        segment = x[:, start:start + L]
        h = memory_read(memory, segment, weights)                        # Eq. 21
        ys.append(attention_over_context(mixer.attention, segment, h))   # Eqs. 22-23
        reads, weights = memory_reference(memory, torch.cat(ys, dim=1))  # Eq. 24, from the first token on
        outputs.append(mixer.gate(ys[-1], reads[:, start:start + L]))    # Eq. 25
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("segment_len, chunk_size, T", [(8, 4, 21), (6, 4, 17), (5, 5, 15)])
def test_mac_mixer_is_eqs_21_to_25(segment_len, chunk_size, T):
    torch.manual_seed(0)
    cfg = TitansConfig(variant="mac", d_model=16, n_layers=1, n_heads=2, chunk_size=chunk_size,
                       segment_len=segment_len, n_persistent=3)
    mixer = Backbone(cfg).double().blocks[0].mixer
    with torch.no_grad():   # gates away from their initial values, so that every gate's path is exercised
        mixer.memory.to_gates.weight.normal_(0, 0.5)
        mixer.memory.to_gates.bias.normal_(0, 1.0)
    x = torch.randn(2, T, 16, dtype=torch.float64, requires_grad=True)

    fast, _ = mixer(x)
    slow = mac_reference(mixer, x)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-10)

    cotangent = torch.randn_like(fast)
    inputs = [x, *mixer.parameters()]
    fast_grads = torch.autograd.grad(fast, inputs, cotangent)
    slow_grads = torch.autograd.grad(slow, inputs, cotangent)
    names = ["x", *(name for name, _ in mixer.named_parameters())]
    for name, a, b in zip(names, fast_grads, slow_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")
