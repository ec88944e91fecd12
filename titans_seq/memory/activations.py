"""Activations of the memory MLP, each with the first and second derivatives the analytic backwards need."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor


class Activation(NamedTuple):
    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    grad2: Callable[[Tensor], Tensor]


def _silu_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def _silu_grad2(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 - s) * (2 + z * (1 - 2 * s))


def _gelu_grad(z: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return cdf + z * pdf


def _gelu_grad2(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (2 - z * z)


ACTIVATIONS: dict[str, Activation] = {
    "silu": Activation(torch.nn.functional.silu, _silu_grad, _silu_grad2),
    "gelu": Activation(torch.nn.functional.gelu, _gelu_grad, _gelu_grad2),
    "relu": Activation(torch.relu, lambda z: (z > 0).to(z.dtype), torch.zeros_like),
}


def get_activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown memory activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
