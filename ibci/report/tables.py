"""The paper's tables as data: from cell records to one tidy frame per table.

`build_table` turns an experiment spec (experiments/<name>.yaml), the records
of its cells and the paper's numbers into one row per cell: our statistics,
the paper's, how far apart they are, and how each init compares with the
baseline (bootstrap CI, Welch's p). `curves_frame` gathers the per-epoch
curves of the same cells for the figures. `ibci.render` lays a frame out as
text (CSV, Markdown, LaTeX); nothing here formats a number.

Every number is the test error in percent. Spreads are sample standard
deviations (ddof=1). A cell with fewer seeds than the grid asks for, or with a
diverged seed or one that failed to train (`records.seed_status`), is flagged;
such seeds never enter a mean.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd

from . import stats
from ..errors import UserError
from ..experiments import experiment_grid
from ..runs.records import FAILED_ERROR, seed_status

STAT_COLUMNS = [
    "protocol", "n", "n_expected", "n_diverged", "n_failed",
    "err_mean", "err_std", "best_epoch_mean",
    "final_mean", "final_std", "last10_mean", "last10_std", "epoch0_mean",
    "paper_mean", "paper_std", "paper_epoch", "diff", "within_2std",
    "diff_vs_baseline", "ci_low", "ci_high", "p_welch",
    "flag", "cell_id",
]  # fmt: skip


def key_columns(spec: dict) -> list[str]:
    """The coordinates that name a table cell: the row keys, then the column key."""
    return [*spec["rows"], spec["column"]]


def _plain(value):
    # numpy integers from a DataFrame must hash like the ints of a YAML grid.
    return value.item() if isinstance(value, np.generic) else value


def cell_key(values) -> tuple:
    """A cell's coordinates as a dict key, e.g. ("xavier", 2, "ibci"), whether read from records or a frame."""
    return tuple(_plain(v) for v in values)


def index_records(records: list[dict], keys=("base", "depth", "init")) -> dict[tuple, dict]:
    """Records by their cell coordinates, e.g. ("xavier", 2, "ibci") -> record.

    Two records for the same coordinates (a smoke and a paper run in one
    results dir, say) are an error: which one a table means cannot be guessed.
    """
    out: dict[tuple, dict] = {}
    for rec in records:
        key = cell_key(rec["cell"][k] for k in keys)
        if key in out:
            raise UserError(
                f"two records for cell {key}: {out[key].get('cell_id')} and {rec.get('cell_id')}; "
                "select one budget (compose the cells) or use separate results dirs"
            )
        out[key] = rec
    return out


def table_cells(spec: dict) -> list[tuple]:
    """The key of every cell the table needs, row by row, columns in grid order (baseline last if added)."""
    grid = experiment_grid(spec)
    rows = itertools.product(*(grid[k] for k in spec["rows"]))
    return [cell_key((*row, col)) for row in rows for col in grid[spec["column"]]]


def _paper_index(paper: pd.DataFrame, keys: list[str]) -> dict[tuple, dict]:
    needed = [*keys, "err_mean", "err_std", "best_epoch"]
    missing = [c for c in needed if c not in paper.columns]
    if missing:
        raise UserError(f"the paper's table lacks columns {missing}; it needs {needed}")
    out: dict[tuple, dict] = {}
    for row in paper.to_dict("records"):
        key = cell_key(row[k] for k in keys)
        if key in out:
            raise UserError(f"the paper's table has two rows for cell {key}")
        out[key] = row
    return out


def _check_comparable(found: list[dict]) -> tuple[str | None, dict | None]:
    """The one protocol and the one budget of a table's records; a table never mixes protocols or budgets."""
    protocols = sorted({r["cell"]["protocol"] for r in found})
    if len(protocols) > 1:
        raise UserError(f"the records mix protocols {protocols}; tabulate one protocol at a time")
    budgets = {json.dumps(r["budget"], sort_keys=True): r.get("cell_id") for r in found}
    if len(budgets) > 1:
        shown = "; ".join(f"{cid}: {b}" for b, cid in budgets.items())
        raise UserError(f"the records have different budgets ({shown}); a table compares equal budgets only")
    return (protocols[0], dict(found[0]["budget"])) if found else (None, None)


def _flag(rec: dict | None, n_expected: int, n_diverged: int, n_failed: int = 0) -> str:
    if rec is None:
        return "missing"
    parts = []
    if len(rec["seeds"]) < n_expected:
        parts.append(f"incomplete {len(rec['seeds'])}/{n_expected}")
    if n_diverged:
        parts.append(f"{n_diverged}/{n_expected} diverged")
    if n_failed:
        parts.append(f"{n_failed}/{n_expected} failed")
    return "; ".join(parts)


def _nan_if_none(x) -> float:
    return math.nan if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def build_table(
    spec: dict,
    records: dict[tuple, dict | None],
    paper: pd.DataFrame,
    *,
    n_expected: int,
    n_resamples: int = stats.BOOTSTRAP_RESAMPLES,
    seed: int = stats.BOOTSTRAP_SEED,
    failed_error: float = FAILED_ERROR,
) -> pd.DataFrame:
    """One row per cell of `spec` (columns: key_columns(spec) + STAT_COLUMNS).

    `records` maps a cell key (row values, then column value, e.g.
    ("xavier", 2, "ibci")) to its record, or to None (or nothing) when the
    cell has not finished. `paper` holds the paper's numbers (the key columns
    plus err_mean, err_std, best_epoch). `n_expected` is the seeds per cell
    the grid asks for. The baseline comparison (diff, bootstrap CI, Welch p)
    is filled for every cell whose column is not the baseline. Seeds that
    diverged or failed (best error >= `failed_error`) are counted, not averaged.
    """
    keys = key_columns(spec)
    found = [r for r in map(records.get, table_cells(spec)) if r is not None]
    protocol, budget = _check_comparable(found)
    paper_rows = _paper_index(paper, keys)
    baseline = spec.get("baseline")
    column_pos = len(keys) - 1

    rows, kept = [], {}
    for key in table_cells(spec):
        rec = records.get(key)
        seeds = rec["seeds"] if rec is not None else []
        status = [seed_status(s, failed_error) for s in seeds]
        ok = [s for s, st in zip(seeds, status) if st == "ok"]
        kept[key] = [s["selected_error"] for s in ok]
        err = stats.summarize(kept[key])
        final = stats.summarize([s["final_error"] for s in ok])
        last10 = stats.summarize([s["last10_error"] for s in ok])
        p = paper_rows.get(key, {})
        paper_mean, paper_std = _nan_if_none(p.get("err_mean")), _nan_if_none(p.get("err_std"))
        known = not any(math.isnan(v) for v in (err.mean, err.std, paper_mean, paper_std))
        rows.append({
            **dict(zip(keys, key)),
            "protocol": protocol,
            "n": len(ok),
            "n_expected": n_expected,
            "n_diverged": status.count("diverged"),
            "n_failed": status.count("failed"),
            "err_mean": err.mean,
            "err_std": err.std,
            "best_epoch_mean": stats.summarize([s["selected_epoch"] for s in ok]).mean,
            "final_mean": final.mean,
            "final_std": final.std,
            "last10_mean": last10.mean,
            "last10_std": last10.std,
            "epoch0_mean": stats.summarize([s["epoch0_error"] for s in ok]).mean,
            "paper_mean": paper_mean,
            "paper_std": paper_std,
            "paper_epoch": _nan_if_none(p.get("best_epoch")),
            "diff": err.mean - paper_mean,
            # NA, not False, when there is nothing to compare: absence of evidence is not disagreement.
            "within_2std": stats.within_k_std(err.mean, err.std, paper_mean, paper_std) if known else pd.NA,
            "flag": _flag(rec, n_expected, status.count("diverged"), status.count("failed")),
            "cell_id": rec.get("cell_id", "") if rec is not None else "",
        })

    for row in rows:
        key = cell_key(row[k] for k in keys)
        row.update(diff_vs_baseline=math.nan, ci_low=math.nan, ci_high=math.nan, p_welch=math.nan)
        if baseline is None or key[column_pos] == baseline:
            continue
        ours, base = kept[key], kept[(*key[:column_pos], baseline)]
        if not ours or not base:
            continue
        low, high = stats.bootstrap_diff_ci(ours, base, n_resamples=n_resamples, seed=seed)
        row.update(
            diff_vs_baseline=stats.summarize(ours).mean - stats.summarize(base).mean,
            ci_low=low,
            ci_high=high,
            p_welch=stats.welch_p(ours, base),
        )

    df = pd.DataFrame(rows, columns=[*keys, *STAT_COLUMNS])
    df = df.astype({"n": "int64", "n_expected": "int64", "n_diverged": "int64", "n_failed": "int64",
                    "within_2std": "boolean"})
    df["protocol"] = df["protocol"].astype("string")
    df.attrs["bootstrap"] = {"n_resamples": n_resamples, "seed": seed, "level": stats.CI_LEVEL}
    # ibci.render and the figures state it; the CSV carries it in each cell_id (s5e100).
    df.attrs["budget"] = budget
    df.attrs["trained_on"] = trained_on(found)
    return df


def trained_on(found: list[dict]) -> list[str]:
    """Where the records' models trained, one "cuda, torch 2.11.0+cu130" per distinct device and torch.

    Tables state it: a GPU's and a CPU's float sums differ in the last bits, so
    the same cell trained on each agrees within seed noise, not to the digit.
    """
    seen = {(r["host"]["device"], r.get("versions", {}).get("torch", "unknown"))
            for r in found if r.get("host", {}).get("device")}
    return [f"{device}, torch {torch}" for device, torch in sorted(seen)]


def curves_frame(spec: dict, records: dict[tuple, dict | None], metrics: dict[tuple, pd.DataFrame],
                 failed_error: float = FAILED_ERROR, value: str = "test_error") -> pd.DataFrame:
    """Long per-epoch test errors (key columns, seed, epoch, test_error) of the finished cells, in table order.

    `value` picks another metrics.csv column instead (e.g. test_intra_var;
    cells whose metrics lack it are left out). `metrics` maps a cell key to
    its metrics.csv as read. Diverged and failed
    seeds are left out, as in the tables: a diverged seed's NaN tail would
    otherwise make the mean curve switch between different sets of seeds.
    The frame's attrs carry the records' protocol and budget, for the figure's title.
    """
    keys = key_columns(spec)
    columns = [*keys, "seed", "epoch", value]
    protocol, budget = _check_comparable([r for r in map(records.get, table_cells(spec)) if r is not None])
    parts = []
    for key in table_cells(spec):
        rec, m = records.get(key), metrics.get(key)
        if rec is None or m is None or value not in m:
            continue
        left_out = {s["seed"] for s in rec["seeds"] if seed_status(s, failed_error) != "ok"}
        part = m.loc[~m["seed"].isin(left_out), ["seed", "epoch", value]]
        part = part.sort_values(["seed", "epoch"], kind="stable").assign(**dict(zip(keys, key)))
        parts.append(part[columns])
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    out.attrs.update(protocol=protocol, budget=budget)
    return out


def as_panels(frame: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """A table's frame in the figures' terms: panel rows `base`, panels `depth`, lines `init`.

    Table 1 and 2 are that already; another grid (Table 3: rows net, column
    method) gets one row of panels (base "") with its last row key across and
    its column as lines.
    """
    rows, column = spec["rows"], spec["column"]
    if list(rows) == ["base", "depth"] and column == "init":
        return frame
    out = frame.rename(columns={rows[-1]: "depth", column: "init"})
    if len(rows) == 1:
        out["base"] = ""
    else:
        out = out.rename(columns={rows[0]: "base"})
    out.attrs.update(frame.attrs)
    return out
