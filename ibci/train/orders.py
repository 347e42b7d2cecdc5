"""Each model's data order: the same batches for the same data seed, whichever engine trains it."""

from __future__ import annotations

import torch
from torch import Tensor

from ..seeding import generator


def data_generators(data_seeds: list[int], device) -> tuple[list[int], dict, Tensor]:
    """(the distinct seeds, a "data" generator per seed, each model's row among them)."""
    seeds = sorted(set(data_seeds))
    return seeds, {s: generator(s, "data") for s in seeds}, torch.tensor([seeds.index(s) for s in data_seeds],
                                                                         device=device)


def epoch_order(seeds: list[int], gens: dict, row: Tensor, n: int, device) -> Tensor:
    """[models, n]: this epoch's permutation of the n training examples for every model (one draw per seed)."""
    return torch.stack([torch.randperm(n, generator=gens[s]) for s in seeds]).to(device)[row]
