import pytest
import torch
import torch.nn.functional as F

from titans_seq.layers import Attention
from titans_seq.layers.attention import sliding_window_attention


def dense_reference(q, k, v, window, persistent=None):
    """Softmax over an explicit (T, c + T) mask: query i (at c + i) sees keys (c + i - window, c + i]."""
    T, n = q.shape[-2], k.shape[-2]
    i = torch.arange(T).view(T, 1) + (n - T)
    j = torch.arange(n).view(1, n)
    mask = (j <= i) & (j > i - window)
    if persistent is not None:
        pk, pv = (p.expand(q.shape[0], -1, -1, -1) for p in persistent)
        k, v = torch.cat((pk, k), -2), torch.cat((pv, v), -2)
        mask = torch.cat((torch.ones(T, pk.shape[-2], dtype=torch.bool), mask), -1)
    scores = (q @ k.mT) / q.shape[-1] ** 0.5
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v


@pytest.mark.parametrize("T,cached,window", [(17, 0, 4), (16, 0, 16), (5, 0, 8), (9, 3, 4), (1, 7, 8), (30, 2, 1)])
@pytest.mark.parametrize("n_persistent", [0, 3])
def test_sliding_window_matches_dense_mask(T, cached, window, n_persistent):
    g = torch.Generator().manual_seed(T + cached)
    q = torch.randn(2, 3, T, 8, generator=g, dtype=torch.float64)
    k, v = (torch.randn(2, 3, cached + T, 8, generator=g, dtype=torch.float64) for _ in range(2))
    persistent = None
    if n_persistent:
        persistent = tuple(torch.randn(1, 3, n_persistent, 8, generator=g, dtype=torch.float64) for _ in range(2))
    y = sliding_window_attention(q, k, v, window, persistent)
    assert torch.allclose(y, dense_reference(q, k, v, window, persistent), atol=1e-12)


def test_full_attention_matches_sdpa_causal():
    attn = Attention(16, 2).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    q, k, v = attn.project(x, torch.arange(11))
    want = attn.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    y, cache = attn(x)
    assert torch.allclose(y, want, atol=1e-12) and cache.position == 11 and cache.k.shape[-2] == 11


def test_window_cache_keeps_only_what_is_needed():
    attn = Attention(16, 2, window=4, n_persistent=2)
    _, cache = attn(torch.randn(1, 10, 16))
    assert cache.k.shape[-2] == 3 and cache.position == 10


def test_rejects_odd_head_size():
    with pytest.raises(ValueError):
        Attention(15, 3)
