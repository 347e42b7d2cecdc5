"""The NSR verdict (ibci.report.nsr_verdict, experiments/nsr_verdict.yaml): its cells, its two stages, and its
claims on planted records whose answer is known."""

import numpy as np
import pandas as pd

from ibci import ROOT
from ibci.experiments import load_experiment
from ibci.report import nsr_verdict

SPEC = load_experiment("nsr_verdict")
PAPER = pd.read_csv(ROOT / SPEC["paper"])
LAMBDAS = len(SPEC["search"]["lambdas"])


def test_first_cells_are_c1s_test_blocks_then_the_searches_on_seeds_of_their_own():
    cells = nsr_verdict.first_cells(SPEC, 5)
    c1 = [c for c in cells if c["claim"] == "C1"]
    c3 = [c for c in cells if c["claim"] == "C3"]
    assert len(c1) == 2 * 5 * 2 and {c["seed_offset"] for c in c1} == {0, 5}
    assert len(c3) == 5 * (4 * LAMBDAS + 1) and {c["seed_offset"] for c in c3} == {100}
    assert all("seeds=2" in c["overrides"] and "method=nsr" in c["overrides"] for c in c3)
    assert c3[0]["network"] == "mlp10"  # the deep networks first
    assert sum(c["lam"] == "official" for c in c3) == 5 and all(c["reading"] == "logits" for c in c3 if c["lam"] == "official")
    searches = [c for c in cells if c["role"] == "search"]
    assert {c["seed_offset"] for c in searches} == {100}  # disjoint from every test seed (0-9)
    c4 = [c for c in searches if c["claim"] == "C4"]
    assert {c["method"] for c in c4} == {"l1", "l2", "jacobian"} and all(
        sum(d["method"] == c["method"] and d["network"] == c["network"] for d in c4)
        == len(SPEC["regularizers"]["strengths"][c["method"]]["values"]) for c in c4)
    # no regularizer searched wider than NSR's logits lambda is (its grid and the official lambda)
    assert all(len(s["values"]) <= LAMBDAS + 1 for s in SPEC["regularizers"]["strengths"].values())
    assert all("observe=true" in c["overrides"] for c in cells if c["claim"] == "C6")
    assert len({tuple(c["overrides"]) for c in cells}) == len(cells)  # no cell twice


def planted(gain_of_depth, noise=0.05, seed=0, best=("penultimate", 1)):
    """Records for every cell of both stages: Vanilla at 2.5%, +NSR lower by gain_of_depth(depth) (relative);
    search cells whose validation error is lowest at `best` (and for C4, C9 at their first value)."""
    rng = np.random.default_rng(seed)

    def record(cell):
        depth = nsr_verdict.DEPTHS.get(cell["network"], 4)
        if cell["role"] == "search":
            first = {"C4": SPEC["regularizers"]["strengths"].get(cell["method"], {}).get("values", [None])[0],
                     "C9": SPEC["cnn"]["lambdas"][0]}.get(cell["claim"])
            hit = (cell["reading"], cell["lam"]) == best or cell["lam"] == first
            mean = 2.0 if hit else 2.3
        elif cell["claim"] == "C3":
            mean = 2.5 * (1 - 2 * gain_of_depth(depth))
        else:
            mean = 2.5 * (1 - (gain_of_depth(depth) if "nsr" in cell["method"] else 0))
        seeds = [dict(seed=i, selected_error=float(mean + rng.normal(0, noise)), min_val_error=float(mean - 0.1),
                      min_error=float(mean), diverged=False, diverged_epoch=None)
                 for i in range(2 if cell["role"] == "search" else 5)]
        return {"seeds": seeds, "cell_id": str(id(cell))}

    first = [(c, record(c)) for c in nsr_verdict.first_cells(SPEC, 5)]
    second = nsr_verdict.chosen_cells(SPEC, 5, nsr_verdict.pool(first))
    return first + [(c, record(c)) for c in second]


def test_the_second_stage_trains_each_searchs_choice_at_the_test_seeds_once_its_search_is_done():
    first = [(c, None) for c in nsr_verdict.first_cells(SPEC, 5)]
    assert nsr_verdict.chosen_cells(SPEC, 5, nsr_verdict.pool(first)) == []
    found = planted(lambda d: 0.1)
    second = [c for c, _ in found if c["role"] == "test" and c["claim"] in ("C3", "C4", "C9")
              and c["method"] != "vanilla"]
    c3 = [c for c in second if c["claim"] == "C3"]
    assert len(c3) == 5 * 2 and all("reg.reading=penultimate" in c["overrides"] and "reg.lambda=1" in c["overrides"]
                                    and "seeds=2" not in c["overrides"] for c in c3)
    assert {c["seed_offset"] for c in c3} == {0, 5}
    assert {c["seed_offset"] for c in second if c["claim"] != "C3"} == {0}  # one block elsewhere
    # A search with one record missing has no choice yet.
    partial = [(c, None if c["claim"] == "C3" and c["network"] == "mlp3" and c["lam"] == 10 else r)
               for c, r in found if c in nsr_verdict.first_cells(SPEC, 5)]
    nets = {c["network"] for c in nsr_verdict.chosen_cells(SPEC, 5, nsr_verdict.pool(partial)) if c["claim"] == "C3"}
    assert nets == {"mlp4", "mlp6", "mlp8", "mlp10"}


def test_a_gain_that_grows_with_depth_is_reproduced_and_a_flat_one_is_not():
    growing, _ = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.03 * d), PAPER)
    flat, _ = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.2), PAPER)
    assert (growing.query("claim_id == 'C1'")["verdict"] == "reproduced").all()
    assert (growing.query("claim_id == 'C2'")["verdict"] == "reproduced").all()
    slope = flat.query("claim_id == 'C2'").iloc[0]
    assert slope["verdict"] == "not reproduced" and slope["ci_low"] > slope["paper_diff"]  # the paper's slope ruled out
    assert (flat.query("claim_id == 'C1'")["verdict"] == "reproduced").all()


def test_c3_asks_for_the_papers_size_not_only_its_direction():
    small, _ = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.01), PAPER)  # C3's choice gains 2% of 2.5
    large, _ = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.3), PAPER)  # 60%: beyond every paper gain
    assert (small.query("claim_id == 'C3'")["verdict"] == "not reproduced").all()
    assert (large.query("claim_id == 'C3'")["verdict"] == "reproduced").all()


def test_the_searches_pick_by_validation_only_and_every_claim_has_rows():
    claims, search = nsr_verdict.claims_frame(SPEC, planted(lambda d: 0.1), PAPER)
    best = search[search["chosen_by"].str.contains("C3")]
    assert len(best) == 5 and set(zip(best["reading"], best["lam"])) == {("penultimate", "1")}
    assert set(claims["claim_id"]) == {f"C{i}" for i in range(1, 10)}
    assert set(claims.query("claim_id in ['C4', 'C5', 'C9']")["verdict"]) <= {"reproduced", "inconclusive",
                                                                              "not reproduced"}
    assert set(claims.query("claim_id in ['C6', 'C7', 'C8']")["verdict"]) == {"not run"}  # no observation, no bench
    for column in ("claim_id", "claim", "network", "reading", "n", "diff", "ci_low", "ci_high", "p", "p_holm",
                   "detectable", "paper_diff", "verdict"):
        assert column in claims.columns


def test_missing_records_are_missing_not_guessed():
    claims, _ = nsr_verdict.claims_frame(SPEC, [(c, None) for c in nsr_verdict.first_cells(SPEC, 5)], PAPER)
    assert set(claims.query("claim_id in ['C1', 'C2', 'C3']")["verdict"]) == {"missing"}
    assert set(claims.query("claim_id not in ['C1', 'C2', 'C3']")["verdict"]) == {"not run"}


def test_observations_become_tests_per_class_and_per_curve():
    cells = nsr_verdict.observe_cells(SPEC, 5)
    rng = np.random.default_rng(1)
    found, metrics = [], {}
    for cell in cells:
        wrong = rng.uniform(0.02, 0.03, (5, 10))
        rec = {"cell_id": cell["method"], "seeds": [], "observation": {"correct": (wrong - rng.uniform(0.005, 0.015, (5, 10))).tolist(),
                                                                       "wrong": wrong.tolist()}}
        found.append((cell, rec))
        rows = []
        for seed in range(5):  # Vanilla's variance rises and its CE falls; NSR's variance stays at a tenth
            for epoch, (ce, var) in enumerate([(2.3, 0.01), (0.5, 0.5), (0.1, 2.0)]):
                scale = 0.1 if cell["method"] == "nsr" else 1.0
                rows.append(dict(epoch=epoch, seed=seed, train_ce=ce * (1.5 if scale < 1 else 1) + rng.normal(0, 1e-3),
                                 train_intra_var=var * scale + rng.normal(0, 1e-3)))
        metrics[cell["method"]] = pd.DataFrame(rows)
    claims, _ = nsr_verdict.claims_frame(SPEC, found, PAPER, nsr_verdict.observed_curves(found, metrics))
    c6, c7 = claims.query("claim_id == 'C6'"), claims.query("claim_id == 'C7'")
    assert len(c6) == 2 * 10 and (c6["verdict"] == "reproduced").all() and (c6["n"] == 5).all()
    assert len(c7) == 4 and (c7["verdict"] == "reproduced").all(), c7[["claim", "diff", "verdict"]]


def test_a_choice_at_its_grids_edge_says_so():
    """A search whose best strength is its grid's smallest or largest might choose otherwise on a wider grid: the
    report's reading says which edge, and says nothing of a choice inside the grid or of the official lambda."""
    from ibci.report.nsr_verdict import _picked, key

    grid = [1e-6, 1e-5, 1e-4]
    family = [dict(claim="C4", role="search", network="mlp4", method="l1", reading="", lam=v, data="mnist")
              for v in grid]
    every = {key(c): {} for c in family}
    assert _picked({"reading": None, "method": "l1", "lam": 1e-6}, family, every, grid).endswith("(its grid's smallest)")
    assert _picked({"reading": "logits", "method": "nsr", "lam": 1e-4}, family, every, grid).endswith(
        "(its grid's largest)")
    assert _picked({"reading": "logits", "method": "nsr", "lam": 1e-5}, family, every, grid) == "logits, lambda 1e-05"
    assert _picked({"reading": "logits", "method": "nsr", "lam": "official"}, family, every,
                   grid) == "logits, lambda official"
    assert _picked(None, family, {key(family[0]): {}}, grid) == "search 1/3 done"


def test_a_search_cell_whose_seeds_all_diverged_is_told_from_one_not_run():
    found = planted(lambda d: 0.1)
    cells = [c for c, _ in found if c["claim"] == "C9" and c["role"] == "search"]
    diverged, absent = cells[-1], cells[-2]
    for c, rec in found:
        if c is diverged:
            rec["seeds"] = [{**s, "diverged": True, "diverged_epoch": 3} for s in rec["seeds"]]
    found = [(c, None if c is absent else r) for c, r in found]
    _, search = nsr_verdict.claims_frame(SPEC, found, PAPER)
    rows = search[search["claim_id"] == "C9"].reset_index(drop=True)
    assert len(rows) == len(cells)  # in the order of the cells
    assert (rows.loc[len(cells) - 1, ["n", "left_out"]] == [0, 2]).all()
    assert rows.loc[len(cells) - 2, "n"] == 0 and pd.isna(rows.loc[len(cells) - 2, "left_out"])
    assert (rows.loc[: len(cells) - 3, "left_out"] == 0).all() and (rows.loc[: len(cells) - 3, "n"] == 2).all()
