"""End to end: what `make smoke` does, on the tiny budget, into a temporary results dir."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args, env_root):
    out = subprocess.run([sys.executable, *args, "profile=smoke", f"results_dir={env_root['results']}",
                          f"data.root={env_root['data']}", "progress=false"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def smoke(mnist_root, tmp_path_factory):
    dirs = {"results": tmp_path_factory.mktemp("smoke"), "data": mnist_root}
    first = _run("scripts/sweep.py", "table1", env_root=dirs)
    tables = _run("scripts/make_tables.py", "table1", env_root=dirs)
    return dirs, first, tables


def test_smoke_table1_has_every_cell_with_finite_errors(smoke):
    dirs, _, log = smoke
    df = pd.read_csv(dirs["results"] / "tables" / "table1.csv")
    assert len(df) == 18 and set(df["init"]) == {"vanilla", "lsuv", "ibci"}
    assert df["err_mean"].notna().all() and (df["err_mean"] < 100).all()
    assert (df["n"] == 2).all() and df["flag"].isna().all()
    for ext in ("md", "tex"):
        assert (dirs["results"] / "tables" / f"table1.{ext}").stat().st_size > 0
    assert "18/18 cells found" in log


def test_smoke_ibci_starts_better_than_vanilla(smoke):
    # The campaign elects class-selective neurons, so before any training IBCI already errs less.
    df = pd.read_csv(smoke[0]["results"] / "tables" / "table1.csv").set_index(["base", "depth", "init"])
    for base in ("xavier", "he"):
        for depth in (2, 3, 5):
            assert df.loc[(base, depth, "ibci"), "epoch0_mean"] < df.loc[(base, depth, "vanilla"), "epoch0_mean"]


def test_smoke_rerun_skips_every_cell(smoke):
    again = _run("scripts/sweep.py", "table1", env_root=smoke[0])
    assert again.count("skip ") == 18 and "done " not in again.replace("skip", "")
