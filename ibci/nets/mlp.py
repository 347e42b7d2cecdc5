"""Multilayer perceptrons held as a stack of S independent models.

A `StackedMLP` keeps the weights of S models of the same architecture in
tensors shaped [S, fan_in, fan_out] (one column per neuron, so `h @ W` is the
layer) and biases shaped [S, fan_out]. Training S seeds of a cell together then
costs a handful of batched matmuls per step instead of S small ones, and each
model still has its own parameters, data order and SGD state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import yaml
from torch import Tensor

from .. import ROOT
from ..errors import UserError
from ..vocab import ZOO

N_INPUTS = 784
N_CLASSES = 10


@functools.cache
def paper_networks() -> dict[int, list[int]]:
    """Hidden widths of the paper's networks by depth, as configs/config.yaml's `networks` has them."""
    return {int(k): list(v) for k, v in yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())["networks"].items()}


@functools.cache
def cnn_widths() -> list[int]:
    """The CNN's default widths (conv1 filters, conv2 filters, hidden units), as configs/net/cnn.yaml has them."""
    return list(yaml.safe_load((ROOT / "configs" / "net" / "cnn.yaml").read_text())["hidden"])


def layer_sizes(depth: int, n_in: int = N_INPUTS, n_out: int = N_CLASSES) -> list[int]:
    """Widths of every layer, input first: depth 2 -> [784, 100, 10]."""
    networks = paper_networks()
    if depth not in networks:
        raise UserError(f"depth={depth!r} is not one of the paper's depths {sorted(networks)}")
    return [n_in, *networks[depth], n_out]


def hidden_widths(cfg: dict) -> list[int]:
    """A run config's hidden widths: `hidden` when set, else the paper's network of `depth`."""
    hidden = cfg.get("hidden")
    return list(hidden) if hidden is not None else list(cfg["networks"][cfg["depth"]])


def is_cnn(cfg: dict) -> bool:
    """Whether a run config asks for the CNN of ibci.conv (`net=cnn` sets `arch: cnn`) rather than an MLP."""
    return cfg.get("arch", "mlp") == "cnn"


def is_zoo(cfg: dict) -> bool:
    """Whether a run config asks for one of the NSR code's CIFAR-10 networks (`net=resnet18`, `net=vgg19`)."""
    return cfg.get("arch", "mlp") in ZOO


def network_name(cfg: dict) -> str:
    """How cell ids and tables name a config's network.

    `d3` for the paper's MLPs, `h256x100` for given widths (`h256x100bn` with
    BatchNorm, `h256x100do0.2` with Dropout); `cnn` for the CNN
    with its default widths, `cnn32x64x128` with others.
    """
    if is_zoo(cfg):
        return cfg["arch"]
    if is_cnn(cfg):
        widths = hidden_widths(cfg)
        return "cnn" if widths == cnn_widths() else "cnn" + "x".join(map(str, widths))
    hidden = cfg.get("hidden")
    name = f"d{cfg['depth']}" if hidden is None else "h" + "x".join(map(str, hidden))
    # The layers between the Linears, when there are any: `h256x100bn`, `h256x100do0.2`.
    return name + ("bn" if cfg.get("batchnorm") else "") + (f"do{cfg['dropout']:g}" if cfg.get("dropout") else "")


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
