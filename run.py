"""Train one table cell (base x init x depth) with all its seeds, or sweep many.

    python run.py base=he init=ibci depth=3                  # one cell, paper budget
    python run.py -m init=ibci,lsuv depth=2,3,5              # a sweep (Hydra multirun)
    python run.py -m init=vanilla,lsuv depth=2 seeds=1 epochs=1 data.train_limit=1000 results_dir=/tmp/r
    python run.py -m hydra/launcher=joblib hydra.launcher.n_jobs=4 threads=1 init=ibci,lsuv depth=2,3,5
    python run.py -m hydra/launcher=slurm init=ibci,lsuv depth=2,3,5    # one SLURM job per cell

Each cell writes <results_dir>/runs/<cell-id>/ (config.yaml, metrics.csv,
record.json, then `done`). A cell whose `done` exists is skipped, so re-running
an interrupted sweep (Ctrl-C, a killed job) finishes it, under any launcher.
Every job of the command line is checked before the first one starts: a
mistake is one line on stderr, exit status 2, and nothing is written.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ibci.cli import INTERRUPTED, compose_many, report_user_errors
from ibci.errors import UserError


def run_cell(cfg: dict) -> dict | None:
    """Train one cell as `cfg` (a resolved config dict) says, unless it is done; returns its record.

    None when another job holds the cell (it is training it).
    """
    from ibci.runner import run_cells  # torch loads inside the entry point's Ctrl-C handler

    recs = run_cells([cfg])
    return recs[0] if recs else None


def check_command_line(args: list[str]) -> None:
    """Compose and validate every job the command line asks for, before Hydra starts any.

    Hydra reports an unknown group option or key in many lines, and a sweep
    meets a bad value only when its job comes up, after the jobs before it
    have run; here any mistake is one line and nothing has run.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from ibci.runner import load_splits
    from ibci.validate import check_group_options, validate

    multirun = "-m" in args or "--multirun" in args
    overrides = [a for a in args if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(" ".join(str(e).split())) from None
    values = []  # per override, the single-valued overrides it stands for
    for o in parsed:
        if not o.is_sweep_override():
            values.append([o.input_line])
        elif multirun:
            values.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            raise UserError(f"{o.input_line} lists several values; add -m to run one job per value")
    jobs = [list(job) for job in itertools.product(*values)]
    for job in jobs:
        check_group_options(job)
    cfgs = compose_many(jobs)
    for cfg in cfgs:
        validate(cfg, here=False)  # a job checks its own machine (a SLURM node may have the GPU this one lacks)
    if multirun:
        # A data error is better met once here than in every job (the basic launcher reuses this
        # load), and before Hydra writes its sweep directory under results_dir.
        for cfg in {(c["data"]["root"], c["data"]["download"]): c for c in cfgs}.values():
            load_splits(cfg)
        for results_dir in {cfg["results_dir"] for cfg in cfgs}:
            check_writable(results_dir)


def check_writable(results_dir: str) -> None:
    """Raise UserError unless `results_dir` is, or can be made, a writable folder; creates nothing."""
    path = Path(results_dir).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"results_dir={results_dir!r} is not writable (Not a directory: {existing})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"results_dir={results_dir!r} is not writable (Permission denied: {existing})")


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    report_user_errors(run_cell)(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    # Here rather than in main(): under -m, Ctrl-C often lands in Hydra's code between jobs.
    try:
        report_user_errors(check_command_line)(sys.argv[1:])
        main()
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        sys.exit(130)
