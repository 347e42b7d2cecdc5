"""Neuron Steadiness Regularization (Fu, Du, Mao et al., NeurIPS 2022) inside the MLP engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import UserError
from ..nets.mlp import StackedMLP
from ..vocab import NSR_READINGS
from .history import intra_class_variance

# `largest` measures each layer's responses on this many of the first training images.
LARGEST_IMAGES = 10000


# A hidden response at or below this is "not firing": NSR's class means count only firing
# responses and its penalty skips the others (as the official code does).
NSR_FIRING = 1e-5


def queue_penalty(h: Tensor, onehot: Tensor, other_sums: Tensor, other_counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """NSR's penalty mean (h - m[y])^2 of responses h [..., B, units], labels one-hot [..., B, C], m[c] the class
    means over the queue's other batches (their class sums and counts, [..., C, units]) and this one, held fixed.
    Returns (penalty [...], this batch's sums, its counts): what the autograd engines (general, CNN) share;
    batched or under vmap alike (one_hot would check y.max(), so the caller builds `onehot`)."""
    sums = onehot.transpose(-1, -2) @ h.detach()
    counts = onehot.sum(-2).unsqueeze(-1).expand_as(sums)
    means = (other_sums + sums) / (other_counts + counts).clamp_min(1)
    return (h - onehot @ means).square().mean((-2, -1)), sums, counts


@dataclass
class Steadiness:
    """Neuron Steadiness Regularization (Fu, Du, Mao et al., NeurIPS 2022) for a packed stack.

    loss = cross-entropy + sum over the penalized layers of lam * mean (h - m[y])^2,
    h a layer's response (the output layer's logits; a hidden layer's ReLU
    output, its mean taken over firing responses only) and m[c] its class-c
    mean over a queue of the last `queue` batches, the current one included,
    held fixed (no gradient). Every model keeps its own queue: per layer, the
    class sums and counts of each batch in a ring of `queue` slots.
    """

    lams: dict[int, float]  # overall layer index (0 = first) -> lambda
    queue: int = 5
    sums: dict[int, Tensor] = field(default_factory=dict)  # layer -> [queue, models, classes, units]
    counts: dict[int, Tensor] = field(default_factory=dict)
    slot: int = 0

    @staticmethod
    def for_layers(lams: list[float], num_layers: int, queue: int = 5) -> "Steadiness":
        """lams[0] for the output layer, lams[1] for the one before it, and so on."""
        if not 1 <= len(lams) <= num_layers:
            raise ValueError(f"{len(lams)} NSR weights for a network of {num_layers} layers")
        # A layer of weight 0 has no penalty to compute: skipping it leaves every other number as it was.
        return Steadiness({num_layers - 1 - k: float(lam) for k, lam in enumerate(lams) if lam != 0}, int(queue))

    def penalty_grad(self, layer: int, h: Tensor, onehot: Tensor, output: bool) -> tuple[Tensor, Tensor]:
        """(the penalty's gradient w.r.t. h [models, B, units], the penalty [models]) for one step.

        Pushes this batch's class sums into the queue first: the means the
        penalty pulls towards include the current batch, as detached numbers.
        """
        n_models, B, units = h.shape
        C = onehot.shape[2]
        if layer not in self.sums:
            self.sums[layer] = h.new_zeros(self.queue, n_models, C, units)
            self.counts[layer] = h.new_zeros(self.queue, n_models, C, units)
        on_t = onehot.transpose(1, 2)
        firing = None if output else (h > NSR_FIRING).to(h.dtype)
        self.sums[layer][self.slot] = torch.bmm(on_t, h)
        self.counts[layer][self.slot] = onehot.sum(1).unsqueeze(-1) if output else torch.bmm(on_t, firing)
        means = self.sums[layer].sum(0) / self.counts[layer].sum(0).clamp_min(1)
        d = h - torch.bmm(onehot, means)  # [models, B, units]
        lam = self.lams[layer]
        if output:
            return d * (2 * lam / (B * units)), lam * d.square().mean((1, 2))
        d.mul_(firing)
        n_firing = firing.sum((1, 2)).clamp_min(1).view(-1, 1, 1)
        return d * (2 * lam) / n_firing, lam * (d.square().sum((1, 2), keepdim=True) / n_firing).view(-1)

    def state_dict(self) -> dict:
        """The queues and the ring's position: what a checkpoint needs to go on as if never stopped."""
        return {"lams": dict(self.lams), "queue": self.queue, "sums": dict(self.sums), "counts": dict(self.counts),
                "slot": self.slot}

    def load_state_dict(self, state: dict) -> None:
        if {int(k): float(v) for k, v in state["lams"].items()} != self.lams or int(state["queue"]) != self.queue:
            raise ValueError(f"the checkpoint's NSR weights {state['lams']} are not this run's {self.lams}")
        self.sums = {int(k): v for k, v in state["sums"].items()}
        self.counts = {int(k): v for k, v in state["counts"].items()}
        self.slot = int(state["slot"])

    def advance(self) -> None:
        self.slot = (self.slot + 1) % self.queue

    def forget(self, models: Tensor) -> None:
        """Empty the queues of `models` (a bool mask in packed order): a diverged model's NaNs stay out."""
        for layer in self.sums:
            self.sums[layer][:, models] = 0.0
            self.counts[layer][:, models] = 0.0


@torch.no_grad()
def layer_variances(model: StackedMLP, x: Tensor, y: Tensor) -> Tensor:
    """[S, layers]: each layer's aggregated intra-class response variance, per model, on (x, y).

    A hidden layer's response is its ReLU output, the output layer's its
    logits; the aggregate is `intra_class_variance` (each unit's within-class
    variance, ddof=0, averaged over units and classes), what NSR penalizes.
    """
    h = x.expand(model.num_models, *x.shape)
    num_classes = model.weights[-1].shape[2]
    out = []
    for l in range(model.num_layers):
        h = torch.baddbmm(model.biases[l].unsqueeze(1), h, model.weights[l])
        if l < model.num_layers - 1:
            h = h.relu()
        out.append(intra_class_variance(h.double(), y, num_classes).float())
    return torch.stack(out, dim=1)


def deviation_by_outcome(model: StackedMLP, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Observation 1 of the NSR slides, per model and class: how far the penultimate responses of correctly
    classified and of misclassified images lie from their class mean.

    A response is the last hidden layer's ReLU output; an image's deviation
    is its squared distance to the mean response of its class (over every
    image of that class in (x, y)), averaged over the layer's neurons; the
    group's value is the mean over its images (NaN for an empty group).
    Returns `correct`, `wrong` [S, C] and their image counts `n_correct`, `n_wrong` [S, C].
    """
    h = x.expand(model.num_models, *x.shape)
    for l in range(model.num_layers):
        z = torch.baddbmm(model.biases[l].unsqueeze(1), h, model.weights[l])
        if l < model.num_layers - 1:
            h = z.relu()
    hidden, right = h.double(), z.argmax(-1) == y  # [S, N, H], [S, N]
    num_classes = model.weights[-1].shape[2]
    onehot = torch.nn.functional.one_hot(y, num_classes).to(hidden.dtype)  # [N, C]
    means = torch.einsum("nc,snh->sch", onehot, hidden) / onehot.sum(0).clamp_min(1).view(1, -1, 1)
    dev = (hidden - means[:, y]).square().mean(-1)  # [S, N]
    out = {}
    for name, mask in (("correct", right), ("wrong", ~right)):
        m = mask.to(hidden.dtype)
        counts = torch.einsum("sn,nc->sc", m, onehot)
        out[name] = (torch.einsum("sn,nc->sc", m * dev, onehot) / counts).float()  # 0/0: NaN, an empty group
        out[f"n_{name}"] = counts.long()
    return out


def reading_lams(reading: str, lam: float, num_layers: int, variances: Tensor | None = None) -> list[float]:
    """The per-layer weights (the output layer first, as `Steadiness.for_layers` takes them) of a reading.

    `largest` penalizes the layer whose `layer_variances`, averaged over the
    cell's models, is largest (`variances` [S, layers] at initialization).
    """
    if reading not in NSR_READINGS:
        raise UserError(f"reg.reading={reading!r} is not one of: {', '.join(NSR_READINGS)}")
    lams = [0.0] * num_layers
    if reading == "logits":
        lams[0] = lam
    elif reading == "penultimate":
        lams[1] = lam
    elif reading == "every":
        lams = [lam] * num_layers
    else:
        if variances is None:
            raise ValueError("reading=largest needs the layers' variances")
        lams[num_layers - 1 - int(variances.mean(0).argmax())] = lam
    return lams


class NSR:
    """Neuron Steadiness Regularization for any autograd training loop, on the model one already has.

        nsr = ibci.NSR(model, layers=["fc3"], lam=0.4)     # the logits of a model whose last layer is fc3
        loss = F.cross_entropy(model(x), y) + nsr.penalty(y)

    Forward hooks keep each named module's output on every forward pass;
    `penalty(y)` then returns sum over the layers of lam * mean (h - m[y])^2,
    the official definition (Fu, Du, Mao et al., NeurIPS 2022): m[c] the
    class-c mean response over a queue of the last `queue` batches, the
    current one included, held fixed (no gradient). A layer with `firing`
    (by default every layer but the model's last nn.Linear or nn.Conv2d)
    counts only responses above NSR_FIRING in its means and its penalty, as
    the official code does for hidden ReLU layers; name the activation
    module (e.g. the nn.ReLU after a hidden Linear) to penalize what the
    official code penalizes. Call `penalty` once per step, after the
    forward pass; `state_dict()` / `load_state_dict()` checkpoint the queues.
    `layers=None` penalizes the model's last Linear or Conv2d: its logits.
    """

    def __init__(self, model: torch.nn.Module, layers: list[str] | None = None, lam: float | list[float] = 1.0,
                 queue: int = 5, num_classes: int | None = None, firing: list[bool] | None = None):
        modules = dict(model.named_modules())
        convs = [n for n, m in modules.items() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        if layers is None:
            if not convs:
                raise UserError("the model has no nn.Linear or nn.Conv2d whose logits NSR could penalize")
            layers = [convs[-1]]
        unknown = [n for n in layers if n not in modules]
        if unknown:
            raise UserError(f"layers={unknown} are not modules of the model; it has: {', '.join(n for n in modules if n)}")
        lams = [float(lam)] * len(layers) if not isinstance(lam, (list, tuple)) else [float(v) for v in lam]
        if len(lams) != len(layers) or any(not v >= 0 for v in lams):
            raise UserError(f"lam={lam!r} must be one non-negative number or one per layer ({len(layers)})")
        if queue < 1:
            raise UserError(f"queue={queue!r} must be a positive number of batches")
        self.layers, self.lams, self.queue, self.num_classes = list(layers), lams, int(queue), num_classes
        self.firing = list(firing) if firing is not None else [n != (convs[-1] if convs else None) for n in layers]
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, Tensor] = {}
        self.slot = 0
        self._out: dict[str, Tensor] = {}
        self._hooks = [modules[n].register_forward_hook(self._keeper(n)) for n in layers]

    def _keeper(self, name: str):
        def keep(_module, _inputs, output):
            self._out[name] = output
        return keep

    def penalty(self, y: Tensor) -> Tensor:
        """The penalty of the last forward pass's responses against the labels y [B] (a scalar with gradient)."""
        missing = [n for n in self.layers if n not in self._out]
        if missing:
            raise RuntimeError(f"no forward pass has reached {missing} since the last penalty")
        total = 0.0
        for name, lam, firing in zip(self.layers, self.lams, self.firing):
            h = self._out.pop(name).flatten(1)  # a conv layer's maps count as units, as every response does
            C = self.num_classes or int(y.max()) + 1
            onehot = torch.nn.functional.one_hot(y.long(), C).to(h.dtype)
            if name not in self.sums:
                self.sums[name] = h.new_zeros(self.queue, C, h.shape[1])
                self.counts[name] = h.new_zeros(self.queue, C, h.shape[1])
            hd = h.detach()
            mask = (hd > NSR_FIRING).to(h.dtype) if firing else None
            self.sums[name][self.slot] = onehot.T @ hd
            self.counts[name][self.slot] = onehot.T @ mask if firing else onehot.sum(0).unsqueeze(1)
            means = self.sums[name].sum(0) / self.counts[name].sum(0).clamp_min(1)
            d = h - onehot @ means
            if firing:
                d = d * mask
                total = total + lam * d.square().sum() / mask.sum().clamp_min(1)
            else:
                total = total + lam * d.square().mean()
        self.slot = (self.slot + 1) % self.queue
        return total if isinstance(total, Tensor) else torch.zeros(())

    def state_dict(self) -> dict:
        return {"layers": list(self.layers), "lams": list(self.lams), "queue": self.queue, "slot": self.slot,
                "sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        if list(state["layers"]) != self.layers or int(state["queue"]) != self.queue:
            raise ValueError(f"the state is of layers {state['layers']} with a queue of {state['queue']}, "
                             f"not {self.layers} with {self.queue}")
        self.lams, self.slot = [float(v) for v in state["lams"]], int(state["slot"])
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])

    def remove(self) -> None:
        """Take the hooks off the model."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
