"""Checks of a resolved run config, before any work is done.

Each failure is a `UserError` whose one-line message names the setting, the bad
value and what is allowed, so a typo costs a second instead of a crashed sweep.
"""

from __future__ import annotations

import math

from ..errors import UserError
from ..init.settings import check_pool, check_tie_weights
from ..nets.spec import N_CLASSES, hidden_widths, is_cnn, is_zoo
from ..vocab import (AUGMENTS, BASES, CAMPAIGN_INITS, CONV_POOLS, DATA, GENERAL_REGS, INITS, NSR_READINGS, PROTOCOLS, READINGS, REGS, SCOPES,
                     STRENGTH_KEYS, UNIFORM_BIAS, train_images)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name}={value!r} must be a positive integer")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(name: str, value) -> float:
    if not _is_number(value) or not value > 0:
        raise UserError(f"{name}={value!r} must be a positive number")
    return float(value)


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise UserError(f"{name}={value!r} is not one of: {', '.join(map(str, allowed))}")


def _cuda_available() -> bool:
    import torch  # here only: every other check is over plain values, and a mistake is reported before torch loads

    return torch.cuda.is_available()


def available_images(cfg: dict) -> int:
    """Training images the protocol leaves for training (heldout keeps 10k back for validation)."""
    return train_images(cfg["data"]["name"], cfg["protocol"])


def train_size(cfg: dict) -> int:
    """How many images the cell trains on."""
    return train_images(cfg["data"]["name"], cfg["protocol"], cfg["data"]["train_limit"])


def validate(cfg: dict, here: bool = True) -> None:
    """Raise UserError for the first bad setting in a resolved run config.

    `here`: the cell runs on this machine, so also check that it has what the
    config asks for (a CUDA GPU); a launcher that runs cells elsewhere passes False.
    """
    try:
        _validate(cfg, here)
    except KeyError as e:  # a setting deleted on the command line (`~seeds`)
        raise UserError(f"the config has no {e.args[0]!r}, which a run needs (deleted with ~?)") from None


def _validate(cfg: dict, here: bool) -> None:
    _one_of("base", cfg["base"]["name"], BASES)
    _one_of("init", cfg["init"]["name"], INITS)
    _one_of("data", cfg["data"]["name"], tuple(sorted(DATA)))
    _one_of("protocol", cfg["protocol"], PROTOCOLS)
    if cfg["depth"] not in cfg["networks"]:
        raise UserError(f"depth={cfg['depth']!r} is not one of: {', '.join(map(str, cfg['networks']))}")
    name = "hidden" if cfg.get("hidden") is not None else f"networks.{cfg['depth']}"
    hidden = hidden_widths(cfg)
    if not hidden or not all(type(w) is int and w > 0 for w in hidden):
        raise UserError(f"{name}={hidden!r} must be a list of positive integer widths")
    widths = [*hidden, N_CLASSES]  # of every layer after the input; their number is the depth
    _check_reg(cfg.get("reg", {"name": "none"}), len(widths))
    for key in ("seeds", "epochs", "batch_size"):
        _positive_int(key, cfg[key])
    if isinstance(cfg["seed_offset"], bool) or not isinstance(cfg["seed_offset"], int) or cfg["seed_offset"] < 0:
        raise UserError(f"seed_offset={cfg['seed_offset']!r} must be a non-negative integer")
    _positive_number("lr", cfg["lr"])
    if cfg["base"]["name"] == "normal":
        _positive_number("base.std", cfg["base"]["std"])
    bias = cfg["base"]["bias"]
    if not _is_number(bias) and bias != UNIFORM_BIAS:
        raise UserError(f"base.bias={bias!r} must be a finite number or {UNIFORM_BIAS}")
    if bias == UNIFORM_BIAS and cfg["init"]["name"] in CAMPAIGN_INITS:
        raise UserError(f"base.bias={UNIFORM_BIAS} is for init=vanilla and init=lsuv; a campaign's biases are constant")
    available = available_images(cfg)
    limit = cfg["data"]["train_limit"]
    if limit is not None:
        _positive_int("data.train_limit", limit)
        if limit > available:
            raise UserError(f"data.train_limit={limit} exceeds the {available} training images available (1..{available})")
    if cfg["batch_size"] > train_size(cfg):
        raise UserError(f"batch_size={cfg['batch_size']} is larger than the training set ({train_size(cfg)} images)")
    _positive_number("failed_error", cfg["failed_error"])
    threads = cfg.get("threads")
    if threads is not None:
        _positive_int("threads", threads)
    every = cfg.get("checkpoint_every")
    if every is not None:
        _positive_int("checkpoint_every", every)
    _one_of("device", str(cfg["device"]).split(":")[0], ("cpu", "cuda"))
    if here and str(cfg["device"]).startswith("cuda") and not _cuda_available():
        raise UserError(f"device={cfg['device']} but no CUDA GPU is available here; use device=cpu")
    init = cfg["init"]
    if init["name"] == "lsuv":
        _positive_int("init.num_samples", init["num_samples"])
        _positive_number("init.tol", init["tol"])
        _positive_int("init.max_iter", init["max_iter"])
        for key in ("output_layer", "orthonormal"):
            if not isinstance(init[key], bool):
                raise UserError(f"init.{key}={init[key]!r} must be true or false")
    if init["name"] in CAMPAIGN_INITS:
        _positive_number("init.pool_factor", init["pool_factor"])
        _positive_int("init.max_pool", init["max_pool"])
        if init["num_samples"] is not None:
            _positive_int("init.num_samples", init["num_samples"])
        _one_of("init.orthogonal_scope", init["orthogonal_scope"], SCOPES)
        _one_of("init.reading", init["reading"], READINGS)
        if init["reading"] == "authors":
            _one_of("init.authors_arithmetic", init.get("authors_arithmetic", "float32"), ("float32", "float64"))
        _check_campaign_layers(init, widths)
    check_cnn(cfg)
    _check_layers(cfg)


def trains_on_general(cfg: dict) -> bool:
    """Whether a cell needs the general engine (ibci.train.general): a penalty only autograd computes, layers
    the fast engines do not have (BatchNorm, Dropout, the CIFAR-10 networks), momentum or augmentation."""
    reg = cfg.get("reg", {}).get("name", "none")
    return (reg in GENERAL_REGS or bool(cfg.get("batchnorm")) or bool(cfg.get("dropout")) or is_zoo(cfg)
            or bool(cfg.get("momentum")) or cfg.get("augment", "none") != "none")


def _check_layers(cfg: dict) -> None:
    for key in ("batchnorm", "observe"):
        if not isinstance(cfg.get(key, False), bool):
            raise UserError(f"{key}={cfg[key]!r} must be true or false")
    rate = cfg.get("dropout", 0.0)
    if not _is_number(rate) or not 0 <= rate < 1:
        raise UserError(f"dropout={rate!r} must be a rate in [0, 1)")
    if is_cnn(cfg) and (cfg.get("batchnorm") or rate):
        raise UserError("batchnorm and dropout are for MLPs; net=cnn is the LeNet of configs/net/cnn.yaml as it is")
    reg = cfg.get("reg", {"name": "none"})
    if (trains_on_general(cfg) or is_cnn(cfg)) and reg["name"] == "nsr" and (
            reg.get("reading", "logits") != "logits" or reg["layers"] != 1 or isinstance(reg["lambda"], list)):
        raise UserError("this cell trains on the general or the CNN engine, whose NSR penalizes the logits: it "
                        "takes reg.reading=logits, reg.layers=1 and one reg.lambda")
    _one_of("augment", cfg.get("augment", "none"), AUGMENTS)
    if not _is_number(cfg.get("momentum", 0.0)) or not 0 <= cfg.get("momentum", 0.0) < 1:
        raise UserError(f"momentum={cfg['momentum']!r} must be in [0, 1)")
    image = DATA[cfg["data"]["name"]].pixels
    if is_zoo(cfg):
        if image != 3 * 32 * 32:
            raise UserError(f"net={cfg['arch']} is for CIFAR-10's 32x32 colour images; give data=cifar10")
        if cfg["base"]["name"] != "official" or cfg["init"]["name"] != "vanilla":
            raise UserError(f"net={cfg['arch']} starts from the NSR code's own init: base=official init=vanilla "
                            "(IBCI and LSUV on it: ibci.init_ from Python)")
        if cfg.get("batchnorm") or rate:
            raise UserError(f"batchnorm and dropout are for MLPs; net={cfg['arch']} has its own")
    elif cfg["base"]["name"] == "official":
        raise UserError("base=official is the NSR code's init of net=resnet18 and net=vgg19 only")
    if cfg.get("augment", "none") == "crop_flip" and not is_zoo(cfg):
        raise UserError("augment=crop_flip crops and flips the images of net=resnet18 or net=vgg19 (data=cifar10)")
    if reg.get("layer") is not None and reg["name"] == "nsr" and not is_zoo(cfg):  # without NSR it is not read
        raise UserError(f"reg.layer={reg['layer']!r} names a layer of net=resnet18 or net=vgg19")
    if cfg.get("observe") and (is_cnn(cfg) or trains_on_general(cfg)):
        raise UserError("observe=true is for MLPs on the fast engine (no BatchNorm, Dropout, L1, L2 or Jacobian)")


def _check_reg(reg: dict, n_layers: int) -> None:
    _one_of("reg", reg["name"], REGS)
    for key in [STRENGTH_KEYS[reg["name"]]] if reg["name"] in STRENGTH_KEYS else []:
        if not _is_number(reg[key]) or reg[key] < 0:
            raise UserError(f"reg.{key}={reg[key]!r} must be a non-negative number")
    if reg["name"] == "jacobian":
        _positive_int("reg.projections", reg["projections"])
    if reg["name"] != "nsr":
        return
    _positive_int("reg.queue_batches", reg["queue_batches"])
    _positive_int("reg.layers", reg["layers"])
    if reg["layers"] > n_layers:
        raise UserError(f"reg.layers={reg['layers']} but the network has {n_layers} layers")
    lam = reg["lambda"]
    lams = lam if isinstance(lam, list) else [lam]
    if not all(_is_number(v) and v >= 0 for v in lams):
        raise UserError(f"reg.lambda={lam!r} must be a non-negative number or a list of them")
    if isinstance(lam, list) and len(lam) != reg["layers"]:
        raise UserError(f"reg.lambda={lam!r} has {len(lam)} values but reg.layers={reg['layers']}")
    reading = reg.get("reading", "logits")
    _one_of("reg.reading", reading, NSR_READINGS)
    if reading != "logits" and (isinstance(lam, list) or reg["layers"] != 1):
        raise UserError(f"reg.reading={reading} chooses its layers itself; it takes one reg.lambda and reg.layers=1")
    if reading == "penultimate" and n_layers < 2:
        raise UserError("reg.reading=penultimate needs a hidden layer")


def _check_campaign_layers(init: dict, widths: list[int]) -> None:
    """The campaign's per-layer settings, checked here so that a bad one fails before anything is written."""
    weights = init["tie_weights"]
    if weights is not None:
        if not isinstance(weights, list) or not all(map(_is_number, weights)):
            raise UserError(f"init.tie_weights={weights!r} must be a list of {len(widths)} numbers in [0, 1], "
                            f"one per layer")
        check_tie_weights(weights, len(widths))  # length and range, in the campaign's words
    for width in widths:
        check_pool(width, init["pool_factor"], init["max_pool"])


def check_cnn(cfg: dict) -> None:
    """Raise UserError for a setting `net=cnn` cannot honour (nothing to check for an MLP)."""
    if not is_cnn(cfg):
        return
    if DATA[cfg["data"]["name"]].pixels != 28 * 28:
        raise UserError(f"net=cnn is the LeNet of 28x28 grey images; data={cfg['data']['name']} has other images")
    widths = hidden_widths(cfg)
    if len(widths) != 3:
        raise UserError(f"hidden={widths!r} must hold 3 widths for net=cnn: conv1 filters, conv2 filters, "
                        "hidden units")
    if cfg["base"]["name"] == "authors":
        raise UserError("base=authors is the std of the authors' MLP campaign; net=cnn takes xavier, he or normal")
    init = cfg["init"]
    if init["name"] in CAMPAIGN_INITS:
        if init.get("reading", "paper") != "paper":
            raise UserError(f"init.reading={init['reading']} is for MLPs (the authors' code has no conv layers); "
                            "net=cnn takes init.reading=paper")
        pool = init.get("conv_pool", "mean")
        if pool not in CONV_POOLS:
            raise UserError(f"init.conv_pool={pool!r} is not one of: {', '.join(CONV_POOLS)}")
