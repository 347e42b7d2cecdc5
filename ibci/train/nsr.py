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
