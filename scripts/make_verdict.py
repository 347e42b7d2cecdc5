"""Write the reproduction verdict from the records of `scripts/sweep.py verdict`.

    .venv/bin/python scripts/make_verdict.py verdict                              # paper budget, results/
    .venv/bin/python scripts/make_verdict.py verdict profile=smoke results_dir=/tmp/s

Pass the overrides the sweep ran with. Finds every cell the verdict needs among
<results_dir>/runs/*/record.json by what the records say (missing cells are
reported, not guessed; see ibci.runs.records.select_runs) and
writes <results_dir>/tables/verdict.csv (one row per claim x reading x row:
the test and its verdict), verdict_columns.csv (every column's numbers) and
verdict.md (the report).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a plain checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ibci.errors import UserError, answer_help, report_user_errors  # noqa: E402  (torch- and pandas-free)

if __name__ == "__main__":
    answer_help(__doc__, sys.argv[1:])

import pandas as pd  # noqa: E402

from ibci import ROOT  # noqa: E402
from ibci.experiments import load_experiment  # noqa: E402
from ibci.files import atomic_write  # noqa: E402
from ibci.report import render, verdict  # noqa: E402
from ibci.runs import records  # noqa: E402
from ibci.runs.calls import setting  # noqa: E402


def read_paper(spec: dict) -> pd.DataFrame:
    frames = []
    for path in spec["paper"]:
        try:
            frames.append(pd.read_csv(ROOT / path))
        except (OSError, ValueError) as e:
            raise UserError(f"paper: cannot read {ROOT / path} ({e})") from None
    return pd.concat(frames, ignore_index=True)


def budget_words(overrides: list[str], spec: dict) -> str:
    """The budget the verdict's cells were asked for, as its report states it."""
    seeds, limit = setting(overrides, "seeds"), setting(overrides, "data.train_limit")
    images = "all 60,000 training images" if limit is None else f"the first {limit:,} training images"
    return (f"{int(spec['seed_blocks'])} blocks of {seeds} seeds (n = {int(spec['seed_blocks']) * seeds} "
            f"per cell), {setting(overrides, 'epochs')} epochs on {images}, batch {setting(overrides, 'batch_size')}, "
            f"lr {setting(overrides, 'lr')}, protocol {setting(overrides, 'protocol')}")


@report_user_errors
def main(argv: list[str]) -> int:
    answer_help(__doc__, argv)
    spec = load_experiment(argv[0])
    if "columns" not in spec:
        raise UserError(f"experiment {spec['name']!r} has no columns; tabulate a grid with scripts/make_tables.py")
    overrides = argv[1:]
    cells = verdict.cells(spec, setting(overrides, "seeds"), setting(overrides, "epochs"))
    jobs = [[*overrides, *c["overrides"]] for c in cells]  # as scripts/sweep.py verdict trains them
    results_dir = Path(setting(overrides, "results_dir"))
    records.require_runs(results_dir)
    runs = records.select_runs(records.load_records(results_dir), jobs, what=f"{spec['name']} in {results_dir}")
    found = list(zip(cells, runs))
    pooled = verdict.pool_seeds(spec, found)
    paper = read_paper(spec)
    claims = verdict.claims_frame(spec, pooled, paper)
    cols = verdict.columns_frame(spec, pooled, paper)
    lsuv = verdict.lsuv_match(spec, cols)
    dups = verdict.duplicates_frame(spec, pooled)
    summary = verdict.summary_frame(claims)
    md = verdict.to_markdown(spec, claims, summary, cols, lsuv, dups, budget_words(overrides, spec))
    out = results_dir / "tables"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("verdict.csv", render.to_csv(claims)), ("verdict_columns.csv", render.to_csv(cols)),
                           ("verdict.md", md)):
            atomic_write(out / name, text)
            print(f"wrote {out / name}")
    except OSError as e:
        raise UserError(f"results_dir={str(results_dir)!r} is not writable ({e.strerror})") from None
    missing = sum(rec is None for _, rec in found)
    print(f"{spec['name']}: {len(found) - missing}/{len(found)} cells found; "
          + "; ".join(f"{r.claim} ({r.reading}): {r.reproduced} reproduced, {r.not_reproduced} not, "
                      f"{r.inconclusive} inconclusive" + (f", {r.missing} missing" if r.missing else "")
                      for r in summary.itertuples()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
