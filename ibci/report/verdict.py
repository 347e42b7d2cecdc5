"""The reproduction verdict: the paper's claims tested under every reading of IBCI.

An experiment spec (`experiments/verdict.yaml`) names columns (each a set of
overrides: a reading of IBCI, a comparator, a control), the rows (base x
depth) and the claims (column a against column b, per row). This module turns
the spec into the cells to run and, given each cell's per-seed values, into
the verdict: per claim, reading and row the difference, its bootstrap CI,
Welch's p, Holm's adjusted p over the whole family, the smallest difference
the design detects at the spec's power, and a verdict word. Plain functions
over dicts and arrays; the entry points do the I/O.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import UserError
from ..runs import records
from . import stats

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MISSING = "missing"  # a side of the test has no finished seeds yet
KINDS = ("less", "equal")


def columns(spec: dict) -> dict:
    """The spec's columns with the chosen LSUV variant run at the full number of blocks."""
    cols = {name: dict(col) for name, col in spec["columns"].items()}
    best = spec.get("lsuv_best")
    if best is not None:
        if best not in cols:
            raise UserError(f"lsuv_best={best!r} is not one of the columns: {', '.join(cols)}")
        cols[best].pop("blocks", None)
    return cols


def cells(spec: dict, seeds: int, epochs: int) -> list[dict]:
    """Every cell the verdict needs: column, base, depth, seed_offset and its overrides.

    `seeds` and `epochs` are the budget's (a block holds `seeds` seeds; a
    column's `extra_epochs` add to `epochs`).

    Ordered block by block, then by depth, so that an interrupted sweep has
    finished whole blocks of seeds first. A base-free column runs once per
    depth with its own base, its cells serving both base rows.
    """
    rows = spec["rows"]
    n_blocks = int(spec["seed_blocks"])
    out = []
    for block, depth in itertools.product(range(n_blocks), rows["depth"]):
        for name, col in columns(spec).items():
            if block >= int(col.get("blocks", n_blocks)):
                continue
            bases = [None] if col.get("base_free") else rows["base"]
            for base in bases:
                overrides = [*col["overrides"], f"depth={depth}", f"seed_offset={block * seeds}"]
                if col.get("extra_epochs"):
                    overrides.append(f"epochs={epochs + int(col['extra_epochs'])}")
                if base is not None:
                    overrides.insert(0, f"base={base}")
                out.append(dict(column=name, base=base, depth=depth, seed_offset=block * seeds, overrides=overrides))
    return out


# ---- per-seed values ----------------------------------------------------------------------------


def pool_seeds(spec: dict, found: list[tuple[dict, dict | None]]) -> dict[tuple, dict]:
    """Per (column, base, depth) row: the per-seed summaries of all its blocks.

    `found` pairs each cell of `cells` with its record (None when it has not
    run). A base-free column's cells fill both base rows. Returns
    {(column, base, depth): {"seeds": [...], "expected": n, "missing": k,
    "cell_ids": [...], "init_info": [...]}}.
    """
    out: dict[tuple, dict] = {}
    for cell, rec in found:
        bases = spec["rows"]["base"] if cell["base"] is None else [cell["base"]]
        for base in bases:
            slot = out.setdefault((cell["column"], base, cell["depth"]),
                                  dict(seeds=[], expected=0, missing=0, cell_ids=[], init_info=[]))
            if rec is None:
                slot["missing"] += 1
                continue
            slot["seeds"] += rec["seeds"]
            slot["expected"] += int(rec["budget"]["seeds"])
            slot["cell_ids"].append(rec["cell_id"])
            slot["init_info"].append(rec.get("init_info", {}))
    return out


def seed_values(slot: dict | None, metric: str, failed_error: float = records.FAILED_ERROR) -> np.ndarray:
    """The values of `metric` (error or best_epoch) of the seeds that trained (not diverged, not failed)."""
    if slot is None:
        return np.array([])
    key = {"error": "selected_error", "best_epoch": "selected_epoch"}[metric]
    vals = [s[key] for s in slot["seeds"] if records.seed_status(s, failed_error) == "ok" and s[key] is not None]
    return np.array(vals, dtype=float)


# ---- statistics ---------------------------------------------------------------------------------


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaNs stay NaN and do not count in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def min_detectable_diff(a, b, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest |difference of means| a two-sided Welch test at `alpha` detects with `power`.

    (t_{1 - alpha/2} + t_{power}) * sqrt(s_a^2 / n_a + s_b^2 / n_b), Welch's
    degrees of freedom, the observed standard deviations (ddof=1). NaN when a
    group has fewer than two values.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return math.nan
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se2 = va + vb
    if se2 == 0:
        return 0.0
    df = se2**2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * math.sqrt(se2))


def verdict_word(kind: str, diff: float, ci: tuple[float, float], p_holm: float, paper_diff: float,
                 alpha: float, margin: float) -> str:
    """reproduced / not reproduced / inconclusive for one test (diff = a - b).

    less (the paper: a < b): reproduced when a < b with Holm p < alpha; not
    reproduced when a > b with Holm p < alpha, or when the 95% CI lies above
    the paper's own difference (above 0 where the paper gives none): the data
    rule out the effect the paper reports. equal (the paper: a ~ b):
    reproduced when the CI lies within +-margin; not reproduced when a and b
    differ with Holm p < alpha; otherwise inconclusive.
    """
    if kind not in KINDS:
        raise UserError(f"claim kind {kind!r} is not one of {', '.join(KINDS)}")
    low, high = ci
    if any(map(math.isnan, (diff, low, high))):
        return INCONCLUSIVE
    significant = not math.isnan(p_holm) and p_holm < alpha
    if kind == "equal":
        if -margin <= low and high <= margin:
            return REPRODUCED
        return NOT_REPRODUCED if significant else INCONCLUSIVE
    if significant:
        return REPRODUCED if diff < 0 else NOT_REPRODUCED
    ruled_out = paper_diff if not math.isnan(paper_diff) and paper_diff < 0 else 0.0
    return NOT_REPRODUCED if low > ruled_out else INCONCLUSIVE


# ---- frames -------------------------------------------------------------------------------------


def paper_index(paper: pd.DataFrame) -> dict[tuple, dict]:
    """The paper's numbers by (base, depth, init); a cell given twice must agree."""
    out: dict[tuple, dict] = {}
    for row in paper.to_dict("records"):
        key = (row["base"], int(row["depth"]), row["init"])
        old = out.get(key)
        if old is not None and (old["err_mean"], old["err_std"]) != (row["err_mean"], row["err_std"]):
            raise UserError(f"the paper's tables disagree on {key}: {old['err_mean']} vs {row['err_mean']}")
        out[key] = row
    return out


def _paper_diff(paper: dict, base: str, depth: int, inits, metric: str) -> float:
    if not inits:
        return math.nan
    column = {"error": "err_mean", "best_epoch": "best_epoch"}[metric]
    a, b = (paper.get((base, depth, i)) for i in inits)
    return math.nan if a is None or b is None else float(a[column]) - float(b[column])


def claims(spec: dict) -> list[dict]:
    """The spec's claims, plus the chosen LSUV variant's "LSUV ~ Vanilla"."""
    out = [dict(c) for c in spec["claims"]]
    best = spec.get("lsuv_best")
    if best is not None and best != "lsuv":
        label = spec["columns"][best]["label"]
        out.append(dict(claim="LSUV ~ Vanilla", reading=label, a=best, b="vanilla", kind="equal",
                        paper=["lsuv", "vanilla"]))
    for c in out:
        for side in ("a", "b"):
            if c[side] not in spec["columns"]:
                raise UserError(f"claim {c['claim']!r} names column {c[side]!r}, not one of the spec's columns")
    return out


def claims_frame(spec: dict, pooled: dict, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per claim x reading x (base, depth): the test, Holm over the whole family, the verdict."""
    alpha, power = float(spec["alpha"]), float(spec["power"])
    margin = float(spec["equivalence_margin"])
    pidx = paper_index(paper)
    rows = []
    for c in claims(spec):
        metric = c.get("metric", "error")
        for base, depth in itertools.product(spec["rows"]["base"], spec["rows"]["depth"]):
            a = seed_values(pooled.get((c["a"], base, depth)), metric)
            b = seed_values(pooled.get((c["b"], base, depth)), metric)
            diff = float(a.mean() - b.mean()) if a.size and b.size else math.nan
            low, high = stats.bootstrap_diff_ci(a, b, level=1 - alpha)
            rows.append(dict(
                claim=c["claim"], base=base, depth=depth, reading=c["reading"], metric=metric, kind=c["kind"],
                a=c["a"], b=c["b"], n=min(a.size, b.size), n_a=a.size, n_b=b.size,
                mean_a=float(a.mean()) if a.size else math.nan, mean_b=float(b.mean()) if b.size else math.nan,
                diff=diff, ci_low=low, ci_high=high, p=stats.welch_p(a, b),
                mde=min_detectable_diff(a, b, alpha, power),
                paper_diff=_paper_diff(pidx, base, depth, c.get("paper"), metric),
            ))
    df = pd.DataFrame(rows)
    df["p_holm"] = holm(df["p"])
    df["verdict"] = [
        MISSING if not (r.n_a and r.n_b) else
        verdict_word(r.kind, r.diff, (r.ci_low, r.ci_high), r.p_holm, r.paper_diff, alpha, margin)
        for r in df.itertuples()
    ]
    first = ["claim", "base", "depth", "reading", "n", "diff", "ci_low", "ci_high", "p", "p_holm", "verdict"]
    return df[first + [k for k in df.columns if k not in first]]


def columns_frame(spec: dict, pooled: dict, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per column x (base, depth): n, mean and std of the error, mean best epoch, the paper's number."""
    pidx = paper_index(paper)
    rows = []
    for name, col in columns(spec).items():
        for base, depth in itertools.product(spec["rows"]["base"], spec["rows"]["depth"]):
            slot = pooled.get((name, base, depth))
            err, epoch = seed_values(slot, "error"), seed_values(slot, "best_epoch")
            s = stats.summarize(err)
            p = pidx.get((base, depth, col.get("paper")), {})
            expected = int(spec["seed_blocks"]) if "blocks" not in col else int(col["blocks"])
            rows.append(dict(
                column=name, label=col["label"], base=base, depth=depth, n=s.n,
                n_left_out=sum(records.seed_status(x) != "ok" for x in slot["seeds"]) if slot else 0,
                missing_blocks=slot["missing"] if slot else expected,
                err_mean=s.mean, err_std=s.std, best_epoch_mean=float(epoch.mean()) if epoch.size else math.nan,
                paper_mean=p.get("err_mean", math.nan), paper_std=p.get("err_std", math.nan),
                base_free=bool(col.get("base_free", False)),
            ))
    return pd.DataFrame(rows)


def lsuv_match(spec: dict, cols: pd.DataFrame) -> pd.DataFrame:
    """How close each LSUV variant comes to the paper's LSUV column, over the rows it has.

    rms: root mean square of (ours - paper) in points; within_2std: rows with
    |ours - paper| <= 2 combined std. The closest variant has the smallest rms.
    """
    out = []
    for name in spec.get("lsuv_variants", []):
        sub = cols[cols["column"] == name]
        d = sub["err_mean"] - sub["paper_mean"]
        ok = d.notna()
        within = [stats.within_k_std(r.err_mean, r.err_std, r.paper_mean, r.paper_std) for r in sub.itertuples()]
        out.append(dict(column=name, label=spec["columns"][name]["label"], rows=int(ok.sum()),
                        n=int(sub.loc[sub["n"] > 0, "n"].min()) if (sub["n"] > 0).any() else 0,
                        rms=float(np.sqrt((d[ok] ** 2).mean())) if ok.any() else math.nan,
                        mean_diff=float(d[ok].mean()) if ok.any() else math.nan,
                        within_2std=int(sum(within))))
    df = pd.DataFrame(out)
    if len(df):
        df["closest"] = df["rms"] == df["rms"].min()
        df["chosen"] = df["column"] == spec.get("lsuv_best")
    return df


def summary_frame(claims_df: pd.DataFrame) -> pd.DataFrame:
    """Per claim and reading: how many rows each verdict word got, and the mean differences over rows with data."""
    out = []
    for (claim, reading), g in claims_df.groupby(["claim", "reading"], sort=False):
        counts = g["verdict"].value_counts()
        have = g[g["verdict"] != MISSING]
        out.append(dict(claim=claim, reading=reading, metric=g["metric"].iloc[0], rows=len(g),
                        reproduced=int(counts.get(REPRODUCED, 0)), not_reproduced=int(counts.get(NOT_REPRODUCED, 0)),
                        inconclusive=int(counts.get(INCONCLUSIVE, 0)), missing=int(counts.get(MISSING, 0)),
                        mean_diff=float(have["diff"].mean()), mean_paper_diff=float(have["paper_diff"].mean()),
                        median_mde=float(have["mde"].median())))
    return pd.DataFrame(out)


def duplicates_frame(spec: dict, pooled: dict) -> pd.DataFrame:
    """For every campaign column: per depth and layer, the mean number of distinct neurons elected.

    The authors' campaign lets a candidate win twice; fewer distinct neurons
    than the layer's width is how often that happened.
    """
    out = []
    for name in columns(spec):
        for depth in spec["rows"]["depth"]:
            slot = pooled.get((name, spec["rows"]["base"][0], depth))
            layers = [s["layers"] for info in (slot["init_info"] if slot else []) for s in info.get("seeds", [])]
            if not layers or "distinct" not in layers[0][0]:
                continue
            for l in range(len(layers[0])):
                out.append(dict(column=name, label=spec["columns"][name]["label"], depth=depth, layer=l + 1,
                                width=int(sum(layers[0][l]["quotas"])),
                                distinct_mean=float(np.mean([s[l]["distinct"] for s in layers])),
                                distinct_min=int(min(s[l]["distinct"] for s in layers)), models=len(layers)))
    return pd.DataFrame(out)


# ---- Markdown -----------------------------------------------------------------------------------


def _fmt(x, decimals: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    s = f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"
    return s.replace("+0.00", "0.00").replace("-0.00", "0.00") if decimals == 2 else s


def _p(p) -> str:
    return "n/a" if p is None or math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "|".join([":--"] * len(header))
    return ["| " + " | ".join(header) + " |", "|" + align + "|", *("| " + " | ".join(r) + " |" for r in rows)]


def _columns_table(cols_df: pd.DataFrame) -> list[str]:
    """Rows (base, depth) x columns: mean ± std (mean best epoch) [n] / the paper's number."""
    names = list(dict.fromkeys(cols_df["column"]))
    header = ["Base", "Depth"]
    for n in names:
        first = cols_df[cols_df["column"] == n].iloc[0]
        header.append(first["label"] + (" °" if first["base_free"] else ""))
    table = []
    for (base, depth), g in cols_df.groupby(["base", "depth"], sort=False):
        cells = []
        for n in names:
            r = g[g["column"] == n].iloc[0]
            if r["n"] == 0:
                cells.append("missing")
                continue
            cell = f"{_fmt(r['err_mean'])} ± {_fmt(r['err_std'])} ({_fmt(r['best_epoch_mean'], 0)}) [{r['n']}]"
            if r["n_left_out"] or r["missing_blocks"]:
                cell += " †"
            if not math.isnan(r["paper_mean"]):
                cell += f" / {_fmt(r['paper_mean'])}"
            cells.append(cell)
        table.append(["He" if base == "he" else base.capitalize(), str(depth), *cells])
    return _md_table(header, table, "|".join([":--", ":-:"] + [":-:"] * len(names)))


def to_markdown(spec: dict, claims_df: pd.DataFrame, summary_df: pd.DataFrame, cols_df: pd.DataFrame,
                lsuv_df: pd.DataFrame, dups_df: pd.DataFrame, budget: str) -> str:
    """The verdict report: the answer first, then every test, the columns, LSUV's variants, duplicates."""
    alpha, power, margin = spec["alpha"], spec["power"], spec["equivalence_margin"]
    level = int(round(100 * (1 - alpha)))
    out = [f"# {spec['title']}", "", f"Budget: {budget}. Every number below is computed from the run records.", ""]
    out += ["## The answer", "",
            f"Per claim and reading, over the {len(spec['rows']['base']) * len(spec['rows']['depth'])} rows "
            "(base x depth): how many rows reproduce it, the mean difference (ours) beside the paper's over the "
            f"rows that have data, and the median smallest difference the design detects at {int(power * 100)}% "
            "power. Missing: rows whose runs have not finished yet.", ""]
    out += _md_table(
        ["Claim", "Reading", "Reproduced", "Not reproduced", "Inconclusive", "Missing", "Mean diff (ours)",
         "Mean diff (paper)", "Median detectable"],
        [[r.claim, r.reading, str(r.reproduced), str(r.not_reproduced), str(r.inconclusive), str(r.missing),
          _fmt(r.mean_diff, signed=True) + (" ep" if r.metric == "best_epoch" else ""),
          _fmt(r.mean_paper_diff, signed=True) + (" ep" if r.metric == "best_epoch" else ""),
          _fmt(r.median_mde)] for r in summary_df.itertuples()],
        "|".join([":--", ":--", "--:", "--:", "--:", "--:", "--:", "--:", "--:"]))
    out += ["", "How a verdict is decided (diff = first minus second, in error points or epochs):",
            f"- *A < B*: **reproduced** when A < B with Holm-adjusted p < {alpha}; **not reproduced** when A > B "
            f"with Holm p < {alpha}, or when the {level}% CI lies above the paper's own difference (above 0 where the "
            "paper gives none), i.e. the data rule out the effect the paper reports; otherwise **inconclusive**.",
            f"- *A ~ B*: **reproduced** when the {level}% CI lies within ±{margin} points; **not reproduced** when "
            f"A and B differ with Holm p < {alpha}; otherwise **inconclusive**.",
            f"- p: Welch's t-test; Holm over all {len(claims_df)} tests below; CI: seeded percentile bootstrap over "
            f"seeds; detectable: (t(1-{alpha}/2) + t({power})) x the standard error, unadjusted.", ""]
    out += ["## Every test", ""]
    rows = []
    for r in claims_df.itertuples():
        unit = " ep" if r.metric == "best_epoch" else ""
        rows.append([r.claim, r.reading, r.base.capitalize() if r.base != "he" else "He", str(r.depth), str(r.n),
                     _fmt(r.mean_a) + " vs " + _fmt(r.mean_b) + unit, _fmt(r.diff, signed=True),
                     f"[{_fmt(r.ci_low, signed=True)}, {_fmt(r.ci_high, signed=True)}]", _p(r.p), _p(r.p_holm),
                     _fmt(r.mde), _fmt(r.paper_diff, signed=True), f"**{r.verdict}**"])
    out += _md_table(["Claim", "Reading", "Base", "Depth", "n", "A vs B", "Diff", f"{level}% CI", "p", "p (Holm)",
                      "Detectable", "Paper's diff", "Verdict"], rows,
                     "|".join([":--", ":--", ":--", ":-:", "--:", "--:", "--:", ":-:", "--:", "--:", "--:", "--:", ":--"]))
    out += ["", "## The columns", "",
            "Minimal test error (%), mean ± std (ddof=1) over the seeds, (mean best epoch), [n]; the paper's number "
            "where the paper has the column. A base-free column (marked °) does not depend on the base: its runs "
            "serve both rows.", ""]
    variants = set(spec.get("lsuv_variants", [])) - {"lsuv", spec.get("lsuv_best")}
    out += _columns_table(cols_df[~cols_df["column"].isin(variants)])
    out += ["", "† a block of seeds is missing, or a seed diverged or failed to train (best error >= "
            f"{records.FAILED_ERROR:g}%); such seeds never enter a mean.", ""]
    if len(lsuv_df):
        out += ["## LSUV: which variant matches the paper's column", "",
                "Each variant against the paper's LSUV column: root mean square of (ours − paper) over the rows, in "
                "points, the mean difference, and the rows within 2 combined std. The variants are explored on the "
                "first block of seeds; the one named `lsuv_best` in the spec runs at full n and is tested above.", ""]
        out += _md_table(["Variant", "n", "RMS vs paper", "Mean diff", "Rows within 2 std", "Closest", "Full n"],
                         [[r.label, str(r.n), _fmt(r.rms), _fmt(r.mean_diff, signed=True),
                           f"{r.within_2std}/{r.rows}", "yes" if r.closest else "",
                           "yes" if r.chosen or r.column == "lsuv" else ""] for r in lsuv_df.itertuples()],
                         "|".join([":--", "--:", "--:", "--:", "--:", ":-:", ":-:"]))
        out += ["", *_columns_table(cols_df[cols_df["column"].isin(spec["lsuv_variants"])]), ""]
    if len(dups_df):
        out += ["## Distinct neurons the campaign elected", "",
                "Mean (min) over the models of distinct candidates among a layer's elected neurons. The authors' "
                "code lets an elected candidate win again once scores are negative, so a layer can hold copies.", ""]
        out += _md_table(["Column", "Depth", "Layer", "Width", "Distinct, mean (min)", "Models"],
                         [[r.label, str(r.depth), str(r.layer), str(r.width),
                           f"{r.distinct_mean:.1f} ({r.distinct_min})", str(r.models)] for r in dups_df.itertuples()],
                         "|".join([":--", ":-:", ":-:", "--:", "--:", "--:"]))
        out.append("")
    return "\n".join(out)
