"""Training a stack of S MLPs with plain SGD, each as if trained alone.

Every model has its own parameters, its own data order (from its own
generator) and its own SGD state; they share nothing but the matmul calls. The
gradient of the mean cross-entropy is written out by hand (softmax minus
one-hot, back through ReLU masks) so that a step is a fixed handful of batched
matmuls with the SGD update fused into `baddbmm_`; autograd would add per-step
graph overhead that dominates at these layer sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .models import StackedMLP


@dataclass
class History:
    """Per-epoch curves of a stack; row 0 is the init alone (before any step)."""

    train_loss: Tensor  # [epochs + 1, S]; row 0 is NaN
    errors: dict[str, Tensor]  # split name -> [epochs + 1, S], percent; NaN after divergence
    diverged_epoch: list[int | None] = field(default_factory=list)


def logits_shared(model: StackedMLP, x: Tensor, chunk: int = 5000) -> Tensor:
    """Logits [S, N, C] of every model on the same inputs x [N, in].

    The first layer of all models is one GEMM against their concatenated
    weights, which is much faster than S batched products over a broadcast x.
    """
    S, n_in, n_hid = model.weights[0].shape
    w0 = model.weights[0].permute(1, 0, 2).reshape(n_in, S * n_hid)
    out = []
    for start in range(0, x.shape[0], chunk):
        h = (x[start : start + chunk] @ w0).view(-1, S, n_hid).transpose(0, 1)
        h = h + model.biases[0].unsqueeze(1)
        for l in range(1, model.num_layers):
            h = torch.baddbmm(model.biases[l].unsqueeze(1), h.relu_(), model.weights[l])
        out.append(h)
    return torch.cat(out, dim=1)


def error_rate(model: StackedMLP, x: Tensor, y: Tensor) -> Tensor:
    """Classification error in percent of each model, [S]."""
    wrong = logits_shared(model, x).argmax(-1) != y
    return wrong.float().mean(1) * 100


def sgd_step(model: StackedMLP, xb: Tensor, yb: Tensor, lr: float, active: Tensor | None = None) -> Tensor:
    """One SGD step of every model on its own batch; returns each model's mean loss [S].

    xb: [S, B, in], yb: [S, B]. `active` ([S] of 0/1) freezes models whose
    gradient it zeroes (used for diverged models).
    """
    B = xb.shape[1]
    L = model.num_layers
    hs = [xb]  # inputs of each layer; post-ReLU for hidden layers
    z = xb
    for l in range(L):
        z = torch.baddbmm(model.biases[l].unsqueeze(1), hs[-1], model.weights[l])
        if l < L - 1:
            hs.append(z.relu_())
    logp = torch.log_softmax(z, dim=-1)
    loss = -logp.gather(-1, yb.unsqueeze(-1)).squeeze(-1).mean(1)
    g = logp.exp_()
    g.scatter_add_(-1, yb.unsqueeze(-1), torch.full_like(g[..., :1], -1.0))
    scale = 1.0 / B if active is None else (active / B).view(-1, 1, 1)
    g.mul_(scale)
    for l in reversed(range(L)):
        h_in = hs[l]
        W = model.weights[l]
        if l > 0:
            g_in = torch.bmm(g, W.transpose(1, 2))
        W.baddbmm_(h_in.transpose(1, 2), g, alpha=-lr)
        model.biases[l].sub_(g.sum(1), alpha=lr)
        if l > 0:
            g = g_in.mul_(h_in > 0)
    return loss


def epoch_orders(generators: list[torch.Generator], n: int) -> Tensor:
    """One permutation of range(n) per model [S, n], drawn from each model's own generator."""
    return torch.stack([torch.randperm(n, generator=g) for g in generators])


def train(
    model: StackedMLP,
    x_train: Tensor,
    y_train: Tensor,
    order_generators: list[torch.Generator],
    epochs: int,
    batch_size: int,
    lr: float,
    eval_sets: dict[str, tuple[Tensor, Tensor]],
    on_epoch: Callable[[int, History], None] | None = None,
) -> History:
    """Train the stack in place for `epochs` epochs; evaluate every split after each epoch.

    The last batch of an epoch is smaller when batch_size does not divide the
    training set (as a DataLoader without drop_last does). A model whose loss
    or weights become NaN/inf is recorded as diverged at that epoch, reset to
    zero and frozen, while the others keep training.
    """
    S = model.num_models
    n = x_train.shape[0]
    device = x_train.device
    nan_row = torch.full((S,), math.nan)
    active = torch.ones(S, device=device)
    hist = History(
        train_loss=torch.full((epochs + 1, S), math.nan),
        errors={k: torch.full((epochs + 1, S), math.nan) for k in eval_sets},
        diverged_epoch=[None] * S,
    )
    for k, (x, y) in eval_sets.items():
        hist.errors[k][0] = error_rate(model, x, y).cpu()
    if on_epoch:
        on_epoch(0, hist)
    for epoch in range(1, epochs + 1):
        order = epoch_orders(order_generators, n).to(device)
        loss_sum = torch.zeros(S, device=device)
        steps = 0
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]
            loss_sum += sgd_step(model, x_train[idx], y_train[idx], lr, active)
            steps += 1
        finite = torch.isfinite(loss_sum)
        for W, b in zip(model.weights, model.biases):
            finite &= torch.isfinite(W).flatten(1).all(1) & torch.isfinite(b).all(1)
        newly = (~finite) & (active > 0)
        if newly.any():
            for s in newly.nonzero().flatten().tolist():
                hist.diverged_epoch[s] = epoch
            for W, b in zip(model.weights, model.biases):
                W[newly] = 0.0
                b[newly] = 0.0
            active[newly] = 0.0
        alive = (active > 0).cpu()
        hist.train_loss[epoch] = torch.where(alive, (loss_sum / steps).cpu(), nan_row)
        for k, (x, y) in eval_sets.items():
            hist.errors[k][epoch] = torch.where(alive, error_rate(model, x, y).cpu(), nan_row)
        if on_epoch:
            on_epoch(epoch, hist)
    return hist
