"""What a stacked engine records per epoch: losses, errors, intra-class variance, divergence.

Shared by every engine (`ibci.train.mlp`, `ibci.train.cnn`), so their records look the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor


@dataclass
class History:
    """Per-epoch curves of a stack; row 0 is the init alone (before any step)."""

    train_loss: Tensor  # [epochs + 1, S]; row 0 is NaN; the NSR penalty included when it is on
    errors: dict[str, Tensor]  # split name -> [epochs + 1, S], percent; NaN after divergence
    diverged_epoch: list[int | None] = field(default_factory=list)
    intra_var: dict[str, Tensor] = field(default_factory=dict)  # split -> [epochs + 1, S]: output intra-class variance
    ce: dict[str, Tensor] = field(default_factory=dict)  # split -> [epochs + 1, S]: mean cross-entropy (no penalty)

    def state_dict(self) -> dict:
        """Everything recorded so far, as tensors and plain values (a checkpoint holds it)."""
        return {"train_loss": self.train_loss, "errors": dict(self.errors), "intra_var": dict(self.intra_var),
                "diverged_epoch": list(self.diverged_epoch), "ce": dict(self.ce)}

    @staticmethod
    def from_state(state: dict) -> "History":
        return History(state["train_loss"], dict(state["errors"]), list(state["diverged_epoch"]),
                       dict(state["intra_var"]), dict(state.get("ce", {})))


def new_history(num_models: int, epochs: int, eval_sets: dict) -> History:
    """An empty History of `num_models` models over `epochs` epochs: NaN until an epoch is recorded."""
    def nan() -> Tensor:
        return torch.full((epochs + 1, num_models), math.nan)

    return History(train_loss=nan(), errors={k: nan() for k in eval_sets}, diverged_epoch=[None] * num_models,
                   intra_var={k: nan() for k in eval_sets}, ce={k: nan() for k in eval_sets})


def record_epoch(hist: History, epoch: int, stats: Callable, eval_sets: dict, active: Tensor,
                 losses: Tensor | None = None) -> None:
    """Write an epoch's mean train loss and each split's (error, intra-class variance, cross-entropy) =
    stats(x, y) (`logit_stats`); a frozen (diverged) model's entries stay NaN."""
    alive = (active > 0).cpu()
    nan_row = torch.full(alive.shape, math.nan)
    if losses is not None:
        hist.train_loss[epoch] = torch.where(alive, losses.cpu(), nan_row)
    for k, (x, y) in eval_sets.items():
        err, var, ce = stats(x, y)
        hist.errors[k][epoch] = torch.where(alive, err.cpu(), nan_row)
        hist.intra_var[k][epoch] = torch.where(alive, var.cpu(), nan_row)
        hist.ce[k][epoch] = torch.where(alive, ce.cpu(), nan_row)


def freeze_diverged(hist: History, epoch: int, finite: Tensor, active: Tensor, params: list[Tensor]) -> Tensor:
    """The models still training whose loss or parameters stopped being finite (`finite` [S] False):
    record `epoch` as their divergence, zero their slices of `params` and mark them inactive, in place.
    Returns that mask [S]."""
    newly = (~finite) & (active > 0)
    if newly.any():
        for s in newly.nonzero().flatten().tolist():
            hist.diverged_epoch[s] = epoch
        for p in params:
            p[newly] = 0.0
        active[newly] = 0.0
    return newly


def logit_stats(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(error in percent, output intra-class variance, mean cross-entropy), each [S], of logits [S, N, K]."""
    wrong = logits.argmax(-1) != y
    z = logits.double()
    ce = (torch.logsumexp(z, -1) - z.gather(-1, y.expand(z.shape[0], -1).unsqueeze(-1)).squeeze(-1)).mean(1)
    return wrong.float().mean(1) * 100, intra_class_variance(z, y).float(), ce.float()


def intra_class_variance(logits: Tensor, y: Tensor, num_classes: int | None = None) -> Tensor:
    """Per model [S]: the within-class variance (ddof=0) of each unit, averaged over units and classes.

    logits [S, N, K]: the output layer's (K = the number of classes, the
    default `num_classes`) or any layer's responses; the classes absent from y
    count for nothing. What NSR penalizes, measured on a fixed data set.
    """
    onehot = torch.nn.functional.one_hot(y, num_classes or logits.shape[-1]).to(logits.dtype)  # [N, C]
    n = onehot.sum(0)
    present = n > 0
    mean = torch.einsum("nc,snk->sck", onehot, logits) / n.clamp_min(1).view(1, -1, 1)  # [S, C, K]
    sq = torch.einsum("nc,snk->sck", onehot, logits.square()) / n.clamp_min(1).view(1, -1, 1)
    var = (sq - mean.square()).clamp_min(0)[:, present]
    return var.mean((1, 2))
