"""Train one table cell (base x init x depth) with all its seeds, or sweep many.

    python run.py base=he init=ibci depth=3                  # one cell, paper budget
    python run.py -m init=ibci,lsuv depth=2,3,5              # a sweep (Hydra multirun)
    python run.py -m init=vanilla,lsuv depth=2 seeds=1 epochs=1 data.train_limit=1000 results_dir=/tmp/r

Each cell writes <results_dir>/runs/<cell-id>/ (config.yaml, metrics.csv,
record.json, then `done`). A cell whose `done` exists is skipped, so re-running
an interrupted sweep finishes it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from ibci.cli import report_user_errors
from ibci.runner import run_cells


def run_cell(cfg: dict) -> dict:
    """Train one cell as `cfg` (a resolved config dict) says, unless it is done; returns its record."""
    return run_cells([cfg])[0]


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        report_user_errors(run_cell)(OmegaConf.to_container(cfg, resolve=True))
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells are kept; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
