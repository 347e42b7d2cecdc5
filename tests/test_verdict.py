"""The verdict's statistics and decisions on hand-computed cases, its cells, and the report end to end."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from ibci.report import verdict
from ibci import ROOT
from ibci.experiments import load_experiment
from ibci.runs.validate import validate

SPEC = load_experiment("verdict")


def test_holm_by_hand():
    # sorted: 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> monotone 0.06
    got = verdict.holm([0.01, 0.04, float("nan"), 0.03])
    np.testing.assert_allclose(got[[0, 1, 3]], [0.03, 0.06, 0.06])
    assert math.isnan(got[2])
    assert verdict.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_min_detectable_diff_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = a + 10
    se = math.sqrt(2 * a.var(ddof=1) / 4)
    df = 6  # equal variances and sizes: Welch's df is n_a + n_b - 2
    want = (sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * se
    assert verdict.min_detectable_diff(a, b) == pytest.approx(want)
    assert math.isnan(verdict.min_detectable_diff([1.0], b))


def test_min_detectable_diff_has_the_power_it_claims():
    rng = np.random.default_rng(0)
    mde = verdict.min_detectable_diff(rng.normal(0, 0.1, 10), rng.normal(0, 0.1, 10))
    hits = 0
    for _ in range(2000):
        a, b = rng.normal(0, 0.1, 10), rng.normal(mde, 0.1, 10)
        hits += sps.ttest_ind(a, b, equal_var=False).pvalue < 0.05
    assert 0.6 < hits / 2000 < 0.95  # about 80%, up to the noise of the std estimate it was computed from


@pytest.mark.parametrize("kind, diff, ci, p_holm, paper_diff, want", [
    ("less", -0.2, (-0.3, -0.1), 0.01, -0.1, verdict.REPRODUCED),
    ("less", 0.2, (0.1, 0.3), 0.01, -0.1, verdict.NOT_REPRODUCED),      # significantly the other way
    ("less", 0.0, (-0.05, 0.05), 0.9, -0.1, verdict.NOT_REPRODUCED),    # the paper's -0.1 lies below the CI
    ("less", -0.05, (-0.15, 0.05), 0.4, -0.1, verdict.INCONCLUSIVE),   # the CI holds both 0 and -0.1
    ("less", 0.01, (-0.05, 0.07), 0.8, math.nan, verdict.INCONCLUSIVE),
    ("less", 0.05, (0.01, 0.1), 0.2, math.nan, verdict.NOT_REPRODUCED),  # no paper diff: any gain ruled out
    ("equal", 0.02, (-0.05, 0.08), 0.6, 0.01, verdict.REPRODUCED),
    ("equal", 0.2, (0.12, 0.28), 0.001, 0.01, verdict.NOT_REPRODUCED),
    ("equal", 0.05, (-0.1, 0.2), 0.4, 0.01, verdict.INCONCLUSIVE),
    ("less", math.nan, (math.nan, math.nan), math.nan, -0.1, verdict.INCONCLUSIVE),
])
def test_verdict_words(kind, diff, ci, p_holm, paper_diff, want):
    assert verdict.verdict_word(kind, diff, ci, p_holm, paper_diff, 0.05, 0.1) == want


def test_cells_run_base_free_columns_once_and_explorations_on_one_block():
    cells = verdict.cells(SPEC, seeds=5, epochs=100)
    per = {}
    for c in cells:
        per.setdefault(c["column"], []).append(c)
    assert len(per["vanilla"]) == 2 * 3 * 2  # blocks x depths x bases
    assert len(per["ibci_authors"]) == 2 * 3  # base-free
    assert len(per["lsuv_orthonormal"]) == 3  # one block, base-free
    assert {c["seed_offset"] for c in per["vanilla"]} == {0, 5}
    assert all("epochs=101" in c["overrides"] for c in per["ibci_authors"])
    assert all(not any(o.startswith("epochs=") for o in c["overrides"]) for c in per["vanilla"])
    # Blocks come first in the order: every seed-0 cell runs before any seed-5 cell.
    offsets = [c["seed_offset"] for c in cells]
    assert offsets == sorted(offsets)
    # The chosen LSUV variant runs at full n.
    chosen = dict(SPEC, lsuv_best="lsuv_orthonormal")
    assert len([c for c in verdict.cells(chosen, 5, 100) if c["column"] == "lsuv_orthonormal"]) == 6


def test_every_verdict_cell_composes_validates_and_is_distinct(composed):
    from ibci.runs import records

    ids = set()
    for cfg in composed([["profile=smoke", *c["overrides"]] for c in verdict.cells(SPEC, seeds=2, epochs=1)]):
        validate(cfg)
        ids.add(records.cell_id(cfg))
    assert len(ids) == len(verdict.cells(SPEC, seeds=2, epochs=1))


def _pooled(effects: dict, n=10, sd=0.05, seed=0):
    """Per-seed summaries for every column and row, each column's errors = 2 + its effect + noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in SPEC["columns"]:
        for base in SPEC["rows"]["base"]:
            for depth in SPEC["rows"]["depth"]:
                errs = 2.0 + effects.get(name, 0.0) + rng.normal(0, sd, n)
                out[(name, base, depth)] = dict(seeds=[dict(selected_error=float(e), min_error=float(e),
                                                            selected_epoch=50 + i % 3,
                                                            diverged=False) for i, e in enumerate(errs)],
                                                expected=n, missing=0, cell_ids=[], init_info=[])
    return out


def _paper():
    return pd.concat([pd.read_csv(ROOT / p) for p in SPEC["paper"]], ignore_index=True)


def test_a_planted_gain_is_reproduced_and_no_gain_is_not():
    df = verdict.claims_frame(SPEC, _pooled({"ibci_paper": -0.3}), _paper())
    paper = df[(df["claim"] == "IBCI < Vanilla") & (df["reading"] == "paper")]
    assert (paper["verdict"] == verdict.REPRODUCED).all()
    assert (paper["diff"] < -0.2).all()
    authors = df[(df["claim"] == "IBCI < Vanilla") & (df["reading"] == "authors")]
    # No effect, 10 seeds of sd 0.05: the paper's gain of about 0.1 to 0.3 lies outside the CI.
    assert (authors["verdict"] == verdict.NOT_REPRODUCED).all()
    lsuv = df[df["claim"] == "LSUV ~ Vanilla"]
    assert (lsuv["verdict"] == verdict.REPRODUCED).all()
    assert list(df.columns[:11]) == ["claim", "base", "depth", "reading", "n", "diff", "ci_low", "ci_high", "p",
                                     "p_holm", "verdict"]
    assert (df["p_holm"] >= df["p"]).all()


def test_lsuv_match_picks_the_variant_closest_to_the_paper():
    paper = _paper()
    effects = {name: 1.0 for name in SPEC["lsuv_variants"]}
    effects["lsuv_orthonormal"] = 0.0  # 2.0 + noise, near the paper's LSUV (2.0 to 3.1)
    cols = verdict.columns_frame(SPEC, _pooled(effects), paper)
    match = verdict.lsuv_match(SPEC, cols)
    assert match.loc[match["closest"], "column"].tolist() == ["lsuv_orthonormal"]


def test_make_verdict_end_to_end_on_a_small_spec(tmp_path):
    spec = dict(SPEC)
    spec["columns"] = {k: SPEC["columns"][k] for k in ("vanilla", "ibci_authors", "vanilla_authors", "lsuv")}
    spec["rows"] = {"base": ["xavier", "he"], "depth": [2]}
    spec["claims"] = [c for c in SPEC["claims"] if c["a"] in spec["columns"] and c["b"] in spec["columns"]]
    spec["lsuv_variants"] = ["lsuv"]
    spec["lsuv_best"] = None
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(spec))
    overrides = ["profile=smoke", "data.train_limit=500", "epochs=1", f"results_dir={tmp_path / 'r'}", "progress=false"]
    py = sys.executable
    run = subprocess.run([py, "scripts/sweep.py", str(path), *overrides], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = subprocess.run([py, "scripts/make_verdict.py", str(path), *overrides], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "12/12 cells found" in out.stdout  # (2 + 1 + 2 + 1 cells a block: base-free columns once) x 2 blocks
    df = pd.read_csv(tmp_path / "r" / "tables" / "verdict.csv")
    assert set(df["claim"]) == {"IBCI < Vanilla", "IBCI converges earlier", "LSUV ~ Vanilla"}
    assert (df["n"] == 4).all()  # 2 blocks of 2 smoke seeds
    md = (tmp_path / "r" / "tables" / "verdict.md").read_text()
    assert "## The answer" in md and "IBCI (authors' code) °" in md


def test_rows_without_runs_are_missing_not_inconclusive():
    pooled = _pooled({})
    for key in [k for k in pooled if k[0] == "ibci_paper" and k[2] == 5]:
        del pooled[key]
    df = verdict.claims_frame(SPEC, pooled, _paper())
    gone = df[(df["a"] == "ibci_paper") & (df["depth"] == 5)]
    assert len(gone) and (gone["verdict"] == verdict.MISSING).all()
    summary = verdict.summary_frame(df)
    row = summary[(summary["claim"] == "IBCI < Vanilla") & (summary["reading"] == "paper")].iloc[0]
    assert (row.missing, row.reproduced + row.not_reproduced + row.inconclusive) == (2, 4)
