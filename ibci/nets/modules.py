"""The suite's stacked networks as ordinary nn.Modules, one per model, for the general engine (ibci.train.general).

Weights move into PyTorch's layouts ([out, in] for a Linear, nn.Conv2d's own
for a conv), so a module computes exactly what its slice of the stack does.
"""

from __future__ import annotations

import torch
from torch import nn

from .cnn import POOL, StackedCNN
from .mlp import StackedMLP


def mlp_modules(stack: StackedMLP, batchnorm: bool = False, dropout: float = 0.0) -> list[nn.Sequential]:
    """Each model of the stack as Linear, ReLU, ..., Linear; with `batchnorm` a BatchNorm1d (weight 1, bias 0)
    between each hidden Linear and its ReLU, with `dropout` a Dropout of that rate after each hidden ReLU."""
    out = []
    for s in range(stack.num_models):
        layers: list[nn.Module] = []
        for l, (W, b) in enumerate(zip(stack.weights, stack.biases)):
            lin = nn.Linear(W.shape[1], W.shape[2])
            with torch.no_grad():
                lin.weight.copy_(W[s].T)
                lin.bias.copy_(b[s])
            layers.append(lin)
            if l < stack.num_layers - 1:
                layers += [*([nn.BatchNorm1d(W.shape[2])] if batchnorm else []), nn.ReLU(),
                           *([nn.Dropout(dropout)] if dropout else [])]
        out.append(nn.Sequential(*layers))
    return out


def cnn_modules(stack: StackedCNN) -> list[nn.Sequential]:
    """Each model of the stack as conv, ReLU, max-pool (twice), then Flatten, Linear, ReLU, Linear."""
    out = []
    for s in range(stack.num_models):
        layers: list[nn.Module] = []
        for W, b in zip(stack.conv_weights, stack.conv_biases):
            conv = nn.Conv2d(W.shape[2], W.shape[1], W.shape[3])
            with torch.no_grad():
                conv.weight.copy_(W[s])
                conv.bias.copy_(b[s])
            layers += [conv, nn.ReLU(), nn.MaxPool2d(POOL)]
        layers.append(nn.Flatten())
        for l, (W, b) in enumerate(zip(stack.weights, stack.biases)):
            lin = nn.Linear(W.shape[1], W.shape[2])
            with torch.no_grad():
                lin.weight.copy_(W[s].T)
                lin.bias.copy_(b[s])
            layers += [lin] + ([nn.ReLU()] if l < len(stack.weights) - 1 else [])
        out.append(nn.Sequential(*layers))
    return out
