"""The NSR verdict: the cells its claims need (`cells`) and the claims tested on their records (`claims_frame`).

The spec is experiments/nsr_verdict.yaml. C1 compares Vanilla with +NSR (the
official lambda, on the logits) on each network at n = 10; C2 tests whether
the relative gain grows with depth (the slope of gain against depth, and
MLP-10's gain against MLP-3's, with seeded bootstrap CIs); C3 searches each
reading of "which layer" over a grid of lambdas on the validation split, with
seeds disjoint from the test seeds, and names per network the reading and
lambda that come closest to the paper. C4 to C9 need engines and data the
spec does not run yet: their rows say so. Plain functions over dicts and
arrays; the entry points do the I/O.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import UserError
from ..runs import records
from . import stats
from .verdict import INCONCLUSIVE, MISSING, NOT_REPRODUCED, REPRODUCED, holm, min_detectable_diff, verdict_word

DEPTHS = {"mlp3": 3, "mlp4": 4, "mlp6": 6, "mlp8": 8, "mlp10": 10}  # layers of each network of the NSR paper
NOT_RUN = "not run"  # a claim whose cells the suite cannot train yet
# The claims the spec does not run yet, and what they need (issue 20).
LATER = {
    "C4": "NSR beats L1, L2 and Jacobian regularization at equal search budgets (reg=l1, l2, jacobian)",
    "C5": "NSR adds to BatchNorm and to Dropout (MLP-4, MLP-8)",
    "C6": "correct test samples respond with less intra-class variance than misclassified ones (penultimate layer)",
    "C7": "vanilla training raises the training intra-class variance while NSR keeps it down (MLP-4)",
    "C8": "NSR costs little time and memory per step",
    "C9": "NSR helps a CNN (LeNet on MNIST and Fashion-MNIST; ResNet-18 and VGG-19 on CIFAR-10 need data not here)",
}


def test_cells(spec: dict, seeds: int) -> list[dict]:
    """C1's cells: Vanilla and +NSR per network and block of test seeds, blocks first (a resumed sweep
    finishes whole blocks)."""
    out = []
    for block in range(int(spec["test_blocks"])):
        for net in spec["networks"]:
            for method in ("vanilla", "nsr"):
                out.append(dict(claim="C1", network=net, method=method, reading="logits", lam=None,
                                seed_offset=block * seeds,
                                overrides=[*spec["recipe"], f"net={net}", f"method={method}",
                                           f"seed_offset={block * seeds}"]))
    return out


def search_cells(spec: dict) -> list[dict]:
    """C3's search: every (network, reading, lambda) on the search seeds, the deep networks first."""
    search = spec["search"]
    order = search.get("order", spec["networks"])
    if sorted(order) != sorted(spec["networks"]):
        raise UserError(f"search.order={order} must list the networks {spec['networks']}")
    out = []
    for net in order:
        for reading in search["readings"]:
            for lam in [*search["lambdas"], *(["official"] if reading == "logits" else [])]:
                overrides = [*spec["recipe"], f"net={net}", "method=nsr", f"reg.reading={reading}",
                             f"seed_offset={search['seed_offset']}", f"seeds={search['seeds']}"]
                if lam != "official":  # the network's own lambda is its config's (configs/net/)
                    overrides.append(f"reg.lambda={lam}")
                out.append(dict(claim="C3", network=net, method="nsr", reading=reading, lam=lam,
                                seed_offset=int(search["seed_offset"]), overrides=overrides))
    return out


def cells(spec: dict, seeds: int) -> list[dict]:
    """Every cell the verdict needs so far, in the order a sweep trains them: C1's test cells, then C3's search."""
    return [*test_cells(spec, seeds), *search_cells(spec)]


# ---- per-seed values ------------------------------------------------------------------------------


def pool(found: list[tuple[dict, dict | None]]) -> dict[tuple, list[dict]]:
    """Per cell key (claim, network, method, reading, lam): the seeds of its finished records, blocks pooled."""
    out: dict[tuple, list[dict]] = {}
    for cell, rec in found:
        key = (cell["claim"], cell["network"], cell["method"], cell["reading"], cell["lam"])
        out.setdefault(key, [])
        if rec is not None:
            out[key] += [s for s in rec["seeds"] if records.seed_status(s) == "ok"]
    return out


def values(seeds: list[dict], key: str = "selected_error") -> np.ndarray:
    return np.array([s[key] for s in seeds if s.get(key) is not None], dtype=float)


def _boot(fn, groups: list[np.ndarray], n: int = stats.BOOTSTRAP_RESAMPLES, seed: int = stats.BOOTSTRAP_SEED):
    """fn over `groups` resampled with replacement within each group: the draws, for a percentile CI."""
    rng = np.random.default_rng(seed)
    return np.array([fn([g[rng.integers(0, g.size, g.size)] for g in groups]) for _ in range(n)])


def _ci_p(draws: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(low, high, two-sided p of 0) of bootstrap draws."""
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min((draws <= 0).mean(), (draws >= 0).mean()))
    return float(low), float(high), float(max(p, 1 / draws.size))


# ---- claims --------------------------------------------------------------------------------------


def _paper(paper: pd.DataFrame) -> dict[tuple, float]:
    return {(r.net, r.method): float(r.err_mean) for r in paper.itertuples()}


def c1_rows(spec: dict, pooled: dict, paper: dict, alpha: float, power: float) -> list[dict]:
    rows = []
    for net in spec["networks"]:
        a = values(pooled.get(("C1", net, "nsr", "logits", None), []))
        b = values(pooled.get(("C1", net, "vanilla", "logits", None), []))
        low, high = stats.bootstrap_diff_ci(a, b, level=1 - alpha)
        rows.append(dict(claim_id="C1", claim="NSR < Vanilla", network=net, reading="logits, official lambda",
                         n=min(a.size, b.size), diff=float(a.mean() - b.mean()) if a.size and b.size else math.nan,
                         ci_low=low, ci_high=high, p=stats.welch_p(a, b), detectable=min_detectable_diff(a, b, alpha, power),
                         paper_diff=paper.get((net, "nsr"), math.nan) - paper.get((net, "vanilla"), math.nan),
                         kind="less", mean_a=float(a.mean()) if a.size else math.nan,
                         mean_b=float(b.mean()) if b.size else math.nan))
    return rows


def c2_rows(spec: dict, pooled: dict, paper: dict, alpha: float) -> list[dict]:
    """The relative gain (Vanilla - NSR) / Vanilla against depth: its slope, and MLP-10's gain less MLP-3's."""
    nets = [n for n in spec["networks"] if n in DEPTHS]
    groups = {net: (values(pooled.get(("C1", net, "vanilla", "logits", None), [])),
                    values(pooled.get(("C1", net, "nsr", "logits", None), []))) for net in nets}
    have = all(v.size >= 2 and s.size >= 2 for v, s in groups.values())
    depth = np.array([DEPTHS[n] for n in nets], dtype=float)

    def gains(arrays: list[np.ndarray]) -> np.ndarray:
        return np.array([(arrays[2 * i].mean() - arrays[2 * i + 1].mean()) / arrays[2 * i].mean()
                         for i in range(len(nets))])

    def slope(arrays):
        return float(np.polyfit(depth, gains(arrays), 1)[0])

    flat = [g for net in nets for g in groups[net]]
    paper_gain = np.array([(paper.get((n, "vanilla"), math.nan) - paper.get((n, "nsr"), math.nan))
                           / paper.get((n, "vanilla"), math.nan) for n in nets])
    rows = []
    for what, fn, paper_value in (
            ("slope of the relative gain against depth (per layer)", slope, float(np.polyfit(depth, paper_gain, 1)[0])),
            ("relative gain of MLP-10 less that of MLP-3", lambda a: float(gains(a)[-1] - gains(a)[0]),
             float(paper_gain[-1] - paper_gain[0]))):
        if have:
            est = fn(flat)
            low, high, p = _ci_p(_boot(fn, flat), alpha)
        else:
            est, low, high, p = (math.nan,) * 4
        # The paper says the gain grows: a positive statistic. As a "less" test on its negative.
        rows.append(dict(claim_id="C2", claim=f"the gain grows with depth: {what}", network="all", reading="logits",
                         n=min((g.size for g in flat), default=0), diff=-est, ci_low=-high, ci_high=-low, p=p,
                         detectable=math.nan, paper_diff=-paper_value, kind="less", mean_a=est, mean_b=paper_value))
    return rows


def search_frame(spec: dict, pooled: dict) -> pd.DataFrame:
    """C3's search: per network, reading and lambda, the mean validation and test error of its search seeds."""
    rows = []
    for net in spec["networks"]:
        for (claim, n, method, reading, lam), seeds in pooled.items():
            if claim != "C3" or n != net:
                continue
            val, test = values(seeds, "min_val_error"), values(seeds, "selected_error")
            rows.append(dict(network=net, reading=reading, lam=str(lam), n=val.size,
                             val_error=float(val.mean()) if val.size else math.nan,
                             test_error=float(test.mean()) if test.size else math.nan))
    df = pd.DataFrame(rows, columns=["network", "reading", "lam", "n", "val_error", "test_error"])
    df["best_of_reading"] = False
    df["best"] = False
    for net, g in df.groupby("network"):
        done = g[g["n"] > 0]
        for _, r in done.groupby("reading"):
            df.loc[r["val_error"].idxmin(), "best_of_reading"] = True
        if len(done):
            df.loc[done["val_error"].idxmin(), "best"] = True
    return df


def c3_rows(spec: dict, search: pd.DataFrame, paper: dict) -> list[dict]:
    """Per network: the reading and lambda the search picks, by validation error alone, beside the paper."""
    expected = len(spec["search"]["readings"]) * len(spec["search"]["lambdas"]) + 1
    rows = []
    for net in spec["networks"]:
        g = search[search["network"] == net]
        done = int((g["n"] > 0).sum())
        best = g[g["best"]]
        label = (f"search {done}/{expected} done" if best.empty else
                 f"{best.iloc[0]['reading']}, lambda {best.iloc[0]['lam']} (search {done}/{expected})")
        rows.append(dict(claim_id="C3", claim="a reading and lambda chosen on validation reaches the paper's +NSR",
                         network=net, reading=label, n=int(best.iloc[0]["n"]) if len(best) else 0,
                         diff=float(best.iloc[0]["test_error"]) - paper.get((net, "nsr"), math.nan) if len(best)
                         else math.nan, ci_low=math.nan, ci_high=math.nan, p=math.nan, detectable=math.nan,
                         paper_diff=math.nan, kind="search"))
    return rows


def claims_frame(spec: dict, found: list[tuple[dict, dict | None]], paper: pd.DataFrame) -> tuple[pd.DataFrame,
                                                                                                   pd.DataFrame]:
    """(one row per claim x network: the test and its verdict, Holm over the tested family; C3's search)."""
    alpha, power = float(spec["alpha"]), float(spec["power"])
    pooled, pidx = pool(found), _paper(paper)
    search = search_frame(spec, pooled)
    rows = [*c1_rows(spec, pooled, pidx, alpha, power), *c2_rows(spec, pooled, pidx, alpha),
            *c3_rows(spec, search, pidx)]
    rows += [dict(claim_id=cid, claim=text, network="", reading="", n=0, diff=math.nan, ci_low=math.nan,
                  ci_high=math.nan, p=math.nan, detectable=math.nan, paper_diff=math.nan, kind=NOT_RUN)
             for cid, text in LATER.items()]
    df = pd.DataFrame(rows)
    df["p_holm"] = holm(df["p"].where(df["kind"] == "less"))
    words = []
    for r in df.itertuples():
        if r.kind == NOT_RUN:
            words.append(NOT_RUN)
        elif r.kind == "search":
            words.append(MISSING if r.n == 0 else INCONCLUSIVE)  # its best reading's test cells are the next stage
        elif r.n == 0 or math.isnan(r.diff):
            words.append(MISSING)
        else:
            words.append(verdict_word("less", r.diff, (r.ci_low, r.ci_high), r.p_holm, r.paper_diff, alpha, 0.0))
    df["verdict"] = words
    first = ["claim_id", "claim", "network", "reading", "n", "diff", "ci_low", "ci_high", "p", "p_holm",
             "detectable", "paper_diff", "verdict"]
    return df[first + [k for k in df.columns if k not in first]], search


def _num(x, fmt: str = "{:+.2f}") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def to_markdown(spec: dict, claims: pd.DataFrame, search: pd.DataFrame, budget: str) -> str:
    """The report: every claim's rows, then the search, with what each number means."""
    counts = claims["verdict"].value_counts()
    lines = [f"## {spec['title']}", "",
             f"Budget: {budget}. Differences are ours in points of test error at the best-validation epoch "
             "(NSR minus Vanilla; for C2 the negative of the statistic, so that below 0 is the paper's direction), "
             f"with {int((1 - float(spec['alpha'])) * 100)}% bootstrap CIs, Welch's p (C1; C2's p is the "
             "bootstrap's), Holm over every tested row, and the smallest difference the design detects at "
             f"{int(float(spec['power']) * 100)}% power.", "",
             "Verdicts: " + ", ".join(f"{counts.get(w, 0)} {w}" for w in
                                      (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, MISSING, NOT_RUN)) + ".", "",
             "| claim | network | reading | n | diff | 95% CI | p (Holm) | detectable | paper | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in claims.itertuples():
        ci = "" if math.isnan(r.ci_low) else f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        p = "" if math.isnan(r.p) else f"{r.p:.3g} ({r.p_holm:.3g})"
        lines.append(f"| {r.claim_id}: {r.claim} | {r.network} | {r.reading} | {r.n} | {_num(r.diff)} | {ci} | {p} | "
                     f"{_num(r.detectable, '{:.2f}')} | {_num(r.paper_diff)} | {r.verdict} |")
    lines += ["", "### C3's search (validation error, seeds disjoint from the test seeds)", "",
              "| network | reading | lambda | n | val error | test error | best of its reading | best |",
              "|---|---|---|---|---|---|---|---|"]
    for r in search.itertuples():
        lines.append(f"| {r.network} | {r.reading} | {r.lam} | {r.n} | {_num(r.val_error, '{:.2f}')} | "
                     f"{_num(r.test_error, '{:.2f}')} | {'yes' if r.best_of_reading else ''} | {'yes' if r.best else ''} |")
    return "\n".join(lines) + "\n"
