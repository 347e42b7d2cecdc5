"""An experiment's grid as plain data: its cells and the overrides that make them (no Hydra here)."""

from __future__ import annotations

import itertools


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
