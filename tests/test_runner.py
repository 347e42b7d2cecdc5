import json
import subprocess
import sys
from pathlib import Path

import pytest

import run
from ibci.runs import records
from ibci.cli import compose
from ibci.experiments import load_experiment
from ibci.runs.validate import validate

ROOT = Path(__file__).resolve().parent.parent


EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
SPECS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
# Cells per grid (the baseline column counted once); a grid that changes size on purpose changes this line.
CELLS = {"table1": 18, "table2": 24, "table3": 30, "table4": 12}


@pytest.mark.parametrize("name", EXPERIMENTS + SPECS)
def test_every_experiment_cell_composes_and_validates(name, composed):
    """Every configs/experiment/*.yaml and experiments/*.yaml on a tiny budget: a broken grid fails here, not
    an hour into its sweep. Each cell composes, validates, and is a cell of its own (no two share a run)."""
    from ibci.cli import experiment_jobs

    spec = load_experiment(name)
    jobs = experiment_jobs(spec, ["profile=smoke"])
    if name in CELLS:
        assert len(jobs) == CELLS[name]
    cfgs = composed(jobs)
    for job, cfg in zip(jobs, cfgs):
        validate(cfg)
        coords = dict(o.split("=", 1) for o in job if o.split("=", 1)[0] in ("base", "init", "net", "method", "data"))
        assert all(cfg["choices"][g] == v for g, v in coords.items()), job
    ids = [records.cell_id(cfg) for cfg in cfgs]
    assert len(set(ids)) == len(ids)


def test_cell_id_is_deterministic_and_tracks_budget_not_location():
    a = compose(["init=ibci", "depth=3"])
    assert records.cell_id(a) == records.cell_id(compose(["init=ibci", "depth=3"]))
    assert records.cell_id(a).startswith("xavier-ibci-d3-mnist-min-s5e100-")
    assert records.cell_id(a) == records.cell_id(compose(["init=ibci", "depth=3", "results_dir=/elsewhere", "threads=1"]))
    assert records.cell_id(a) != records.cell_id(compose(["init=ibci", "depth=3", "lr=0.05"]))
    assert records.cell_id(a) != records.cell_id(compose(["init=ibci", "depth=3", "init.pool_factor=3"]))


def test_cell_writes_a_self_describing_record_then_done(small_cfg):
    cfg = small_cfg("init=lsuv", "depth=3")
    rec = run.run_cell(cfg)
    run_dir = Path(cfg["results_dir"]) / "runs" / rec["cell_id"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "done", "metrics.csv", "record.json"]
    on_disk = json.loads((run_dir / "record.json").read_text())
    assert on_disk["cell"] == {"base": "xavier", "init": "lsuv", "depth": 3, "net": "d3", "reg": "none",
                               "data": "mnist", "protocol": "min"}
    assert on_disk["budget"]["seeds"] == 2 and [s["seed"] for s in on_disk["seeds"]] == [0, 1]
    assert on_disk["config"]["init"]["tol"] == 0.02 and on_disk["versions"]["torch"]
    for s in on_disk["seeds"]:
        assert 0 <= s["min_error"] <= 100 and s["best_epoch"] == 1 and s["epoch0_error"] > 50
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,seed,train_loss,test_error,test_intra_var" and len(lines) == 1 + 2 * 2


def test_done_cells_are_skipped_and_incomplete_ones_rerun(small_cfg, capsys):
    cfg = small_cfg("init=vanilla")
    rec = run.run_cell(cfg)
    run_dir = Path(cfg["results_dir"]) / "runs" / rec["cell_id"]
    stamp = (run_dir / "record.json").stat().st_mtime_ns
    capsys.readouterr()
    skipped = run.run_cell(cfg)
    assert (skipped["cell_id"], skipped["seeds"]) == (rec["cell_id"], rec["seeds"])
    assert capsys.readouterr().out.startswith(f"skip {rec['cell_id']}: done")
    assert (run_dir / "record.json").stat().st_mtime_ns == stamp
    # An interrupted attempt: no done marker and a stray partial file.
    (run_dir / "done").unlink()
    (run_dir / "partial.tmp").write_text("junk")
    again = run.run_cell(cfg)
    assert (run_dir / "done").exists() and not (run_dir / "partial.tmp").exists()
    assert [s["min_error"] for s in again["seeds"]] == [s["min_error"] for s in rec["seeds"]]


def test_a_seed_gets_the_same_data_order_under_every_init(small_cfg):
    # Same seed, same data, same base draw: vanilla twice must agree bitwise, whatever else ran in between.
    a = run.run_cell(small_cfg("init=vanilla", "seeds=1", "seed_offset=3"))
    run.run_cell(small_cfg("init=lsuv", "seeds=1", "seed_offset=3"))
    b = run.run_cell(small_cfg("init=vanilla", "seeds=1", "seed_offset=3", "results_dir=" + str(Path(a["config"]["results_dir"]) / "again")))
    assert a["seeds"] == b["seeds"]


def test_multirun_writes_one_record_per_cell(mnist_root, tmp_path):
    out = subprocess.run(
        [sys.executable, "run.py", "-m", "init=vanilla,lsuv", "depth=2", "seeds=1", "epochs=1",
         "data.train_limit=1000", f"results_dir={tmp_path}", f"data.root={mnist_root}", "progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert len(records.load_records(tmp_path)) == 2
    assert out.stdout.count("done ") == 2


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "run.py", "seeds=0", f"results_dir={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: seeds=0 must be a positive integer"
    assert not (tmp_path / "runs").exists()


def test_heldout_protocol_selects_the_epoch_on_validation_images(small_cfg):
    cfg = small_cfg("protocol=heldout", "epochs=3")
    rec = run.run_cell(cfg)
    assert rec["cell"]["protocol"] == "heldout" and "-heldout-" in rec["cell_id"]
    run_dir = Path(cfg["results_dir"]) / "runs" / rec["cell_id"]
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,seed,train_loss,test_error,val_error,test_intra_var,val_intra_var"
    rows = [dict(zip(lines[0].split(","), map(float, l.split(",")))) for l in lines[1:]]
    for s in rec["seeds"]:
        mine = [r for r in rows if r["seed"] == s["seed"] and r["epoch"] >= 1]
        best = min(mine, key=lambda r: r["val_error"])
        assert s["selected_epoch"] == int(best["epoch"])
        assert s["selected_error"] == pytest.approx(best["test_error"], abs=1e-4)
        assert s["min_val_error"] == pytest.approx(best["val_error"], abs=1e-4)


def test_a_sweep_over_a_record_without_its_call_adds_it_and_trains_nothing(small_cfg):
    """Records written before records kept their call get it the next time a sweep passes over their cell."""
    cfg = small_cfg("init=vanilla", "depth=2")
    rec = run.run_cell(cfg)
    path = Path(cfg["results_dir"]) / "runs" / rec["cell_id"] / "record.json"
    assert rec["choices"]["init"] == "vanilla" and rec["overrides"] == cfg["overrides"]
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("choices", "overrides")}
    path.write_text(json.dumps(old))
    metrics = path.with_name("metrics.csv").read_bytes()
    again = run.run_cell(cfg)
    assert again["overrides"] == cfg["overrides"] and json.loads(path.read_text())["choices"] == cfg["choices"]
    assert path.with_name("metrics.csv").read_bytes() == metrics  # nothing was trained again


# A training loop's activations, freed and drawn again each step, a little larger each time (16 to 23.6 MB):
# glibc's defaults map each one afresh (its mmap threshold rises to the last freed size, just short of the next).
_STEPS = """
import resource, sys, torch
sys.path.insert(0, %r)
from ibci.runs.runner import reuse_freed_memory
if %r:
    reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for i in range(20):
    a = torch.ones(4_000_000 + 100_000 * i); del a
print(faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_buffers_serve_the_next_step():
    """After reuse_freed_memory the pages of the first steps serve the later ones: measured here, about 10k page
    faults against 97k with glibc's defaults (every step's buffer faulted in anew), in one process each."""
    faults = {}
    for reuse in (False, True):
        out = subprocess.run([sys.executable, "-c", _STEPS % (str(ROOT), reuse)], capture_output=True, text=True,
                             check=True)
        faults[reuse] = int(out.stdout)
    assert faults[True] < 0.3 * faults[False], faults
