"""Neuron Steadiness Regularization (Fu, Du, Mao et al., NeurIPS 2022) inside the MLP engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


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
        return Steadiness({num_layers - 1 - k: float(lam) for k, lam in enumerate(lams)}, int(queue))

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

    def advance(self) -> None:
        self.slot = (self.slot + 1) % self.queue

    def forget(self, models: Tensor) -> None:
        """Empty the queues of `models` (a bool mask in packed order): a diverged model's NaNs stay out."""
        for layer in self.sums:
            self.sums[layer][:, models] = 0.0
            self.counts[layer][:, models] = 0.0
