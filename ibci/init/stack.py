"""From a config to an initialized stack of models: base draw, then the wrapper."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from . import authors, campaign
from ..nets.mlp import StackedMLP
from ..nets.spec import N_CLASSES, hidden_widths
from .bases import init_base
from .lsuv import lsuv


def subsample(x: Tensor, y: Tensor, n: int | None, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """A random subset of n samples drawn with the model's own generator (all of them if n is None)."""
    if n is None or n >= x.shape[0]:
        return x, y
    idx = torch.randperm(x.shape[0], generator=g)[:n]
    return x[idx], y[idx]


def _json_ready(info: dict) -> dict:
    return {k: v for k, v in info.items() if not isinstance(v, (Tensor, dict)) or k == "layers"}


def initialize(cfg: dict, x: Tensor, y: Tensor, generators: list[torch.Generator]) -> tuple[StackedMLP, dict]:
    """One initialized model per generator, as `cfg` (base, init, depth or hidden) says.

    `x`, `y` are the training set the wrappers may look at; each model draws
    its weights and its data sample from its own generator. Returns the stack
    and a JSON-ready description of what the wrapper did.
    """
    sizes = [x.shape[1], *hidden_widths(cfg), N_CLASSES]
    return init_stack(sizes, cfg["base"], cfg["init"], x, y, generators)


def base_or_lsuv(draw, rescale, sizes: list[int], base: dict, init: dict, x: Tensor, y: Tensor,
                 generators: list[torch.Generator]):
    """Vanilla (the base draw) or LSUV on it, for any network: `draw` and `rescale` are the network's
    `init_base` and `lsuv` (ibci.init.bases and ibci.init.lsuv for an MLP, ibci.init.conv for a CNN). Returns the stack and its info."""
    orthonormal = init["name"] == "lsuv" and init["orthonormal"]
    model = draw(sizes, generators, base["name"], base["bias"], base["std"], orthonormal)
    info = {}
    if init["name"] == "lsuv":
        # Each model sees its own random batch, as LSUV on a separately trained net would.
        batch = torch.stack([subsample(x, y, init["num_samples"], g)[0] for g in generators])
        info["iterations"] = rescale(model, batch, init["tol"], init["max_iter"], init["output_layer"])
    return model, info


def init_stack(
    sizes: list[int], base: dict, init: dict, x: Tensor, y: Tensor, generators: list[torch.Generator]
) -> tuple[StackedMLP, dict]:
    """`initialize` for any widths `sizes` (input first, classes last): the base draw, then the wrapper.

    `base` and `init` are the config groups' dicts (name and settings, as
    configs/base/*.yaml and configs/init/*.yaml spell them).
    """
    num_classes = sizes[-1]
    start = time.perf_counter()
    if init["name"] in ("vanilla", "lsuv"):
        model, info = base_or_lsuv(init_base, lsuv, sizes, base, init, x, y, generators)
    else:
        tie_weights = campaign.tie_weights(init["name"], len(sizes) - 1, init["tie_weights"])
        info = {"tie_weights": tie_weights}
        weights, biases, seeds_info = [], [], []
        for g in generators:
            xs, ys = subsample(x, y, init["num_samples"], g)
            if init["reading"] == "authors":
                w, b, seed_info = authors.ibci_init(
                    sizes, xs, ys, tie_weights, g, bias=base["bias"],
                    pool_factor=init["pool_factor"], max_pool=init["max_pool"], num_classes=num_classes,
                    arithmetic=init.get("authors_arithmetic", "float64"),  # records from before the key: float64
                )
            else:
                w, b, seed_info = campaign.ibci_init(
                    sizes, xs, ys, base["name"], tie_weights, g,
                    bias=base["bias"], std=base["std"], pool_factor=init["pool_factor"],
                    max_pool=init["max_pool"], scope=init["orthogonal_scope"], num_classes=num_classes,
                )
            weights.append(w)
            biases.append(b)
            seeds_info.append(_json_ready(seed_info))
        model = StackedMLP(
            [torch.stack([w[l] for w in weights]) for l in range(len(sizes) - 1)],
            [torch.stack([b[l] for b in biases]) for l in range(len(sizes) - 1)],
        )
        info["seeds"] = seeds_info
    info["time_s"] = time.perf_counter() - start
    return model, info
