"""Records are the one contract between running and tabulating: runs are found by what they record.

A record keeps the call that made its cell (`choices`, `overrides`); a table
names its cells by override lists and finds each one's run by comparing
canonical calls (`ibci.runs.calls`), composing nothing. A record written
before records kept their call is found by its config instead, compared with
the settings the configs' files give the cell. Either way a setting added
after a run was made does not orphan it, while a changed value does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ibci.cli import compose_many
from ibci.errors import UserError
from ibci.experiments import cell_overrides, experiment_grid, grid_cells, load_experiment
from ibci.report import verdict
from ibci.runs import calls, records
from ibci.runs.runner import settings_of

CELLS = [["profile=smoke", "base=xavier", "init=ibci", "depth=2"], ["profile=smoke", "base=xavier", "init=vanilla", "depth=2"]]


@pytest.fixture(scope="module")
def cfgs():
    return compose_many(CELLS)


def record_of(cfg: dict, legacy: bool = False) -> dict:
    """What the runner writes for a cell, as far as finding it goes (a JSON round trip, like a file)."""
    rec = {"cell_id": records.cell_id(cfg), "cell": records.cell_keys(cfg), "budget": records.budget(cfg),
           "config": settings_of(cfg)}
    if not legacy:
        rec.update(choices=cfg["choices"], overrides=cfg["overrides"])
    return json.loads(json.dumps(rec))


def made_by(*overrides: str, legacy: bool = False) -> dict:
    return record_of(compose_many([list(overrides)])[0], legacy)


@pytest.mark.parametrize("legacy", [False, True])
def test_each_cell_finds_its_own_run(cfgs, legacy):
    recs = [record_of(c, legacy) for c in cfgs]
    assert records.select_runs(recs[::-1], CELLS) == recs


def test_a_record_keeps_its_call(cfgs):
    rec = record_of(cfgs[0])
    assert rec["choices"]["init"] == "ibci" and rec["choices"]["base"] == "xavier" and rec["choices"]["net"] is None
    assert rec["overrides"] == CELLS[0] and "choices" not in rec["config"]


@pytest.mark.parametrize("legacy", [False, True])
def test_one_cell_in_other_words_is_the_same_cell(legacy):
    """Table 1's cell, the verdict's and a bare command line: defaults named or not, one run."""
    rec = made_by("init=ibci", "depth=2", "seed_offset=0", "profile=smoke", legacy=legacy)
    assert records.select_runs([rec], [["experiment=table1", "profile=smoke", "base=xavier", "init=ibci", "depth=2"]]) == [rec]


@pytest.mark.parametrize("legacy", [False, True])
def test_a_run_made_before_a_new_default_still_counts(cfgs, legacy):
    old = record_of(cfgs[0], legacy)
    del old["config"]["init"]["max_pool"]  # as if max_pool were added to configs/init/ibci.yaml after the run
    old["config"]["init"]["a_dropped_option"] = 3  # and this one dropped from it
    assert records.select_runs([old], CELLS[:1]) == [old]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("override", ["init.pool_factor=20", "lr=0.01", "data=fashion", "seed_offset=5", "init=tie"])
def test_a_changed_value_is_another_cell(override, legacy):
    rec = made_by(*CELLS[0], override, legacy=legacy)
    assert records.select_runs([rec], CELLS[:1]) == [None]
    assert records.select_runs([rec], [[*CELLS[0], override]]) == [rec]


@pytest.mark.parametrize("legacy", [False, True])
def test_where_and_how_fast_a_run_ran_do_not_matter(legacy):
    rec = made_by(*CELLS[0], "results_dir=/elsewhere", "threads=1", "device=cuda", "stack_cells=1", "progress=false",
                  "data.root=/scratch", legacy=legacy)
    assert records.select_runs([rec], CELLS[:1]) == [rec]


def test_a_record_whose_config_lost_a_called_setting_is_not_found(cfgs):
    """The call is checked against the record's own config: an overlay changed after the run cannot mislead."""
    rec = made_by("experiment=table3", "net=mlp4", "method=nsr", "profile=smoke")
    assert records.select_runs([rec], [["experiment=table3", "net=mlp4", "method=nsr", "profile=smoke"]]) == [rec]
    rec["config"]["lr"] = 0.1
    assert records.select_runs([rec], [["experiment=table3", "net=mlp4", "method=nsr", "profile=smoke"]]) == [None]


def at_budget(cfg: dict, seeds: int, epochs: int) -> dict:
    return made_by(*cfg["overrides"], f"seeds={seeds}", f"epochs={epochs}")


def test_an_open_budget_is_read_from_the_runs(cfgs):
    recs = [at_budget(c, 3, 20) for c in cfgs]
    assert records.select_runs(recs, CELLS) == [None, None]  # the cells ask for smoke's budget
    assert records.select_runs(recs, CELLS, free=records.BUDGET_KEYS) == recs


def test_several_budgets_are_an_error_naming_them_unless_one_is_picked(cfgs):
    small = [at_budget(c, 3, 20) for c in cfgs]
    large = [at_budget(c, 5, 100) for c in cfgs]
    with pytest.raises(UserError, match=r"several budgets: s3e20n2000 \(2 of 2 cells\), s5e100n2000 \(2 of 2"):
        records.select_runs(small + large, CELLS, free=records.BUDGET_KEYS)
    assert records.select_runs(small + large, CELLS, free=records.BUDGET_KEYS, budget="s5e100n2000") == large
    with pytest.raises(UserError, match="budget=s1e1: no run"):
        records.select_runs(small + large, CELLS, free=records.BUDGET_KEYS, budget="s1e1")


def every_cell() -> list[list[str]]:
    """Every cell of every experiment overlay and of the verdict, as the sweep composes them (smoke budget)."""
    jobs = []
    for name in ("table1", "table2", "table3", "table4"):
        spec = load_experiment(name)
        jobs += [[*spec["overrides"], "profile=smoke", *cell_overrides(c)] for c in grid_cells(experiment_grid(spec))]
    jobs += [["profile=smoke", *c["overrides"]] for c in verdict.cells(load_experiment("verdict"), 2, 1)]
    return jobs


def test_the_configs_read_as_plain_yaml_compose_as_hydra_does(composed):
    """`calls.expected` (legacy records) gives every cell the config Hydra gives it: the same cell id."""
    jobs = every_cell()
    for job, cfg in zip(jobs, composed(jobs)):
        assert records.cell_id(calls.unflat(calls.expected(job))) == records.cell_id(cfg), job


def test_every_cell_finds_its_own_run_among_all(composed):
    jobs = every_cell()
    cfgs = composed(jobs)
    recs = [record_of(c) for c in cfgs]
    found = records.select_runs(recs, jobs)
    assert all(r is not None for r in found)
    # cells that share a run are one cell (the verdict reuses Table 1's), the others each have their own
    assert all(r["cell_id"] == records.cell_id(c) for r, c in zip(found, cfgs))


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


def test_the_table_side_needs_no_hydra(tmp_path):
    """make_tables and make_verdict find runs from records alone: neither Hydra nor OmegaConf is imported."""
    import subprocess
    import sys

    from tests.test_tables import GOLDEN, SWEEP, SWEEP_OVERRIDES

    shutil.copytree(SWEEP / "runs", tmp_path / "runs")
    code = ("import runpy, sys; sys.argv = sys.argv[1:]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('HYDRA' if any(m.split('.')[0] in ('hydra', 'omegaconf') for m in sys.modules) else 'CLEAN')")
    out = subprocess.run([sys.executable, "-c", code, "scripts/make_tables.py", str(GOLDEN / "golden.yaml"),
                          *SWEEP_OVERRIDES, f"results_dir={tmp_path}"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip().endswith("CLEAN"), out.stdout + out.stderr
