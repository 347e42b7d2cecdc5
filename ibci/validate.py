"""Checks of a resolved run config, before any work is done.

Each failure is a `UserError` whose one-line message names the setting, the bad
value and what is allowed, so a typo costs a second instead of a crashed sweep.
"""

from __future__ import annotations

import torch

from .errors import UserError
from .inits import BASES

INITS = ("vanilla", "lsuv", "ibci", "tie", "iim")
CAMPAIGN_INITS = ("ibci", "tie", "iim")
PROTOCOLS = ("min", "heldout")
DATASETS = ("mnist",)
TRAIN_SIZE = 60000
HELDOUT_SIZE = 10000


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name}={value!r} must be a positive integer")
    return value


def _positive_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"{name}={value!r} must be a positive number")
    return float(value)


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise UserError(f"{name}={value!r} is not one of: {', '.join(map(str, allowed))}")


def train_size(cfg: dict) -> int:
    """How many images the cell trains on."""
    available = TRAIN_SIZE - (HELDOUT_SIZE if cfg["protocol"] == "heldout" else 0)
    limit = cfg["data"]["train_limit"]
    return available if limit is None else limit


def validate(cfg: dict) -> None:
    """Raise UserError for the first bad setting in a resolved run config."""
    _one_of("base", cfg["base"]["name"], BASES)
    _one_of("init", cfg["init"]["name"], INITS)
    _one_of("data", cfg["data"]["name"], DATASETS)
    _one_of("protocol", cfg["protocol"], PROTOCOLS)
    if cfg["depth"] not in cfg["networks"]:
        raise UserError(f"depth={cfg['depth']!r} is not one of: {', '.join(map(str, cfg['networks']))}")
    for key in ("seeds", "epochs", "batch_size"):
        _positive_int(key, cfg[key])
    if isinstance(cfg["seed_offset"], bool) or not isinstance(cfg["seed_offset"], int) or cfg["seed_offset"] < 0:
        raise UserError(f"seed_offset={cfg['seed_offset']!r} must be a non-negative integer")
    _positive_number("lr", cfg["lr"])
    if cfg["base"]["name"] == "normal":
        _positive_number("base.std", cfg["base"]["std"])
    available = TRAIN_SIZE - (HELDOUT_SIZE if cfg["protocol"] == "heldout" else 0)
    limit = cfg["data"]["train_limit"]
    if limit is not None:
        _positive_int("data.train_limit", limit)
        if limit > available:
            raise UserError(f"data.train_limit={limit} exceeds the {available} training images available (1..{available})")
    if cfg["batch_size"] > train_size(cfg):
        raise UserError(f"batch_size={cfg['batch_size']} is larger than the training set ({train_size(cfg)} images)")
    threads = cfg.get("threads")
    if threads is not None:
        _positive_int("threads", threads)
    _one_of("device", str(cfg["device"]).split(":")[0], ("cpu", "cuda"))
    if str(cfg["device"]).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={cfg['device']} but no CUDA GPU is available here; use device=cpu")
    init = cfg["init"]
    if init["name"] == "lsuv":
        _positive_int("init.num_samples", init["num_samples"])
        _positive_number("init.tol", init["tol"])
        _positive_int("init.max_iter", init["max_iter"])
    if init["name"] in CAMPAIGN_INITS:
        _positive_number("init.pool_factor", init["pool_factor"])
        _positive_int("init.max_pool", init["max_pool"])
        if init["num_samples"] is not None:
            _positive_int("init.num_samples", init["num_samples"])
        _one_of("init.orthogonal_scope", init["orthogonal_scope"], ("global", "per_class"))
