"""Experiments as plain data (no Hydra here): a spec read from its file, its grid, its cells' overrides.

An experiment is a Hydra overlay (configs/experiment/<name>.yaml) whose grid
is its `hydra.sweeper.params`, or a plain spec (experiments/<name>.yaml, e.g.
the verdict's columns). Both the run side (`scripts/sweep.py`) and the
report side (`scripts/make_tables.py`) read them here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from . import CONFIG_DIR, ROOT
from .errors import UserError

EXPERIMENT_DIR = ROOT / "experiments"


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


def _experiment_name(word: str) -> str:
    return word.removeprefix("+").removeprefix("experiment=")


def load_experiment(name: str) -> dict:
    """An experiment's spec: `table1` or `experiment=table1` (configs/experiment/), `verdict`, or a YAML path.

    An overlay (configs/experiment/<name>.yaml) is read as plain YAML: its grid
    is `hydra.sweeper.params`, its table's layout the `table:` block, and its
    cells are composed with `experiment=<name>`, so they are exactly the cells
    of `python run.py -m experiment=<name>`. A spec that is not a product grid
    (experiments/verdict.yaml), or a file given by path, is a plain spec: `grid:`
    or `columns:`, with `overrides:` for its recipe.
    """
    name = _experiment_name(name)
    path = Path(name)
    overlay = CONFIG_DIR / "experiment" / f"{name}.yaml"
    if not path.suffix:
        path = overlay if overlay.is_file() else EXPERIMENT_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted({p.stem for d in (CONFIG_DIR / "experiment", EXPERIMENT_DIR) for p in d.glob("*.yaml")})
        raise UserError(f"experiment {name!r} not found; known experiments: {', '.join(known)}")
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"experiment {name!r}: cannot read {path} ({' '.join(str(e).split())})") from None
    if not isinstance(spec, dict):
        raise UserError(f"experiment {name!r}: {path} holds no mapping")
    if path == overlay:
        params = (spec.get("hydra") or {}).get("sweeper", {}).get("params") or {}
        grid = {k: [_scalar(v) for v in str(values).split(",")] for k, values in params.items()}
        table = dict(spec.get("table") or {})
        shown = table.pop("columns", None)  # the baseline's cells run, but it is no column of the table
        if shown is not None:
            grid[table["column"]] = list(shown)
        spec = {**table, "grid": grid, "overrides": [f"experiment={name}"]}
    spec.setdefault("name", path.stem)
    return spec


def _scalar(text: str):
    """A sweep value as YAML reads it (`2` -> 2), so that grid values compare with the cells' keys."""
    return yaml.safe_load(text.strip())
