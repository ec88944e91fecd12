"""Multi-query associative recall sequences: key-value pairs, then queries of some keys.

    k1 v1 k2 v2 ... kn vn | q1 q2 ... qm      target at q_i: the value paired with q_i

A model solves it only by remembering the pairs it has read: the task the paper's long-term
memory is built for, in miniature. Everything is generated from a seed; nothing is downloaded.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..language_model import IGNORE     # targets at positions that are not queries


def vocabulary_size(n_keys: int, n_values: int) -> int:
    return n_keys + n_values


def recall_sequences(count: int, n_keys: int, n_values: int, n_pairs: int, n_queries: int,
                     seed: int) -> tuple[Tensor, Tensor]:
    """(tokens, targets), each (count, 2 n_pairs + n_queries); keys are [0, n_keys), values follow."""
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs={n_pairs} needs at least as many distinct keys (n_keys={n_keys})")
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(count, n_keys, generator=g).argsort(dim=1)[:, :n_pairs]               # distinct keys
    values = n_keys + torch.randint(0, n_values, (count, n_pairs), generator=g)
    asked = torch.randint(0, n_pairs, (count, n_queries), generator=g)
    pairs = torch.stack((keys, values), dim=2).flatten(1)
    tokens = torch.cat((pairs, keys.gather(1, asked)), dim=1)
    targets = torch.full_like(tokens, IGNORE)
    targets[:, 2 * n_pairs:] = values.gather(1, asked)
    return tokens, targets


def recall_dataset(count: int, n_keys: int, n_values: int, n_pairs: int, n_queries: int, seed: int) -> TensorDataset:
    return TensorDataset(*recall_sequences(count, n_keys, n_values, n_pairs, n_queries, seed))
