"""IBCI beyond the paper: a LeNet-style CNN, its initializations and its stacked training (`net=cnn`).

The network, on 28x28x1 images (MNIST, Fashion-MNIST), widths [c1, c2, h]
(`hidden`, default [20, 50, 500]):

    conv 5x5, c1 filters -> ReLU -> max-pool 2x2      28 -> 24 -> 12
    conv 5x5, c2 filters -> ReLU -> max-pool 2x2      12 ->  8 ->  4
    linear c2*4*4 -> h -> ReLU -> linear h -> 10

These are the widths of Caffe's LeNet (20, 50, 500), with a ReLU after each
conv as well. 20 first-layer filters of 25 weights keep the campaign's
orthogonal residual meaningful: of 32 filters, the first 25 winners would span
R^25 and the last 7 would be elected on score alone.

IBCI for a convolution (`init=ibci`, `tie`, `iim`). A candidate is a filter,
flattened into a vector of in_channels * 5 * 5 weights and drawn from the
base with the fans PyTorch gives a Conv2d (fan_in = in_channels * 25,
fan_out = out_channels * 25). Its response to an image is its ReLU feature
map (with the constant bias, before the 2x2 pool) reduced over positions to
one number, by default the mean (`init.conv_pool`). From there on it is the
MLP's campaign (`ibci.campaign`) over the [images, candidates] response
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

Training (`train`) keeps the S models of a stack as grouped convolutions:
model s's batch is input channel s, its filters are output group s
(groups=S), and the linear layers are batched matmuls, so one step is a few
large calls whatever S is. Autograd does the backward pass; the SGD recipe,
the per-epoch evaluation and the divergence handling are the MLP engine's
(`ibci.engine`), so records look the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import campaign
from .engine import History, freeze_diverged, intra_class_variance, new_history, record_epoch
from .errors import UserError
from .initialize import _subsample, base_or_lsuv
from .inits import draw_biases, orthonormal, sample_base, unit_variance_
from .models import N_CLASSES, hidden_widths, is_cnn
from .seeding import generator

KERNEL = 5
POOL = 2
SIDE = 28  # input images are SIDE x SIDE, one channel
CONV_POOLS = ("mean", "max")
# Floats a chunk of convolution outputs may hold (64 MB): bounds memory whatever the sample or stack size.
_CHUNK_FLOATS = 1 << 24
# The campaign's chunks are smaller (8 MB): the candidates' maps then stay in cache between the convolution,
# the ReLU and the pooling, which made the first layer's responses 2x faster here than 64 MB chunks.
_RESPONSE_FLOATS = 1 << 21


def conv_sides() -> list[int]:
    """Side of each conv layer's input: 28, then 12 (after conv 5x5 and pool 2x2); the linear part gets 4."""
    sides = [SIDE]
    for _ in range(2):
        sides.append((sides[-1] - KERNEL + 1) // POOL)
    return sides


def layer_fans(widths: list[int], num_classes: int = N_CLASSES) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every layer as PyTorch computes them (a conv's fans count its kernel area)."""
    c1, c2, h = widths
    area = KERNEL * KERNEL
    flat = c2 * conv_sides()[2] ** 2
    return [(area, c1 * area), (c1 * area, c2 * area), (flat, h), (h, num_classes)]


@dataclass
class StackedCNN:
    """S CNNs of the same widths; model s is index s of every tensor."""

    conv_weights: list[Tensor]  # conv layer l: [S, out, in, KERNEL, KERNEL] (nn.Conv2d's layout)
    conv_biases: list[Tensor]  # [S, out]
    weights: list[Tensor]  # linear layer l: [S, fan_in, fan_out] (one column per neuron, as StackedMLP)
    biases: list[Tensor]  # [S, fan_out]

    @property
    def num_models(self) -> int:
        return self.conv_weights[0].shape[0]

    @property
    def num_layers(self) -> int:
        return len(self.conv_weights) + len(self.weights)

    def parameters(self) -> list[Tensor]:
        return [*self.conv_weights, *self.conv_biases, *self.weights, *self.biases]

    def _map(self, fn) -> StackedCNN:
        return StackedCNN(*([fn(t) for t in ts] for ts in (self.conv_weights, self.conv_biases, self.weights,
                                                           self.biases)))

    def to(self, device) -> StackedCNN:
        return self._map(lambda t: t.to(device))

    def clone(self) -> StackedCNN:
        return self._map(lambda t: t.detach().clone())

    def select(self, index) -> StackedCNN:
        """The sub-stack of models `index` (a list, slice or tensor of model indices)."""
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(stacks: list[StackedCNN]) -> StackedCNN:
        """One stack holding the models of several stacks, in order."""
        parts = zip(*((s.conv_weights, s.conv_biases, s.weights, s.biases) for s in stacks))
        return StackedCNN(*([torch.cat(ts) for ts in zip(*group)] for group in parts))

    def forward(self, x: Tensor) -> Tensor:
        """Logits [S, N, classes] of every model; x [N, 784] is every model's, or [S, N, 784] one batch per model."""
        return _forward(self, _layout(x, self.num_models))


def _layout(x: Tensor, S: int) -> Tensor:
    """Images as a stack's input [n, S, 28, 28] whose channel s is model s's, channels-last in memory.

    x [n, 784] is every model's (it is replicated), x [S, n, 784] one batch
    per model. oneDNN runs the grouped convolutions and the pooling about 1.3x
    faster on channels-last than on NCHW here; replicating a shared batch costs
    little next to the convolutions and was 2-3x faster than one ungrouped
    first convolution of all S * c1 filters (measured on this project's CPU,
    5 seeds, one thread).
    """
    flat = x.unsqueeze(2).expand(-1, -1, S) if x.dim() == 2 else x.permute(1, 2, 0)  # [n, 784, S]
    return flat.contiguous().view(-1, SIDE, SIDE, S).permute(0, 3, 1, 2)


def _stage(h: Tensor, W: Tensor, b: Tensor, groups: int) -> Tensor:
    """conv -> ReLU -> 2x2 max-pool of a stack: W [S, out, in, k, k] as `groups` groups of h's channels."""
    z = F.conv2d(h, W.flatten(0, 1), b.flatten(), groups=groups)
    # Pooling first is the same function as ReLU first (max commutes with a monotone map) on 4x fewer values.
    return F.max_pool2d(z, POOL).relu_()


def _forward(model: StackedCNN, x: Tensor) -> Tensor:
    """Logits [S, B, classes] on x [B, S, 28, 28] whose channel s is model s's batch (`_layout`)."""
    S = model.num_models
    for W, b in zip(model.conv_weights, model.conv_biases):
        x = _stage(x, W, b, groups=S)  # group s: model s's filters on its own channels
    h = x.reshape(x.shape[0], S, -1).transpose(0, 1)  # [S, B, c2*16], nn.Flatten's order per model
    for l, (W, b) in enumerate(zip(model.weights, model.biases)):
        h = torch.baddbmm(b.unsqueeze(1), h, W)
        if l < len(model.weights) - 1:
            h = h.relu()
    return h


# Images a chunk of evaluation holds at most: the training batch's size, where the layers ran fastest.
_EVAL_IMAGES = 100


def _chunk(per_image_floats: int, cap: int | None = None, budget: int = _CHUNK_FLOATS) -> int:
    """Images per chunk: as many as `budget` floats of outputs allow, at most `cap`."""
    step = max(1, budget // max(1, per_image_floats))
    return step if cap is None else min(step, cap)


@torch.no_grad()
def logits_shared(model: StackedCNN, x: Tensor) -> Tensor:
    """Logits [S, N, C] of every model on the same images x [N, 784], in chunks of bounded memory."""
    S, c1 = model.conv_weights[0].shape[:2]
    step = _chunk(S * c1 * (SIDE - KERNEL + 1) ** 2, _EVAL_IMAGES)
    return torch.cat([_forward(model, _layout(x[i : i + step], S)) for i in range(0, x.shape[0], step)], dim=1)


def output_stats(model: StackedCNN, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(error in percent [S], output intra-class variance [S]), as `engine.output_stats` gives them for an MLP."""
    logits = logits_shared(model, x)
    wrong = logits.argmax(-1) != y
    return wrong.float().mean(1) * 100, intra_class_variance(logits.double(), y).float()


def error_rate(model: StackedCNN, x: Tensor, y: Tensor) -> Tensor:
    """Classification error in percent of each model, [S]."""
    return output_stats(model, x, y)[0]


# ---- initialization -----------------------------------------------------------------


def check(cfg: dict) -> None:
    """Raise UserError for a setting `net=cnn` cannot honour (nothing to check for an MLP)."""
    if not is_cnn(cfg):
        return
    widths = hidden_widths(cfg)
    if len(widths) != 3:
        raise UserError(f"hidden={widths!r} must hold 3 widths for net=cnn: conv1 filters, conv2 filters, "
                        "hidden units")
    reg = cfg.get("reg", {}).get("name", "none")
    if reg != "none":
        raise UserError(f"reg={reg} is implemented for MLPs only; net=cnn trains with reg=none")
    if cfg["base"]["name"] == "authors":
        raise UserError("base=authors is the std of the authors' MLP campaign; net=cnn takes xavier, he or normal")
    init = cfg["init"]
    if init["name"] in campaign.VARIANTS:
        if init.get("reading", "paper") != "paper":
            raise UserError(f"init.reading={init['reading']} is for MLPs (the authors' code has no conv layers); "
                            "net=cnn takes init.reading=paper")
        pool = init.get("conv_pool", "mean")
        if pool not in CONV_POOLS:
            raise UserError(f"init.conv_pool={pool!r} is not one of: {', '.join(CONV_POOLS)}")


def _as_filters(columns: Tensor, in_channels: int) -> Tensor:
    """Neurons [in * k * k, out] (one flattened filter per column) as nn.Conv2d's weight [out, in, k, k]."""
    return columns.T.reshape(-1, in_channels, KERNEL, KERNEL)


def _model(layers: list[Tensor], biases: list[Tensor], widths: list[int]) -> StackedCNN:
    """A stack from per-layer [S, fan_in, width] weights and [S, width] biases (convs flattened as columns)."""
    in_channels = [1, widths[0]]
    convs = [torch.stack([_as_filters(w, c) for w in layers[l]]) for l, c in enumerate(in_channels)]
    return StackedCNN(convs, biases[:2], layers[2:], biases[2:])


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
    return _model(layers, biases, widths)


def lsuv(model: StackedCNN, x: Tensor, tol: float = 0.02, max_iter: int = 10, output_layer: bool = True) -> list:
    """LSUV for a stack of CNNs, in place: every layer's pre-activation output to unit variance.

    x [S, n, 784]: each model's own batch. A conv layer's variance is over
    images, channels and positions of its feature maps (before ReLU and pool).
    Returns the rescalings per layer per model, as `inits.lsuv`.
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


def _features(x: Tensor, filters: list[Tensor], biases: list[Tensor]) -> Tensor:
    """One model's conv stages (conv -> ReLU -> pool) elected so far, on images x [n, 784]."""
    h = x.reshape(-1, SIDE, SIDE, 1).permute(0, 3, 1, 2)  # channels-last, as `_layout`, for the same speed-up
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
    W = _as_filters(candidates, in_channels)
    K = W.shape[0]
    side = conv_sides()[len(filters)] - KERNEL + 1
    step = _chunk(K * side * side, budget=_RESPONSE_FLOATS)
    out = torch.empty(x.shape[0], K)
    for i in range(0, x.shape[0], step):
        z = F.conv2d(_features(x[i : i + step], filters, biases), W).add_(bias).relu_()
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
        K = campaign.pool_size(width, pool_factor, max_pool)
        candidates = sample_base(base, fan_in, fan_out, K, generator, std)
        R = conv_responses(x, filters, conv_biases, candidates, bias, conv_pool)
        scores = campaign.pool_scores(R, y, num_classes, tie_weights[l])
        del R
        W, info = campaign.elect_from_scores(scores, candidates, tie_weights[l], width, num_classes, scope)
        pools[l] = info.pop("pool")
        layers.append(info)
        weights.append(W)
        biases.append(torch.full((width,), float(bias)))
        filters.append(_as_filters(W, fan_in // KERNEL**2))
        conv_biases.append(biases[-1])
    step = _chunk(widths[0] * (SIDE - KERNEL + 1) ** 2)
    H = torch.cat([_features(x[i : i + step], filters, conv_biases).flatten(1) for i in range(0, x.shape[0], step)])

    def elect_layer(l: int, H: Tensor, fan_in: int, fan_out: int, hidden: bool):
        K = campaign.pool_size(fan_out, pool_factor, max_pool)
        candidates = sample_base(base, fan_in, fan_out, K, generator, std)
        W, info = campaign.campaign_layer(H, y, candidates, bias, hidden, tie_weights[2 + l], fan_out, num_classes,
                                          scope)
        return W, info, info.pop("pool")

    w, b, linear = campaign.layer_by_layer([H.shape[1], widths[2], num_classes], H, bias, elect_layer)
    pools.update({2 + l: p for l, p in linear["pools"].items()})
    return [*weights, *w], [*biases, *b], dict(layers=[*layers, *linear["layers"]], pools=pools)


def initialize(cfg: dict, x: Tensor, y: Tensor, generators: list[torch.Generator]) -> tuple[StackedCNN, dict]:
    """`ibci.initialize.initialize` for `net=cnn`: one CNN per generator, base draw then the wrapper."""
    check(cfg)
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
            xs, ys = _subsample(x, y, init["num_samples"], g)
            w, b, seed_info = ibci_init(widths, xs, ys, base["name"], tie_weights, g, bias=base["bias"],
                                       std=base["std"], pool_factor=init["pool_factor"], max_pool=init["max_pool"],
                                       scope=init["orthogonal_scope"], conv_pool=pool)
            for l in range(4):
                layers[l].append(w[l])
                biases[l].append(b[l])
            seeds.append(dict(layers=seed_info["layers"]))
        model = _model([torch.stack(w) for w in layers], [torch.stack(b) for b in biases], widths)
        info["seeds"] = seeds
    info["time_s"] = time.perf_counter() - start
    return model, info


# ---- training -------------------------------------------------------------------------


def train(model: StackedCNN, x_train: Tensor, y_train: Tensor, data_seeds: list[int], epochs: int,
          batch_size: int, lr: float, eval_sets: dict[str, tuple[Tensor, Tensor]], on_epoch=None,
          nsr_lams: list[float] | None = None, nsr_queue: int = 5) -> tuple[StackedCNN, History]:
    """`engine.train` for a stack of CNNs: plain SGD, each model on its own data order, the same History.

    Model i shuffles with the generator of `data_seeds[i]` each epoch (equal
    seeds, equal batches; the MLP engine's orders), the last batch of an
    epoch is smaller when batch_size does not divide the training set, and a
    model whose loss or parameters become NaN/inf is recorded as diverged at
    that epoch, zeroed and frozen while the others train on.
    """
    if nsr_lams:
        raise ValueError("NSR is implemented for MLPs only (ibci.engine)")
    S, n, device = model.num_models, x_train.shape[0], x_train.device
    model = model.clone()
    params = model.parameters()
    for p in params:
        p.requires_grad_(True)
    seeds = sorted(set(data_seeds))
    gens = {s: generator(s, "data") for s in seeds}
    row = torch.tensor([seeds.index(s) for s in data_seeds], device=device)
    active = torch.ones(S, device=device)
    hist = new_history(S, epochs, eval_sets)

    def stats(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return output_stats(model, x, y)

    record_epoch(hist, 0, stats, eval_sets, active)
    if on_epoch:
        on_epoch(0, hist)
    for epoch in range(1, epochs + 1):
        orders = torch.stack([torch.randperm(n, generator=gens[s]) for s in seeds]).to(device)[row]
        loss_sum = torch.zeros(S, device=device)
        steps = 0
        for start in range(0, n, batch_size):
            idx = orders[:, start : start + batch_size]  # [S, B]
            B = idx.shape[1]
            logits = _forward(model, _layout(x_train[idx], S))
            loss = F.cross_entropy(logits.flatten(0, 1), y_train[idx].flatten(), reduction="none").view(S, B).mean(1)
            # Each model's gradient is that of its own mean loss; a frozen model's is zero.
            (loss * active).sum().backward()
            with torch.no_grad():
                for p in params:
                    p.add_(p.grad, alpha=-lr)  # torch.optim.SGD's update, without momentum or decay
                    p.grad = None
            loss_sum += loss.detach()
            steps += 1
        losses = loss_sum / steps
        with torch.no_grad():
            finite = torch.isfinite(losses)
            for p in params:
                finite &= p.flatten(1).isfinite().all(1)
            freeze_diverged(hist, epoch, finite, active, params)
        record_epoch(hist, epoch, stats, eval_sets, active, losses)
        if on_epoch:
            on_epoch(epoch, hist)
    for p in params:
        p.requires_grad_(False)
    return model, hist
