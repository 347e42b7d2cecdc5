"""The suite's vocabulary, defined once: what each config choice may be called, and how big each data set is.

Plain constants, no torch: the library, the validation of configs and the
report side all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

# init=...: the paper's wrappers and its two ablations, in the order tables show them.
INITS = ("vanilla", "lsuv", "ibci", "tie", "iim")
CAMPAIGN_INITS = ("ibci", "tie", "iim")  # the inits that run a neuron campaign
READINGS = ("paper", "authors")  # init.reading: the paper's Algorithm 1, or the authors' released code
SCOPES = ("global", "per_class")  # init.orthogonal_scope: novelty against every elected neuron, or the class's
CONV_POOLS = ("mean", "max")  # init.conv_pool: how a conv candidate's feature map becomes one response
BASES = ("xavier", "he", "normal", "authors", "official")  # base=... (official: the NSR code's CIFAR-10 nets only)
UNIFORM_BIAS = "uniform"  # base.bias: a constant, or this word for nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
REGS = ("none", "nsr", "l1", "l2", "jacobian")  # reg=...
GENERAL_REGS = ("l1", "l2", "jacobian")  # the regularizers only the general engine trains (ibci.train.general)
# The key of each one's strength, which the general engine takes per model (cells differing in it share a stack).
STRENGTH_KEYS = {"l1": "strength", "l2": "weight_decay", "jacobian": "strength"}
ZOO = ("resnet18", "vgg19")  # net=...: the NSR code's CIFAR-10 networks (ibci.nets.zoo), on the general engine
AUGMENTS = ("none", "crop_flip")  # augment=...
NSR_READINGS = ("logits", "penultimate", "largest", "every")  # reg.reading: which layers NSR penalizes
PROTOCOLS = ("min", "heldout")  # min: the paper's minimal test error; heldout: the epoch picked on held-out images


@dataclass(frozen=True)
class DataSize:
    """A data set as the rest of the suite knows it: its name in messages and its split sizes."""

    title: str
    train: int
    test: int
    pixels: int = 28 * 28  # inputs per image, the rows' width


DATA = {
    "mnist": DataSize("MNIST", 60000, 10000),
    "fashion": DataSize("Fashion-MNIST", 60000, 10000),
    "cifar10": DataSize("CIFAR-10", 50000, 10000, 3 * 32 * 32),
}
HELDOUT_SIZE = 10000  # protocol=heldout keeps the training set's last images back for validation


def train_images(data: str, protocol: str, limit: int | None = None) -> int:
    """How many images a cell trains on: the training set, less the held-out part, cut to `limit`."""
    available = DATA[data].train - (HELDOUT_SIZE if protocol == "heldout" else 0)
    return available if limit is None else min(int(limit), available)
