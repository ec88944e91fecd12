"""MAC (Eqs. 21-25): memory as a context for attention, segment by segment.

For each segment S of ``segment_len`` tokens: h = M*_{t-1}(q(S)) is read with the memory entering
the segment; token t of S attends to the persistent tokens and to h_s, x_s for s <= t (h_s depends
on x_s, so the h tokens are masked causally like the segment itself); the attention output y is
written into the memory, and o = y (x) M*_t(y) reads it back per token. RoPE positions count from
the segment start (h_s and x_s share position s); persistent tokens are not rotated. The read's
queries are the bare projection of x or, with ``mac_query_conv``, pass through the memory's short
convolution over x, as the paper's q_t = conv(S W_Q) does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from titans_seq.layers import NormalizedGate
from titans_seq.layers.attention import with_persistent
from titans_seq.memory import MemoryState, NeuralMemoryState

from .common import build_attention, build_memory
from .config import TitansConfig


@dataclass
class MACState:
    memory: NeuralMemoryState | None       # after the last token
    segment_memory: MemoryState | None     # entering the current segment (None: the initial memory)
    keys: Tensor | None                    # (B, H, 2n, D): [h; x] keys of the segment's n tokens so far
    values: Tensor | None
    offset: int                            # tokens seen in the current segment
    query_conv: Tensor | None = None       # the read queries' convolution cache (mac_query_conv)


class MACMixer(nn.Module):
    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.segment_len, self.query_conv = cfg.segment_len, cfg.mac_query_conv
        self.attention = build_attention(cfg, window=None, n_persistent=cfg.n_persistent)
        self.memory = build_memory(cfg)
        self.gate = NormalizedGate(cfg.d_model, cfg.norm_eps)

    def forward(self, x: Tensor, state: MACState | None = None) -> tuple[Tensor, MACState]:
        state = state or MACState(None, None, None, None, 0)
        outputs, start = [], 0
        while start < x.shape[1]:
            end = min(x.shape[1], start + self.segment_len - state.offset)
            y, state = self._segment_piece(x[:, start:end], state)
            outputs.append(y)
            start = end
        return torch.cat(outputs, dim=1), state

    def _segment_piece(self, x: Tensor, state: MACState) -> tuple[Tensor, MACState]:
        """Tokens [offset, offset + n) of one segment, with the keys of [0, offset) cached."""
        n, offset = x.shape[1], state.offset
        positions = torch.arange(offset, offset + n, device=x.device)
        read_q, query_conv = self.memory.queries(x, state.query_conv, convolve=self.query_conv)
        h = self.memory.retrieve(x, state.segment_memory, read_q)
        _, k_h, v_h = self.attention.project(h, positions)
        q, k_x, v_x = self.attention.project(x, positions)
        seen_k = [k_h, k_x] if state.keys is None else [state.keys[:, :, :offset], k_h,
                                                         state.keys[:, :, offset:], k_x]
        seen_v = [v_h, v_x] if state.values is None else [state.values[:, :, :offset], v_h,
                                                           state.values[:, :, offset:], v_x]
        keys, values = torch.cat(seen_k, dim=-2), torch.cat(seen_v, dim=-2)   # [h_0..h_m; x_0..x_m]
        mask = torch.ones(n, offset + n, dtype=torch.bool, device=x.device).tril(offset)
        k, v, mask = with_persistent(keys, values, mask.repeat(1, 2), self.attention.persistent_kv())
        y = self.attention.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        read, memory = self.memory(y, state.memory)
        out = self.gate(y, read)
        if offset + n == self.segment_len:
            return out, MACState(memory, memory.memory, None, None, 0, query_conv)
        return out, MACState(memory, state.segment_memory, keys, values, offset + n, query_conv)
