"""Train one table cell (base x init x depth) with all its seeds, or sweep many.

    python run.py base=he init=ibci depth=3                  # one cell, paper budget
    python run.py -m init=ibci,lsuv depth=2,3,5              # a sweep (Hydra multirun)
    python run.py -m init=vanilla,lsuv depth=2 seeds=1 epochs=1 data.train_limit=1000 results_dir=/tmp/r

Each cell writes <results_dir>/runs/<cell-id>/ (config.yaml, metrics.csv,
record.json, then `done`). A cell whose `done` exists is skipped, so re-running
an interrupted sweep finishes it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import ibci
from ibci import data as datasets
from ibci import engine, records, seeding
from ibci.cli import ROOT, report_user_errors
from ibci.errors import UserError
from ibci.initialize import initialize
from ibci.validate import HELDOUT_SIZE, validate

_DATA_CACHE: dict = {}


def load_data(cfg: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The cell's splits: train (limited), test, and val under the heldout protocol."""
    key = (str(cfg["data"]["root"]), cfg["data"]["download"])
    if key not in _DATA_CACHE:  # sweeps in one process load MNIST once
        _DATA_CACHE[key] = datasets.load_mnist(cfg["data"]["root"], download=cfg["data"]["download"])
    d = _DATA_CACHE[key]
    x, y = d.x_train, d.y_train
    splits = {"test": (d.x_test, d.y_test)}
    if cfg["protocol"] == "heldout":
        splits["val"] = (x[-HELDOUT_SIZE:], y[-HELDOUT_SIZE:])
        x, y = x[:-HELDOUT_SIZE], y[:-HELDOUT_SIZE]
    limit = cfg["data"]["train_limit"]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    splits["train"] = (x, y)
    return splits


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_cell(cfg: dict) -> dict:
    """Train one cell as `cfg` (a resolved config dict) says; returns its record.

    Skips a cell whose run directory is done; clears and reruns an incomplete one.
    """
    validate(cfg)
    cid = records.cell_id(cfg)
    run_dir = Path(cfg["results_dir"]) / "runs" / cid
    if records.is_done(run_dir):
        rec = records.read_record(run_dir)
        if rec is not None:
            print(f"skip {cid}: done")
            return rec
        print(f"warning: {run_dir}/record.json is unreadable; rerunning the cell", file=sys.stderr)
    torch.set_num_threads(cfg["threads"] or os.cpu_count() or 1)
    try:
        records.prepare_run_dir(run_dir)
        records.atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    except OSError as e:
        raise UserError(f"results_dir={cfg['results_dir']!r} is not writable ({e.strerror})") from None

    started = time.perf_counter()
    splits = load_data(cfg)
    x, y = splits["train"]
    seeds = list(range(cfg["seed_offset"], cfg["seed_offset"] + cfg["seeds"]))
    model, init_info = initialize(cfg, x, y, [seeding.generator(s, "init") for s in seeds])

    device = torch.device(cfg["device"])
    model = model.to(device)
    splits = {k: (a.to(device), b.to(device)) for k, (a, b) in splits.items()}
    x, y = splits.pop("train")
    bar = tqdm(total=cfg["epochs"], desc=cid, unit="epoch", disable=not cfg["progress"], leave=False)

    def on_epoch(epoch: int, hist: engine.History) -> None:
        if epoch:
            bar.update(1)
            bar.set_postfix(test_error=f"{hist.errors['test'][epoch].nanmean().item():.2f}%")

    train_start = time.perf_counter()
    hist = engine.train(model, x, y, [seeding.generator(s, "data") for s in seeds], cfg["epochs"],
                        cfg["batch_size"], cfg["lr"], splits, on_epoch)
    bar.close()
    train_time = time.perf_counter() - train_start

    per_seed = records.summarize_seeds(seeds, hist.train_loss, hist.errors, hist.diverged_epoch, cfg["protocol"])
    rec = {
        "schema": records.SCHEMA,
        "cell_id": cid,
        "cell": records.cell_keys(cfg),
        "budget": records.budget(cfg),
        "seeds": per_seed,
        "init_info": init_info,
        "init_time_s": init_info["time_s"],
        "train_time_s": train_time,
        "epoch_time_s": train_time / cfg["epochs"],
        "wall_time_s": time.perf_counter() - started,
        "config": cfg,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "ibci": ibci.__version__},
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                 "threads": torch.get_num_threads(), "device": str(device)},
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    records.atomic_write_text(run_dir / "metrics.csv", records.metrics_csv(seeds, hist.train_loss, hist.errors))
    records.write_json(run_dir / "record.json", rec)
    records.mark_done(run_dir)
    sel = [s["selected_error"] for s in per_seed if s["selected_error"] is not None and not s["diverged"]]
    diverged = sum(s["diverged"] for s in per_seed)
    summary = f"{np.mean(sel):.2f} ± {np.std(sel, ddof=1) if len(sel) > 1 else float('nan'):.2f}%" if sel else "n/a"
    print(f"done {cid}: error {summary} (n={len(sel)}{f', {diverged} diverged' if diverged else ''}) "
          f"init {init_info['time_s']:.1f}s, {rec['epoch_time_s']:.2f}s/epoch")
    return rec


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        report_user_errors(run_cell)(OmegaConf.to_container(cfg, resolve=True))
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells are kept; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
