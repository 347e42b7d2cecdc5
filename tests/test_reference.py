"""The committed reference tables regenerate byte for byte from the committed run records.

results/reference/runs/ keeps the records of the reference runs (record, metrics, config, done); a table under
results/reference/paper_budget/ whose every cell has its record there is rebuilt from them into a temporary folder
and must equal the committed file. A table whose records are not all committed yet (they are being added as a
sweep finishes them) is skipped, saying how many it has.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ibci.cli import experiment_jobs
from ibci.experiments import load_experiment
from ibci.runs import records

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
# Each committed table: its experiment, the overrides its sweep ran with, the script that writes it.
TABLES = {
    "table1": ("table1", [], "make_tables.py"),
    "table1_fashion": ("table1", ["data=fashion"], "make_tables.py"),
    "table2": ("table2", [], "make_tables.py"),
    "table3": ("table3", [], "make_tables.py"),
    "table4": ("table4", [], "make_tables.py"),
    "verdict": ("verdict", [], "make_verdict.py"),
}


@pytest.mark.parametrize("name", [n for n in TABLES if (REFERENCE / "paper_budget" / f"{n}.md").exists()])
def test_a_committed_table_regenerates_from_its_committed_records(name, tmp_path):
    experiment, extra, script = TABLES[name]
    overrides = ["profile=paper", *extra]
    jobs = experiment_jobs(load_experiment(experiment), overrides)
    found = records.select_runs(records.load_records(REFERENCE), jobs)
    have = sum(r is not None for r in found)
    if have < len(jobs):
        pytest.skip(f"{name}: {have} of its {len(jobs)} cells have committed records")
    shutil.copytree(REFERENCE / "runs", tmp_path / "runs")
    out = subprocess.run([sys.executable, f"scripts/{script}", experiment, *overrides, f"results_dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for suffix in ("md", "csv", "tex"):
        committed = REFERENCE / "paper_budget" / f"{name}.{suffix}"
        if committed.exists():
            assert (tmp_path / "tables" / committed.name).read_bytes() == committed.read_bytes(), committed.name


def test_the_committed_nsr_verdict_regenerates_from_the_committed_records(tmp_path):
    """The NSR verdict is committed part-way (its report says which claims have records): rebuilt from the records
    git tracks, and bench.json for C8, it must equal the committed report, whatever a running sweep adds."""
    committed = REFERENCE / "paper_budget" / "nsr_verdict.md"
    if not committed.exists():
        pytest.skip("no committed NSR verdict")
    tracked = subprocess.run(["git", "ls-files", "results/reference/runs", "results/reference/bench.json"], cwd=ROOT,
                             capture_output=True, text=True)
    if tracked.returncode != 0 or not tracked.stdout.strip():
        pytest.skip("not a git checkout with committed records")
    for path in tracked.stdout.split():
        target = tmp_path / Path(path).relative_to("results/reference")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, target)
    out = subprocess.run([sys.executable, "scripts/make_nsr_verdict.py", "nsr_verdict", "profile=paper",
                          f"results_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("nsr_verdict.md", "nsr_verdict.csv", "nsr_search.csv"):
        assert (tmp_path / "tables" / name).read_text() == (REFERENCE / "paper_budget" / name).read_text(), name


def test_the_authors_code_summary_regenerates_from_its_logs(tmp_path):
    """What the authors' scripts printed (results/reference/authors_code/logs/) gives the committed summary."""
    folder = REFERENCE / "authors_code"
    if not (folder / "summary.md").exists():
        pytest.skip("no committed summary of the authors' code")
    shutil.copytree(folder / "logs", tmp_path / "logs")
    out = subprocess.run([sys.executable, "scripts/authors_code.py", "--folder", str(tmp_path), "--results",
                          str(REFERENCE)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "summary.md").read_text() == (folder / "summary.md").read_text()
