"""Several jobs on one results dir: each cell is trained by exactly one of them and nothing is lost."""

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibci.runs import records
from ibci.runs import runner

ROOT = Path(__file__).resolve().parent.parent
BUDGET = ["profile=smoke", "seeds=2", "epochs=2", "data.train_limit=1000", "threads=1", "progress=false"]
GRID = "grid:\n  base: [xavier]\n  depth: [5, 2]\n  init: [vanilla, lsuv, ibci]\n"


def trained(outputs: list[str]) -> collections.Counter:
    """How many times each cell was trained, from the jobs' `done <cell-id>:` lines."""
    return collections.Counter(line.split()[1].rstrip(":") for out in outputs for line in out.splitlines()
                               if line.startswith("done "))


# replan_every (the NSR verdict's way): the sweep plans again after every 2 cells, passing over done ones quietly.
# A second start 1 s late races less than one at once: slow.
@pytest.mark.parametrize("offset_s, replan", [(0.0, ""), pytest.param(1.0, "", marks=pytest.mark.slow),
                                              (0.5, "replan_every: 2\n")])
def test_two_sweeps_at_once_train_every_cell_once(offset_s, replan, mnist_root, tmp_path):
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(GRID + replan)
    results = tmp_path / "results"
    args = [sys.executable, "scripts/sweep.py", str(experiment), *BUDGET, "stack_cells=1",
            f"data.root={mnist_root}", f"results_dir={results}"]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(offset_s)
    second = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err for _, err in outs]

    runs = sorted(p for p in (results / "runs").iterdir() if p.is_dir())
    assert len(runs) == 6
    for run_dir in runs:
        assert {"config.yaml", "metrics.csv", "record.json", "done"} <= {p.name for p in run_dir.iterdir()}
        assert records.read_record(run_dir) is not None
    counts = trained([out for out, _ in outs])
    assert set(counts) == {p.name for p in runs} and set(counts.values()) == {1}, counts
    # A later run of the same command finds everything done.
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and not trained([again.stdout])
    if replan:
        assert "skip " not in again.stdout, again.stdout


def test_a_cell_held_by_another_job_is_left_to_it(small_cfg):
    cfg = small_cfg("init=vanilla", "depth=5")
    run_dir = Path(cfg["results_dir"]) / "runs" / records.cell_id(cfg)
    lock = records.try_lock(run_dir)  # another job's hold, as far as the flock is concerned
    assert lock is not None and records.try_lock(run_dir) is None
    lines = []
    try:
        assert runner.run_cells([cfg], log=lines.append) == []
    finally:
        lock.release()
    assert f"skip {records.cell_id(cfg)}: another job is training it" in lines
    assert not run_dir.exists()
    assert len(runner.run_cells([cfg], log=lines.append)) == 1  # released: this job trains it


def test_a_record_missing_keys_is_rerun(small_cfg, capsys):
    cfg = small_cfg("init=vanilla", "depth=5")
    (rec,) = runner.run_cells([cfg], log=lambda line: None)
    path = Path(cfg["results_dir"]) / "runs" / rec["cell_id"] / "record.json"
    broken = dict(rec)
    del broken["budget"]
    path.write_text(json.dumps(broken))
    assert records.read_record(path.parent) is None
    (again,) = runner.run_cells([cfg], log=lambda line: None)
    assert "unreadable; rerunning the cell" in capsys.readouterr().err
    assert again["seeds"] == rec["seeds"] and "budget" in json.loads(path.read_text())


@pytest.mark.parametrize("script, experiment", [("scripts/make_tables.py", "table1"), ("scripts/make_verdict.py", "verdict")])
def test_tabulating_a_results_dir_without_runs_is_one_line_and_creates_nothing(script, experiment, tmp_path):
    missing = tmp_path / "nowhere"
    out = subprocess.run([sys.executable, script, experiment, f"results_dir={missing}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr == f"error: results_dir={str(missing)!r} holds no runs (no folder {missing / 'runs'}); run the sweep first\n"
    assert not missing.exists()
