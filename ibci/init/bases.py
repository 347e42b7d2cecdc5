"""Base initializations: Xavier, He, plain normal and the authors' scale.

Weights are stored one column per neuron ([fan_in, fan_out]); a base
distribution draws every entry i.i.d. from N(0, std^2) with std from the layer's
fan-in and fan-out. The neuron campaign (`ibci.init.campaign`) draws its candidate
pools from the same `sample_base`, `pool_size` of them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..nets.mlp import StackedMLP
from ..vocab import UNIFORM_BIAS
# A base's std is a rule over plain numbers, kept torch-free for the checks before torch loads.
from .settings import base_std


def sample_base(
    base: str,
    fan_in: int,
    fan_out: int,
    num_columns: int,
    generator: torch.Generator,
    std: float | None = None,
) -> Tensor:
    """`num_columns` neurons [fan_in, num_columns] drawn from a layer's base distribution.

    `fan_out` is the layer's real width (it sets Xavier's std) and may differ
    from `num_columns` (a campaign draws a pool larger than the layer).
    """
    s = base_std(base, fan_in, fan_out, std)
    return torch.randn(fan_in, num_columns, generator=generator) * s


def orthonormal(fan_in: int, fan_out: int, generator: torch.Generator) -> Tensor:
    """A [fan_in, fan_out] matrix with orthonormal columns (or rows, when fan_in < fan_out).

    The Q of a Gaussian matrix's QR, signs fixed by R's diagonal so that it is
    uniform over the orthogonal group (Saxe et al.; LSUV's pre-init).
    """
    tall = fan_in >= fan_out
    g = torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g if tall else g.T)
    q = q * torch.sign(torch.diagonal(r)).masked_fill(torch.diagonal(r) == 0, 1.0)
    return (q if tall else q.T).float()


def draw_biases(layers: list[tuple[int, int]], generators: list[torch.Generator], bias) -> list[Tensor]:
    """Each layer's biases [S, width]: the constant `bias`, or UNIFORM_BIAS draws.

    `layers` holds (fan_in, width) per layer; for a convolution fan_in is
    in_channels * kernel area, as nn.Conv2d's U(+-1/sqrt(fan_in)) has it.
    Draw them after all of a model's weights, so that a model's weights are
    the same whichever bias it gets.
    """
    if bias != UNIFORM_BIAS:
        return [torch.full((len(generators), o), float(bias)) for _, o in layers]
    per_model = [[(torch.rand(o, generator=g) * 2 - 1) / math.sqrt(i) for i, o in layers] for g in generators]
    return [torch.stack([b[l] for b in per_model]) for l in range(len(layers))]


def init_base(
    sizes: list[int],
    generators: list[torch.Generator],
    base: str,
    bias: float | str = 0.0,
    std: float | None = None,
    orthonormal_weights: bool = False,
) -> StackedMLP:
    """A stack of len(generators) MLPs with the given widths, each drawn from its own generator.

    `orthonormal_weights`: every layer orthonormal (`orthonormal`) instead of
    the base draw, as LSUV's pre-init; the base then plays no part.
    """
    if orthonormal_weights:
        draw = lambda i, o, g: orthonormal(i, o, g)  # noqa: E731
    else:
        draw = lambda i, o, g: sample_base(base, i, o, o, g, std)  # noqa: E731
    weights = [torch.stack([draw(i, o, g) for g in generators]) for i, o in zip(sizes[:-1], sizes[1:])]
    return StackedMLP(weights, draw_biases(list(zip(sizes[:-1], sizes[1:])), generators, bias))
