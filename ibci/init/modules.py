"""IBCI, LSUV and the base draws on any `nn.Module`, found and fed through forward hooks.

The layers initialized are the model's `nn.Linear` and `nn.Conv2d` (and
`nn.Conv1d`, `nn.Conv3d`; grouped ones too, each group a campaign of its own),
in the order one forward pass reaches them. Each is initialized in turn from
the inputs it actually receives once the layers before it are initialized,
whatever lies between (activations, BatchNorm, pooling, Dropout in eval mode,
residual additions): a forward pre-hook on the layer takes its input, in one
pass for all layers where the data fit one chunk (`each_layer`). A candidate
neuron's response is its output through `activation` (ReLU by default, the
paper's), a conv filter's pooled over positions (`conv_pool`, as
`ibci.init.conv` does for the suite's CNN); the last layer's responses are its
logits. Scores, quotas and the campaign are `ibci.init.campaign`'s. Weights
keep PyTorch's layouts ([out, in] and [out, in, kh, kw]); a conv filter is a
candidate flattened to in * kh * kw numbers (in / groups, for a grouped conv),
with the fans PyTorch gives it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from . import campaign
from .bases import draw_biases, orthonormal, sample_base
from .settings import check_pool, pool_size
from .lsuv import unit_variance_
from .stack import subsample

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Their affine parameters stay the ones and zeros PyTorch starts them with, as with any initialization.
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
         nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm)
ACTIVATIONS = {"relu": torch.relu, "identity": lambda t: t, "gelu": F.gelu, "tanh": torch.tanh}
CHUNK = 1000  # images a pass holds at once: a conv layer's inputs for 60,000 images would not fit


class _Stop(Exception):
    """Raised by a pre-hook once it has the input it wanted: the rest of the forward pass is not needed."""


def find_layers(model: nn.Module, x: Tensor) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Linear and conv, in the order a forward pass on x reaches them (each once)."""
    names = {m: n for n, m in model.named_modules()}
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _: order.append(m) if m not in order else None)
             for m in model.modules() if isinstance(m, LAYERS)]
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        raise UserError(f"x of shape {list(x.shape)} does not fit the model: {str(e).splitlines()[0]}") from None
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise UserError(f"the model ({type(model).__name__}) has no nn.Linear or nn.Conv1d/2d/3d to initialize")
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise UserError(f"the model's output must be logits [N, classes]; it gives {_shape(out)}")
    return [(names[m], m) for m in order]


def untouched(model: nn.Module, layers: list[dict]) -> list[dict]:
    """Every module with parameters of its own that `init_module_` left as they were (normalization layers
    aside): a kind it does not initialize (ConvTranspose2d, Embedding, an LSTM, ...), or a Linear or conv that
    the forward pass never reached."""
    done = {e["layer"] for e in layers}
    return [{"layer": name or "(the model itself)", "kind": type(m).__name__} for name, m in model.named_modules()
            if name not in done and not isinstance(m, NORMS) and next(m.parameters(recurse=False), None) is not None]


def _shape(out) -> str:
    return f"shape {list(out.shape)}" if isinstance(out, Tensor) else type(out).__name__


def fans(layer: nn.Module) -> tuple[int, int, int]:
    """(fan_in, fan_out, neurons) as PyTorch computes the fans (a conv's count its kernel area)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features, layer.out_features
    area = math.prod(layer.kernel_size)
    return layer.in_channels // layer.groups * area, layer.out_channels * area, layer.out_channels


def groups_of(layer: nn.Module) -> tuple[int, int]:
    """(groups, neurons per group): a grouped conv is `groups` layers side by side, a Linear one group."""
    groups = getattr(layer, "groups", 1)
    return groups, fans(layer)[2] // groups


def inputs_of(model: nn.Module, layer: nn.Module, x: Tensor):
    """The inputs `layer` receives on x, chunk by chunk (each pass stops at the layer)."""
    got = []

    def take(_, args):
        got.append(args[0].detach())
        raise _Stop

    hook = layer.register_forward_pre_hook(take)
    try:
        for start in range(0, x.shape[0], CHUNK):
            try:
                model(x[start : start + CHUNK])
            except _Stop:
                pass
            yield got.pop()
    finally:
        hook.remove()


def each_layer(model: nn.Module, layers: list[tuple[str, nn.Module]], x: Tensor, initialize) -> None:
    """Call initialize(l, layer, inputs) for each layer in forward order, `inputs` being the chunks of its
    inputs on x once the layers before it are initialized.

    Where x is one chunk, one forward pass serves every layer: a pre-hook hands each layer the input the
    pass brings it, initializes it, and the layer runs on with its new weights, so layer l sees what a pass
    stopped at it would. Otherwise each layer gets passes of its own, chunk by chunk, stopped at it: the
    passes then cost the square of the depth, but none holds more than CHUNK images."""
    if x.shape[0] > CHUNK:
        for l, (_, layer) in enumerate(layers):
            initialize(l, layer, inputs_of(model, layer, x))
        return
    pending = {m: l for l, (_, m) in enumerate(layers)}

    def take(layer, args):
        if pending.get(layer) == len(layers) - len(pending):  # reached first, and in find_layers' order
            initialize(pending.pop(layer), layer, [args[0].detach()])

    hooks = [m.register_forward_pre_hook(take) for _, m in layers]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    if pending:
        name = layers[len(layers) - len(pending)][0]
        raise UserError(f"the model's forward pass did not reach {name} after the layers before it were initialized "
                        "(does its path depend on the weights?)")


def responses(layer: nn.Module, inp: Tensor, candidates: Tensor, bias: float, act, conv_pool: str) -> Tensor:
    """[n, K] responses of K candidate neurons (columns of `candidates` [fan_in, K]) on the layer's inputs.

    For a grouped conv the columns are the groups' pools one after the other, group g's filters reading
    group g's input channels, as the layer's own filters do. A Linear on [n, ..., in] (tokens, positions)
    is a 1x1 conv over the middle dimensions, pooled over them as a conv's are."""
    candidates = candidates.to(inp.dtype)
    if isinstance(layer, nn.Linear):
        z = act(inp @ candidates + bias)
        positions = tuple(range(1, z.dim() - 1))
    else:
        filters = candidates.T.reshape(-1, layer.in_channels // layer.groups, *layer.kernel_size)
        # The layer's own convolution (its stride, padding and padding_mode, dilation, groups) with these filters.
        z = act(layer._conv_forward(inp, filters, None) + bias)
        positions = tuple(range(2, z.dim()))
    if not positions:
        return z
    return z.mean(positions) if conv_pool == "mean" else z.amax(positions)


def _write(layer: nn.Module, W: Tensor, b: Tensor | None) -> None:
    """Columns W [fan_in, neurons] (and biases [neurons]) into the layer, in PyTorch's layout."""
    layer.weight.copy_(W.T.reshape(layer.weight.shape))
    if layer.bias is not None and b is not None:
        layer.bias.copy_(b)


@torch.no_grad()
def init_module_(model: nn.Module, x: Tensor, y: Tensor, num_classes: int, base: dict, init: dict,
                 generator: torch.Generator, activation: str = "relu", conv_pool: str = "mean") -> list[dict]:
    """Initialize every Linear and conv of `model` in forward order, in place; returns one dict per layer.

    `base` and `init` are the config groups' dicts (`ibci.init.api.configs`):
    vanilla draws each layer from the base; lsuv draws, then rescales each
    layer in turn to unit output variance on a batch; ibci/tie/iim elect each
    layer's neurons from a pool drawn from the base, scored on (x, y).
    """
    layers = find_layers(model, x[:2])
    act = ACTIVATIONS[activation]
    if init["name"] in ("ibci", "tie", "iim"):
        x, y = subsample(x, y, init.get("num_samples"), generator)
    method, n_layers = init["name"], len(layers)
    tie_weights = campaign.tie_weights(method, n_layers, init.get("tie_weights")) if method in ("ibci", "tie", "iim") \
        else None
    out = [dict(layer=name, kind=type(layer).__name__, fan_in=fans(layer)[0], neurons=fans(layer)[2])
           for name, layer in layers]
    if tie_weights is None:
        # All weights first, then the biases, as the suite draws a stack: a model's weights do not depend on its bias.
        draws = []
        for _, layer in layers:
            fan_in, fan_out, n_out = fans(layer)
            draws.append(orthonormal(fan_in, n_out, generator) if init.get("orthonormal") else
                         sample_base(base["name"], fan_in, fan_out, n_out, generator, base["std"]))
        biases = draw_biases([(fans(m)[0], fans(m)[2]) for _, m in layers], [generator], base["bias"])
        for (_, layer), W, b in zip(layers, draws, biases):
            _write(layer, W, b[0])
        if method == "lsuv":
            x = subsample(x, y, init["num_samples"], generator)[0]  # after the draws, as the suite's LSUV takes it

            def rescale(l: int, layer: nn.Module, inputs) -> None:
                if l < n_layers - 1 or init["output_layer"]:
                    out[l]["rescalings"] = _lsuv_layer(layer, torch.cat(list(inputs)), init["tol"], init["max_iter"])

            each_layer(model, layers, x, rescale)
        return out
    bias = float(base["bias"])
    for _, layer in layers:  # every layer's pool is checked before the first is drawn: a wide layer fails at once
        check_pool(groups_of(layer)[1], init["pool_factor"], init["max_pool"])

    def elect(l: int, layer: nn.Module, inputs) -> None:
        fan_in, fan_out, n_out = fans(layer)
        # Each group elects its share of neurons from a pool of its own, drawn in group order, on the
        # responses to its own input channels.
        groups, per_group = groups_of(layer)
        K = pool_size(per_group, init["pool_factor"], init["max_pool"])
        candidates = torch.cat([sample_base(base["name"], fan_in, fan_out, K, generator, base["std"])
                                for _ in range(groups)], 1)
        last = l == n_layers - 1
        R = torch.cat([responses(layer, inp, candidates, bias, (lambda t: t) if last else act, conv_pool)
                       for inp in inputs])
        elected, infos = [], []
        for g in range(groups):
            scores = campaign.pool_scores(R[:, g * K : (g + 1) * K], y, num_classes, tie_weights[l])
            W, info = campaign.elect_from_scores(scores, candidates[:, g * K : (g + 1) * K], tie_weights[l],
                                                 per_group, num_classes, init["orthogonal_scope"])
            info.pop("pool")
            elected.append(W)
            infos.append(info)
        del R
        _write(layer, torch.cat(elected, 1), torch.full((n_out,), bias))
        out[l].update(infos[0] if groups == 1 else _merged(infos))

    each_layer(model, layers, x, elect)
    return out


def _merged(infos: list[dict]) -> dict:
    """One layer's campaign info from its groups' (pools, counts and quotas summed; the groups' own kept)."""
    summed = {key: [sum(v) for v in zip(*(i[key] for i in infos))] for key in ("class_counts", "quotas")}
    return dict(pool_size=sum(i["pool_size"] for i in infos), **summed,
                mean_chosen_score=sum(i["mean_chosen_score"] for i in infos) / len(infos),
                tie_weight=infos[0]["tie_weight"], per_group=infos)


def _lsuv_layer(layer: nn.Module, inp: Tensor, tol: float, max_iter: int) -> int:
    """LSUV's step for one layer of any model: rescale its weight until its output variance on its inputs is 1."""
    W = layer.weight.unsqueeze(0)  # a stack of one model: unit_variance_ rescales it in place

    def output() -> Tensor:
        return layer(inp).unsqueeze(0)

    _, counts = unit_variance_(W, output, tol, max_iter)
    return int(counts[0])
