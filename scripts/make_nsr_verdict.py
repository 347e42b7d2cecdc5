"""Write the NSR verdict from the records of `scripts/sweep.py nsr_verdict`.

    .venv/bin/python scripts/make_nsr_verdict.py nsr_verdict profile=paper                        # results/
    .venv/bin/python scripts/make_nsr_verdict.py nsr_verdict profile=paper results_dir=results/reference

Pass the overrides the sweep ran with. Every cell the claims need is found among
<results_dir>/runs/*/record.json by the call its record keeps (missing cells
are reported as missing, never guessed), and <results_dir>/tables/ gets
nsr_verdict.csv (one row per claim x network), nsr_search.csv (C3's lambda
search) and nsr_verdict.md (the report).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

import pandas as pd  # noqa: E402

from ibci import ROOT  # noqa: E402
from ibci.errors import UserError, report_user_errors  # noqa: E402
from ibci.experiments import load_experiment  # noqa: E402
from ibci.files import atomic_write  # noqa: E402
from ibci.report import nsr_verdict, render  # noqa: E402
from ibci.runs import records  # noqa: E402
from ibci.runs.calls import setting  # noqa: E402


@report_user_errors
def main(argv: list[str]) -> int:
    if not argv or "-h" in argv or "--help" in argv:
        print(__doc__.strip(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    spec = load_experiment(argv[0])
    if spec.get("kind") != "nsr_verdict":
        raise UserError(f"experiment {spec['name']!r} is not an NSR verdict (kind: nsr_verdict)")
    overrides = argv[1:]
    seeds = setting(overrides, "seeds")
    cells = nsr_verdict.cells(spec, seeds)
    jobs = [[*overrides, *c["overrides"]] for c in cells]  # as scripts/sweep.py trains them
    results_dir = Path(setting(overrides, "results_dir"))
    records.require_runs(results_dir)
    runs = records.select_runs(records.load_records(results_dir), jobs, what=f"{spec['name']} in {results_dir}")
    try:
        paper = pd.read_csv(ROOT / spec["paper"])
    except (OSError, ValueError) as e:
        raise UserError(f"paper: cannot read {ROOT / spec['paper']} ({e})") from None
    claims, search = nsr_verdict.claims_frame(spec, list(zip(cells, runs)), paper)
    budget = (f"{int(spec['test_blocks'])} blocks of {seeds} test seeds (n = {int(spec['test_blocks']) * seeds} per "
              f"cell), {setting(overrides, 'epochs')} epochs, Table 3's recipe; C3's search "
              f"{spec['search']['seeds']} seeds from {spec['search']['seed_offset']}")
    out = results_dir / "tables"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("nsr_verdict.csv", render.to_csv(claims)), ("nsr_search.csv", render.to_csv(search)),
                           ("nsr_verdict.md", nsr_verdict.to_markdown(spec, claims, search, budget))):
            atomic_write(out / name, text)
            print(f"wrote {out / name}")
    except OSError as e:
        raise UserError(f"results_dir={str(results_dir)!r} is not writable ({e.strerror})") from None
    missing = sum(r is None for r in runs)
    counts = claims["verdict"].value_counts()
    print(f"{spec['name']}: {len(runs) - missing}/{len(runs)} cells found; "
          + ", ".join(f"{counts.get(w, 0)} {w}" for w in ("reproduced", "not reproduced", "inconclusive", "missing",
                                                           "not run")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
