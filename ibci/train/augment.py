"""The official CIFAR training augmentation for a stack of models, each drawing from its own generator.

fcnn_nsr.py (lines 91-96) augments each training image with torchvision's
RandomCrop(32, padding=4), zero padding, then RandomHorizontalFlip(p=0.5),
before normalizing. `crop_flip` is that on a batch of every model at once:
model s's crops and flips come from `gens[s]` alone, so a seed gives the same
augmentations whatever else is in the stack. Apply it to pixels in [0, 1]
and `normalize` after it, as the official order does: the padding is black
(0) in pixel space, which is -mean/std once normalized.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def crop_flip(x: Tensor, gens: Sequence[torch.Generator], padding: int = 4) -> Tensor:
    """Random crops of the zero-padded images, of their own size, each then flipped left-right with p=0.5.

    x [S, B, C, H, W]: model s's batch is x[s]. For model s, `gens[s]` (a CPU
    generator) draws, in this order, the B row offsets and the B column
    offsets (each uniform in 0..2*padding, as RandomCrop's) and then B
    uniforms, an image being flipped where its uniform is below 0.5. Output
    pixel (i, j) of an image with offsets (dy, dx) is padded pixel
    (dy + i, dx + j), or (dy + i, dx + W - 1 - j) when flipped.
    """
    if x.dim() != 5:
        raise ValueError(f"crop_flip takes images [S, B, C, H, W], got shape {list(x.shape)}")
    S, B, C, H, W = x.shape
    if len(gens) != S:
        raise ValueError(f"{len(gens)} generators for a stack of {S} models")
    if padding < 0:
        raise ValueError(f"padding={padding} must be >= 0")
    rows, cols = [], []
    for g in gens:
        # One generator per model: its draws do not depend on the other models or on S.
        dy = torch.randint(0, 2 * padding + 1, (B,), generator=g)
        dx = torch.randint(0, 2 * padding + 1, (B,), generator=g)
        flip = torch.rand(B, generator=g) < 0.5
        j = torch.arange(W)
        rows.append(dy[:, None] + torch.arange(H))  # [B, H]
        cols.append(dx[:, None] + torch.where(flip[:, None], W - 1 - j, j))  # [B, W]: a flip reads the crop backwards
    rows = torch.stack(rows).to(x.device)
    cols = torch.stack(cols).to(x.device)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    s = torch.arange(S, device=x.device)[:, None, None, None]
    b = torch.arange(B, device=x.device)[None, :, None, None]
    # One gather for every image: index arrays split by the channel slice put their dims first, [S, B, H, W, C].
    out = padded[s, b, :, rows[:, :, :, None], cols[:, :, None, :]]
    return out.permute(0, 1, 4, 2, 3).contiguous()


def normalize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """(x - mean) / std per channel, the channel being dim -3 (`ibci.data.CIFAR10_MEAN`, `CIFAR10_STD`)."""
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std
