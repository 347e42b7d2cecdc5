"""Training a stack of MLPs with plain SGD, each as if trained alone.

Every model has its own parameters, its own data order (drawn from its data
seed) and its own SGD state; they share nothing but the matmul calls. Two
things make it fast on a CPU:

* The gradient of the mean cross-entropy is written out by hand (softmax
  minus one-hot, back through ReLU masks), so a step is a fixed handful of
  batched matmuls with the SGD update fused into `baddbmm_`; autograd's
  per-step graph would cost more than the arithmetic at these sizes.
* Models with the same data seed see the same batches (cells of a table share
  seeds), so their first layers, where most of the arithmetic is, run as one
  wide GEMM `x_batch @ [W_1 | W_2 | ...]` per seed instead of many narrow ones.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..nets.mlp import StackedMLP
from ..seeding import generator
from .history import History, freeze_diverged, logit_stats, new_history, record_epoch
from .nsr import Steadiness


def logits_shared(model: StackedMLP, x: Tensor, chunk: int = 5000) -> Tensor:
    """Logits [S, N, C] of every model on the same inputs x [N, in].

    The first layer of all models is one GEMM against their concatenated
    weights, much faster than S batched products over a broadcast x.
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
    return output_stats(model, x, y)[0]


def output_stats(model: StackedMLP, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(error in percent, output intra-class variance, mean cross-entropy), each [S], from one forward pass."""
    return logit_stats(logits_shared(model, x), y)


class Packed:
    """A stack regrouped by data seed: G seeds x M models, model (g, m) at row g * M + m.

    The first layer is held as [G, in, M * h] (the M models of a seed side by
    side, so one GEMM serves them all); later layers as [G * M, in, out].
    """

    def __init__(self, model: StackedMLP, data_seeds: list[int]):
        order = sorted(range(len(data_seeds)), key=lambda i: data_seeds[i])  # stable: keeps cell order
        seeds = sorted(set(data_seeds))
        sizes = {data_seeds.count(s) for s in seeds}
        if len(sizes) != 1:  # unequal groups: fall back to one model per group
            seeds, order = list(data_seeds), list(range(len(data_seeds)))
        self.order = torch.tensor(order, device=model.weights[0].device)
        self.seeds = seeds
        self.G = len(seeds)
        self.M = len(data_seeds) // self.G
        W1, b1 = model.weights[0][self.order], model.biases[0][self.order]
        self.h1 = W1.shape[2]
        self.W1 = W1.view(self.G, self.M, -1, self.h1).permute(0, 2, 1, 3).reshape(self.G, -1, self.M * self.h1)
        self.b1 = b1.reshape(self.G, 1, self.M * self.h1).clone()
        self.Ws = [w[self.order].contiguous() for w in model.weights[1:]]
        self.bs = [b[self.order].unsqueeze(1).contiguous() for b in model.biases[1:]]

    def unpack(self) -> StackedMLP:
        """The stack in its original model order."""
        G, M, h1 = self.G, self.M, self.h1
        W1 = self.W1.view(G, -1, M, h1).permute(0, 2, 1, 3).reshape(G * M, -1, h1)
        b1 = self.b1.view(G * M, h1)
        inverse = torch.empty_like(self.order)
        inverse[self.order] = torch.arange(len(self.order), device=self.order.device)
        return StackedMLP([W1[inverse], *(w[inverse] for w in self.Ws)],
                          [b1[inverse], *(b.squeeze(1)[inverse] for b in self.bs)])

    def finite(self) -> Tensor:
        """Per model (original order): are all its parameters finite?"""
        G, M, h1 = self.G, self.M, self.h1
        ok = self.W1.view(G, -1, M, h1).isfinite().all(3).all(1).reshape(-1)
        ok &= self.b1.view(G * M, h1).isfinite().all(1)
        for w, b in zip(self.Ws, self.bs):
            ok &= w.isfinite().flatten(1).all(1) & b.isfinite().flatten(1).all(1)
        out = torch.empty_like(ok)
        out[self.order] = ok
        return out

    def step(self, xb: Tensor, yb: Tensor, lr: float, active: Tensor, nsr: Steadiness | None = None) -> Tensor:
        """One SGD step; xb [G, B, in] and yb [G, B] are each seed's batch. Returns losses [G * M].

        With `nsr`, its penalty joins the loss (and the returned losses).
        """
        G, M, h1 = self.G, self.M, self.h1
        B = xb.shape[1]
        z1 = torch.baddbmm(self.b1, xb, self.W1).relu_()  # [G, B, M * h1]
        h = z1.view(G, B, M, h1).transpose(1, 2).reshape(G * M, B, h1)
        hs = [h]
        for l, (W, b) in enumerate(zip(self.Ws, self.bs)):
            z = torch.baddbmm(b, hs[-1], W)
            if l < len(self.Ws) - 1:
                hs.append(z.relu_())
        y = yb.unsqueeze(1).expand(G, M, B).reshape(G * M, B, 1)
        # Softmax and loss by hand: torch.log_softmax is several times slower on a last dim of 10.
        top = z.amax(-1, keepdim=True)
        g = (z - top).exp_()
        total = g.sum(-1, keepdim=True)
        loss = (total.log() + top - z.gather(-1, y)).squeeze(-1).mean(1)
        g.div_(total)
        g.scatter_add_(-1, y, torch.full_like(g[..., :1], -1.0))
        g.mul_((active / B).view(-1, 1, 1))
        scale = active.view(-1, 1, 1)
        if nsr is not None:
            onehot = torch.zeros_like(g).scatter_(-1, y, 1.0)
            last = len(self.Ws)
            if last in nsr.lams:
                grad, penalty = nsr.penalty_grad(last, z, onehot, output=True)
                g.add_(grad.mul_(scale))
                loss = loss + penalty
        for l in reversed(range(len(self.Ws))):
            h_in = hs[l]
            W = self.Ws[l]
            g_in = torch.bmm(g, W.transpose(1, 2))
            if nsr is not None and l in nsr.lams:
                grad, penalty = nsr.penalty_grad(l, h_in, onehot, output=False)
                g_in.add_(grad.mul_(scale))
                loss = loss + penalty
            W.baddbmm_(h_in.transpose(1, 2), g, alpha=-lr)
            self.bs[l].sub_(g.sum(1, keepdim=True), alpha=lr)
            # ReLU's backward as one fused op (a bool mask and a multiply cost four times more).
            g = torch.ops.aten.threshold_backward(g_in, h_in, 0.0)
        g1 = g.view(G, M, B, h1).transpose(1, 2).reshape(G, B, M * h1)
        self.W1.baddbmm_(xb.transpose(1, 2), g1, alpha=-lr)
        self.b1.sub_(g1.sum(1, keepdim=True), alpha=lr)
        if nsr is not None:
            nsr.advance()
        return loss


def train(
    model: StackedMLP,
    x_train: Tensor,
    y_train: Tensor,
    data_seeds: list[int],
    epochs: int,
    batch_size: int,
    lr: float,
    eval_sets: dict[str, tuple[Tensor, Tensor]],
    on_epoch: Callable[[int, History], None] | None = None,
    nsr_lams: list[float] | None = None,
    nsr_queue: int = 5,
    resume: dict | None = None,
    save: Callable[[int, Callable[[], dict]], None] | None = None,
) -> tuple[StackedMLP, History]:
    """Train every model of the stack on its own data order; evaluate every split after each epoch.

    Model i shuffles the training set each epoch with a generator derived from
    `data_seeds[i]`, so equal seeds mean equal batches. The last batch of an
    epoch is smaller when batch_size does not divide the training set (as a
    DataLoader without drop_last). A model whose loss or weights become
    NaN/inf is recorded as diverged at that epoch, reset to zero and frozen,
    while the others keep training. With `nsr_lams` (the output layer's
    lambda first, then the layers before it) the loss carries NSR's penalty
    (`Steadiness`), every model with its own queue of `nsr_queue` batches.
    After every epoch `save(epoch, state)` may keep `state()`, everything the
    loop needs to go on; `train(..., resume=that state)` then continues from
    that epoch exactly as the uninterrupted loop would have.
    Returns the trained stack and its history.
    """
    if resume is not None:
        model = StackedMLP(list(resume["weights"]), list(resume["biases"]))
    if model.num_layers < 2:
        raise ValueError("the engine needs at least one hidden layer")
    S = model.num_models
    n = x_train.shape[0]
    device = x_train.device
    packed = Packed(model, list(data_seeds))
    nsr = Steadiness.for_layers(nsr_lams, model.num_layers, nsr_queue) if nsr_lams else None
    gens = [generator(s, "data") for s in packed.seeds]
    active = torch.ones(S, device=device)  # original model order
    hist = new_history(S, epochs, eval_sets)
    first = 1
    if resume is not None:  # packed as an uninterrupted run packs: the same values in the same layout
        for g, state in zip(gens, resume["gens"]):
            g.set_state(state)
        active = resume["active"].clone()
        hist = History.from_state(resume["hist"])
        if nsr is not None:
            nsr.load_state_dict(resume["nsr"])
        first = int(resume["epoch"]) + 1

    def stats(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return output_stats(model, x, y)  # `model` as it stands: the loop rebinds it every epoch

    def state(epoch: int) -> dict:
        return {"epoch": epoch, "weights": model.weights, "biases": model.biases, "active": active,
                "gens": [g.get_state() for g in gens], "hist": hist.state_dict(),
                "nsr": nsr.state_dict() if nsr is not None else None}

    if resume is None:
        record_epoch(hist, 0, stats, eval_sets, active)
        if on_epoch:
            on_epoch(0, hist)
    for epoch in range(first, epochs + 1):
        orders = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
        active_packed = active[packed.order]
        loss_sum = torch.zeros(S, device=device)
        steps = 0
        for start in range(0, n, batch_size):
            idx = orders[:, start : start + batch_size]
            xb = torch.index_select(x_train, 0, idx.reshape(-1)).view(*idx.shape, -1)
            loss_sum += packed.step(xb, y_train[idx], lr, active_packed, nsr)
            steps += 1
        losses = torch.empty_like(loss_sum)
        losses[packed.order] = loss_sum / steps
        finite = torch.isfinite(losses) & packed.finite()
        model = packed.unpack()
        newly = freeze_diverged(hist, epoch, finite, active, [*model.weights, *model.biases])
        if newly.any():
            packed = Packed(model, list(data_seeds))
            if nsr is not None:
                nsr.forget(newly[packed.order])
        record_epoch(hist, epoch, stats, eval_sets, active, losses)
        if on_epoch:
            on_epoch(epoch, hist)
        if save is not None:
            save(epoch, lambda: state(epoch))
    return model, hist
