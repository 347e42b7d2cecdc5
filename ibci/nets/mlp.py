"""Multilayer perceptrons held as a stack of S independent models.

A `StackedMLP` keeps the weights of S models of the same architecture in
tensors shaped [S, fan_in, fan_out] (one column per neuron, so `h @ W` is the
layer) and biases shaped [S, fan_out]. Training S seeds of a cell together then
costs a handful of batched matmuls per step instead of S small ones, and each
model still has its own parameters, data order and SGD state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

@dataclass
class StackedMLP:
    """S MLPs with ReLU between layers and none after the last."""

    weights: list[Tensor]  # layer l: [S, sizes[l], sizes[l+1]]
    biases: list[Tensor]  # layer l: [S, sizes[l+1]]

    @property
    def num_models(self) -> int:
        return self.weights[0].shape[0]

    @property
    def sizes(self) -> list[int]:
        return [self.weights[0].shape[1], *(w.shape[2] for w in self.weights)]

    @property
    def num_layers(self) -> int:
        return len(self.weights)

    def to(self, device) -> StackedMLP:
        return StackedMLP([w.to(device) for w in self.weights], [b.to(device) for b in self.biases])

    def clone(self) -> StackedMLP:
        return StackedMLP([w.clone() for w in self.weights], [b.clone() for b in self.biases])

    def select(self, index) -> StackedMLP:
        """The sub-stack of models `index` (a list, slice or tensor of model indices)."""
        return StackedMLP([w[index] for w in self.weights], [b[index] for b in self.biases])

    @staticmethod
    def cat(stacks: list[StackedMLP]) -> StackedMLP:
        """One stack holding the models of several stacks, in order."""
        n = len(stacks[0].weights)
        return StackedMLP(
            [torch.cat([s.weights[l] for s in stacks]) for l in range(n)],
            [torch.cat([s.biases[l] for s in stacks]) for l in range(n)],
        )

    def forward(self, x: Tensor, upto: int | None = None) -> Tensor:
        """Logits [S, B, classes] for inputs x of shape [B, in] (shared) or [S, B, in].

        With `upto=l` it returns the post-activation output of the first l layers
        instead (the representation the (l+1)-th layer sees).
        """
        h = x.expand(self.num_models, *x.shape) if x.dim() == 2 else x
        last = self.num_layers if upto is None else upto
        for l in range(last):
            h = torch.baddbmm(self.biases[l].unsqueeze(1), h, self.weights[l])
            if l < self.num_layers - 1:
                h = h.relu_()
        return h
