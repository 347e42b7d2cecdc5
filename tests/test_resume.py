"""Long work survives a kill: a stack checkpoints inside its cell and a rerun resumes it to the same bytes.

A cell is started as a user starts it (`python run.py ...`), killed with
SIGKILL at a random epoch once a checkpoint exists, and run again; its
metrics.csv must equal an uninterrupted run's byte for byte, and its record
too but for what says when, where and how long (times, date, host, folder).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TIMING = ("init_time_s", "train_time_s", "epoch_time_s", "wall_time_s", "finished_at", "git_commit", "git_dirty",
          "earlier_commits", "host", "versions")
OLDER = "0123456789abcdef0123456789abcdef01234567"  # a commit that wrote the killed run's checkpoint

CASES = {
    "mlp": ["init=ibci", "depth=2"],
    "mlp-nsr": ["reg=nsr", "reg.reading=largest", "reg.lambda=0.5", "hidden=[32,16]"],
    "cnn": ["net=cnn", "hidden=[4,6,16]", "init=lsuv", "epochs=8"],
    "general": ["reg=l2", "hidden=[16]"],  # the general engine (ibci.train.general)
}


def command(mnist_root, results: Path, case: str) -> list[str]:
    return [sys.executable, "run.py", "profile=smoke", "seeds=2", "epochs=30", "data.train_limit=1000", "threads=1",
            "progress=false", "checkpoint_every=1", f"data.root={mnist_root}", f"results_dir={results}", *CASES[case]]


def checkpoint_epoch(results: Path) -> int:
    for path in (results / "runs" / ".checkpoints").glob("*.pt"):
        try:
            return int(torch.load(path, weights_only=True)["loop"]["epoch"])
        except Exception:  # noqa: BLE001  (being written: its atomic rename has not happened yet)
            return 0
    return 0


def records_of(results: Path) -> list[str]:
    return [p.read_text() for p in (results / "runs").glob("*/record.json")]


def the_run(results: Path) -> tuple[bytes, dict]:
    (run_dir,) = [d for d in (results / "runs").iterdir() if d.is_dir() and not d.name.startswith(".")]
    rec = json.loads((run_dir / "record.json").read_text())
    rec["config"].pop("results_dir")  # the two runs write to two folders
    rec["init_info"].pop("time_s")
    return (run_dir / "metrics.csv").read_bytes(), {k: v for k, v in rec.items() if k not in TIMING}


# "mlp" runs the same engine as "mlp-nsr" without the NSR queue, the one state only that case checkpoints: slow.
@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] if c == "mlp" else []) for c in CASES])
def test_a_killed_cell_resumes_to_the_same_bytes(case, mnist_root, tmp_path):
    subprocess.run(command(mnist_root, tmp_path / "whole", case), cwd=ROOT, check=True, capture_output=True)
    killed = tmp_path / "killed"
    epochs = 8 if case == "cnn" else 30
    at = random.Random(case).randint(2, epochs - 3)
    proc = subprocess.Popen(command(mnist_root, killed, case), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while checkpoint_epoch(killed) < at and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the cell finished before it could be killed; give it more epochs"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any((killed / "runs").glob("*/done"))
    # As if other code had trained the first part: the record names that commit beside its own.
    (path,) = (killed / "runs" / ".checkpoints").glob("*.pt")
    state = torch.load(path, weights_only=False)
    assert state["commits"] == [json.loads(records_of(tmp_path / "whole")[0])["git_commit"]]
    torch.save({**state, "commits": [OLDER]}, path)
    again = subprocess.run(command(mnist_root, killed, case), cwd=ROOT, check=True, capture_output=True, text=True)
    assert "resume " in again.stdout and " from epoch " in again.stdout, again.stdout
    assert the_run(killed) == the_run(tmp_path / "whole")
    (rec,) = [json.loads(r) for r in records_of(killed)]
    assert rec["earlier_commits"] == [OLDER] and rec["git_commit"] != OLDER
    assert "earlier_commits" not in json.loads(records_of(tmp_path / "whole")[0])
    assert not list((killed / "runs" / ".checkpoints").glob("*.pt"))  # removed with the records written


def test_a_torn_checkpoint_is_ignored_with_one_line(mnist_root, tmp_path):
    subprocess.run(command(mnist_root, tmp_path / "whole", "mlp"), cwd=ROOT, check=True, capture_output=True)
    torn = tmp_path / "torn"
    proc = subprocess.Popen(command(mnist_root, torn, "mlp"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while checkpoint_epoch(torn) < 3 and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (path,) = (torn / "runs" / ".checkpoints").glob("*.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a torn file, as a full disk leaves one
    again = subprocess.run(command(mnist_root, torn, "mlp"), cwd=ROOT, check=True, capture_output=True, text=True)
    warnings = [line for line in (again.stdout + again.stderr).splitlines() if "checkpoint" in line]
    assert len(warnings) == 1 and "unreadable" in warnings[0] and "from the start" in warnings[0]
    assert the_run(torn) == the_run(tmp_path / "whole")


@pytest.mark.parametrize("override", ["seeds=100000", "hidden=[100000,100000]",
                                      "init=ibci init.pool_factor=100000 init.max_pool=100000000"])
def test_an_input_too_big_for_this_machine_fails_at_once_in_one_line(override, tmp_path):
    start = time.monotonic()
    out = subprocess.run([sys.executable, "run.py", *override.split(), f"results_dir={tmp_path / 'r'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and time.monotonic() - start < 30
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: a stack of 1 cell(s)") and "GB available" in line
    assert not (tmp_path / "r" / "runs").exists() or not any((tmp_path / "r" / "runs").iterdir())


def test_the_estimate_refuses_only_what_does_not_fit():
    from ibci.cli import compose
    from ibci.errors import UserError
    from ibci.runs import memory

    cfg = compose(["depth=3"])
    need = sum(memory.estimate([cfg]).values())
    memory.check_fits([cfg], free=2 * need)
    with pytest.raises(UserError, match=r"needs about [0-9.]+ GB \(data [0-9.]+ GB.*\) but this machine has [0-9.]+ GB available"):
        memory.check_fits([cfg], free=need // 2)
    assert memory.estimate([cfg] * 10)["weights"] == 10 * memory.estimate([cfg])["weights"]  # ten cells, ten stacks of seeds
