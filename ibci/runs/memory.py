"""How much memory a stack of cells needs, estimated from its configs before any work, against what is free.

A typo (`seeds=100000`) would otherwise sit for minutes allocating, or be
killed by the kernel, before saying anything. The estimate counts what
dominates: the stack's parameters (the engine holds a packed copy and its
updates), the data, one batch's activations and gradients, an evaluation
chunk, and the campaign's responses (the candidates' outputs on the images
it scores). It is meant to be within a factor of two, which is all a
refusal needs.
"""

from __future__ import annotations

import os

import torch

from ..errors import UserError
from ..init.settings import pool_size
from ..nets.spec import N_CLASSES, hidden_widths, is_cnn, is_zoo
from ..vocab import DATA, HELDOUT_SIZE, train_images

FLOAT = 4
EVAL_CHUNK = 5000  # images an MLP evaluation pass holds at once (ibci.train.mlp.logits_shared)
CNN_EVAL = 100  # and a CNN's (ibci.train.cnn)
CNN_SIDE = 24  # the first conv layer's output side, where a CNN's activations peak


def _widths(cfg: dict) -> list[int]:
    return [DATA[cfg["data"]["name"]].pixels, *hidden_widths(cfg), N_CLASSES]


def _params(cfg: dict) -> int:
    if is_zoo(cfg):
        return sum(p.numel() for p in _zoo_net(cfg).parameters())
    if is_cnn(cfg):
        c1, c2, h = hidden_widths(cfg)
        return c1 * 26 + c2 * (c1 * 25 + 1) + (c2 * 16 + 1) * h + (h + 1) * N_CLASSES
    w = _widths(cfg)
    return sum((i + 1) * o for i, o in zip(w[:-1], w[1:]))


def estimate(cells: list[dict]) -> dict[str, int]:
    """Bytes per part for training `cells` as one stack (their seeds side by side)."""
    first = cells[0]
    models = int(first["seeds"]) * len(cells)
    n_train = train_images(first["data"]["name"], first["protocol"], first["data"]["train_limit"])
    n_all = DATA[first["data"]["name"]].train + DATA[first["data"]["name"]].test
    batch = int(first["batch_size"])
    if is_zoo(first):  # every leaf's output is kept for the backward pass; evaluation as the general engine's
        layers, widest = _zoo_activations(first)
        chunk = 1000  # ibci.train.general.EVAL_CHUNK
    elif is_cnn(first):  # a conv layer's maps are its widest response; evaluation goes CNN_EVAL images at a time
        widest, chunk, layers = max(hidden_widths(first)[0] * CNN_SIDE**2, max(hidden_widths(first))), CNN_EVAL, None
    else:
        widest, chunk, layers = max(_widths(first)[1:]), EVAL_CHUNK, sum(_widths(first))
    parts = {
        "weights": 3 * models * _params(first) * FLOAT,
        "data": (n_all + n_train) * DATA[first["data"]["name"]].pixels * FLOAT,  # the splits, one order's gather
        "activations": 4 * models * batch * (layers or widest) * FLOAT,
        "evaluation": 2 * models * min(chunk, max(n_train, HELDOUT_SIZE)) * widest * FLOAT,
    }
    campaign = 0
    for cfg in cells:
        init = cfg["init"]
        if "pool_factor" in init:
            scored = n_train if init.get("num_samples") is None else min(int(init["num_samples"]), n_train)
            pool = max(pool_size(w, init["pool_factor"], init["max_pool"]) for w in hidden_widths(cfg) + [N_CLASSES])
            campaign = max(campaign, 3 * scored * pool * FLOAT)  # responses, their squares and the scores' work
    parts["campaign"] = campaign
    return parts


def _zoo_net(cfg: dict):
    from ..nets import zoo

    with torch.device("meta"):
        return zoo.BUILDERS[cfg["arch"]](N_CLASSES)


def _zoo_activations(cfg: dict) -> tuple[int, int]:
    from ..nets import zoo

    return zoo.activation_floats(_zoo_net(cfg), (3, 32, 32))


def available() -> int | None:
    """Bytes this machine can give a new allocation now (MemAvailable), or None where it cannot say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_fits(cells: list[dict], free: int | None = None) -> None:
    """Raise UserError, in one line naming the estimate and what is free, when the stack cannot fit."""
    if str(cells[0]["device"]).startswith("cuda"):
        return  # the stack lives in the GPU's memory, which CUDA reports itself when it runs out
    free = available() if free is None else free
    if free is None:
        return
    parts = estimate(cells)
    need = sum(parts.values())
    if need > free:
        biggest = ", ".join(f"{k} {_gb(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v > need / 20)
        seeds = cells[0]["seeds"]
        raise UserError(f"a stack of {len(cells)} cell(s) x {seeds} seeds needs about {_gb(need)} ({biggest}) but this "
                        f"machine has {_gb(free)} available; use fewer seeds (seeds=), fewer cells a stack "
                        "(stack_cells=1) or a smaller network")
