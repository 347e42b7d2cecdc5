"""IBCI, LSUV and the rest on your own network: `ibci.init_(model, data, method="ibci")`.

Any nn.Module whose output is logits: its Linear and conv layers are
initialized in forward order (`ibci.init.modules`), in place, in PyTorch's
own layouts; a plain Linear/ReLU nn.Sequential gets exactly the suite's
numbers.

    info = ibci.init_(model, (x_train, y_train), method="ibci", base="xavier")
    info = ibci.init_(model, train_loader, method="lsuv")
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
    "campaign": dict(reading="paper", authors_arithmetic="float32", tie_weights=None, pool_factor=5, max_pool=1000, num_samples=None,
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


def _as_tensors(data, y) -> tuple[Tensor, Tensor]:
    """(x, y) from `init_(model, x, y)`, `init_(model, (x, y))` or `init_(model, loader)` (batches of (x, y))."""
    if y is not None:
        x = data
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
    elif isinstance(data, Tensor):
        raise UserError("init_ needs the labels too: init_(model, x, y) or init_(model, (x, y))")
    else:
        try:
            batches = list(data)
        except TypeError:
            raise UserError(f"init_ takes (x, y) tensors or a DataLoader of (x, y) batches, not {type(data).__name__}") \
                from None
        for b in batches:
            if not (isinstance(b, (tuple, list)) and len(b) == 2 and all(isinstance(t, Tensor) for t in b)):
                raise UserError(f"the DataLoader yields {type(b).__name__}"
                                f"{'' if not isinstance(b, (tuple, list)) else f' of {len(b)}'}; init_ needs (x, y) batches")
        if not batches:
            raise UserError("the DataLoader yields no batch")
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise UserError("init_ takes x and y as tensors")
    x = x.detach().cpu()  # its dtype is the model's business: integer x can be token ids for an nn.Embedding
    if not torch.isfinite(x).all():
        raise UserError(f"x holds {int((~torch.isfinite(x)).sum())} NaN or infinite values; init_ takes finite inputs")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise UserError(f"y has shape {list(y.shape)} but x has {x.shape[0]} samples (need one class label each)")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise UserError(f"y must hold integer class labels, got dtype {y.dtype}")
    return x, y.detach().long().cpu()


def plain_mlp(model: nn.Module) -> bool:
    """Whether the model is Linear, ReLU, ..., Linear: the networks the suite's own stack code initializes."""
    try:
        linear_layers(model)
        return True
    except UserError:
        return False


@torch.no_grad()
def init_(
    model: nn.Module,
    data,
    y: Tensor | None = None,
    method: str = "ibci",
    base: str = "xavier",
    *,
    activation: str = "relu",
    conv_pool: str = "mean",
    generator: torch.Generator | None = None,
    seed: int = 0,
    **options,
) -> dict:
    """Initialize `model` in place by `method` over the base distribution `base`; returns what it did.

    `model` is any nn.Module whose output is logits [N, classes]; its
    nn.Linear and nn.Conv1d/2d/3d layers are initialized in the order its forward
    pass reaches them, each from the inputs it receives once the layers
    before it are initialized (`ibci.init.modules`); a plain Linear/ReLU
    nn.Sequential gets exactly the suite's numbers (`ibci.init.stack`).
    `data` is x (with `y`), an (x, y) pair, or a DataLoader of (x, y)
    batches: the training data the data-dependent methods look at (LSUV: a
    sample of `num_samples`; the campaign: all of it, or `num_samples`).
    `options` are the config keys of the base (`bias`, `std`) and of the
    method (LSUV: `num_samples`, `tol`, `max_iter`, `output_layer`,
    `orthonormal`; ibci/tie/iim: `reading`, `tie_weights`, `pool_factor`,
    `max_pool`, `num_samples`, `orthogonal_scope`). A candidate's response is
    its output through `activation` (relu, gelu, tanh or identity), a conv
    filter's pooled over positions by `conv_pool` (mean or max); what it
    returns lists, beside each layer it initialized, the modules with
    parameters it left as they were (`untouched`: Embedding, a layer
    the forward pass never reaches; normalization layers aside). Draws come
    from `generator`, or one seeded with `seed`. A refused call changes
    nothing in the model.
    """
    from . import modules

    x, y = _as_tensors(data, y)
    base_cfg, init_cfg = configs(method, base, **options)
    if activation not in modules.ACTIVATIONS:
        raise UserError(f"activation={activation!r} is not one of: {', '.join(modules.ACTIVATIONS)}")
    if conv_pool not in ("mean", "max"):
        raise UserError(f"conv_pool={conv_pool!r} is not one of: mean, max")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    if plain_mlp(model) and x.dim() == 2 and x.is_floating_point() and activation == "relu":
        linears = linear_layers(model)
        sizes = [linears[0].in_features, *(m.out_features for m in linears)]
        if x.shape[1] != sizes[0]:
            raise UserError(f"x has shape {list(x.shape)} but the model takes [N, {sizes[0]}] (flatten images first)")
        _check_labels(y, sizes[-1], init_cfg)
        stack, info = init_stack(sizes, base_cfg, init_cfg, x.float(), y, [g])
        for layer, W, b in zip(linears, stack.weights, stack.biases):
            layer.weight.copy_(W[0].T)
            layer.bias.copy_(b[0])
        return info
    if init_cfg.get("reading", "paper") != "paper":
        raise UserError("reading=authors is the authors' code, which has MLPs only: a Linear/ReLU nn.Sequential")
    if x.is_floating_point():  # in the model's own precision (the suite's path above computes in float32)
        x = x.to(next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32))
    was_training = model.training
    model.eval()  # Dropout off and BatchNorm on its running statistics, as at test time
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        num_classes = _num_classes(model, x)
        _check_labels(y, num_classes, init_cfg)
        layers = modules.init_module_(model, x, y, num_classes, base_cfg, init_cfg, g, activation, conv_pool)
    except BaseException:
        model.load_state_dict(saved)  # a refused or interrupted call leaves the model as it was
        raise
    finally:
        model.train(was_training)
    return {"method": method, "base": base, "layers": layers, "untouched": modules.untouched(model, layers)}


def _num_classes(model: nn.Module, x: Tensor) -> int:
    from .modules import find_layers

    find_layers(model, x[:2])  # the shape and layer checks, in one line each
    out = model(x[:2])
    return int(out.shape[1])


def _check_labels(y: Tensor, num_classes: int, init: dict) -> None:
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise UserError(f"y holds labels {int(y.min())}..{int(y.max())} but the model has {num_classes} outputs "
                        f"(labels 0..{num_classes - 1})")
    if init["name"] in ("ibci", "tie", "iim"):
        absent = sorted(set(range(num_classes)) - set(y.unique().tolist()))
        if absent:
            raise UserError(f"class(es) {', '.join(map(str, absent[:10]))} of the model's {num_classes} are absent from "
                            "the data; the campaign gives each class its share of neurons")
