"""What a run config's network is, without torch: the paper's MLP widths, the CNN's, a cell's network name.

The config checks (`ibci.runs.validate`) and the records read these, and
neither should wait for torch to load: a mistake on the command line is
reported before it does.
"""

from __future__ import annotations

import functools

import yaml

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
