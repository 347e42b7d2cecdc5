"""Training a stack of CNNs (`net=cnn`) with plain SGD, each as if trained alone.

Autograd does the backward pass over the grouped convolutions of
`ibci.nets.cnn`; the SGD recipe, the per-epoch evaluation and the divergence
handling are the MLP engine's (`ibci.train.mlp`, `ibci.train.history`), so
records look the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nets.cnn import KERNEL, SIDE, StackedCNN, chunk, forward_layout, layout
from .orders import data_generators, epoch_order
from .history import History, freeze_diverged, logit_stats, new_history, record_epoch
from .nsr import queue_penalty


# Images a chunk of evaluation holds at most: the training batch's size, where the layers ran fastest.
_EVAL_IMAGES = 100


@torch.no_grad()
def logits_shared(model: StackedCNN, x: Tensor) -> Tensor:
    """Logits [S, N, C] of every model on the same images x [N, 784], in chunks of bounded memory."""
    S, c1 = model.conv_weights[0].shape[:2]
    step = chunk(S * c1 * (SIDE - KERNEL + 1) ** 2, _EVAL_IMAGES)
    return torch.cat([forward_layout(model, layout(x[i : i + step], S)) for i in range(0, x.shape[0], step)], dim=1)


def output_stats(model: StackedCNN, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(error in percent, output intra-class variance, mean cross-entropy), each [S], from one forward pass."""
    return logit_stats(logits_shared(model, x), y)


def error_rate(model: StackedCNN, x: Tensor, y: Tensor) -> Tensor:
    """Classification error in percent of each model, [S]."""
    return output_stats(model, x, y)[0]


# ---- training -------------------------------------------------------------------------


def train(model: StackedCNN, x_train: Tensor, y_train: Tensor, data_seeds: list[int], epochs: int,
          batch_size: int, lr: float, eval_sets: dict[str, tuple[Tensor, Tensor]], on_epoch=None,
          nsr_lams: list[float] | None = None, nsr_queue: int = 5, resume: dict | None = None,
          save=None) -> tuple[StackedCNN, History]:
    """`ibci.train.mlp.train` for a stack of CNNs: plain SGD, each model on its own data order, the same History.

    Model i shuffles with the generator of `data_seeds[i]` each epoch (equal
    seeds, equal batches; the MLP engine's orders), the last batch of an
    epoch is smaller when batch_size does not divide the training set, and a
    model whose loss or parameters become NaN/inf is recorded as diverged at
    that epoch, zeroed and frozen while the others train on. `save` and
    `resume` checkpoint the loop as the MLP engine's do.
    """
    if nsr_lams and any(nsr_lams[1:]):
        raise ValueError("the CNN engine's NSR penalizes the logits only (nsr_lams: the output layer's weight)")
    lam = float(nsr_lams[0]) if nsr_lams else 0.0
    if resume is not None:
        model = StackedCNN(*(list(resume["model"][k]) for k in ("conv_weights", "conv_biases", "weights", "biases")))
    S, n, device = model.num_models, x_train.shape[0], x_train.device
    model = model.clone()
    params = model.parameters()
    for p in params:
        p.requires_grad_(True)
    seeds, gens, row = data_generators(data_seeds, device)
    active = torch.ones(S, device=device)
    hist = new_history(S, epochs, eval_sets)
    C = model.weights[-1].shape[2]
    # NSR's queue: per model the class sums and counts of the last nsr_queue batches (train.nsr.queue_penalty).
    queue = max(1, nsr_queue)
    sums = torch.zeros(S, queue, C, C, device=device)
    counts = torch.zeros_like(sums)
    slot, first = 0, 1
    if resume is not None:
        for s, state in zip(seeds, resume["gens"]):
            gens[s].set_state(state)
        active, hist, first = resume["active"].clone(), History.from_state(resume["hist"]), int(resume["epoch"]) + 1
        if lam:
            sums, counts, slot = resume["sums"], resume["counts"], int(resume["slot"])

    def stats(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return output_stats(model, x, y)

    def state(epoch: int) -> dict:
        parts = {k: [t.detach() for t in getattr(model, k)] for k in ("conv_weights", "conv_biases", "weights", "biases")}
        return {"epoch": epoch, "model": parts, "active": active, "gens": [gens[s].get_state() for s in seeds],
                "hist": hist.state_dict(), **({"sums": sums, "counts": counts, "slot": slot} if lam else {})}

    if resume is None:
        record_epoch(hist, 0, stats, eval_sets, active)
        if on_epoch:
            on_epoch(0, hist)
    for epoch in range(first, epochs + 1):
        orders = epoch_order(seeds, gens, row, n, device)
        loss_sum = torch.zeros(S, device=device)
        steps = 0
        for start in range(0, n, batch_size):
            idx = orders[:, start : start + batch_size]  # [S, B]
            B = idx.shape[1]
            logits = forward_layout(model, layout(x_train[idx], S))
            loss = F.cross_entropy(logits.flatten(0, 1), y_train[idx].flatten(), reduction="none").view(S, B).mean(1)
            if lam:  # the class means of the queue's other batches and this one, held fixed
                onehot = F.one_hot(y_train[idx], C).to(logits.dtype)  # [S, B, C]
                keep = torch.arange(queue, device=device) != slot
                pen, batch_sums, batch_counts = queue_penalty(logits, onehot, sums[:, keep].sum(1),
                                                              counts[:, keep].sum(1))
                loss = loss + lam * pen
                with torch.no_grad():
                    sums[:, slot], counts[:, slot] = batch_sums, batch_counts
                slot = (slot + 1) % queue
            # Each model's gradient is that of its own mean loss; a frozen model's is zero.
            (loss * active).sum().backward()
            with torch.no_grad():
                for p in params:
                    p.add_(p.grad, alpha=-lr)  # torch.optim.SGD's update, without momentum or decay
                    p.grad = None
            loss_sum += loss.detach()
            steps += 1
        losses = loss_sum / steps
        with torch.no_grad():
            finite = torch.isfinite(losses)
            for p in params:
                finite &= p.flatten(1).isfinite().all(1)
            newly = freeze_diverged(hist, epoch, finite, active, params)
            if newly.any():
                sums[newly], counts[newly] = 0.0, 0.0
        record_epoch(hist, epoch, stats, eval_sets, active, losses)
        if on_epoch:
            on_epoch(epoch, hist)
        if save is not None:
            save(epoch, lambda: state(epoch))
    for p in params:
        p.requires_grad_(False)
    return model, hist
