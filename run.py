"""Train one table cell (base x init x depth) with all its seeds, or sweep many.

    python run.py base=he init=ibci depth=3                  # one cell, paper budget
    python run.py -m init=ibci,lsuv depth=2,3,5              # a sweep (Hydra multirun)
    python run.py -m experiment=table1 profile=smoke         # a table's grid (configs/experiment/), any budget
    python run.py -m init=vanilla,lsuv depth=2 seeds=1 epochs=1 data.train_limit=1000 results_dir=/tmp/r
    python run.py -m hydra/launcher=joblib hydra.launcher.n_jobs=4 threads=1 init=ibci,lsuv depth=2,3,5
    python run.py -m hydra/launcher=slurm init=ibci,lsuv depth=2,3,5    # one SLURM job per cell

Each cell writes <results_dir>/runs/<cell-id>/ (config.yaml, metrics.csv,
record.json, then `done`). A cell whose `done` exists is skipped, so re-running
an interrupted sweep (Ctrl-C, a killed job) finishes it, under any launcher.
Every job of the command line is checked before the first one starts: a
mistake (an unknown option, a bad value, a `+key=value` that adds a key the
config does not have) is one line on stderr, exit status 2, and nothing is
written. Hydra's own flags work as in any Hydra app and train nothing:
`--help`, `--cfg job`, `--info`, `-sc install=bash`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ibci.cli import INTERRUPTED, compose_many, hold_interrupts, interrupts_at_once, raise_if_interrupted, with_call
from ibci.errors import UserError, report_user_errors


def run_cell(cfg: dict) -> dict | None:
    """Train one cell as `cfg` (a resolved config dict) says, unless it is done; returns its record.

    None when another job holds the cell (it is training it).
    """
    from ibci.runs.runner import run_cells  # torch loads inside the entry point's Ctrl-C handler

    recs = run_cells([cfg])
    return recs[0] if recs else None


# Hydra's flags after which it trains nothing of the command line's: it prints help, a config,
# information or a shell-completion script, or reruns a pickled job with that job's own config.
NO_JOBS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")


def check_command_line(args: list[str]) -> None:
    """Compose and validate every job the command line asks for, before Hydra starts any.

    Hydra reports an unknown group option or key in many lines, and a sweep
    meets a bad value only when its job comes up, after the jobs before it
    have run; here any mistake is one line and nothing has run.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from ibci import CONFIG_DIR
    from ibci.cli import check_added_keys, check_group_options, hydra_error
    from ibci.runs.validate import validate

    flags, misplaced = parse_hydra_flags(args)
    if flags.experimental_rerun is not None and not Path(flags.experimental_rerun).is_file():
        raise UserError(f"--experimental-rerun {flags.experimental_rerun}: no such file (a job's config.pickle)")
    no_jobs = any(getattr(flags, name) for name in NO_JOBS)
    # -cd or pkg://: a search path this check does not compose; each job still validates its own config.
    other_path = flags.config_dir is not None or str(flags.config_path).startswith("pkg://")
    if no_jobs or other_path:
        if misplaced:
            raise misplaced
        return
    config_dir = CONFIG_DIR if flags.config_path is None else Path(__file__).resolve().parent / flags.config_path
    config_name = flags.config_name or "config"
    multirun = flags.multirun
    for word in flags.overrides:
        if "=" not in word and not word.startswith("~"):
            grid = f"; run a table's grid with python run.py -m experiment={word}" if (
                config_dir / "experiment" / f"{word}.yaml").is_file() else ""
            raise UserError(f"{word} is not an override (key=value){grid}")
    try:
        parsed = OverridesParser.create().parse_overrides(flags.overrides)
    except HydraException as e:
        raise hydra_error(e) from None
    values = []  # per override, the single-valued overrides it stands for
    for o in parsed:
        if not o.is_sweep_override():
            values.append([o.input_line])
        elif multirun:
            values.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            raise UserError(f"{o.input_line} lists several values; add -m to run one job per value")
    values += experiment_sweep(parsed, multirun, config_dir)
    jobs = [list(job) for job in itertools.product(*values)]
    for job in jobs:
        check_group_options(job, config_dir)
    check_added_keys(jobs, config_dir, config_name)
    cfgs = compose_many(jobs, config_dir, config_name)
    for cfg in cfgs:
        validate(cfg, here=False)  # a job checks its own machine (a SLURM node may have the GPU this one lacks)
    if multirun:
        from ibci.runs.runner import load_splits  # torch loads here: a mistake above is met without it

        # A data error is better met once here than in every job (the basic launcher reuses this
        # load), and before Hydra writes its sweep directory under results_dir.
        for cfg in {(c["data"]["name"], c["data"]["root"], c["data"]["download"]): c for c in cfgs}.values():
            load_splits(cfg)
        for results_dir in {cfg["results_dir"] for cfg in cfgs}:
            check_writable(results_dir)
    if misplaced:  # last, so that the overrides of `depth=2 -m init=ibci,foo` are checked all the same
        raise misplaced


def experiment_sweep(parsed: list, multirun: bool, config_dir: Path) -> list[list[str]]:
    """The grid `experiment=<name>` adds to a sweep (its `hydra.sweeper.params`), less the keys the command line sets.

    Hydra's sweeper expands that grid only after this check has run; expanded
    here, every cell of it is checked too. Without -m Hydra would run one cell
    of the grid and ignore the rest, so that is refused.
    """
    from ibci.experiments import load_experiment

    chosen = [o for o in parsed if o.get_key_element().lstrip("+") == "experiment" and not o.is_sweep_override()]
    if not chosen or str(chosen[-1].value()) in ("null", "None"):
        return []
    name = str(chosen[-1].value())
    if not (Path(config_dir) / "experiment" / f"{name}.yaml").is_file():
        return []  # an unknown option: check_group_options names the known ones
    if not multirun:
        raise UserError(f"experiment={name} is a grid of cells; add -m to run them all (python run.py -m experiment={name})")
    on_command_line = {o.get_key_element().lstrip("+") for o in parsed}
    grid = load_experiment(name)["grid"]
    return [[f"{key}={v}" for v in grid[key]] for key in grid if key not in on_command_line]


def parse_hydra_flags(args: list[str]) -> tuple[argparse.Namespace, UserError | None]:
    """Hydra's flags and overrides in `args`, and the error for a flag after an override (None if none).

    Hydra's own parser (what hydra.main runs next), so that a flag's value is never taken for an
    override: `-sc install=bash`, `-cn NAME`, `--experimental-rerun FILE`. A bad flag exits here
    with Hydra's usage message, as it would a moment later. Parsed intermixed, so that the
    overrides of `depth=2 -m init=ibci,lsuv` are checked too, though Hydra refuses that order.
    """
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    flags = parser.parse_intermixed_args(args)
    if not parser.parse_known_args(args)[1]:  # what Hydra parses: no overrides left over
        return flags, None
    first = args.index(flags.overrides[0])
    late = next(a for a in args[first:] if a.startswith("-"))
    return flags, UserError(f"Hydra reads its flags before the overrides only; move {late} before {args[first]}")


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
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    call = with_call(OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_container(hc.runtime.choices),
                     list(hc.overrides.task))
    with interrupts_at_once():
        report_user_errors(run_cell)(call)


if __name__ == "__main__":
    # Here rather than in main(): under -m, Ctrl-C often lands in Hydra's code between jobs, where it is held
    # (ibci.cli.hold_interrupts) until the next job starts or the last one has ended.
    # Other launchers wait for their jobs in their own code, where Ctrl-C must stop the waiting at once.
    launchers = [a.split("=", 1)[1] for a in sys.argv[1:] if a.lstrip("+").startswith("hydra/launcher=")]
    hold_interrupts(at_once=launchers[-1:] not in ([], ["basic"]))
    try:
        report_user_errors(check_command_line)(sys.argv[1:])
        main()
        raise_if_interrupted()
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        sys.exit(130)
