"""Write the fake sweep the golden table test reads (tests/golden/records/).

    .venv/bin/python tests/golden/make_fake_sweep.py

Run it only to change the fixture on purpose, then regenerate the expected
tables (UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_tables.py) and read them.
The sweep is 2 bases x 2 depths x (vanilla, ibci, tie), 3 seeds x 8 epochs,
with one cell of each kind the tables must flag:

- xavier/3/ibci has record.json and metrics.csv but no `done`: unfinished, so missing;
- he/3/tie has no directory at all: missing;
- he/2/ibci has a seed that diverged at epoch 4: "1/3 diverged";
- he/3/vanilla holds only 2 of its 3 seeds: "incomplete 2/3".
"""

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNS = HERE / "records" / "runs"
SEEDS, EPOCHS = 3, 8
# Where each cell's curve levels off, near the paper's numbers so the comparison columns say something.
FLOOR = {
    ("xavier", 2, "vanilla"): 2.06, ("xavier", 2, "ibci"): 1.95, ("xavier", 2, "tie"): 2.02,
    ("xavier", 3, "vanilla"): 1.84, ("xavier", 3, "ibci"): 1.72, ("xavier", 3, "tie"): 1.95,
    ("he", 2, "vanilla"): 2.01, ("he", 2, "ibci"): 1.90, ("he", 2, "tie"): 2.10,
    ("he", 3, "vanilla"): 1.80, ("he", 3, "ibci"): 1.70, ("he", 3, "tie"): 1.85,
}  # fmt: skip
UNFINISHED = ("xavier", 3, "ibci")
ABSENT = ("he", 3, "tie")
DIVERGED = {("he", 2, "ibci"): (2, 4)}  # cell -> (seed, epoch it diverged at)
LOST_SEED = {("he", 3, "vanilla"): 2}  # cell -> the seed its record lacks


def curve(rng: np.random.Generator, floor: float) -> np.ndarray:
    """Test error in % for epochs 0..EPOCHS: fast fall, a shallow minimum mid-run, noise."""
    e = np.arange(EPOCHS + 1)
    err = floor + (88.0 - floor) * np.exp(-2.0 * e) + 0.01 * (e - 5) ** 2 + rng.normal(0, 0.04, e.size)
    return np.round(err, 4)


def seed_summary(seed: int, err: np.ndarray, diverged_epoch) -> dict:
    """As the runner summarizes a seed (protocol min): over epochs 1..E before any divergence."""
    valid = err[1:diverged_epoch] if diverged_epoch else err[1:]
    best = int(np.argmin(valid))
    return {
        "seed": seed, "epoch0_error": float(err[0]), "min_error": float(valid[best]), "best_epoch": best + 1,
        "final_error": float(valid[-1]), "last10_error": round(float(valid[-10:].mean()), 6),
        "selected_epoch": best + 1, "selected_error": float(valid[best]), "min_val_error": None,
        "diverged": diverged_epoch is not None, "diverged_epoch": diverged_epoch,
    }  # fmt: skip


def write_cell(base: str, depth: int, init: str, rng: np.random.Generator) -> None:
    key = (base, depth, init)
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:8]
    cid = f"{base}-{init}-d{depth}-mnist-min-s{SEEDS}e{EPOCHS}-{digest}"
    run = RUNS / cid
    run.mkdir(parents=True)
    seeds = [s for s in range(SEEDS) if LOST_SEED.get(key) != s]
    rows, summaries = ["epoch,seed,train_loss,test_error"], []
    curves = {}
    for s in seeds:
        div_seed, div_epoch = DIVERGED.get(key, (None, None))
        diverged_epoch = div_epoch if s == div_seed else None
        err = curve(rng, FLOOR[key])
        loss = np.round(0.05 + 2.3 * np.exp(-1.5 * np.arange(EPOCHS + 1)), 4)
        loss[0] = math.nan
        if diverged_epoch:
            err[diverged_epoch:] = math.nan
            loss[diverged_epoch:] = math.nan
        curves[s] = (loss, err)
        summaries.append(seed_summary(s, err, diverged_epoch))
    for e in range(EPOCHS + 1):
        for s in seeds:
            loss, err = curves[s]
            rows.append(f"{e},{s},{loss[e]:.6g},{err[e]:.6g}")
    record = {
        "schema": "ibci.record/1",
        "cell_id": cid,
        "cell": {"base": base, "init": init, "depth": depth, "data": "mnist", "protocol": "min"},
        "budget": {"seeds": SEEDS, "seed_offset": 0, "epochs": EPOCHS, "train_limit": 1000, "batch_size": 100,
                   "lr": 0.1},
        "seeds": summaries,
        "init_info": {"time_s": 0.5},
        "init_time_s": 0.5, "train_time_s": 8.0, "wall_time_s": 8.7, "epoch_time_s": 1.0,
        "config": {"note": "fake record for the golden table test"},
        "versions": {"python": "3.12.0", "torch": "2.14.1", "ibci": "0.1.0"},
        "git_commit": None,
        "host": {"platform": "fake"},
        "finished_at": "2026-11-23T10:00:00+00:00",
    }  # fmt: skip
    (run / "config.yaml").write_text("note: fake record for the golden table test\n")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    (run / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    if key != UNFINISHED:
        (run / "done").write_text("")


def main() -> None:
    if RUNS.exists():
        shutil.rmtree(RUNS)
    rng = np.random.default_rng(20211101)
    for key in FLOOR:
        if key != ABSENT:
            write_cell(*key, rng)
    print(f"wrote {sum(1 for _ in RUNS.iterdir())} cell directories under {RUNS}")


if __name__ == "__main__":
    main()
