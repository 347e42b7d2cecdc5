"""ResNet-18 and VGG-19 for 32x32 CIFAR-10 images, as the official NSR code builds them.

Plain nn.Modules, one model each; a stack of S copies runs as one batched
computation with `torch.func.stack_module_state` + `functional_call` + `vmap`
(under `vmap(..., randomness="different")` in training mode, as both have
dropout). The last layer of both is an nn.Linear named `logits` (`LOGITS`;
`model.get_submodule(LOGITS)`), the layer whose output is the logits, for
hooks that read responses (NSR). Widths and layer order are those of the
official code (HaitaoMao/Neuron-with-Steady-Response-Leads-to-Better-
Generalization, commit b76ccc0); `official_init_` is its initialization.

The official CIFAR-10 recipe, as fcnn_nsr.py sets it (the ResNet-18 of
src/CNN.py; line numbers are of that commit):

- optimizer: SGD, momentum 0.9, no weight decay, no Nesterov (line 84);
- lr: 0.01 (line 24), constant: the optional ReduceLROnPlateau (lines 86-88,
  off by default, line 42) is built but its step() is never called;
- batch size 100 (line 28), 500 epochs (line 26), seed 1 (line 33);
- augmentation: RandomCrop(32, padding=4) with zero padding, then
  RandomHorizontalFlip (p=0.5), on the training images only (lines 91-96);
- normalization: mean (0.491, 0.482, 0.446), std (0.247, 0.243, 0.261),
  after the augmentation (lines 95, 100); `ibci.data.CIFAR10_MEAN`/`_STD`;
- data: 10000 training images held out at random for validation, training
  on the other 40000; the test error reported is that of the best validation
  epoch (lines 106, 128-137);
- init: kaiming_normal_ on conv weights, xavier_normal_ on linear weights,
  zero linear biases (lines 76-79, src/base_function.py lines 16-23);
- NSR: lambda defaults to [0] (line 38), i.e. vanilla; the README's table
  (line 50) gives lambda 0.5 for ResNet-18 and 0.11 for VGG-19. Class means
  come from a queue of the last 5 batches (line 37). One layer is penalized
  (line 39), `intermedia_y[0]` (src/train_stable.py lines 23, 47), which is
  the output of the network's first block, not its logits: src/CNN.py keeps
  every block's output (lines 16, 57-60) and the script never sets
  `start_count` as fdnn_nsr.py does for the MLPs (its line 60). For this
  ResNet-18 that is the stem's conv + BatchNorm output (64x32x32), with no
  firing mask (the last-layer branch, src/train_stable.py lines 43-48).

CIFAR10/VGG19/train.py trains the VGG-19 below with the same batch size,
augmentation, normalization, split and init but Adam, lr 1e-4 (lines 25, 86),
200 epochs (line 27), an optional x0.1 / x0.01 lr step at epochs 100 / 120
(lines 139-145, off by default), a queue of 1 batch (line 39), lambda [0]
(line 40), again on the first block's output (VGG19.py lines 15, 140-146),
and trains on all 50000 images, its validation images among them (line 122).
CIFAR10/ResNet18/train.py instead uses SGD lr 0.1, Nesterov momentum 0.9,
weight decay 5e-4, MultiStepLR [60, 120, 160] x0.2, 200 epochs, Cutout 16
and NSR on the logits (lines 36-38, 53, 129-132; run.sh), but as released its
NSR loss is never backpropagated (lines 180-186) and `ResNet18` is never
imported (line 125); its network is `resnet18(dropout=0, stem_relu=True)`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOGITS = "logits"  # the name of the last nn.Linear of every network here
SIDE = 32  # CIFAR images are SIDE x SIDE

# ResNet-18: 2 basic blocks per stage, the first of stages 2-4 halving the side.
RESNET18_STAGES = ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1))
# VGG-19: 16 convs (widths), a 2x2 max-pool then a dropout of the given rate after convs 2, 4, 8 and 12.
# There is no pool after the last four, so on 32x32 images the classifier sees 512 x 2 x 2 = 2048 values.
VGG19_CONVS = (64, 64, ("pool", 0.2), 128, 128, ("pool", 0.3), 256, 256, 256, 256, ("pool", 0.4),
               512, 512, 512, 512, ("pool", 0.4), 512, 512, 512, 512)
VGG19_HIDDEN = (4096, 4096)  # the classifier's hidden widths, each Linear -> ReLU -> Dropout(0.5)


class BasicBlock(nn.Module):
    """conv 3x3 -> BN -> dropout -> ReLU -> conv 3x3 -> BN -> dropout, plus the shortcut, then ReLU.

    The shortcut is the identity, or a strided 1x1 conv -> BN -> dropout where the
    block changes the width or the side. Convs have no bias (BN has one).
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout)  # stateless, so one module serves both places
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.dropout(self.bn1(self.conv1(x))))
        out = self.dropout(self.bn2(self.conv2(out)))
        # Out of place: the sum must not overwrite a tensor autograd or vmap still holds.
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The CIFAR ResNet: a 3x3 stride-1 stem (no max-pool), basic blocks, global average pool, `logits`."""

    def __init__(self, stages: tuple[tuple[int, int], ...], num_classes: int, in_channels: int, dropout: float,
                 stem_relu: bool):
        super().__init__()
        width = stages[0][0]
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.stem_relu = stem_relu
        blocks = []
        for planes, stride in stages:
            blocks.append(BasicBlock(width, planes, stride, dropout))
            width = planes
        self.blocks = nn.Sequential(*blocks)
        self.logits = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x))
        if self.stem_relu:
            out = F.relu(out)
        out = self.blocks(out)
        # The mean over the whole map: the official 4x4 average pool on 32x32 images, and any side works.
        return self.logits(out.mean(dim=(-2, -1)))


class VGG(nn.Module):
    """`features` (conv 3x3 -> BN -> ReLU, with max-pools and dropouts), flatten, `classifier`, `logits`."""

    def __init__(self, convs: tuple, hidden: tuple[int, ...], num_classes: int, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        width, side = in_channels, SIDE
        for item in convs:
            if isinstance(item, tuple):
                layers += [nn.MaxPool2d(2), nn.Dropout(item[1])]
                side //= 2
            else:
                layers += [nn.Conv2d(width, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU()]
                width = item
        self.features = nn.Sequential(*layers)
        fcs: list[nn.Module] = []
        fan_in = width * side * side
        for h in hidden:
            fcs += [nn.Linear(fan_in, h), nn.ReLU(), nn.Dropout(0.5)]
            fan_in = h
        self.classifier = nn.Sequential(*fcs)
        self.logits = nn.Linear(fan_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.classifier(self.features(x).flatten(1)))


def resnet18(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.1, stem_relu: bool = False) -> nn.Module:
    """ResNet-18 for CIFAR (11,173,962 parameters for 10 classes), as fcnn_nsr.py trains it (src/CNN.py).

    That network has a dropout of 0.1 after every BatchNorm of a block and of a
    projection shortcut, and no ReLU after the stem's BatchNorm;
    `resnet18(dropout=0, stem_relu=True)` is the plain CIFAR ResNet-18 of the
    official CIFAR10/ResNet18/model/resnet.py instead (same parameters).
    """
    return ResNet(RESNET18_STAGES, num_classes, in_channels, dropout, stem_relu)


def vgg19(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """VGG-19 with BatchNorm for 32x32 images, as the official CIFAR10/VGG19/VGG19.py builds it.

    16 bias-free convs each followed by BatchNorm and ReLU; four max-pools,
    each followed by a dropout (0.2, 0.3, 0.4, 0.4), and none after the last
    four convs; then 2048 -> 4096 -> 4096 -> classes, each hidden Linear
    followed by ReLU and Dropout(0.5). 45,244,874 parameters for 10 classes,
    unlike the common CIFAR VGG-19 (five pools, one Linear 512 -> 10).
    Inputs must be 32x32: the classifier's fan-in fixes the side.
    """
    return VGG(VGG19_CONVS, VGG19_HIDDEN, num_classes, in_channels)


def official_init_(model: nn.Module) -> nn.Module:
    """The official code's initialization, in place: kaiming_normal_ conv weights, xavier_normal_ linear
    weights and zero linear biases; BatchNorm keeps PyTorch's (weight 1, bias 0). Returns `model`."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
    return model


BUILDERS = {"resnet18": resnet18, "vgg19": vgg19}  # net=... -> the network (configs/net/resnet18.yaml, vgg19.yaml)


def build(arch: str, gens: list[torch.Generator], num_classes: int = 10) -> list[nn.Module]:
    """One network of `arch` per generator, each initialized by `official_init_` from its generator's seed
    (the global generator is left as it was)."""
    out = []
    for g in gens:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(g.initial_seed())
            out.append(official_init_(BUILDERS[arch](num_classes)))
    return out


def activation_floats(model: nn.Module, image: tuple[int, ...]) -> tuple[int, int]:
    """(all, the largest) floats the leaf modules of `model` output for one image: run on a meta-device copy,
    nothing is computed."""
    sizes = []

    def count(module, inputs, output):
        sizes.append(output[0].numel())

    meta = model if next(model.parameters()).is_meta else copy.deepcopy(model).to("meta")
    hooks = [m.register_forward_hook(count) for m in meta.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            meta.eval()(torch.empty(1, *image, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return sum(sizes), max(sizes)
