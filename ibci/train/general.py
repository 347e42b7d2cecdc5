"""The general stacked engine: S copies of any nn.Module trained as one, by autograd.

`torch.func.stack_module_state` stacks the copies' parameters and buffers
([S, ...] each), `functional_call` runs the module on one copy's slice and
`vmap` maps it over all S, so a step is one batched forward and backward pass
whatever S is. Each copy keeps its own data order (the other engines'
orders: `generator(seed, "data")`), its own SGD state (momentum, weight
decay) and its own BatchNorm statistics; Dropout draws differ between copies.
Penalties join the loss: L1 on the weights, the Frobenius norm of the
input-output Jacobian by random projections (Hoffman et al., 2019), NSR on
the logits (the official queue of class means, `ibci.train.nsr`). It trains
what the hand-written engines do not cover; on their cells it computes what
they compute (tests/test_general.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, stack_module_state, vjp, vmap

from ..seeding import generator
from .augment import crop_flip, normalize
from .orders import data_generators, epoch_order
from .history import History, freeze_diverged, logit_stats, new_history, record_epoch
from .nsr import queue_penalty

EVAL_CHUNK = 1000  # images an evaluation pass holds at once


@dataclass
class Recipe:
    """What the loss and the update are made of, beyond the mean cross-entropy and plain SGD."""

    lr: float
    momentum: float = 0.0
    # The three strengths are one number for every copy, or one per copy (a stacked search of strengths).
    weight_decay: float | Sequence[float] = 0.0  # L2, as torch.optim.SGD adds it to the gradient
    l1: float | Sequence[float] = 0.0  # strength of sum |w| over the weight matrices and filters (not the biases)
    jacobian: float | Sequence[float] = 0.0  # strength of ||d logits / d x||_F^2 / 2, averaged over the batch
    projections: int = 1  # random directions per sample for the Jacobian's estimate
    nsr: float = 0.0  # NSR's weight on the logits (or on `nsr_layer`'s output)
    nsr_queue: int = 5
    nsr_layer: str | None = None  # a submodule's name (`bn1`): NSR on its output, flattened per image
    augment: bool = False  # CIFAR's random crop and flip of each training batch (ibci.train.augment)
    mean: tuple[float, ...] | None = None  # per-channel normalization after augmentation, and at evaluation
    std: tuple[float, ...] | None = None


def _per_copy(value: float | Sequence[float], S: int, device) -> Tensor | None:
    """A strength as a tensor [S] (one per copy), or None when it is 0 for every copy."""
    values = [float(value)] * S if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != S:
        raise ValueError(f"{len(values)} strengths for a stack of {S} models")
    return torch.tensor(values, device=device) if any(values) else None


def _loss(base: nn.Module, recipe: Recipe, num_classes: int, l1_on: bool, jacobian_on: bool):
    """The per-copy loss of one batch, a function of (params, buffers, x, y, v, queue, strengths) for grad and
    vmap; strengths is the copy's (l1, jacobian).

    Returns (loss, (cross-entropy + penalties as reported, new buffers, this batch's class sums and counts)).
    """
    weights = [k for k, p in base.named_parameters() if p.dim() > 1]
    seen: list[Tensor] = []  # the output of `nsr_layer` in this call, when it is on
    listen = {"on": False}
    if recipe.nsr and recipe.nsr_layer:
        base.get_submodule(recipe.nsr_layer).register_forward_hook(
            lambda module, inputs, output: seen.append(output) if listen["on"] else None)

    def loss(params, buffers, x, y, v, queue_sums, queue_counts, strengths):
        buffers = {k: t.clone() for k, t in buffers.items()}  # BatchNorm updates them in place
        seen.clear()
        listen["on"] = True
        out = functional_call(base, (params, buffers), (x,))
        listen["on"] = False
        total = F.cross_entropy(out, y)
        if l1_on:
            total = total + strengths[0] * sum(params[k].abs().sum() for k in weights)
        if jacobian_on:
            def f(inp):
                return functional_call(base, (params, {k: t.clone() for k, t in buffers.items()}), (inp,))

            _, pull = vjp(f, x)
            # E_v ||v^T J||^2 = ||J||_F^2 / C for v uniform on the unit sphere of R^C: C / n_proj * sum.
            frob = sum(pull(v[k])[0].square().sum() for k in range(v.shape[0])) * num_classes / v.shape[0]
            total = total + strengths[1] / 2 * frob / x.shape[0]
        sums = counts = queue_sums[0]
        if recipe.nsr:
            h = seen[0].flatten(1) if recipe.nsr_layer else out
            onehot = (y.unsqueeze(1) == torch.arange(num_classes, device=y.device)).to(h.dtype)
            pen, sums, counts = queue_penalty(h, onehot, queue_sums.sum(0), queue_counts.sum(0))
            total = total + recipe.nsr * pen
        return total, (total.detach(), buffers, sums, counts)

    return loss


def train(models: list[nn.Module], x_train: Tensor, y_train: Tensor, data_seeds: list[int], epochs: int,
          batch_size: int, recipe: Recipe, eval_sets: dict[str, tuple[Tensor, Tensor]], on_epoch=None,
          image_shape: tuple = (), dropout_seed: int = 0, resume: dict | None = None,
          save: Callable | None = None) -> tuple[list[nn.Module], History]:
    """Train `models` (copies of one architecture) as one stack; evaluate every split after each epoch.

    Model i sees the batches of `data_seeds[i]` (the hand-written engines'
    orders), the last batch of an epoch smaller when batch_size does not
    divide the training set; inputs are reshaped to `image_shape` when given
    ((1, 28, 28) for a CNN). A model whose loss or parameters stop being
    finite is recorded as diverged, zeroed and frozen. Dropout's draws come
    from the global generator seeded with `dropout_seed`. `save`/`resume`
    checkpoint the loop as the other engines' do. Returns the trained models
    (in place of the given ones: new modules holding the stacked results) and
    the History.
    """
    S, n, device = len(models), x_train.shape[0], x_train.device
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    params = {k: p.detach().clone() for k, p in params.items()}
    momentum = {k: None for k in params}
    probe = copy.deepcopy(models[0]).eval()  # eval: BatchNorm on its statistics, whatever the batch
    shown = []
    if recipe.nsr and recipe.nsr_layer:
        probe.get_submodule(recipe.nsr_layer).register_forward_hook(lambda m, i, o: shown.append(o[0].numel()))
    with torch.no_grad():
        num_classes = int(probe(x_train[:1].view(-1, *image_shape) if image_shape else x_train[:1]).shape[1])
    width = shown[0] if shown else num_classes  # of the penalized response
    seeds, gens, row = data_generators(data_seeds, device)
    jac_gens = {s: generator(s, "jacobian") for s in seeds}
    aug_gens = {s: generator(s, "augment") for s in seeds}
    active = torch.ones(S, device=device)
    hist = new_history(S, epochs, eval_sets)
    queue = max(1, recipe.nsr_queue)
    sums = torch.zeros(S, queue, num_classes, width, device=device)
    counts = torch.zeros_like(sums)
    slot, first = 0, 1
    torch.manual_seed(dropout_seed)
    if resume is not None:
        params, buffers = dict(resume["params"]), dict(resume["buffers"])
        momentum = {k: resume["momentum"].get(k) for k in params}
        for s, state in zip(seeds, resume["gens"]):
            gens[s].set_state(state)
        for s, state in zip(seeds, resume["jac_gens"]):
            jac_gens[s].set_state(state)
        for s, state in zip(seeds, resume.get("aug_gens", [])):
            aug_gens[s].set_state(state)
        torch.set_rng_state(resume["rng"])
        sums, counts, slot = resume["sums"], resume["counts"], int(resume["slot"])
        active, hist, first = resume["active"].clone(), History.from_state(resume["hist"]), int(resume["epoch"]) + 1
    l1, jac, decay = (_per_copy(v, S, device) for v in (recipe.l1, recipe.jacobian, recipe.weight_decay))
    strengths = torch.stack([torch.zeros(S, device=device) if t is None else t for t in (l1, jac)], 1)  # [S, 2]
    step_fn = vmap(grad(_loss(base, recipe, num_classes, l1 is not None, jac is not None), has_aux=True),
                   randomness="different")

    def inputs(x: Tensor) -> Tensor:  # rows of pixels as the network takes them
        return _normalize(x.view(*x.shape[:-1], *image_shape), recipe) if image_shape else x

    def logits(x: Tensor) -> Tensor:
        base.eval()
        fwd = vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)), in_dims=(0, 0, None))
        with torch.no_grad():
            out = torch.cat([fwd(params, buffers, inputs(x[i : i + EVAL_CHUNK]))
                             for i in range(0, x.shape[0], EVAL_CHUNK)], dim=1)
        base.train()
        return out

    def stats(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return logit_stats(logits(x), y)

    def state(epoch: int) -> dict:
        return {"epoch": epoch, "params": params, "buffers": buffers, "momentum": momentum, "active": active,
                "gens": [gens[s].get_state() for s in seeds], "jac_gens": [jac_gens[s].get_state() for s in seeds],
                "aug_gens": [aug_gens[s].get_state() for s in seeds],
                "rng": torch.get_rng_state(), "sums": sums, "counts": counts, "slot": slot, "hist": hist.state_dict()}

    if resume is None:
        record_epoch(hist, 0, stats, eval_sets, active)
        if on_epoch:
            on_epoch(0, hist)
    base.train()
    for epoch in range(first, epochs + 1):
        orders = epoch_order(seeds, gens, row, n, device)
        loss_sum = torch.zeros(S, device=device)
        steps = 0
        for start in range(0, n, batch_size):
            idx = orders[:, start : start + batch_size]  # [S, B]
            xb = x_train[idx]
            if image_shape:
                xb = xb.view(S, idx.shape[1], *image_shape)
                if recipe.augment:  # one draw per seed, as its batch order: equal seeds, equal images
                    lead = [data_seeds.index(s) for s in seeds]
                    xb = crop_flip(xb[lead], [aug_gens[s] for s in seeds])[row]
                xb = _normalize(xb, recipe)
            v = _directions(jac is not None, recipe.projections, jac_gens, seeds, row, idx.shape[1], num_classes,
                            device)
            others = torch.cat([sums[:, :slot], sums[:, slot + 1 :]], 1) if recipe.nsr else sums[:, :1]
            other_counts = torch.cat([counts[:, :slot], counts[:, slot + 1 :]], 1) if recipe.nsr else counts[:, :1]
            grads, (losses, buffers, new_sums, new_counts) = step_fn(params, buffers, xb, y_train[idx], v, others,
                                                                     other_counts, strengths)
            if recipe.nsr:
                sums[:, slot], counts[:, slot] = new_sums, new_counts
                slot = (slot + 1) % queue
            with torch.no_grad():
                dims = {p.dim() for p in params.values()}
                rates = {d: (recipe.lr * active).view(-1, *(1,) * (d - 1)) for d in dims}
                decays = {d: decay.view(-1, *(1,) * (d - 1)) for d in dims} if decay is not None else None
                for k, p in params.items():
                    g = grads[k]
                    if decays is not None:
                        g = g + decays[p.dim()] * p
                    if recipe.momentum:
                        momentum[k] = g.clone() if momentum[k] is None else momentum[k].mul_(recipe.momentum).add_(g)
                        g = momentum[k]
                    p.addcmul_(g, rates[p.dim()], value=-1.0)  # p -= lr * g, a frozen copy's rate 0
            loss_sum += losses
            steps += 1
        losses = loss_sum / steps
        with torch.no_grad():
            finite = torch.isfinite(losses)
            for p in params.values():
                finite &= p.flatten(1).isfinite().all(1)
            newly = freeze_diverged(hist, epoch, finite, active, list(params.values()))
            if newly.any():
                sums[newly], counts[newly] = 0.0, 0.0
        record_epoch(hist, epoch, stats, eval_sets, active, losses)
        if on_epoch:
            on_epoch(epoch, hist)
        if save is not None:
            save(epoch, lambda: state(epoch))
    out = []
    for s in range(S):
        m = copy.deepcopy(models[s])
        m.load_state_dict({**{k: p[s] for k, p in params.items()}, **{k: b[s] for k, b in buffers.items()}})
        out.append(m)
    return out, hist


def _normalize(x: Tensor, recipe: Recipe) -> Tensor:
    """Images [..., C, H, W] less the recipe's per-channel mean, over its std (as they are without one)."""
    if recipe.mean is None:
        return x
    return normalize(x, recipe.mean, recipe.std)


def _directions(on: bool, projections: int, gens: dict, seeds: list[int], row: Tensor, B: int, C: int,
                device) -> Tensor:
    """Random unit directions [S, projections, B, C] for the Jacobian's estimate, each model's from its seed."""
    if not on:
        return torch.zeros(len(row), 1, 1, 1, device=device)
    per_seed = torch.stack([torch.randn(projections, B, C, generator=gens[s]) for s in seeds]).to(device)
    v = per_seed[row]
    return v / v.norm(dim=-1, keepdim=True)
