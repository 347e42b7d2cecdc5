"""Records are the one contract between running and tabulating: runs are found by what they record.

A table composes its cells only to know what a grid value means; it never
recomputes a run directory's name, so a setting added after a run was made
does not orphan that run, while a changed value does.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from ibci import records
from ibci.cli import compose_many
from ibci.errors import UserError

CELLS = [["base=xavier", "init=ibci", "depth=2"], ["base=xavier", "init=vanilla", "depth=2"]]


@pytest.fixture(scope="module")
def cfgs():
    return compose_many([[*c, "profile=smoke"] for c in CELLS])


def record_of(cfg: dict) -> dict:
    """What the runner writes for a cell, as far as finding it goes (a JSON round trip, like a file)."""
    rec = {"cell_id": records.cell_id(cfg), "cell": records.cell_keys(cfg), "budget": records.budget(cfg),
           "config": cfg}
    return json.loads(json.dumps(rec))


def test_each_cell_finds_its_own_run(cfgs):
    recs = [record_of(c) for c in cfgs]
    assert records.select_runs(recs[::-1], cfgs) == recs


def test_a_run_made_before_a_new_default_still_counts(cfgs):
    old = record_of(cfgs[0])
    today = copy.deepcopy(cfgs[0])
    today["init"]["a_new_option"] = 0  # a key added to configs/init/ibci.yaml after the run
    today["a_new_section"] = {"x": 1}
    assert records.cell_id(today) != old["cell_id"]  # rehashing would have orphaned it
    assert records.select_runs([old], [today]) == [old]


def test_a_setting_the_run_has_and_today_lacks_is_not_compared(cfgs):
    old = record_of(cfgs[0])
    old["config"]["init"]["a_dropped_option"] = 3
    assert records.select_runs([old], [cfgs[0]]) == [old]


@pytest.mark.parametrize("path, value", [("init.pool_factor", 20), ("lr", 0.01), ("data.name", "fashion")])
def test_a_changed_value_is_another_cell(cfgs, path, value):
    rec = record_of(cfgs[0])
    today = copy.deepcopy(cfgs[0])
    *parents, leaf = path.split(".")
    node = today
    for p in parents:
        node = node[p]
    node[leaf] = value
    assert records.select_runs([rec], [today]) == [None]


def test_where_and_how_fast_a_run_ran_do_not_matter(cfgs):
    rec = record_of(cfgs[0])
    today = copy.deepcopy(cfgs[0])
    today.update(results_dir="/elsewhere", threads=1, device="cuda", stack_cells=1, progress=False)
    today["data"]["root"] = "/scratch"
    assert records.select_runs([rec], [today]) == [rec]


def at_budget(cfg: dict, seeds: int, epochs: int) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg.update(seeds=seeds, epochs=epochs)
    return record_of(cfg)


def test_an_open_budget_is_read_from_the_runs(cfgs):
    recs = [at_budget(c, 3, 20) for c in cfgs]
    assert records.select_runs(recs, cfgs) == [None, None]  # the composed budget is smoke's
    assert records.select_runs(recs, cfgs, free=records.BUDGET_KEYS) == recs


def test_several_budgets_are_an_error_naming_them_unless_one_is_picked(cfgs):
    small = [at_budget(c, 3, 20) for c in cfgs]
    large = [at_budget(c, 5, 100)for c in cfgs]
    with pytest.raises(UserError, match=r"several budgets: s3e20n2000 \(2 of 2 cells\), s5e100n2000 \(2 of 2"):
        records.select_runs(small + large, cfgs, free=records.BUDGET_KEYS)
    assert records.select_runs(small + large, cfgs, free=records.BUDGET_KEYS, budget="s5e100n2000") == large
    with pytest.raises(UserError, match="budget=s1e1: no run"):
        records.select_runs(small + large, cfgs, free=records.BUDGET_KEYS, budget="s1e1")


def test_other_seeds_of_a_cell_are_not_its_runs(cfgs):
    later = copy.deepcopy(cfgs[0])
    later["seed_offset"] = 5  # the verdict's second block of seeds
    assert records.select_runs([record_of(later)], [cfgs[0]], free=records.BUDGET_KEYS) == [None]


def test_a_table_is_built_from_runs_under_any_directory_name(tmp_path, capsys):
    """The script end to end: run directories renamed (as a new default renames them) still tabulate."""
    from tests.test_tables import EXPECTED, GOLDEN, SWEEP, SWEEP_OVERRIDES, load_script

    for d in (SWEEP / "runs").iterdir():
        shutil.copytree(d, tmp_path / "runs" / f"renamed-{d.name[::-1]}")
    assert load_script().main([str(GOLDEN / "golden.yaml"), *SWEEP_OVERRIDES, f"results_dir={tmp_path}"]) == 0
    assert (tmp_path / "tables" / "golden.md").read_bytes() == (EXPECTED / "golden.md").read_bytes()


def test_a_grid_without_paper_numbers_tabulates(tmp_path):
    from tests.test_tables import GOLDEN, SWEEP, SWEEP_OVERRIDES, load_script

    spec = (GOLDEN / "golden.yaml").read_text().replace("paper: results/paper/table1.csv", "")
    (tmp_path / "mine.yaml").write_text(spec)
    shutil.copytree(SWEEP / "runs", tmp_path / "runs")
    assert load_script().main([str(tmp_path / "mine.yaml"), *SWEEP_OVERRIDES, f"results_dir={tmp_path}"]) == 0
    md = (tmp_path / "tables" / "mine.md").read_text()
    assert "| Base | Depth | Vanilla | IBCI |" in md and "(paper)" not in md and "Ours − paper" not in md
    assert "No paper reports this grid." in md and "1.94 ± 0.02 (4)" in md
    assert "& paper &" not in (tmp_path / "tables" / "mine.tex").read_text()
