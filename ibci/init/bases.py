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

from ..errors import UserError
from ..nets.mlp import StackedMLP
from ..vocab import BASES, UNIFORM_BIAS
from .settings import pool_size

# The authors' code's pool defaults (--candidate_weights 5, --max_num_candidate 1000): its draw's scale.
AUTHORS_POOL_FACTOR = 5
AUTHORS_MAX_POOL = 1000


def base_std(base: str, fan_in: int, fan_out: int, std: float | None = None) -> float:
    """Standard deviation of the base distribution for one layer.

    xavier: sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio, normal variant);
    he: sqrt(2 / fan_in) (He et al., fan-in mode, for ReLU);
    normal: the given `std` (used to show vanishing / exploding signals);
    authors: sqrt(2 / K), K = min(5 * fan_out, 1000), the std the authors'
    code draws IBCI's candidates at (the scale-only control, `ibci.init.authors`).
    """
    if base == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if base == "he":
        return math.sqrt(2.0 / fan_in)
    if base == "normal":
        if std is None or not std > 0:
            raise UserError(f"base=normal needs a positive base.std, got {std!r}")
        return float(std)
    if base == "authors":
        return scale_only_std(fan_out)
    raise UserError(f"base={base!r} is not one of {', '.join(BASES)}")


def candidate_std(num_candidates: int) -> float:
    """std of the authors' draw: kaiming_normal_ on a [fan_in, K] pool takes fan_in = K."""
    return math.sqrt(2.0 / num_candidates)


def scale_only_std(fan_out: int) -> float:
    """The std the authors' campaign draws a layer of `fan_out` neurons at (its default pool)."""
    return candidate_std(pool_size(fan_out, AUTHORS_POOL_FACTOR, AUTHORS_MAX_POOL))


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
