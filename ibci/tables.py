"""The paper's tables from cell records: a tidy frame, then Markdown and LaTeX.

`build_table` turns an experiment spec (experiments/<name>.yaml), the records
of its cells and the paper's numbers into one row per cell (the CSV is that
frame as it is). `to_markdown` and `to_latex` lay the frame out as the paper
does: one row per (base, depth), one column per init, each cell
"mean ± std (best epoch)", with the paper's value beside ours (below it in the
LaTeX, to fit a page's width), then how far we are from the paper and how each
init compares with the baseline. Every output states the protocol, the budget
(seeds x epochs, training images) and n.

Every number is the test error in percent. Spreads are sample standard
deviations (ddof=1). A cell with fewer seeds than the grid asks for, or with a
diverged seed or one that failed to train (`records.seed_status`), is flagged;
such seeds never enter a mean.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pandas as pd

from . import stats
from .grids import experiment_grid
from .errors import UserError
from .records import FAILED_ERROR, seed_status

# How the paper writes the names of bases and inits.
DISPLAY = {
    "xavier": "Xavier",
    "he": "He",
    "normal": "Normal",
    "vanilla": "Vanilla",
    "lsuv": "LSUV",
    "ibci": "IBCI",
    "tie": "TIE",
    "iim": "IIM",
    # Table 3 (the NSR paper's MLP table): networks and init + regularizer pairs.
    "mlp3": "MLP-3",
    "mlp4": "MLP-4",
    "mlp6": "MLP-6",
    "mlp8": "MLP-8",
    "mlp10": "MLP-10",
    "nsr": "+NSR",
    "ibci_nsr": "IBCI + NSR",
    "lsuv_nsr": "LSUV + NSR",
}

PROTOCOLS = {
    "min": "minimal test error over the training epochs, as in the paper; the epoch is picked on the test set",
    "heldout": "test error at the epoch of lowest error on 10,000 held-out training images",
}
EPOCH_WORDS = {"min": "best epoch", "heldout": "selected epoch"}

PAPER_SOURCE = "Mao et al. (CIKM 2021)"

# MNIST's training images and the part the heldout protocol keeps back, as ibci.validate has them
# (TRAIN_SIZE, HELDOUT_SIZE; not imported from there: validate imports torch, a table needs none of it).
TRAIN_IMAGES = 60000
HELDOUT_IMAGES = 10000

STAT_COLUMNS = [
    "protocol", "n", "n_expected", "n_diverged", "n_failed",
    "err_mean", "err_std", "best_epoch_mean",
    "final_mean", "final_std", "last10_mean", "last10_std", "epoch0_mean",
    "paper_mean", "paper_std", "paper_epoch", "diff", "within_2std",
    "diff_vs_baseline", "ci_low", "ci_high", "p_welch",
    "flag", "cell_id",
]  # fmt: skip


def display(value) -> str:
    """A grid value as the paper writes it (`ibci` -> `IBCI`, 2 -> `2`)."""
    return DISPLAY.get(value, str(value)) if isinstance(value, str) else str(value)


def key_columns(spec: dict) -> list[str]:
    """The coordinates that name a table cell: the row keys, then the column key."""
    return [*spec["rows"], spec["column"]]


def _plain(value):
    # numpy integers from a DataFrame must hash like the ints of a YAML grid.
    return value.item() if isinstance(value, np.generic) else value


def _key(values) -> tuple:
    return tuple(_plain(v) for v in values)


def index_records(records: list[dict], keys=("base", "depth", "init")) -> dict[tuple, dict]:
    """Records by their cell coordinates, e.g. ("xavier", 2, "ibci") -> record.

    Two records for the same coordinates (a smoke and a paper run in one
    results dir, say) are an error: which one a table means cannot be guessed.
    """
    out: dict[tuple, dict] = {}
    for rec in records:
        key = _key(rec["cell"][k] for k in keys)
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
    return [_key((*row, col)) for row in rows for col in grid[spec["column"]]]


def _paper_index(paper: pd.DataFrame, keys: list[str]) -> dict[tuple, dict]:
    needed = [*keys, "err_mean", "err_std", "best_epoch"]
    missing = [c for c in needed if c not in paper.columns]
    if missing:
        raise UserError(f"the paper's table lacks columns {missing}; it needs {needed}")
    out: dict[tuple, dict] = {}
    for row in paper.to_dict("records"):
        key = _key(row[k] for k in keys)
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


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def budget_words(budget: dict | None, protocol: str | None = None, *, times: str = "×",
                 detail: bool = False) -> str:
    """What the cells were trained with, e.g. `5 seeds × 100 epochs, 60,000 training images`.

    `budget` is a record's budget (seeds, epochs, train_limit, batch_size,
    lr); a train_limit of None means every training image the protocol
    leaves (the heldout protocol keeps 10,000 back). `detail` adds the batch
    size and learning rate.
    """
    if not budget:
        return "budget unknown (no finished cells)"
    images = budget.get("train_limit")
    if images is None:
        images = TRAIN_IMAGES - (HELDOUT_IMAGES if protocol == "heldout" else 0)
    text = f"{_count(budget['seeds'], 'seed')} {times} {_count(budget['epochs'], 'epoch')}, "
    text += _count(images, "training image")
    if detail and "batch_size" in budget and "lr" in budget:
        text += f" (batch {budget['batch_size']}, lr {budget['lr']:g})"
    return text


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
    protocol, budget = _check_comparable([r for r in map(records.get, table_cells(spec)) if r is not None])
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
        key = _key(row[k] for k in keys)
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
    # The renderers and figures state it; the CSV carries it in each cell_id (s5e100).
    df.attrs["budget"] = budget
    return df


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


def to_csv(df: pd.DataFrame) -> str:
    """The tidy frame as CSV text; %.6g keeps the paper's 2.034 and is byte-stable."""
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n")


# ---- formatting ---------------------------------------------------------------------------------


def _isnan(x) -> bool:
    return x is None or x is pd.NA or (isinstance(x, (float, np.floating)) and math.isnan(x))


def _num(x, decimals: int = 2) -> str:
    if _isnan(x):
        return "n/a"
    s = f"{x:.{decimals}f}"
    # -0.00 would read as a sign where there is none.
    return s.lstrip("-") if float(s) == 0 else s


def _signed(x, decimals: int = 2) -> str:
    s = _num(x, decimals)
    return s if s == "n/a" or s.startswith("-") or float(s) == 0 else "+" + s


def _pvalue(p) -> str:
    if _isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


class _Style:
    """The markup that differs between Markdown and LaTeX."""

    def __init__(self, latex: bool):
        self.latex = latex
        self.pm = " $\\pm$ " if latex else " ± "
        self.dagger = "$^\\dagger$" if latex else " †"
        self.minus = "$-$" if latex else "−"
        self.times = "$\\times$" if latex else "×"

    def text(self, s: str) -> str:
        return "".join(_TEX_ESCAPES.get(ch, ch) for ch in s) if self.latex else s

    def number(self, s: str) -> str:
        # A leading minus in LaTeX text mode is a hyphen; set it as a math minus.
        return self.minus + s[1:] if self.latex and s.startswith("-") else s

    def p(self, p) -> str:
        s = _pvalue(p)
        if s == "n/a":  # Welch's test needs two seeds a side
            return "$p$ n/a" if self.latex else "p n/a"
        return f"$p {s}$" if self.latex else f"p {s}"


def _mean_std(st: _Style, mean, std) -> str:
    """`2.03 ± 0.09`; a single seed has no std, so its mean stands alone (never `± nan`)."""
    if _isnan(std):
        return st.number(_num(mean))
    return f"{st.number(_num(mean))}{st.pm}{_num(std)}"


def _ours_cell(st: _Style, r: dict) -> str:
    mark = st.dagger if r["flag"] else ""
    if r["flag"] == "missing":
        return "missing" + mark
    if r["n"] == 0:
        return "n/a" + mark
    epoch = _num(r["best_epoch_mean"], 0)
    if r["n"] == 1:  # says why there is no std
        return f"{_mean_std(st, r['err_mean'], r['err_std'])} ({epoch}; n = 1){mark}"
    return f"{_mean_std(st, r['err_mean'], r['err_std'])} ({epoch}){mark}"


def _paper_cell(st: _Style, r: dict) -> str:
    if _isnan(r["paper_mean"]):
        return "n/a"
    return f"{_mean_std(st, r['paper_mean'], r['paper_std'])} ({_num(r['paper_epoch'], 0)})"


def _cell_name(spec: dict, r: dict) -> str:
    words = []
    for k in key_columns(spec):
        v = _plain(r[k])
        words.append(f"{k} {v}" if isinstance(v, int) else display(v))
    return ", ".join(words)


def _layout(df: pd.DataFrame, spec: dict):
    """Rows of the paper's layout: (row labels, {column value: row dict}) per table row."""
    keys = key_columns(spec)
    rows_keys, column = keys[:-1], keys[-1]
    by_key = {_key(r[k] for k in keys): r for r in df.to_dict("records")}
    grid = experiment_grid(spec)
    out, previous = [], None
    for row in itertools.product(*(grid[k] for k in rows_keys)):
        row = _key(row)
        # The first row key is printed once per group, as the paper prints the base.
        labels = [display(v) for v in row]
        if previous is not None and row[0] == previous:
            labels[0] = ""
        previous = row[0]
        out.append((labels, {c: by_key[(*row, c)] for c in grid[column]}))
    return out


def _summary_words(df: pd.DataFrame, spec: dict, st: _Style) -> dict:
    """Protocol, epoch and n statements, and the list of flagged cells (baseline included)."""
    protocols = sorted(df["protocol"].dropna().unique())
    protocol = protocols[0] if protocols else None
    if protocol is None:
        protocol_text = "unknown (no finished cells)"
    else:
        protocol_text = f"{st.text(protocol)} ({st.text(PROTOCOLS.get(protocol, 'as the records say'))})"
    n_expected = int(df["n_expected"].iloc[0]) if len(df) else 0
    n_text = f"n = {n_expected} seed{'' if n_expected == 1 else 's'} per cell"
    flagged = [r for r in df.to_dict("records") if r["flag"]]
    if flagged:
        n_text += f", except the flagged cells{st.dagger} (their n below)"
    flagged_text = [
        st.text(f"{_cell_name(spec, r)}: {r['flag']}" + ("" if r["flag"] == "missing" else f" (n = {r['n']})"))
        for r in flagged
    ]
    budget = budget_words(df.attrs.get("budget"), protocol, times=st.times, detail=True)  # nothing to escape
    return dict(protocol=protocol_text, epoch=EPOCH_WORDS.get(protocol, "best epoch"), n=n_text, flagged=flagged_text,
                budget=budget)


def _bootstrap_words(df: pd.DataFrame) -> str:
    b = df.attrs.get("bootstrap")
    if not b:
        return "seeded bootstrap, resampling the seeds within each cell"
    return f"seeded bootstrap, {b['n_resamples']} resamples of the seeds within each cell, seed {b['seed']}"


def _ci(st: _Style, r: dict) -> str:
    if _isnan(r["ci_low"]) or _isnan(r["ci_high"]):
        return "[n/a]"  # fewer than stats.BOOTSTRAP_MIN_N seeds in a cell
    return f"[{st.number(_signed(r['ci_low']))}, {st.number(_signed(r['ci_high']))}]"


def _significance(df: pd.DataFrame, spec: dict, st: _Style) -> tuple[list, list[tuple]]:
    """The baseline comparison: the other columns, then per table row
    (labels, baseline's mean ± std, its n, its dagger, and (diff, CI, p) or None per other column)."""
    baseline = spec["baseline"]
    others = [c for c in spec["grid"][spec["column"]] if c != baseline]
    rows = []
    for labels, cells in _layout(df, spec):
        b = cells[baseline]
        mark = st.dagger if b["flag"] else ""
        if b["flag"] == "missing":
            base, n = "missing", ""
        else:
            base, n = _mean_std(st, b["err_mean"], b["err_std"]), f"n = {b['n']}"
        comparisons = [
            None if _isnan(cells[c]["diff_vs_baseline"])
            else (st.number(_signed(cells[c]["diff_vs_baseline"])), _ci(st, cells[c]), st.p(cells[c]["p_welch"]))
            for c in others
        ]
        rows.append(([st.text(x) for x in labels], base, n, mark, comparisons))
    return others, rows


def _significance_header(spec: dict, st: _Style, others: list) -> list[str]:
    name = st.text(display(spec["baseline"]))
    return [*(st.text(k.capitalize()) for k in spec["rows"]), f"{name} (ours)",
            *(f"{st.text(display(c))} {st.minus} {name}" for c in others)]


def paper_source(spec: dict) -> str:
    """Whose numbers a table prints beside ours (an experiment's `paper_source`, else the IBCI paper)."""
    return spec.get("paper_source", PAPER_SOURCE)


def _caption_title(title: str, source: str = PAPER_SOURCE) -> str:
    """A table's title as a caption's first sentence: `Table 1: minimal ...` names the paper's table it reproduces."""
    m = re.match(r"(Table\s+\S+):\s*(.+)", title)
    if m is None:
        return title
    what = m[2][0].upper() + m[2][1:]
    return f"{what}, ours and as printed in {m[1]} of {source}"


def to_markdown(df: pd.DataFrame, spec: dict) -> str:
    """The table as GitHub Markdown: the paper's layout, ours beside the paper's, then the comparisons."""
    st = _Style(latex=False)
    words = _summary_words(df, spec, st)
    columns = spec["grid"][spec["column"]]
    row_headers = [k.capitalize() for k in spec["rows"]]

    def md_row(cells) -> str:
        return "| " + " | ".join(cells) + " |"

    def md_rule(n_labels: int, n_values: int) -> str:
        return "|" + "|".join([":--"] * n_labels + [":-:"] * n_values) + "|"

    lines = [
        f"## {spec.get('title', spec.get('name', 'Table'))}",
        "",
        f"Protocol: {words['protocol']}.",
        f"Budget: {words['budget']}.",
        f"Each cell is the test error in % as mean ± std over seeds (std with ddof=1), "
        f"with the mean {words['epoch']} in parentheses; {words['n']}.",
        f"Paper: the values printed in {paper_source(spec)}.",
        "",
        md_row([*row_headers, *(f"{display(c)} ({who})" for c in columns for who in ("ours", "paper"))]),
        md_rule(len(row_headers), 2 * len(columns)),
    ]
    layout = _layout(df, spec)
    for labels, cells in layout:
        values = [x for c in columns for x in (_ours_cell(st, cells[c]), _paper_cell(st, cells[c]))]
        lines.append(md_row([*labels, *values]))
    if words["flagged"]:
        lines += ["", "† Flagged cells (diverged seeds and seeds that failed to train are left out of the means and of n):", ""]
        lines += [f"- {f}" for f in words["flagged"]]

    lines += [
        "",
        "### Ours − paper",
        "",
        "Our mean minus the paper's, in percentage points; "
        "yes when |ours − paper| ≤ 2·sqrt(std_ours² + std_paper²).",
        "",
        md_row([*row_headers, *(display(c) for c in columns)]),
        md_rule(len(row_headers), len(columns)),
    ]
    for labels, cells in layout:
        agree = {True: "yes", False: "no"}
        values = []
        for c in columns:
            r = cells[c]
            verdict = "n/a" if _isnan(r["within_2std"]) else agree[bool(r["within_2std"])]
            values.append("n/a" if _isnan(r["diff"]) else f"{_signed(r['diff'])} ({verdict})")
        lines.append(md_row([*labels, *values]))

    if spec.get("baseline") is not None:
        others, body = _significance(df, spec, st)
        header = _significance_header(spec, st, others)
        lines += [
            "",
            f"### Significance vs {display(spec['baseline'])}",
            "",
            f"Difference of mean errors in percentage points, with a 95% CI ({_bootstrap_words(df)}; "
            f"n/a when either cell has fewer than {stats.BOOTSTRAP_MIN_N} seeds, where a bootstrap interval is "
            "falsely narrow) and the p-value of Welch's t-test.",
            "",
            md_row(header),
            md_rule(len(spec["rows"]), len(header) - len(spec["rows"])),
        ]
        for labels, base, n, mark, comparisons in body:
            base_text = f"{base} ({n}){mark}" if n else base + mark
            values = ["n/a" if c is None else f"{c[0]} {c[1]}, {c[2]}" for c in comparisons]
            lines.append(md_row([*labels, base_text, *values]))
    return "\n".join(lines) + "\n"


def _tex_row(cells) -> str:
    return " & ".join(cells) + r" \\"


# Shrinks a tabular to the line width only when it is wider (graphicx's \resizebox reads the
# box's natural \width), so a table that fits keeps its font size; a wider grid still fits.
_TEX_FIT = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


def _tex_groups(rows: list[tuple[list[str], list[list[str]]]]) -> list[str]:
    """Table lines from (labels, sub-rows) groups: a rule where the first label changes, a little space otherwise."""
    lines = []
    for i, (labels, sub_rows) in enumerate(rows):
        if i:
            lines.append(r"\midrule" if labels[0] else r"\addlinespace")
        for j, cells in enumerate(sub_rows):
            lines.append(_tex_row([*(labels if j == 0 else [""] * len(labels)), *cells]))
    return lines


def to_latex(df: pd.DataFrame, spec: dict) -> str:
    """The table as a complete LaTeX `table` float (booktabs and graphicx), caption and label included.

    Compact so that it fits the text width of a one-column article: our value
    above the paper's in each cell, the comparison with the baseline below
    the main table in a smaller font, and each tabular shrunk to \\linewidth
    only if it is still wider. The caption states the table, the protocol,
    the budget and n; the label is `tab:<name>`.
    """
    st = _Style(latex=True)
    words = _summary_words(df, spec, st)
    columns = spec["grid"][spec["column"]]
    n_rows = len(spec["rows"])
    name = spec.get("name", "table")
    title = spec.get("title", name)
    baseline = spec.get("baseline")
    lines = [
        f"% {title}",
        r"% Generated by scripts/make_tables.py (ibci.tables.to_latex): a complete table float.",
        r"% Needs \usepackage{booktabs} (the rules) and \usepackage{graphicx} (\resizebox) in the preamble;",
        rf"% include it with \input{{{name}}} and refer to it with \ref{{tab:{name}}}. It fits \linewidth",
        r"% (one column); in a two-column paper, change table to table* to give it the full text width.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{4pt}",
        _TEX_FIT,
        r"\begin{tabular}{" + "l" * (n_rows + 1) + "c" * len(columns) + "}",
        r"\toprule",
        _tex_row([*(st.text(k.capitalize()) for k in spec["rows"]), "", *(st.text(display(c)) for c in columns)]),
        r"\midrule",
    ]
    lines += _tex_groups([
        ([st.text(x) for x in labels], [["ours", *(_ours_cell(st, cells[c]) for c in columns)],
                                        ["paper", *(_paper_cell(st, cells[c]) for c in columns)]])
        for labels, cells in _layout(df, spec)
    ])
    lines += [r"\bottomrule", r"\end{tabular}}"]

    first = st.text(_caption_title(title, paper_source(spec)))
    paper = "the paper's" if paper_source(spec) in first else f"the values printed in {paper_source(spec)}"
    caption = [
        first + ".",
        ("Top: test" if baseline is not None else "Test") + r" error in \% as mean $\pm$ std over seeds (std with "
        f"ddof = 1), with the mean {words['epoch']} in parentheses; ours above {paper}.",
    ]
    if baseline is not None:
        others, body = _significance(df, spec, st)
        lines += [
            "",
            r"\medskip",
            _TEX_FIT,
            r"\footnotesize",
            r"\begin{tabular}{" + "l" * n_rows + "c" * (1 + len(others)) + "}",
            r"\toprule",
            _tex_row(_significance_header(spec, st, others)),
            r"\midrule",
        ]
        lines += _tex_groups([
            (labels, [[base + mark, *("n/a" if c is None else f"{c[0]}, {c[2]}" for c in comparisons)],
                      [n, *("" if c is None else c[1] for c in comparisons)]])
            for labels, base, n, mark, comparisons in body
        ])
        lines += [r"\bottomrule", r"\end{tabular}}"]
        name_b = st.text(display(baseline))
        caption.append(
            f"Bottom: our {name_b} (mean $\\pm$ std and n), and each init's mean error minus {name_b}'s in "
            rf"percentage points with the $p$-value of Welch's $t$-test and, below, a 95\% CI "
            f"({st.text(_bootstrap_words(df))}; n/a with fewer than {stats.BOOTSTRAP_MIN_N} seeds in a cell)."
        )
    caption += [
        f"Protocol: {words['protocol']}.",
        f"Budget: {words['budget']}; {words['n']}.",
        *(f"{st.dagger}{f}." for f in words["flagged"]),
    ]
    lines += [
        r"\caption[{" + first + "}]{" + " ".join(caption) + "}",
        rf"\label{{tab:{name}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"
