"""The boundary between users and the library: config composition and error reporting.

Entry points (`run.py`, `scripts/`) use these; the rest of `ibci` never sees
Hydra. An experiment (`experiments/<name>.yaml`) names a grid of cells; every
cell is the Hydra config composed from the grid's overrides plus the user's.
"""

from __future__ import annotations

import functools
import itertools
import sys
from pathlib import Path

import yaml

from .errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
EXPERIMENT_DIR = ROOT / "experiments"
INTERRUPTED = "interrupted: finished cells are kept; run the same command again to resume"


def compose_many(override_lists: list[list[str]]) -> list[dict]:
    """The resolved run configs for several override lists, as run.py would see them."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    out = []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for overrides in override_lists:
            try:
                cfg = hydra_compose("config", overrides=list(overrides))
            except (HydraException, OmegaConfBaseException) as e:
                raise UserError(" ".join(str(e).split())) from None
            out.append(OmegaConf.to_container(cfg, resolve=True))
    return out


def compose(overrides: list[str] = ()) -> dict:
    """The resolved run config for `overrides`, as run.py would see it."""
    return compose_many([list(overrides)])[0]


def load_experiment(name: str) -> dict:
    """An experiment spec by name (`table1`) or path."""
    path = Path(name)
    if not path.suffix:
        path = EXPERIMENT_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml")))
        raise UserError(f"experiment {name!r} not found; known experiments: {known}")
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("name", path.stem)
    return spec


def grid_cells(grid: dict) -> list[dict]:
    """Every combination of the grid's values, in the grid's key order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def cell_overrides(cell: dict) -> list[str]:
    return [f"{k}={v}" for k, v in cell.items()]


def experiment_grid(spec: dict) -> dict:
    """The grid an experiment must run: its own, plus the baseline column if that is not in it."""
    grid = {k: list(v) for k, v in spec["grid"].items()}
    column, baseline = spec.get("column"), spec.get("baseline")
    if baseline is not None and baseline not in grid[column]:
        grid[column].append(baseline)
    return grid


def experiment_jobs(spec: dict, overrides: list[str]) -> list[list[str]]:
    """The full override list of every cell an experiment runs, user overrides first.

    A grid experiment (`grid:`) runs every combination; a verdict (`columns:`)
    runs each column per row in blocks of seeds (`ibci.verdict.cells`).
    """
    if "grid" in spec:
        fixed = list(spec.get("overrides", []))  # the experiment's recipe, which the user's overrides may change
        return [[*fixed, *overrides, *cell_overrides(c)] for c in grid_cells(experiment_grid(spec))]
    from . import verdict

    budget = compose(overrides)
    return [[*overrides, *c["overrides"]] for c in verdict.cells(spec, budget["seeds"], budget["epochs"])]


def report_user_errors(fn):
    """Turn a UserError into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
