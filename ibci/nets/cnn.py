"""A LeNet-style CNN held as a stack of S independent models (`net=cnn`).

The network, on 28x28x1 images (MNIST, Fashion-MNIST), widths [c1, c2, h]
(`hidden`, default [20, 50, 500], configs/net/cnn.yaml):

    conv 5x5, c1 filters -> ReLU -> max-pool 2x2      28 -> 24 -> 12
    conv 5x5, c2 filters -> ReLU -> max-pool 2x2      12 ->  8 ->  4
    linear c2*4*4 -> h -> ReLU -> linear h -> 10

These are the widths of Caffe's LeNet (20, 50, 500), with a ReLU after each
conv as well. The S models of a stack run as grouped convolutions: model s's
batch is input channel s, its filters are output group s (groups=S), and the
linear layers are batched matmuls, so one forward pass is a few large calls
whatever S is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .spec import N_CLASSES

KERNEL = 5
POOL = 2
SIDE = 28  # input images are SIDE x SIDE, one channel
# Floats a chunk of convolution outputs may hold (64 MB): bounds memory whatever the sample or stack size.
CHUNK_FLOATS = 1 << 24

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
        return forward_layout(self, layout(x, self.num_models))


def layout(x: Tensor, S: int) -> Tensor:
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


def stage(h: Tensor, W: Tensor, b: Tensor, groups: int) -> Tensor:
    """conv -> ReLU -> 2x2 max-pool of a stack: W [S, out, in, k, k] as `groups` groups of h's channels."""
    z = F.conv2d(h, W.flatten(0, 1), b.flatten(), groups=groups)
    # Pooling first is the same function as ReLU first (max commutes with a monotone map) on 4x fewer values.
    return F.max_pool2d(z, POOL).relu_()


def forward_layout(model: StackedCNN, x: Tensor) -> Tensor:
    """Logits [S, B, classes] on x [B, S, 28, 28] whose channel s is model s's batch (`_layout`)."""
    S = model.num_models
    for W, b in zip(model.conv_weights, model.conv_biases):
        x = stage(x, W, b, groups=S)  # group s: model s's filters on its own channels
    h = x.reshape(x.shape[0], S, -1).transpose(0, 1)  # [S, B, c2*16], nn.Flatten's order per model
    for l, (W, b) in enumerate(zip(model.weights, model.biases)):
        h = torch.baddbmm(b.unsqueeze(1), h, W)
        if l < len(model.weights) - 1:
            h = h.relu()
    return h


def chunk(per_image_floats: int, cap: int | None = None, budget: int = CHUNK_FLOATS) -> int:
    """Images per chunk: as many as `budget` floats of outputs allow, at most `cap`."""
    step = max(1, budget // max(1, per_image_floats))
    return step if cap is None else min(step, cap)


def as_filters(columns: Tensor, in_channels: int) -> Tensor:
    """Neurons [in * k * k, out] (one flattened filter per column) as nn.Conv2d's weight [out, in, k, k]."""
    return columns.T.reshape(-1, in_channels, KERNEL, KERNEL)


def from_columns(layers: list[Tensor], biases: list[Tensor], widths: list[int]) -> StackedCNN:
    """A stack from per-layer [S, fan_in, width] weights and [S, width] biases (convs flattened as columns)."""
    in_channels = [1, widths[0]]
    convs = [torch.stack([as_filters(w, c) for w in layers[l]]) for l, c in enumerate(in_channels)]
    return StackedCNN(convs, biases[:2], layers[2:], biases[2:])


