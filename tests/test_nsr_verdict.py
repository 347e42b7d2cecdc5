"""The NSR verdict (ibci.report.nsr_verdict, experiments/nsr_verdict.yaml): its cells, and its claims on planted
records whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from ibci import ROOT
from ibci.experiments import load_experiment
from ibci.report import nsr_verdict

SPEC = load_experiment("nsr_verdict")
PAPER = pd.read_csv(ROOT / SPEC["paper"])


def test_cells_are_c1s_test_blocks_then_c3s_search_on_seeds_of_their_own():
    cells = nsr_verdict.cells(SPEC, 5)
    c1 = [c for c in cells if c["claim"] == "C1"]
    c3 = [c for c in cells if c["claim"] == "C3"]
    assert len(c1) == 2 * 5 * 2 and {c["seed_offset"] for c in c1} == {0, 5}
    assert len(c3) == 5 * (4 * 4 + 1) and {c["seed_offset"] for c in c3} == {100}
    assert all("seeds=2" in c["overrides"] and "method=nsr" in c["overrides"] for c in c3)
    assert c3[0]["network"] == "mlp10"  # the deep networks first
    assert sum(c["lam"] == "official" for c in c3) == 5 and all(c["reading"] == "logits" for c in c3 if c["lam"] == "official")


def planted(gain_of_depth, noise=0.05, seed=0):
    """Records for every cell: Vanilla at 2.5%, +NSR lower by gain_of_depth(depth) (relative); search cells whose
    validation error is lowest for penultimate at lambda 1."""
    rng = np.random.default_rng(seed)
    found = []
    for cell in nsr_verdict.cells(SPEC, 5):
        depth = nsr_verdict.DEPTHS[cell["network"]]
        if cell["claim"] == "C1":
            mean = 2.5 * (1 - (gain_of_depth(depth) if cell["method"] == "nsr" else 0))
        else:
            mean = 2.0 if (cell["reading"], cell["lam"]) == ("penultimate", 1) else 2.3
        seeds = [dict(seed=i, selected_error=float(mean + rng.normal(0, noise)), min_val_error=float(mean - 0.1),
                      min_error=float(mean), diverged=False) for i in range(5 if cell["claim"] == "C1" else 2)]
        found.append((cell, {"seeds": seeds}))
    return found


def test_a_gain_that_grows_with_depth_is_reproduced_and_a_flat_one_is_not():
    growing, _ = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.03 * d), PAPER)
    flat, _ = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.2), PAPER)
    assert (growing.query("claim_id == 'C1'")["verdict"] == "reproduced").all()
    assert (growing.query("claim_id == 'C2'")["verdict"] == "reproduced").all()
    slope = flat.query("claim_id == 'C2'").iloc[0]
    assert slope["verdict"] == "not reproduced" and slope["ci_low"] > slope["paper_diff"]  # the paper's slope ruled out
    assert (flat.query("claim_id == 'C1'")["verdict"] == "reproduced").all()


def test_the_search_picks_by_validation_only_and_every_claim_has_rows():
    claims, search = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.1), PAPER)
    best = search[search["best"]]
    assert len(best) == 5 and set(zip(best["reading"], best["lam"])) == {("penultimate", "1")}
    assert set(claims["claim_id"]) == {f"C{i}" for i in range(1, 10)}
    assert set(claims.query("claim_id in ['C4', 'C9']")["verdict"]) == {"not run"}
    for column in ("claim_id", "claim", "network", "reading", "n", "diff", "ci_low", "ci_high", "p", "p_holm",
                   "detectable", "paper_diff", "verdict"):
        assert column in claims.columns


def test_missing_records_are_missing_not_guessed():
    claims, _ = nsr_verdict.claims_frame(SPEC, [(c, None) for c in nsr_verdict.cells(SPEC, 5)], PAPER)
    assert set(claims.query("claim_id in ['C1', 'C2', 'C3']")["verdict"]) == {"missing"}
