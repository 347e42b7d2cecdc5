"""Finished runs as pandas frames, read from their records alone (no config is recomposed).

    cells = ibci.load_cells("results")   # one row per seed: the cell's keys, budget, per-seed summary
    runs = ibci.load_runs("results")     # one row per seed x epoch: the same keys plus metrics.csv's columns

Every column a record has is kept, so runs written before a setting existed
still load (their column is empty where newer runs have a value).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import records


def _cell_columns(rec: dict) -> dict:
    budget = {f"budget_{k}": v for k, v in rec["budget"].items()}
    return {"cell_id": rec["cell_id"], **records.cell_of(rec), **budget}


def load_cells(results_dir: str | Path, failed_error: float = records.FAILED_ERROR) -> pd.DataFrame:
    """One row per seed of every finished cell under `<results_dir>/runs/`.

    Columns: cell_id, the cell's keys (base, init, depth, net, reg, data,
    protocol), its budget (budget_seeds, budget_epochs, ...), the seed's
    summary (seed, min_error, best_epoch, final_error, ...) and `status`
    (ok, diverged or failed: only ok seeds belong in a mean).
    """
    rows = []
    for rec in records.load_records(results_dir):
        for s in rec["seeds"]:
            rows.append({**_cell_columns(rec), **s, "status": records.seed_status(s, failed_error)})
    return pd.DataFrame(rows)


def load_runs(results_dir: str | Path) -> pd.DataFrame:
    """One row per seed x epoch of every finished cell: the cell's columns, then its metrics.csv's."""
    parts = []
    runs = Path(results_dir) / "runs"
    for rec in records.load_records(results_dir):
        try:
            m = pd.read_csv(runs / rec["cell_id"] / "metrics.csv")
        except (OSError, ValueError):
            continue  # a done cell without readable curves still has its record (load_cells)
        parts.append(m.assign(**_cell_columns(rec)))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    first = ["cell_id", *_key_columns(out), "seed", "epoch"]
    return out[first + [c for c in out.columns if c not in first]]


def _key_columns(frame: pd.DataFrame) -> list[str]:
    keys = ("base", "init", "depth", "net", "reg", "data", "protocol")
    return [k for k in keys if k in frame.columns]
