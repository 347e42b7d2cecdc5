"""Run an experiment's whole grid, training cells of the same depth as one stack.

    python scripts/sweep.py experiment=table1               # the paper budget, into results/ (or: table1)
    python scripts/sweep.py table2 profile=smoke results_dir=/tmp/s
    python scripts/sweep.py table1 stack_cells=1            # one cell at a time, like `run.py -m`
    python scripts/sweep.py verdict                         # every reading of IBCI, n = 10 (experiments/verdict.yaml)

Same cells, same run directories and same records as `python run.py -m experiment=table1`;
stacking only makes it faster (see ibci/engine.py). Done cells are skipped, so
an interrupted sweep resumes by running the same command again.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ibci.cli import INTERRUPTED, check_added_keys, compose_many, experiment_jobs, hold_interrupts  # noqa: E402
from ibci.errors import UserError, report_user_errors  # noqa: E402
from ibci.experiments import load_experiment  # noqa: E402


@report_user_errors
def main(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip())
        sys.exit(0)
    if not argv or ("=" in argv[0] and not argv[0].startswith("experiment=")):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    flags = [a for a in argv if a.startswith("-")]
    if flags:
        raise UserError(f"{flags[0]} is not an option of scripts/sweep.py (it takes an experiment and overrides; "
                        "see --help)")
    from ibci.runs.records import is_done, run_dir_of
    from ibci.runs.validate import validate
    from ibci.cli import check_group_options

    spec = load_experiment(argv[0])
    overrides = argv[1:]
    check_group_options(overrides)
    user_stack = any(o.startswith("stack_cells=") for o in overrides)
    trained: list[list[str]] = []
    # The NSR verdict's searches name new cells once their records exist: it plans again every few cells (its
    # choices' test cells first), until no new cell appears.
    every = int(spec.get("replan_every", 0)) or None
    while True:
        jobs = [j for j in experiment_jobs(spec, overrides) if j not in trained]
        check_added_keys(jobs)
        if every:  # the cells done before, passed over quietly: the log shows what trains
            new, cfgs = [], []
            for job in jobs:
                cfg = compose_many([job])[0]
                if is_done(run_dir_of(cfg)):
                    trained.append(job)
                    continue
                new.append(job)
                cfgs.append(cfg)
                if len(new) == every:
                    break
        else:
            new = jobs
            cfgs = compose_many(new) if new else []
        if not new:
            break
        for cfg in cfgs:  # run_cells checks them too; here a mistake is met before torch loads
            validate(cfg)
        from ibci.runs.runner import run_cells  # torch loads here, inside the Ctrl-C handler below

        print(f"{spec['name']}: {len(cfgs)} {'more ' if trained else ''}cells")
        run_cells(cfgs, stack_cells=cfgs[0]["stack_cells"] if user_stack else spec.get("stack_cells",
                                                                                      cfgs[0]["stack_cells"]))
        trained += new


if __name__ == "__main__":
    hold_interrupts(at_once=True)  # held only while composing (ibci.cli.compose_many)
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        sys.exit(130)
