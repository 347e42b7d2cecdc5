"""Write the NSR verdict from the records of `scripts/sweep.py nsr_verdict`.

    .venv/bin/python scripts/make_nsr_verdict.py nsr_verdict profile=paper                        # results/
    .venv/bin/python scripts/make_nsr_verdict.py nsr_verdict profile=paper results_dir=results/reference

Pass the overrides the sweep ran with. Every cell the claims need is found among
<results_dir>/runs/*/record.json by the call its record keeps (missing cells
are reported as missing, never guessed), and <results_dir>/tables/ gets
nsr_verdict.csv (one row per claim x network), nsr_search.csv (every search:
C3's readings and lambdas, C4's strengths, C9's lambdas), nsr_verdict.md (the
report) and its figures. C8 reads <results_dir>/bench.json (`make bench`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from ibci.errors import UserError, answer_help, report_user_errors  # noqa: E402  (torch- and pandas-free)

if __name__ == "__main__":
    answer_help(__doc__, sys.argv[1:])

import pandas as pd  # noqa: E402

from ibci import ROOT  # noqa: E402
from ibci.experiments import load_experiment  # noqa: E402
from ibci.files import atomic_write  # noqa: E402
from ibci.report import nsr_verdict, plots, render  # noqa: E402
from ibci.runs import records  # noqa: E402
from ibci.runs.calls import setting  # noqa: E402


@report_user_errors
def main(argv: list[str]) -> int:
    answer_help(__doc__, argv)
    spec = load_experiment(argv[0])
    if spec.get("kind") != "nsr_verdict":
        raise UserError(f"experiment {spec['name']!r} is not an NSR verdict (kind: nsr_verdict)")
    overrides = argv[1:]
    seeds = setting(overrides, "seeds")
    results_dir = Path(setting(overrides, "results_dir"))
    records.require_runs(results_dir)
    cells, _, runs = nsr_verdict.plan(spec, overrides, records.load_records(results_dir))  # as sweep.py plans
    try:
        paper = pd.read_csv(ROOT / spec["paper"])
    except (OSError, ValueError) as e:
        raise UserError(f"paper: cannot read {ROOT / spec['paper']} ({e})") from None
    found = list(zip(cells, runs))
    metrics = {r["cell_id"]: pd.read_csv(results_dir / "runs" / r["cell_id"] / "metrics.csv")
               for c, r in found if r is not None and c["claim"] == "C6"}
    curves = nsr_verdict.observed_curves(found, metrics)
    cost_file = results_dir / spec["cost"]
    cost = json.loads(cost_file.read_text()).get("nsr_cost") if cost_file.is_file() else None
    claims, search = nsr_verdict.claims_frame(spec, found, paper, curves, cost)
    budget = (f"{int(spec['test_blocks'])} blocks of {seeds} test seeds for C1 and C3's choice (n = "
              f"{int(spec['test_blocks']) * seeds} per cell), one block (n = {seeds}) for C4, C5, C6, C7 and C9; "
              f"{setting(overrides, 'epochs')} epochs, Table 3's recipe; every search "
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
    observed = {c["method"]: r["observation"] for c, r in found if c["claim"] == "C6" and r and "observation" in r}
    net = spec["observe"]
    for name, fig in (("nsr_observation1", plots.observation_bars(
            observed, f"Observation 1 ({net}): penultimate deviation, correct vs misclassified test images")),
            ("nsr_observation2", plots.observation_curves(curves, f"Observation 2 ({net}): Vanilla vs +NSR"))):
        for path in plots.save_figure(fig, out / name):
            print(f"wrote {path}")
    missing = sum(r is None for r in runs)
    counts = claims["verdict"].value_counts()
    print(f"{spec['name']}: {len(runs) - missing}/{len(runs)} cells found; "
          + ", ".join(f"{counts.get(w, 0)} {w}" for w in nsr_verdict.WORDS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
