"""What the authors' own scripts printed (run outside this suite), as one table beside the paper's numbers.

    python scripts/authors_code.py                       # results/reference/authors_code/{logs/,summary.md}
    python scripts/authors_code.py --folder DIR --results RESULTS_DIR

Reads DIR/logs/<run>_s<seed>.log (ibci.report.authors_code.RUNS names the runs), the paper's tables
(results/paper/), and for the accuracy right after initialization this suite's record of OUR_INIT_CELL in
RESULTS_DIR; writes DIR/summary.md. It runs nothing: how the logs were made is docs/src/readings.md's
"The authors' code, run beside the suite".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from ibci.report import authors_code  # noqa: E402

# This suite's cell beside their code's epoch 0: the authors' reading, depth 2, one epoch, 48 seeds (0-47).
OUR_INIT_CELL = ["profile=paper", "init=ibci", "init.reading=authors", "depth=2", "seeds=48", "epochs=1"]


def paper_numbers() -> dict[str, float]:
    t1 = pd.read_csv(ROOT / "results/paper/table1.csv")
    t3 = pd.read_csv(ROOT / "results/paper/table3.csv")
    ibci = t1.query("base == 'xavier' and depth == 2 and init == 'ibci'")["err_mean"].item()
    nsr = {net: t3.query("net == @net and method == 'nsr'")["err_mean"].item() for net in ("mlp4", "mlp10")}
    return {"ibci_d2": ibci, "nsr_mlp4": nsr["mlp4"], "nsr_mlp10": nsr["mlp10"]}


def our_init_errors(results: Path) -> list[float] | None:
    from ibci.cli import compose_many
    from ibci.runs import records

    cfg = compose_many([[*OUR_INIT_CELL, f"results_dir={results}"]])[0]
    rec = records.read_record(records.run_dir_of(cfg))
    return None if rec is None else [s["epoch0_error"] for s in rec["seeds"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=ROOT / "results/reference/authors_code")
    ap.add_argument("--results", type=Path, default=ROOT / "results/reference")
    args = ap.parse_args(argv)
    found = authors_code.read_logs(args.folder / "logs")
    init_runs = found.pop("ibci0_d2", None)
    rows = authors_code.summary_rows(found, paper_numbers())
    init = None
    ours = our_init_errors(args.results)
    if init_runs and ours:
        seeds = sorted(init_runs)
        init = authors_code.compare([init_runs[s] for s in seeds], ours)
        init.update(their_seeds=authors_code.seed_ranges(seeds), our_seeds=f"0-{len(ours) - 1}")
    text = authors_code.to_markdown(rows, init, " ".join(OUR_INIT_CELL[1:]))
    (args.folder / "summary.md").write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
