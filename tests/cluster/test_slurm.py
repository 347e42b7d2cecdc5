"""The SLURM launcher (`hydra/launcher=slurm`) on a real, single-node SLURM started by `scripts/cluster.sh up`.

    make test-cluster                                           # starts the cluster unless sinfo answers, then these
    .venv/bin/python -m pytest -q -m cluster tests/cluster      # these alone, on a cluster that answers

1. The smoke Table 1 (18 cells) submitted through the launcher: one SLURM array job whose 18 tasks each
   ran once and COMPLETED (sacct lists every run of a task), every cell `done` and trained by exactly one
   task, no task skipping or resuming a cell, and the table finds 18/18 cells.
2. A cell requeued while it trains (`scontrol requeue`, as a preemption or a timeout does) resumes from
   its checkpoint (`resume <cell> from epoch K`, K >= 3) and ends with the metrics.csv of the same cell
   trained without SLURM, byte for byte.

Every wait is bounded: on a timeout the test cancels its jobs and fails saying what it waited for and
what SLURM says of its jobs. The jobs run with one core and one thread each, so the numbers do not
depend on how busy the machine is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"  # `make data-mnist` builds data/MNIST/raw/ (make test-cluster depends on it)
pytestmark = pytest.mark.cluster

# Small jobs: one core and 2 GB each (a cell peaks at about 0.8 GB), a 5-minute limit (a smoke cell takes seconds).
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=5"]
TABLE = ["experiment=table1", "profile=smoke", "threads=1"]
TABLE_CELLS = 18
# About 150 x 0.1-0.3 s: long enough that the kill (KillWait=5 s after SIGTERM, which submitit ignores)
# lands well before the last epoch, short enough to train twice (on SLURM and here) in about a minute.
LONG_CELL = ["init=vanilla", "depth=2", "profile=smoke", "seeds=2", "epochs=150", "data.train_limit=20000",
             "checkpoint_every=1", "threads=1"]
MIN_RESUME_EPOCH = 3

TABLE_TIMEOUT = 600  # the whole smoke Table 1, two tasks at a time on two cores
CHECKPOINT_TIMEOUT = 180  # from submitting the long cell to its checkpoint of epoch 3
PENDING_TIMEOUT = 60  # from `scontrol requeue` to the job pending again
CELL_TIMEOUT = 300  # the long cell's rest, or the long cell trained here


def sh(*cmd, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command (text output), failing the test if it does not return within `timeout` seconds."""
    try:
        return subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(map(str, cmd))}` did not return within {timeout} s")


def sacct_runs(job: str, expected: list[str], settle: float = 60.0) -> list[str]:
    """Every run of the job's tasks as `JobID|State`, one per run (--duplicates: a requeued task's earlier runs too).

    slurmctld hands finished tasks to slurmdbd asynchronously, so the last task of an array can be missing from
    sacct for a few seconds after the job has left the queue (CI saw it once): ask again until the answer is
    `expected` or `settle` seconds have passed, and return the last answer for the test to compare.
    """
    deadline = time.monotonic() + settle
    while True:
        out = sh("sacct", "--duplicates", "--allocations", "--noheader", "--parsable2", "-o", "JobID,State", "-j", job)
        assert out.returncode == 0, out.stderr
        runs = [line for line in out.stdout.splitlines() if line]
        if sorted(runs) == sorted(expected) or time.monotonic() > deadline:
            return runs
        time.sleep(1.0)


@pytest.fixture(scope="module")
def partition() -> str:
    """The cluster's default partition; fails (not skips) when no cluster answers: that is what is tested."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"no SLURM answers ({e}): start one with scripts/cluster.sh up (make test-cluster does)")
    if out.returncode:
        pytest.fail(f"sinfo: {out.stderr.strip()}: start a cluster with scripts/cluster.sh up (make test-cluster does)")
    default = [p for p in out.stdout.split() if p.endswith("*")]
    assert default, f"SLURM has no default partition: {out.stdout!r}"
    acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=30)
    assert acct.returncode == 0, (f"sacct does not answer ({acct.stderr.strip()}): submitit would warn at every "
                                  "poll and never see a job that died without a result; scripts/cluster.sh up "
                                  "configures slurmdbd")
    return default[0].rstrip("*")


class Sweep:
    """`python run.py -m hydra/launcher=slurm ...` in the background, its jobs named `name` (for squeue, scancel)."""

    def __init__(self, overrides: list[str], results: Path, partition: str, name: str):
        self.results, self.name = results, name
        self.log = results.parent / f"{name}.out"  # what the submitting command prints
        cmd = [sys.executable, "run.py", "-m", *LAUNCHER, f"hydra.launcher.partition={partition}",
               f"hydra.launcher.name={name}", *overrides, f"results_dir={results}", f"data.root={DATA}"]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def output(self) -> str:
        return self.log.read_text()

    def jobs(self) -> str:
        out = sh("squeue", "-h", "-n", self.name, "-o", "%i %T %r")
        return out.stdout.strip() or "none queued"

    def task_logs(self) -> dict[str, str]:
        """Each task's stdout (submitit's <job>/<job>_0_log.out; a requeued task appends to the same file)."""
        return {p.parent.name: p.read_text() for p in self.results.glob(".hydra/.submitit/*/*_0_log.out")}

    def wait(self, timeout: float, what: str) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            jobs = self.jobs()
            self.cancel()
            pytest.fail(f"{what}: not done within {timeout} s (SLURM's jobs: {jobs}); the sweep's last lines:\n"
                        + "\n".join(self.output().splitlines()[-20:]))

    def cancel(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        sh("scancel", "--name", self.name)  # Ctrl-C on the sweep leaves its jobs running


@pytest.fixture
def sweeps(partition):
    """Start sweeps on the cluster; whatever a failed test left queued or running is cancelled after it."""
    started: list[Sweep] = []

    def start(overrides: list[str], results: Path, name: str) -> Sweep:
        sweep = Sweep(overrides, results, partition, f"{name}-{os.getpid()}")
        started.append(sweep)
        return sweep

    yield start
    for sweep in started:
        sweep.cancel()


def test_the_smoke_table1_runs_as_one_array_task_per_cell_each_once(sweeps, tmp_path):
    results = tmp_path / "results"
    started = datetime.now(timezone.utc).replace(microsecond=0)
    sweep = sweeps(TABLE, results, "ibci-test-table1")
    rc = sweep.wait(TABLE_TIMEOUT, "the smoke Table 1 on SLURM")
    out = sweep.output()
    assert rc == 0, out[-4000:]
    assert "sacct" not in out, out[-4000:]  # accounting answers: no "Bypassing sacct error" at every poll

    runs = results / "runs"
    cells = sorted(d.name for d in runs.iterdir() if d.is_dir() and not d.name.startswith("."))
    assert len(cells) == TABLE_CELLS, cells
    assert [c for c in cells if not (runs / c / "done").is_file()] == []
    finished = datetime.now(timezone.utc)
    for cell in cells:
        record = json.loads((runs / cell / "record.json").read_text())
        assert record["cell_id"] == cell
        assert started <= datetime.fromisoformat(record["finished_at"]) <= finished, record["finished_at"]
    assert not list(runs.glob(".checkpoints/*.pt"))  # each removed with its cell's records

    # Each cell trained once: its `done` line is in exactly one task's log, one cell per task, none skipped
    # (another job held it) or resumed (an earlier run was cut short).
    logs = sweep.task_logs()
    assert len(logs) == TABLE_CELLS, sorted(logs)
    done = {task: re.findall(r"^done (\S+):", text, re.M) for task, text in logs.items()}
    assert all(len(cells_done) == 1 for cells_done in done.values()), done
    assert Counter(c for cells_done in done.values() for c in cells_done) == Counter(cells)
    assert [line for text in logs.values() for line in text.splitlines() if line.startswith(("skip ", "resume "))] == []
    assert all(text.count("Starting with JobEnvironment") == 1 for text in logs.values())

    # SLURM's side: one array job, each of its 18 tasks run once and COMPLETED.
    arrays = {task.split("_")[0] for task in logs}
    assert len(arrays) == 1, arrays
    array = arrays.pop()
    completed = [f"{array}_{i}|COMPLETED" for i in range(TABLE_CELLS)]
    assert sorted(sacct_runs(array, completed)) == sorted(completed)

    table = sh(sys.executable, "scripts/make_tables.py", "table1", "profile=smoke", f"results_dir={results}",
               timeout=300)
    assert table.returncode == 0, table.stderr
    assert f"table1: {TABLE_CELLS}/{TABLE_CELLS} cells found" in table.stdout + table.stderr, table.stdout


def checkpoint_epoch(path: Path) -> int | None:
    """The last epoch a checkpoint holds (None if it vanished or is being replaced)."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["loop"]["epoch"])
    except Exception:  # noqa: BLE001  (removed or replaced between glob and load: look again)
        return None


def wait_for_checkpoint(sweep: Sweep, epoch: int, timeout: float) -> int:
    """Wait until the sweep's one cell has a checkpoint of at least `epoch` epochs; return its epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sweep.results.glob("runs/.checkpoints/*.pt"):
            got = checkpoint_epoch(path)
            if got is not None and got >= epoch:
                return got
        if list(sweep.results.glob("runs/*/done")) or sweep.proc.poll() is not None:
            pytest.fail(f"the long cell ended before its checkpoint reached epoch {epoch} (make LONG_CELL longer); "
                        f"the sweep printed:\n{sweep.output()[-3000:]}")
        time.sleep(0.2)
    jobs = sweep.jobs()
    sweep.cancel()
    pytest.fail(f"no checkpoint of epoch >= {epoch} within {timeout} s (SLURM's jobs: {jobs})")


def job_state(job: str) -> str:
    return sh("squeue", "-h", "-j", job, "-o", "%T").stdout.strip()


def test_a_requeued_cell_resumes_from_its_checkpoint_to_the_same_metrics(sweeps, tmp_path):
    results = tmp_path / "slurm"
    sweep = sweeps(LONG_CELL, results, "ibci-test-requeue")
    epoch = wait_for_checkpoint(sweep, MIN_RESUME_EPOCH, CHECKPOINT_TIMEOUT)
    running = [line.split()[0] for line in sweep.jobs().splitlines() if " RUNNING" in line]
    assert len(running) == 1, sweep.jobs()
    job = running[0]
    requeue = sh("scontrol", "requeue", job)
    assert requeue.returncode == 0, requeue.stderr

    # SLURM kills the task (SIGTERM, which submitit ignores, then SIGKILL after KillWait) and holds the job
    # about two minutes (reason BeginTime) before it may start again; once it is pending, start it now.
    deadline = time.monotonic() + PENDING_TIMEOUT
    while (state := job_state(job)) != "PENDING":
        if time.monotonic() > deadline:
            sweep.cancel()
            pytest.fail(f"job {job} not pending again within {PENDING_TIMEOUT} s of scontrol requeue (state {state!r})")
        time.sleep(0.5)
    release = sh("scontrol", "update", f"JobId={job}", "StartTime=now")
    assert release.returncode == 0, release.stderr
    rc = sweep.wait(CELL_TIMEOUT, f"the requeued job {job}")
    assert rc == 0, sweep.output()[-4000:]
    assert "sacct" not in sweep.output()

    cells = [d.name for d in (results / "runs").iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert len(cells) == 1 and (results / "runs" / cells[0] / "done").is_file(), cells
    cell = cells[0]
    logs = sweep.task_logs()
    assert list(logs) == [job], sorted(logs)
    log = logs[job]
    assert log.count("Starting with JobEnvironment") == 2, log  # the task ran twice, appending to one log
    resumed = re.findall(r"^resume (\S+) from epoch (\d+)$", log, re.M)
    assert len(resumed) == 1, (f"no single resume line: the cell may have finished before the requeue took "
                               f"effect (make LONG_CELL longer); its log:\n{log}")
    assert resumed[0][0] == cell
    assert int(resumed[0][1]) >= epoch >= MIN_RESUME_EPOCH, resumed
    assert re.findall(r"^done (\S+):", log, re.M) == [cell]
    requeued = [f"{job}|REQUEUED", f"{job}|COMPLETED"]
    assert sacct_runs(job, requeued) == requeued  # in the order they ran
    assert not list(results.glob("runs/.checkpoints/*.pt"))

    # The same cell trained here, without SLURM and without interruption: the same metrics, byte for byte.
    local = tmp_path / "local"
    ref = sh(sys.executable, "run.py", *LONG_CELL, f"results_dir={local}", f"data.root={DATA}", timeout=CELL_TIMEOUT)
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert (local / "runs" / cell / "done").is_file(), sorted(p.name for p in (local / "runs").iterdir())
    assert (results / "runs" / cell / "metrics.csv").read_bytes() == (local / "runs" / cell / "metrics.csv").read_bytes()
