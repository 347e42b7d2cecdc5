"""The initializations' settings as rules over plain numbers, without torch: a base's std, the
size of a layer's candidate pool, the campaign variants and their per-layer TIE weights. The
config checks (`ibci.runs.validate`, the scripts) apply them before torch loads; the
initializations apply the same ones to what they are given."""

from __future__ import annotations

import math

from ..errors import UserError
from ..vocab import BASES, CAMPAIGN_INITS

# The authors' code's pool defaults (--candidate_weights 5, --max_num_candidate 1000): its draw's scale.
AUTHORS_POOL_FACTOR = 5
AUTHORS_MAX_POOL = 1000


def base_std(base: str, fan_in: int, fan_out: int, std: float | None = None) -> float:
    """Standard deviation of the base distribution for one layer.

    xavier: sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio, normal variant);
    he: sqrt(2 / fan_in) (He et al., fan-in mode, for ReLU);
    normal: the given `std` (used to show vanishing / exploding signals);
    authors: sqrt(2 / K), K = min(5 * fan_out, 1000), the std the authors'
    code draws IBCI's candidates at (the scale-only control, `ibci.init.authors`).
    """
    if base == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if base == "he":
        return math.sqrt(2.0 / fan_in)
    if base == "normal":
        if std is None or not std > 0:
            raise UserError(f"base=normal needs a positive base.std, got {std!r}")
        return float(std)
    if base == "authors":
        return scale_only_std(fan_out)
    raise UserError(f"base={base!r} is not one of {', '.join(BASES)}")


def candidate_std(num_candidates: int) -> float:
    """std of the authors' draw: kaiming_normal_ on a [fan_in, K] pool takes fan_in = K."""
    return math.sqrt(2.0 / num_candidates)


def scale_only_std(fan_out: int) -> float:
    """The std the authors' campaign draws a layer of `fan_out` neurons at (its default pool)."""
    return candidate_std(pool_size(fan_out, AUTHORS_POOL_FACTOR, AUTHORS_MAX_POOL))


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


def check_campaign(variant: str) -> None:
    """Raise UserError unless `variant` names a campaign: ibci, or its ablations tie and iim."""
    if variant not in CAMPAIGN_INITS:
        raise UserError(f"init.name={variant!r} is not one of {', '.join(CAMPAIGN_INITS)}")
