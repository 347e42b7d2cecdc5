"""IBCI and LSUV for the CNN of `net=cnn` (`ibci.nets.cnn`): a filter is a candidate.

IBCI for a convolution (`init=ibci`, `tie`, `iim`). A candidate is a filter,
flattened into a vector of in_channels * 5 * 5 weights and drawn from the
base with the fans PyTorch gives a Conv2d (fan_in = in_channels * 25,
fan_out = out_channels * 25). Its response to an image is its ReLU feature
map (with the constant bias, before the 2x2 pool) reduced over positions to
one number, by default the mean (`init.conv_pool`). From there on it is the
MLP's campaign (`ibci.init.campaign`) over the [images, candidates] response
matrix and the flattened filters: IIM, TIE, class ownership, quotas and the
orthogonal residual novelty; the linear layers are elected by
`campaign.campaign_layer` on the flattened features. Why the mean: a conv
layer is one neuron applied at every position, and the mean of its ReLU map is
the expectation of that neuron's response over positions, so IIM and TIE
weigh every position of the map the next layer receives, as they weigh an MLP
neuron's response; the max is decided by a single best-matching patch. The price: on
MNIST a mean response tracks the amount of ink, so class ownership (the class
with the highest mean response) piles up on the inkiest digit. On 3,000
training images, seed 0, class 0 owns 75 of the 100 first-layer candidates
and four classes own none (quotas 5,0,2,4,3,4,0,0,2,0); with the max every
class owns some (1 to 23) and the quotas are about even. The second conv
layer's quotas are even either way. `init.conv_pool=max` is there to compare.

LSUV rescales every layer, the convolutions included, to unit variance of its
pre-activation output (over images, channels and positions). Vanilla is the
base draw.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nets.cnn import (KERNEL, POOL, SIDE, StackedCNN, as_filters, chunk, conv_sides, from_columns,
                        layer_fans)
from ..nets.spec import N_CLASSES, hidden_widths
from ..errors import UserError
from . import campaign
from .bases import draw_biases, orthonormal, sample_base
from .lsuv import unit_variance_
from .settings import pool_size
from .stack import base_or_lsuv, subsample

# The campaign's chunks are smaller (8 MB): the candidates' maps then stay in cache between the convolution,
# the ReLU and the pooling, which made the first layer's responses 2x faster here than 64 MB chunks.
RESPONSE_FLOATS = 1 << 21


def init_base(widths: list[int], generators: list[torch.Generator], base: str, bias=0.0,
              std: float | None = None, orthonormal_weights: bool = False) -> StackedCNN:
    """A stack of len(generators) CNNs drawn from the base, each from its own generator.

    A conv layer's filters are drawn as the columns of a [in * 25, out] matrix
    with the conv's fans; `orthonormal_weights` makes that matrix orthonormal
    instead (LSUV's pre-init, as Mishkin & Matas flatten a conv's filters).
    """
    fans = layer_fans(widths)
    sizes = [*widths, N_CLASSES]
    if orthonormal_weights:
        draw = lambda fi, fo, o, g: orthonormal(fi, o, g)  # noqa: E731
    else:
        draw = lambda fi, fo, o, g: sample_base(base, fi, fo, o, g, std)  # noqa: E731
    layers = [torch.stack([draw(fi, fo, o, g) for g in generators]) for (fi, fo), o in zip(fans, sizes)]
    biases = draw_biases([(fi, o) for (fi, _), o in zip(fans, sizes)], generators, bias)
    return from_columns(layers, biases, widths)


def lsuv(model: StackedCNN, x: Tensor, tol: float = 0.02, max_iter: int = 10, output_layer: bool = True) -> list:
    """LSUV for a stack of CNNs, in place: every layer's pre-activation output to unit variance.

    x [S, n, 784]: each model's own batch. A conv layer's variance is over
    images, channels and positions of its feature maps (before ReLU and pool).
    Returns the rescalings per layer per model, as `ibci.init.lsuv.lsuv`.
    """
    if not 0 < tol:
        raise UserError(f"lsuv tol must be positive, got {tol!r}")
    S, n = x.shape[:2]
    h = x.transpose(0, 1).reshape(n, S, SIDE, SIDE)
    iterations = []
    n_layers = model.num_layers if output_layer else model.num_layers - 1
    for W, b in zip(model.conv_weights, model.conv_biases):

        def conv() -> Tensor:  # [S, n, out, side, side]: model s's maps, from its own batch (channel s of h)
            return F.conv2d(h, W.flatten(0, 1), b.flatten(), groups=S).unflatten(1, (S, -1)).transpose(0, 1)

        z, counts = unit_variance_(W, conv, tol, max_iter)
        h = F.max_pool2d(z.transpose(0, 1).flatten(1, 2), POOL).relu_()
        iterations.append(counts.tolist())
    h = h.flatten(2).view(n, S, -1).transpose(0, 1)
    for l, (W, b) in enumerate(zip(model.weights, model.biases), start=len(model.conv_weights)):
        if l >= n_layers:
            break
        z, counts = unit_variance_(W, lambda: torch.baddbmm(b.unsqueeze(1), h, W), tol, max_iter)
        h = z.relu_()
        iterations.append(counts.tolist())
    return iterations


def features(x: Tensor, filters: list[Tensor], biases: list[Tensor]) -> Tensor:
    """One model's conv stages (conv -> ReLU -> pool) elected so far, on images x [n, 784]."""
    h = x.reshape(-1, SIDE, SIDE, 1).permute(0, 3, 1, 2)  # channels-last, as `layout`, for the same speed-up
    for W, b in zip(filters, biases):
        h = F.max_pool2d(F.conv2d(h, W, b), POOL).relu_()
    return h


def conv_responses(x: Tensor, filters: list[Tensor], biases: list[Tensor], candidates: Tensor, bias: float,
                   pool: str = "mean") -> Tensor:
    """Responses [N, K] of K candidate filters (columns of `candidates` [in * 25, K]) on images x [N, 784].

    A candidate's response to an image is its ReLU feature map on the output
    of the conv stages elected so far (`filters`, `biases`), with the constant
    `bias`, reduced over positions by `pool` (mean or max).
    """
    in_channels = filters[-1].shape[0] if filters else 1
    W = as_filters(candidates, in_channels)
    K = W.shape[0]
    side = conv_sides()[len(filters)] - KERNEL + 1
    step = chunk(K * side * side, budget=RESPONSE_FLOATS)
    out = torch.empty(x.shape[0], K)
    for i in range(0, x.shape[0], step):
        z = F.conv2d(features(x[i : i + step], filters, biases), W).add_(bias).relu_()
        out[i : i + step] = z.mean((2, 3)) if pool == "mean" else z.amax((2, 3))
    return out


def ibci_init(widths: list[int], x: Tensor, y: Tensor, base: str, tie_weights: list[float],
              generator: torch.Generator, bias: float = 0.0, std: float | None = None, pool_factor: float = 5,
              max_pool: int = 1000, scope: str = "global", conv_pool: str = "mean",
              num_classes: int = N_CLASSES) -> tuple[list[Tensor], list[Tensor], dict]:
    """IBCI for one CNN: its layers elected in forward order on (x, y), each from its own base pool.

    Returns (weights, biases, info) as `campaign.ibci_init` does, a conv
    layer's weights as [in * 25, out] columns (one flattened filter each):
    info["layers"] holds the JSON-ready dicts, info["pools"][l] the pool tensors.
    """
    if x.dim() != 2 or x.shape[1] != SIDE * SIDE:
        raise UserError(f"x has shape {list(x.shape)} but net=cnn takes {SIDE}x{SIDE} images as [N, {SIDE * SIDE}]")
    y = y.long()
    fans = layer_fans(widths, num_classes)
    filters, conv_biases, weights, biases, layers, pools = [], [], [], [], [], {}
    for l, width in enumerate(widths[:2]):
        fan_in, fan_out = fans[l]
        K = pool_size(width, pool_factor, max_pool)
        candidates = sample_base(base, fan_in, fan_out, K, generator, std)
        R = conv_responses(x, filters, conv_biases, candidates, bias, conv_pool)
        scores = campaign.pool_scores(R, y, num_classes, tie_weights[l])
        del R
        W, info = campaign.elect_from_scores(scores, candidates, tie_weights[l], width, num_classes, scope)
        pools[l] = info.pop("pool")
        layers.append(info)
        weights.append(W)
        biases.append(torch.full((width,), float(bias)))
        filters.append(as_filters(W, fan_in // KERNEL**2))
        conv_biases.append(biases[-1])
    step = chunk(widths[0] * (SIDE - KERNEL + 1) ** 2)
    H = torch.cat([features(x[i : i + step], filters, conv_biases).flatten(1) for i in range(0, x.shape[0], step)])

    def elect_layer(l: int, H: Tensor, fan_in: int, fan_out: int, hidden: bool):
        K = pool_size(fan_out, pool_factor, max_pool)
        candidates = sample_base(base, fan_in, fan_out, K, generator, std)
        W, info = campaign.campaign_layer(H, y, candidates, bias, hidden, tie_weights[2 + l], fan_out, num_classes,
                                          scope)
        return W, info, info.pop("pool")

    w, b, linear = campaign.layer_by_layer([H.shape[1], widths[2], num_classes], H, bias, elect_layer)
    pools.update({2 + l: p for l, p in linear["pools"].items()})
    return [*weights, *w], [*biases, *b], dict(layers=[*layers, *linear["layers"]], pools=pools)


def initialize(cfg: dict, x: Tensor, y: Tensor, generators: list[torch.Generator]) -> tuple[StackedCNN, dict]:
    """`ibci.init.stack.initialize` for `net=cnn`: one CNN per generator, base draw then the wrapper."""
    widths = hidden_widths(cfg)
    base, init = cfg["base"], cfg["init"]
    start = time.perf_counter()
    if init["name"] in ("vanilla", "lsuv"):
        model, info = base_or_lsuv(init_base, lsuv, widths, base, init, x, y, generators)
    else:
        tie_weights = campaign.tie_weights(init["name"], len(widths) + 1, init["tie_weights"])
        pool = init.get("conv_pool", "mean")
        info = dict(tie_weights=tie_weights, conv_pool=pool)
        layers, biases, seeds = [[] for _ in range(4)], [[] for _ in range(4)], []
        for g in generators:
            xs, ys = subsample(x, y, init["num_samples"], g)
            w, b, seed_info = ibci_init(widths, xs, ys, base["name"], tie_weights, g, bias=base["bias"],
                                       std=base["std"], pool_factor=init["pool_factor"], max_pool=init["max_pool"],
                                       scope=init["orthogonal_scope"], conv_pool=pool)
            for l in range(4):
                layers[l].append(w[l])
                biases[l].append(b[l])
            seeds.append(dict(layers=seed_info["layers"]))
        model = from_columns([torch.stack(w) for w in layers], [torch.stack(b) for b in biases], widths)
        info["seeds"] = seeds
    info["time_s"] = time.perf_counter() - start
    return model, info


