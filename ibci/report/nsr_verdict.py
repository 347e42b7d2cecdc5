"""The NSR verdict: the cells its claims need (`plan`) and the claims tested on their records (`claims_frame`).

The spec is experiments/nsr_verdict.yaml; the claim ids are issue 20's.
C1 compares Vanilla with +NSR (the official lambda, on the logits) on each
network at n = 10; C2 tests whether the relative gain grows with depth (the
slope of gain against depth, and MLP-10's gain against MLP-3's, with seeded
bootstrap CIs); C3 searches each reading of "which layer" over a grid of
lambdas on the validation split, with seeds disjoint from the test seeds,
then trains the choice at the test seeds and asks whether its gain reaches
the paper's. C4 searches L1, L2 and Jacobian strengths as NSR's lambda is
searched and sets the best of each against NSR; C5 adds NSR to BatchNorm
and to Dropout; C6 and C7 read the slides' two observations off cells that
record them (`observe=true`); C8 reads `make bench`'s cost measurement; C9
searches and tests NSR on the CNN.

Cells come in two stages: the ones any sweep can train at once, and the test
cells of a search's choice, which exist once that search's records do; a
sweep plans again after its first pass (`plan` on the records so far).
Plain functions over dicts, arrays and frames; the entry points do the I/O.
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
NOT_RUN = "not run"  # a claim with no records to test it on
CLAIMS = {
    "C1": "NSR < Vanilla",
    "C2": "the gain grows with depth",
    "C3": "a reading and lambda chosen on validation reach the paper's gain",
    "C4": "NSR beats L1, L2 and Jacobian regularization at equal search budgets",
    "C5": "NSR adds to BatchNorm and to Dropout",
    "C6": "correct test images deviate less from their class mean than misclassified ones (penultimate layer)",
    "C7": "vanilla training raises the training intra-class variance as its cross-entropy falls; NSR keeps it down",
    "C8": "NSR costs little time and memory per step",
    "C9": "NSR helps a CNN (LeNet; ResNet-18 and VGG-19 on CIFAR-10 need data not here)",
}


def _cell(claim: str, role: str, network: str, method: str, overrides: list[str], seed_offset: int,
          reading: str = "logits", lam=None, data: str = "mnist") -> dict:
    return dict(claim=claim, role=role, network=network, method=method, reading=reading, lam=lam, data=data,
                seed_offset=seed_offset, overrides=overrides)


def key(cell: dict) -> tuple:
    """What identifies a cell among the verdict's: its claim, role (test or search) and settings."""
    return (cell["claim"], cell["role"], cell["network"], cell["method"], cell["reading"], cell["lam"], cell["data"])


def _blocks(spec: dict, seeds: int, claim: str) -> list[int]:
    """Seed offsets of the test blocks: n = 10 (two blocks) for C1 and C3's choice, one block elsewhere."""
    n = int(spec["test_blocks"]) if claim in ("C1", "C3") else 1
    return [b * seeds for b in range(n)]


def test_cells(spec: dict, seeds: int) -> list[dict]:
    """C1's cells: Vanilla and +NSR per network and block of test seeds, blocks first (a resumed sweep
    finishes whole blocks)."""
    return [_cell("C1", "test", net, method, [*spec["recipe"], f"net={net}", f"method={method}",
                                             f"seed_offset={offset}"], offset)
            for offset in _blocks(spec, seeds, "C1") for net in spec["networks"] for method in ("vanilla", "nsr")]


def _search(claim: str, spec: dict, net: str, extra: list[str], reading: str, lam, data: str = "mnist",
            method: str = "nsr") -> dict:
    search = spec["search"]
    return _cell(claim, "search", net, method, [*spec["recipe"], *extra, f"seed_offset={search['seed_offset']}",
                                                f"seeds={search['seeds']}"],
                 int(search["seed_offset"]), reading, lam, data)


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
                extra = [f"net={net}", "method=nsr", f"reg.reading={reading}"]
                if lam != "official":  # the network's own lambda is its config's (configs/net/)
                    extra.append(f"reg.lambda={lam}")
                out.append(_search("C3", spec, net, extra, reading, lam))
    return out


def regularizer_cells(spec: dict) -> list[dict]:
    """C4's search: every regularizer at every strength on the search seeds."""
    regs = spec["regularizers"]
    return [_search("C4", spec, net, [f"net={net}", "method=vanilla", f"reg={name}", f"{s['key']}={v}"],
                    "", v, method=name)
            for net in regs["networks"] for name, s in regs["strengths"].items() for v in s["values"]]


def cnn_search_cells(spec: dict) -> list[dict]:
    """C9's search: NSR's lambda on the CNN's logits, per data set."""
    return [_search("C9", spec, "cnn", ["net=cnn", f"data={data}", "method=nsr", f"reg.lambda={lam}"], "logits",
                    lam, data) for data in spec["cnn"]["data"] for lam in spec["cnn"]["lambdas"]]


def layer_cells(spec: dict, seeds: int) -> list[dict]:
    """C5: each variant (BatchNorm, Dropout) without and with NSR at the official lambda, one block of test seeds."""
    out = []
    for offset in _blocks(spec, seeds, "C5"):
        for net in spec["layers"]["networks"]:
            for variant, extra in spec["layers"]["variants"].items():
                for method in ("vanilla", "nsr"):
                    out.append(_cell("C5", "test", net, f"{variant}+{method}",
                                     [*spec["recipe"], f"net={net}", f"method={method}", *extra,
                                      f"seed_offset={offset}"], offset))
    return out


def observe_cells(spec: dict, seeds: int) -> list[dict]:
    """C6 and C7: Vanilla and +NSR with their observations recorded, one block of test seeds."""
    net = spec["observe"]
    return [_cell("C6", "test", net, method, [*spec["recipe"], f"net={net}", f"method={method}", "observe=true",
                                              f"seed_offset={offset}"], offset)
            for offset in _blocks(spec, seeds, "C6") for method in ("vanilla", "nsr")]


def cnn_vanilla_cells(spec: dict, seeds: int) -> list[dict]:
    return [_cell("C9", "test", "cnn", "vanilla", [*spec["recipe"], "net=cnn", f"data={data}", "method=vanilla",
                                                   f"seed_offset={offset}"], offset, data=data)
            for offset in _blocks(spec, seeds, "C9") for data in spec["cnn"]["data"]]


def first_cells(spec: dict, seeds: int) -> list[dict]:
    """Every cell that needs no other cell's records, in the order a sweep trains them (the two observation
    cells before the long searches: they are the only records C6 and C7 have)."""
    return [*test_cells(spec, seeds), *observe_cells(spec, seeds), *search_cells(spec), *layer_cells(spec, seeds),
            *regularizer_cells(spec), *cnn_vanilla_cells(spec, seeds), *cnn_search_cells(spec)]


# ---- choosing on validation ----------------------------------------------------------------------


def pool(found: list[tuple[dict, dict | None]]) -> dict[tuple, list[dict]]:
    """Per cell key: the seeds of its finished records, blocks pooled (None: no record of some block)."""
    out: dict[tuple, list[dict] | None] = {}
    for cell, rec in found:
        k = key(cell)
        if rec is None:
            out[k] = None
        elif out.setdefault(k, []) is not None:
            out[k] += [s for s in rec["seeds"] if records.seed_status(s) == "ok"]
    return out


def values(seeds: list[dict] | None, field: str = "selected_error") -> np.ndarray:
    return np.array([s[field] for s in seeds or [] if s.get(field) is not None], dtype=float)


def _choice(cells: list[dict], pooled: dict) -> dict | None:
    """The cell of a search with the lowest mean validation error, once every cell of it has its record."""
    if not cells or any(pooled.get(key(c)) is None for c in cells):
        return None
    scored = [(values(pooled[key(c)], "min_val_error"), c) for c in cells]
    scored = [(v.mean(), i, c) for i, (v, c) in enumerate(scored) if v.size]
    return min(scored)[2] if scored else None


def _lambda_override(cell: dict) -> list[str]:
    return [o for o in cell["overrides"] if o.startswith(("reg.", "reg=")) and "=" in o]


def search_families(spec: dict) -> dict[tuple, list[dict]]:
    """Each search's cells: (claim, network, method, data) -> the search cells its choice is made among."""
    out = {}
    search = search_cells(spec)
    for net in spec["networks"]:
        out[("C3", net, "nsr", "mnist")] = [c for c in search if c["network"] == net]
    for net in spec["regularizers"]["networks"]:  # NSR at its best logits lambda of the grid: the same budget
        out[("C4", net, "nsr", "mnist")] = [c for c in search if c["network"] == net and c["reading"] == "logits"
                                            and c["lam"] != "official"]
        for name in spec["regularizers"]["strengths"]:
            out[("C4", net, name, "mnist")] = [c for c in regularizer_cells(spec)
                                               if c["network"] == net and c["method"] == name]
    for data in spec["cnn"]["data"]:
        out[("C9", "cnn", "nsr", data)] = [c for c in cnn_search_cells(spec) if c["data"] == data]
    return out


def choices(spec: dict, pooled: dict) -> dict[tuple, dict]:
    """Each finished search's choice: (claim, network, method, data) -> the search cell it picked."""
    return {k: _choice(family, pooled) for k, family in search_families(spec).items()}


def chosen_cells(spec: dict, seeds: int, pooled: dict) -> list[dict]:
    """The test cells of every finished search's choice: its overrides on the test seeds."""
    out = []
    for (claim, net, method, data), pick in choices(spec, pooled).items():
        if pick is None:
            continue
        fixed = [o for o in pick["overrides"] if not o.startswith(("seed_offset=", "seeds="))]
        for offset in _blocks(spec, seeds, claim):
            out.append(_cell(claim, "test", net, method, [*fixed, f"seed_offset={offset}"], offset,
                             pick["reading"], pick["lam"], data))
    return out


def plan(spec: dict, overrides: list[str], recs: list[dict]) -> tuple[list[dict], list[list[str]], list[dict | None]]:
    """(cells, their full override lists, their runs) of the verdict given the records so far: the test cells of
    every search whose records are all there (a sweep trains them first), then the first cells."""
    from ..runs.calls import setting

    seeds = setting(overrides, "seeds")
    first = first_cells(spec, seeds)
    jobs = [[*overrides, *c["overrides"]] for c in first]
    runs = records.select_runs(recs, jobs, what=f"{spec['name']}") if recs else [None] * len(first)
    second = chosen_cells(spec, seeds, pool(list(zip(first, runs))))
    later = [[*overrides, *c["overrides"]] for c in second]
    later_runs = records.select_runs(recs, later, what=f"{spec['name']}") if recs and later else [None] * len(later)
    return [*second, *first], [*later, *jobs], [*later_runs, *runs]


# ---- tests -----------------------------------------------------------------------------------------


def _boot(fn, groups: list[np.ndarray], n: int = stats.BOOTSTRAP_RESAMPLES, seed: int = stats.BOOTSTRAP_SEED):
    """fn over `groups` resampled with replacement within each group: the draws, for a percentile CI."""
    rng = np.random.default_rng(seed)
    return np.array([fn([g[rng.integers(0, g.size, g.size)] for g in groups]) for _ in range(n)])


def _ci_p(draws: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(low, high, two-sided p of 0) of bootstrap draws."""
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min((draws <= 0).mean(), (draws >= 0).mean()))
    return float(low), float(high), float(max(p, 1 / draws.size))


def _paper(paper: pd.DataFrame) -> dict[tuple, float]:
    return {(r.net, r.method): float(r.err_mean) for r in paper.itertuples()}


def _row(claim_id: str, network: str, reading: str, a: np.ndarray, b: np.ndarray, alpha: float, power: float,
         paper_diff: float = math.nan, kind: str = "less", claim: str | None = None, **extra) -> dict:
    """A two-group test of mean(a) - mean(b) < 0: bootstrap CI, Welch's p, the smallest detectable difference."""
    have = a.size and b.size
    low, high = stats.bootstrap_diff_ci(a, b, level=1 - alpha)
    return dict(claim_id=claim_id, claim=claim or CLAIMS[claim_id], network=network, reading=reading,
                n=int(min(a.size, b.size)), diff=float(a.mean() - b.mean()) if have else math.nan,
                ci_low=low, ci_high=high, p=stats.welch_p(a, b), detectable=min_detectable_diff(a, b, alpha, power),
                paper_diff=paper_diff, kind=kind, mean_a=float(a.mean()) if a.size else math.nan,
                mean_b=float(b.mean()) if b.size else math.nan, **extra)


def _one_sample(claim_id: str, network: str, reading: str, d: np.ndarray, alpha: float, claim: str,
                sign: float = 1.0) -> dict:
    """A test of mean(sign * d) < 0 over paired differences d (one per seed): bootstrap CI, one-sample t's p."""
    from scipy import stats as sps

    d = sign * d[~np.isnan(d)]
    if d.size >= stats.BOOTSTRAP_MIN_N:
        low, high, _ = _ci_p(_boot(lambda g: float(g[0].mean()), [d]), alpha)
        p = float(sps.ttest_1samp(d, 0.0).pvalue) if d.std() > 0 else math.nan
    else:
        low = high = p = math.nan
    return dict(claim_id=claim_id, claim=claim, network=network, reading=reading, n=int(d.size),
                diff=float(d.mean()) if d.size else math.nan, ci_low=low, ci_high=high, p=p, detectable=math.nan,
                paper_diff=math.nan, kind="less")


def c1_rows(spec: dict, pooled: dict, paper: dict, alpha: float, power: float) -> list[dict]:
    return [_row("C1", net, "logits, official lambda", values(pooled.get(_c1(net, "nsr"))),
                 values(pooled.get(_c1(net, "vanilla"))), alpha, power,
                 paper.get((net, "nsr"), math.nan) - paper.get((net, "vanilla"), math.nan))
            for net in spec["networks"]]


def _c1(net: str, method: str) -> tuple:
    return ("C1", "test", net, method, "logits", None, "mnist")


def c2_rows(spec: dict, pooled: dict, paper: dict, alpha: float) -> list[dict]:
    """The relative gain (Vanilla - NSR) / Vanilla against depth: its slope, and MLP-10's gain less MLP-3's."""
    nets = [n for n in spec["networks"] if n in DEPTHS]
    groups = {net: (values(pooled.get(_c1(net, "vanilla"))), values(pooled.get(_c1(net, "nsr")))) for net in nets}
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
        rows.append(dict(claim_id="C2", claim=f"{CLAIMS['C2']}: {what}", network="all", reading="logits",
                         n=min((g.size for g in flat), default=0), diff=-est, ci_low=-high, ci_high=-low, p=p,
                         detectable=math.nan, paper_diff=-paper_value, kind="less", mean_a=est, mean_b=paper_value))
    return rows


def left_out(found: list[tuple[dict, dict | None]]) -> dict[tuple, int]:
    """Per cell key with records: how many of their seeds diverged or failed (in no mean and not in n), so that a
    search cell whose every seed diverged is told from one not yet run."""
    out: dict[tuple, int] = {}
    for cell, rec in found:
        if rec is not None:
            out[key(cell)] = out.get(key(cell), 0) + sum(records.seed_status(s) != "ok" for s in rec["seeds"])
    return out


def search_frame(spec: dict, pooled: dict, left: dict[tuple, int] | None = None) -> pd.DataFrame:
    """Every search (C3's readings and lambdas, C4's strengths, C9's lambdas): per cell the mean validation and
    test error of its search seeds, the seeds left out of them (`left_out`: diverged or failed; empty while the
    cell has no record), and the claims whose choice it is (C4 chooses NSR's lambda among C3's logits cells)."""
    left = left or {}
    picks: dict[tuple, list[str]] = {}
    for (claim, *_), c in choices(spec, pooled).items():
        if c is not None:
            picks.setdefault(key(c), []).append(claim)
    rows = []
    for c in [*search_cells(spec), *regularizer_cells(spec), *cnn_search_cells(spec)]:
        seeds = pooled.get(key(c))
        val, test = values(seeds, "min_val_error"), values(seeds, "selected_error")
        rows.append(dict(claim_id=c["claim"], network=c["network"] if c["data"] == "mnist" else f"cnn, {c['data']}",
                         method=c["method"], reading=c["reading"], lam=str(c["lam"]), n=val.size,
                         val_error=float(val.mean()) if val.size else math.nan,
                         test_error=float(test.mean()) if test.size else math.nan,
                         chosen_by=", ".join(picks.get(key(c), [])), left_out=left.get(key(c))))
    return pd.DataFrame(rows, columns=["claim_id", "network", "method", "reading", "lam", "n", "val_error",
                                       "test_error", "chosen_by", "left_out"]).astype({"left_out": "Int64"})


def _picked(pick: dict | None, family: list[dict], pooled: dict, grid: list | None = None) -> str:
    """What a search chose, and whether it sits at its grid's edge (where a wider grid might choose otherwise);
    while it is unfinished, how many of its cells are done."""
    if pick is None:
        return f"search {sum(pooled.get(key(c)) is not None for c in family)}/{len(family)} done"
    what = f"{pick['reading']}, " if pick["reading"] else ""
    edge = ""
    if grid and len(grid) > 1 and pick["lam"] in (min(grid), max(grid)):
        edge = f" (its grid's {'smallest' if pick['lam'] == min(grid) else 'largest'})"
    return f"{what}{'strength' if pick['method'] in ('l1', 'l2', 'jacobian') else 'lambda'} {pick['lam']}{edge}"


def _chosen_values(pooled: dict, pick: dict | None, claim: str, data: str = "mnist") -> np.ndarray:
    """The test seeds of a search's choice (C1's own cells when the choice is the official lambda)."""
    if pick is None:
        return np.array([])
    if claim == "C3" and pick["reading"] == "logits" and pick["lam"] == "official":
        return values(pooled.get(_c1(pick["network"], "nsr")))
    return values(pooled.get((claim, "test", pick["network"], pick["method"], pick["reading"], pick["lam"], data)))


def c3_rows(spec: dict, pooled: dict, paper: dict, alpha: float, power: float) -> list[dict]:
    """Per network: the reading and lambda the search picks, by validation error alone, trained at the test seeds;
    its gain over Vanilla (C1's cells) set against the paper's gain."""
    picks, families, rows = choices(spec, pooled), search_families(spec), []
    for net in spec["networks"]:
        pick = picks[("C3", net, "nsr", "mnist")]
        rows.append(_row("C3", net, _picked(pick, families[("C3", net, "nsr", "mnist")], pooled,
                                            spec["search"]["lambdas"]),
                         _chosen_values(pooled, pick, "C3"),
                         values(pooled.get(_c1(net, "vanilla"))), alpha, power,
                         paper.get((net, "nsr"), math.nan) - paper.get((net, "vanilla"), math.nan), kind="size"))
    return rows


def c4_rows(spec: dict, pooled: dict, alpha: float, power: float) -> list[dict]:
    """Per network and regularizer: NSR at its chosen logits lambda less the regularizer at its chosen strength."""
    picks, families, rows = choices(spec, pooled), search_families(spec), []
    lams = spec["search"]["lambdas"]
    for net in spec["regularizers"]["networks"]:
        mine = picks[("C4", net, "nsr", "mnist")]
        for name in spec["regularizers"]["strengths"]:
            theirs = picks[("C4", net, name, "mnist")]
            grid = spec["regularizers"]["strengths"][name]["values"]
            rows.append(_row("C4", net, f"NSR {_picked(mine, families[('C4', net, 'nsr', 'mnist')], pooled, lams)}"
                             f" vs {name} {_picked(theirs, families[('C4', net, name, 'mnist')], pooled, grid)}",
                             _chosen_values(pooled, mine, "C4"), _chosen_values(pooled, theirs, "C4"), alpha, power,
                             claim=f"NSR < {name}"))
    return rows


def c5_rows(spec: dict, pooled: dict, alpha: float, power: float) -> list[dict]:
    rows = []
    for net in spec["layers"]["networks"]:
        for variant in spec["layers"]["variants"]:
            def get(method):
                return values(pooled.get(("C5", "test", net, f"{variant}+{method}", "logits", None, "mnist")))
            rows.append(_row("C5", net, "logits, official lambda", get("nsr"), get("vanilla"), alpha, power,
                             claim=f"{variant} + NSR < {variant}"))
    return rows


def c6_rows(spec: dict, found: list[tuple[dict, dict | None]], alpha: float) -> list[dict]:
    """Per method and class: correct less misclassified deviation, paired by seed (`ibci.train.nsr.deviation_by_outcome`)."""
    rows = []
    for cell, rec in found:
        if cell["claim"] != "C6":
            continue
        obs = (rec or {}).get("observation")
        if obs is None:
            rows.append(_one_sample("C6", cell["network"], f"{cell['method']}, every class", np.array([]), alpha,
                                    CLAIMS["C6"]))
            continue
        correct, wrong = (np.array(obs[k], dtype=float) for k in ("correct", "wrong"))  # [S, C], None -> nan
        for c in range(correct.shape[1]):
            rows.append(_one_sample("C6", cell["network"], f"{cell['method']}, class {c}",
                                    correct[:, c] - wrong[:, c], alpha, CLAIMS["C6"]))
    return rows


def observed_curves(found: list[tuple[dict, dict | None]], metrics: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """C7's curves per method (vanilla, nsr): the metrics.csv of its observing cell (`metrics` by cell id)."""
    return {cell["method"]: metrics[rec["cell_id"]] for cell, rec in found
            if cell["claim"] == "C6" and rec is not None and rec["cell_id"] in metrics}


def c7_rows(spec: dict, curves: dict[str, pd.DataFrame], alpha: float) -> list[dict]:
    """Observation 2 as four paired tests over seeds: from epoch 1 to the last, Vanilla's training cross-entropy
    falls and its training intra-class variance rises; at the last epoch NSR's variance is lower than Vanilla's
    and its cross-entropy higher."""
    net = spec["observe"]

    def at(method: str, column: str, epoch: str) -> pd.Series:
        m = curves.get(method)
        if m is None or column not in m:
            return pd.Series(dtype=float)
        e = 1 if epoch == "first" else int(m["epoch"].max())
        return m[m["epoch"] == e].set_index("seed")[column]

    def change(method: str, column: str) -> np.ndarray:
        return (at(method, column, "last") - at(method, column, "first")).to_numpy(dtype=float)

    def gap(column: str) -> np.ndarray:  # NSR's seeds against Vanilla's: not paired, two groups
        return at("nsr", column, "last").to_numpy(dtype=float), at("vanilla", column, "last").to_numpy(dtype=float)

    rows = [_one_sample("C7", net, "vanilla, epoch 1 to last", change("vanilla", "train_ce"), alpha,
                        "vanilla: the training cross-entropy falls"),
            _one_sample("C7", net, "vanilla, epoch 1 to last", change("vanilla", "train_intra_var"), alpha,
                        "vanilla: the training intra-class variance rises", sign=-1.0)]
    a, b = gap("train_intra_var")
    rows.append(_row("C7", net, "last epoch", a, b, alpha, 0.8, claim="NSR's training intra-class variance < Vanilla's"))
    a, b = gap("train_ce")
    rows.append(_row("C7", net, "last epoch", b, a, alpha, 0.8, claim="NSR's training cross-entropy > Vanilla's "
                     "(as Vanilla less NSR < 0)"))
    return rows


def c8_rows(cost: dict | None) -> list[dict]:
    """NSR's time and peak memory per step over plain training's, as `make bench` measured them (no test: one
    quiet-machine measurement; the claim is "low", so the row gives the ratio and no verdict word)."""
    rows = []
    for what, unit in (("time", "s"), ("memory", "MB")):
        c = (cost or {}).get(what)
        rows.append(dict(claim_id="C8", claim=f"{CLAIMS['C8']}: {what} per step, NSR / plain", network=(cost or {}).get(
            "network", ""), reading=f"{c['plain']:.4g} {unit} plain, {c['nsr']:.4g} {unit} NSR" if c else "",
            n=int((cost or {}).get("repeats", 0)) if c else 0, diff=c["nsr"] / c["plain"] - 1 if c else math.nan,
            ci_low=math.nan, ci_high=math.nan, p=math.nan, detectable=math.nan, paper_diff=math.nan, kind="cost"))
    return rows


def c9_rows(spec: dict, pooled: dict, alpha: float, power: float) -> list[dict]:
    picks, families, rows = choices(spec, pooled), search_families(spec), []
    for data in spec["cnn"]["data"]:
        pick = picks[("C9", "cnn", "nsr", data)]
        rows.append(_row("C9", f"cnn, {data}", _picked(pick, families[("C9", "cnn", "nsr", data)], pooled,
                                                       spec["cnn"]["lambdas"]),
                         _chosen_values(pooled, pick, "C9", data),
                         values(pooled.get(("C9", "test", "cnn", "vanilla", "logits", None, data))), alpha, power,
                         claim=f"{CLAIMS['C9']}: NSR < Vanilla"))
    return rows


def size_word(diff: float, ci: tuple[float, float], paper_diff: float) -> str:
    """reproduced when the paper's difference lies within our CI or beyond it in its own direction (our gain is
    at least as large as the paper's could be); not reproduced when the CI lies wholly above it."""
    low, high = ci
    if any(map(math.isnan, (diff, low, high, paper_diff))):
        return INCONCLUSIVE
    return REPRODUCED if low <= paper_diff else NOT_REPRODUCED


def claims_frame(spec: dict, found: list[tuple[dict, dict | None]], paper: pd.DataFrame,
                 curves: dict[str, pd.DataFrame] | None = None, cost: dict | None = None) -> tuple[pd.DataFrame,
                                                                                                    pd.DataFrame]:
    """(one row per claim x network: the test and its verdict, Holm over every "less" row; every search)."""
    alpha, power = float(spec["alpha"]), float(spec["power"])
    pooled, pidx = pool(found), _paper(paper)
    rows = [*c1_rows(spec, pooled, pidx, alpha, power), *c2_rows(spec, pooled, pidx, alpha),
            *c3_rows(spec, pooled, pidx, alpha, power), *c4_rows(spec, pooled, alpha, power),
            *c5_rows(spec, pooled, alpha, power), *c6_rows(spec, found, alpha), *c7_rows(spec, curves or {}, alpha),
            *c8_rows(cost), *c9_rows(spec, pooled, alpha, power)]
    df = pd.DataFrame(rows)
    df["p_holm"] = holm(df["p"].where(df["kind"] == "less"))
    words = []
    for r in df.itertuples():
        if r.n == 0 or math.isnan(r.diff):
            words.append(NOT_RUN if r.kind == "cost" or r.claim_id in ("C4", "C5", "C6", "C7", "C9") else MISSING)
        elif r.kind == "cost":
            words.append("measured")
        elif r.kind == "size":
            words.append(size_word(r.diff, (r.ci_low, r.ci_high), r.paper_diff))
        else:
            words.append(verdict_word("less", r.diff, (r.ci_low, r.ci_high), r.p_holm, r.paper_diff, alpha, 0.0))
    df["verdict"] = words
    first = ["claim_id", "claim", "network", "reading", "n", "diff", "ci_low", "ci_high", "p", "p_holm",
             "detectable", "paper_diff", "verdict"]
    return df[first + [k for k in df.columns if k not in first]], search_frame(spec, pooled, left_out(found))


def _num(x, fmt: str = "{:+.2f}") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


WORDS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, MISSING, NOT_RUN, "measured")


def to_markdown(spec: dict, claims: pd.DataFrame, search: pd.DataFrame, budget: str) -> str:
    """The report: every claim's rows, then the searches, with what each number means."""
    counts = claims["verdict"].value_counts()
    lines = [f"## {spec['title']}", "",
             f"Budget: {budget}. Differences are ours in points of test error at the best-validation epoch "
             "(C1, C3, C5, C9: with NSR less without; C4: NSR less the other regularizer; C2: the negative of the "
             "statistic, so that below 0 is the paper's direction; C6: correct less misclassified deviation per "
             "seed; C7: the change or gap its claim names, signed so that below 0 is the slides' direction; C8: "
             f"the ratio less 1), with {int((1 - float(spec['alpha'])) * 100)}% bootstrap CIs, Welch's p (one-sample "
             "t for paired rows; C2's p is the bootstrap's), Holm over every tested row, and the smallest difference "
             f"the design detects at {int(float(spec['power']) * 100)}% power. C3 asks for the paper's size: "
             "reproduced when our CI reaches the paper's difference.", "",
             "Verdicts: " + ", ".join(f"{counts.get(w, 0)} {w}" for w in WORDS) + ".", "",
             "| claim | network | reading | n | diff | 95% CI | p (Holm) | detectable | paper | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in claims.itertuples():
        ci = "" if math.isnan(r.ci_low) else f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        p = "" if math.isnan(r.p) else f"{r.p:.3g} ({r.p_holm:.3g})" if not math.isnan(r.p_holm) else f"{r.p:.3g}"
        diff = _num(r.diff, "{:+.3f}" if r.claim_id in ("C6", "C7", "C8") else "{:+.2f}")
        lines.append(f"| {r.claim_id}: {r.claim} | {r.network} | {r.reading} | {r.n} | {diff} | {ci} | {p} | "
                     f"{_num(r.detectable, '{:.2f}')} | {_num(r.paper_diff)} | {r.verdict} |")
    lines += ["", "### The searches (validation error, seeds disjoint from the test seeds)", "",
              "| claim | network | method | reading | lambda or strength | n | diverged or failed | val error | "
              "test error | chosen by |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in search.itertuples():
        gone = "" if pd.isna(r.left_out) else int(r.left_out)
        lines.append(f"| {r.claim_id} | {r.network} | {r.method} | {r.reading} | {r.lam} | {r.n} | {gone} | "
                     f"{_num(r.val_error, '{:.2f}')} | {_num(r.test_error, '{:.2f}')} | {r.chosen_by} |")
    return "\n".join(lines) + "\n"
