"""The campaign's settings as rules over plain numbers, without torch: the size of a layer's
candidate pool and the per-layer TIE weights. The config checks (`ibci.runs.validate`) apply
them before torch loads; the campaigns apply the same ones to what they are given."""

from __future__ import annotations

import math

from ..errors import UserError


def pool_size(n_out: int, pool_factor: float, max_pool: int) -> int:
    """K = min(pool_factor * n_out, max_pool) candidates for a layer of n_out neurons."""
    return int(min(math.floor(pool_factor * n_out), max_pool))


def check_pool(n_out: int, pool_factor: float, max_pool: int) -> None:
    """Raise UserError when a layer of n_out neurons would draw fewer candidates than it elects."""
    K = pool_size(n_out, pool_factor, max_pool)
    if K < n_out:
        raise UserError(
            f"init.pool_factor={pool_factor} and init.max_pool={max_pool} give a pool of {K} "
            f"candidates for a layer of {n_out} neurons; need pool_factor >= 1 and "
            f"max_pool >= {n_out}"
        )


def check_tie_weights(weights: list[float], n_layers: int) -> None:
    """Raise UserError unless `weights` holds one TIE weight in [0, 1] per layer."""
    shown = [float(w) for w in weights]
    if len(shown) != n_layers:
        values = "value" if len(shown) == 1 else "values"
        raise UserError(
            f"init.tie_weights={shown} has {len(shown)} {values} "
            f"but the network has {n_layers} layers"
        )
    bad = [w for w in shown if not 0.0 <= w <= 1.0]
    if bad:
        raise UserError(f"init.tie_weights={shown} has {bad[0]} outside [0, 1]")
