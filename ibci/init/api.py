"""IBCI, LSUV and the rest on your own network: `ibci.init_(model, x, y, method="ibci")`.

The suite trains its own stacked MLPs; this is the same initialization for a
`torch.nn.Sequential` of `nn.Linear` layers with `nn.ReLU` between them (the
layout the paper's method is defined for), written into the model in place in
`nn.Linear`'s [out, in] layout:

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    info = ibci.init_(model, x_train.flatten(1), y_train, method="ibci", base="xavier")
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..vocab import INITS
from .stack import init_stack


# The defaults of configs/base/*.yaml and configs/init/*.yaml, for calls without Hydra.
BASE_DEFAULTS = dict(bias=0.0, std=None)
INIT_DEFAULTS = {
    "vanilla": {},
    "lsuv": dict(num_samples=1000, tol=0.02, max_iter=10, output_layer=True, orthonormal=False),
    "campaign": dict(reading="paper", tie_weights=None, pool_factor=5, max_pool=1000, num_samples=None,
                     orthogonal_scope="global"),
}


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    """The model's Linear layers, checking it is Linear (ReLU Linear)*: the networks IBCI is defined for."""
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        raise UserError("init_ takes an nn.Sequential of nn.Linear layers with nn.ReLU between them")
    layers = list(model)
    expected = [nn.Linear if i % 2 == 0 else nn.ReLU for i in range(len(layers))]
    if len(layers) % 2 == 0 or any(not isinstance(m, t) for m, t in zip(layers, expected)):
        shown = ", ".join(type(m).__name__ for m in layers)
        raise UserError(f"init_ takes Linear, ReLU, Linear, ..., Linear (no ReLU last); got {shown}")
    linears = layers[::2]
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            raise UserError(f"a layer gives {a.out_features} features to one that takes {b.in_features}")
    return linears


def configs(method: str = "ibci", base: str = "xavier", **options) -> tuple[dict, dict]:
    """The base's and the method's config dicts (as configs/base/ and configs/init/ spell them) for `options`.

    What `init_` and `initialize.init_stack` take: the suite's defaults with
    `options` (see `init_`) in their place; an unknown option is an error.
    """
    if method not in INITS:
        raise UserError(f"method={method!r} is not one of: {', '.join(INITS)}")
    defaults = INIT_DEFAULTS["campaign" if method in ("ibci", "tie", "iim") else method]
    base_keys = set(BASE_DEFAULTS)
    unknown = set(options) - base_keys - set(defaults)
    if unknown:
        allowed = ", ".join(sorted(base_keys | set(defaults)))
        raise UserError(f"init_(method={method!r}) takes no option {', '.join(sorted(unknown))}; it takes: {allowed}")
    base_cfg = {"name": base, **BASE_DEFAULTS, **{k: v for k, v in options.items() if k in base_keys}}
    init_cfg = {"name": method, **defaults, **{k: v for k, v in options.items() if k in defaults}}
    return base_cfg, init_cfg


@torch.no_grad()
def init_(
    model: nn.Sequential,
    x: Tensor,
    y: Tensor,
    method: str = "ibci",
    base: str = "xavier",
    *,
    generator: torch.Generator | None = None,
    seed: int = 0,
    **options,
) -> dict:
    """Initialize `model` in place by `method` over the base distribution `base`; returns what it did.

    x [N, in_features] and y [N] (class indices) are the training data the
    data-dependent methods look at (LSUV: a sample of `num_samples`; the
    campaign: all of it, or `num_samples`). `options` are the config keys of
    the base (`bias`, `std`) and of the method (LSUV: `num_samples`, `tol`,
    `max_iter`, `output_layer`, `orthonormal`; ibci/tie/iim: `reading`,
    `tie_weights`, `pool_factor`, `max_pool`, `num_samples`,
    `orthogonal_scope`), with the suite's defaults. Draws come from
    `generator`, or one seeded with `seed`. The number of classes is the last
    layer's width.
    """
    linears = linear_layers(model)
    sizes = [linears[0].in_features, *(m.out_features for m in linears)]
    x = x.detach().float().cpu()
    if x.dim() != 2 or x.shape[1] != sizes[0]:
        raise UserError(f"x has shape {list(x.shape)} but the model takes [N, {sizes[0]}] (flatten images first)")
    base_cfg, init_cfg = configs(method, base, **options)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    stack, info = init_stack(sizes, base_cfg, init_cfg, x, y.detach().long().cpu(), [g])
    for layer, W, b in zip(linears, stack.weights, stack.biases):
        layer.weight.copy_(W[0].T)
        layer.bias.copy_(b[0])
    return info
