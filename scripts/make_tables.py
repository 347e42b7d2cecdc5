"""Build a table (CSV, Markdown, LaTeX) and its figures from the records of an experiment's runs.

    .venv/bin/python scripts/make_tables.py experiment=table1        # results/, at the budget its runs have
    .venv/bin/python scripts/make_tables.py table2 results_dir=/tmp/s
    .venv/bin/python scripts/make_tables.py table1 budget=s5e100     # when runs of several budgets share a folder
    .venv/bin/python scripts/make_tables.py table3 lr=0.1            # any override the sweep had
    .venv/bin/python scripts/make_tables.py table1 data=fashion      # Table 1 on Fashion-MNIST: table1_fashion.*

The experiment (configs/experiment/<name>.yaml, or a spec's path) names the
grid. Every finished run under <results_dir>/runs/ is read from its
record.json alone and matched to a grid cell by the settings both have, so a
run made before a setting was added still counts. Runs of one cell at
several budgets are an error naming them, unless `budget=` (or profile=,
seeds=, epochs=) picks one. Writes <results_dir>/tables/<name>.{csv,md,tex}
(the .tex is a table float to \\input, see its first lines) and
<results_dir>/figures/<name>_curves.{png,pdf}, <name>_min_error.{png,pdf},
each titled with the budget, and prints one line per file plus a summary.
Unfinished cells show as "missing"; a grid without `paper:` has no paper
numbers beside ours, nor has a grid run on another data set than the paper's
(`table1 data=fashion` writes table1_fashion.*).
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
from ibci.experiments import cell_overrides, experiment_grid, grid_cells, load_experiment  # noqa: E402
from ibci.files import atomic_write  # noqa: E402
from ibci.report import plots, render, tables  # noqa: E402
from ibci.runs import calls, records  # noqa: E402


def check_overrides(user_overrides: list[str], grid: dict) -> None:
    """The grid sets its own keys; a user override of one would silently change which cells are read."""
    for o in user_overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in grid:
            allowed = ", ".join(str(v) for v in grid[key])
            raise UserError(f"{o!r}: {key} is set by the table's grid ({allowed}); drop it from the overrides")


def read_metrics(run_dir: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(run_dir / "metrics.csv")
    except (OSError, ValueError) as e:
        print(f"warning: {run_dir / 'metrics.csv'} unreadable ({e}); its curves are left out", file=sys.stderr)
        return None


def for_data(spec: dict, data: str) -> dict:
    """The spec as its cells' one data set reads it (`python scripts/sweep.py table1 data=fashion`).

    A grid on another data set than the paper's (`paper_data`, MNIST unless the
    spec says otherwise) has no paper numbers beside it, its title names its
    data set where it named the paper's, and its files carry the data set's
    name (table1_fashion.md), so that they never overwrite the paper's table.
    `data` is the cells' one data set, or None when the grid's rows are data sets.
    """
    home = spec.get("paper_data", "mnist")
    if data is None or data == home:  # a grid whose rows are data sets says which in each row
        return spec
    out = {k: v for k, v in spec.items() if k != "paper"}
    out["name"] = f"{spec['name']}_{data}"
    out["title"] = spec.get("title", spec["name"]).replace(f" on {render.display(home)}", f" on {render.display(data)}")
    return out


def split_budget(argv: list[str]) -> tuple[str | None, list[str]]:
    """`budget=<label>` (which of several budgets to tabulate) apart from the Hydra overrides."""
    chosen = [a.partition("=")[2] for a in argv if a.startswith("budget=")]
    return (chosen[-1] if chosen else None), [a for a in argv if not a.startswith("budget=")]


def free_budget(overrides: list[str]) -> tuple[str, ...]:
    """The budget settings the command line leaves open: a table reads its runs at whatever budget they have."""
    named = {o.lstrip("+~").partition("=")[0] for o in overrides}
    return () if "profile" in named else tuple(k for k in records.BUDGET_KEYS if k not in named)


def collect(spec: dict, user_overrides: list[str], budget: str | None = None) -> dict:
    """Everything the outputs are made of: results dir, records and metrics per cell key, seeds per cell.

    A cell is the override list `scripts/sweep.py` trains it with; its run is
    found by the call its record keeps (`records.select_runs`), with no
    config composed again.
    """
    grid = experiment_grid(spec)
    check_overrides(user_overrides, grid)
    cells = grid_cells(grid)
    fixed = [*spec.get("overrides", []), *user_overrides]  # as scripts/sweep.py composes them
    jobs = [[*fixed, *cell_overrides(c)] for c in cells]
    results_dir = Path(calls.setting(fixed, "results_dir"))
    records.require_runs(results_dir)
    everything = records.load_records(results_dir)
    found = records.select_runs(everything, jobs, free=free_budget(user_overrides), budget=budget,
                                what=f"{spec['name']} in {results_dir}")
    old = sum(map(records.legacy, everything))
    if old and any(r is None for r in found):
        print(f"warning: {old} record(s) in {results_dir} predate the calls records keep; run the sweep command "
              "again (it trains nothing) to make them findable", file=sys.stderr)
    keys = tables.key_columns(spec)
    recs, metrics = {}, {}
    for cell, rec in zip(cells, found):
        key = tuple(cell[k] for k in keys)
        recs[key] = rec
        if rec is not None:
            metrics[key] = read_metrics(results_dir / "runs" / rec["cell_id"])
    n_expected = next((r["budget"]["seeds"] for r in found if r is not None), int(calls.setting(fixed, "seeds")))
    datas = {calls.choice(job, "data") for job in jobs}
    return dict(results_dir=results_dir, records=recs, metrics=metrics, n_expected=int(n_expected),
                failed_error=float(calls.setting(fixed, "failed_error")), data=datas.pop() if len(datas) == 1 else None)


def read_paper(spec: dict) -> pd.DataFrame:
    """The paper's numbers for the table's cells; none (an empty frame) for a grid no paper has."""
    if not spec.get("paper"):
        return pd.DataFrame(columns=[*tables.key_columns(spec), "err_mean", "err_std", "best_epoch"])
    path = ROOT / spec["paper"]
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise UserError(f"paper={spec['paper']!r}: cannot read {path} ({e})") from None


def write_outputs(spec: dict, collected: dict, paper: pd.DataFrame) -> tuple[pd.DataFrame, list[Path]]:
    """Write the table files and figures under the results dir; returns the tidy frame and the paths written."""
    name = spec["name"]
    df = tables.build_table(spec, collected["records"], paper, n_expected=collected["n_expected"],
                            failed_error=collected["failed_error"])
    curves = tables.curves_frame(spec, collected["records"], collected["metrics"], collected["failed_error"])
    table_dir, figure_dir = collected["results_dir"] / "tables", collected["results_dir"] / "figures"
    written = []
    try:
        table_dir.mkdir(parents=True, exist_ok=True)
        figure_dir.mkdir(parents=True, exist_ok=True)
        for suffix, text in (("csv", render.to_csv(df)), ("md", render.to_markdown(df, spec)),
                             ("tex", render.to_latex(df, spec))):
            path = table_dir / f"{name}.{suffix}"
            atomic_write(path, text)
            written.append(path)
        title = spec.get("title", name)
        xlabel = "depth (layers)" if spec["rows"][-1] == "depth" else spec["rows"][-1]
        figures = [("curves", plots.learning_curves(tables.as_panels(curves, spec),
                                                    title=f"{name}: test error during training")),
                   ("min_error", plots.min_error_vs_paper(tables.as_panels(df, spec), title=title, xlabel=xlabel))]
        if "reg" in spec["grid"] or "method" in spec["grid"]:  # NSR's own quantity, where a table varies it
            intra = tables.curves_frame(spec, collected["records"], collected["metrics"], collected["failed_error"],
                                        value="test_intra_var")
            figures.append(("intra_var", plots.intra_variance_curves(tables.as_panels(intra, spec))))
        for suffix, fig in figures:
            written += plots.save_figure(fig, figure_dir / f"{name}_{suffix}")
    except OSError as e:
        raise UserError(f"results_dir={str(collected['results_dir'])!r} is not writable ({e.strerror})") from None
    return df, written


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    answer_help(__doc__, argv)
    spec = load_experiment(argv[0])
    for k in ("grid", "rows", "column"):
        if k not in spec:
            raise UserError(f"experiment {spec['name']!r} lacks the key {k!r}")
    budget, overrides = split_budget(argv[1:])
    collected = collect(spec, overrides, budget)
    spec = for_data(spec, collected["data"])
    df, written = write_outputs(spec, collected, read_paper(spec))
    for path in written:
        print(f"wrote {path}")
    found = int((df["flag"] != "missing").sum())
    flagged = int((df["flag"] != "").sum())
    protocol = df["protocol"].dropna().unique()
    print(f"{spec['name']}: {found}/{len(df)} cells found, {flagged} flagged; "
          f"protocol {protocol[0] if len(protocol) else 'unknown'}, n = {collected['n_expected']} seeds per cell")
    return 0


if __name__ == "__main__":
    sys.exit(main())
