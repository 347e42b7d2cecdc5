"""Build a paper table (CSV, Markdown, LaTeX) and its figures from the runs of a sweep.

    .venv/bin/python scripts/make_tables.py table1                             # paper budget, results/
    .venv/bin/python scripts/make_tables.py table2 profile=smoke results_dir=/tmp/s
    .venv/bin/python scripts/make_tables.py table1 seeds=3 epochs=20           # any overrides the sweep had

Pass the same Hydra overrides the sweep ran with: every cell of the
experiment's grid (baseline column included) is composed from them, so the
table reads exactly the run directories that sweep wrote, even when runs of
other budgets share the results dir. Writes
<results_dir>/tables/<name>.{csv,md,tex} (the .tex is a table float to
\\input, see its first lines) and <results_dir>/figures/<name>_curves.{png,pdf},
<name>_min_error.{png,pdf}, each titled with the budget, and prints one line
per file plus a summary. Unfinished cells show as "missing".
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a plain checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from ibci import plots, records, tables  # noqa: E402
from ibci.cli import CONFIG_DIR, ROOT, cell_overrides, experiment_grid, grid_cells, load_experiment  # noqa: E402
from ibci.cli import report_user_errors  # noqa: E402
from ibci.errors import UserError  # noqa: E402


def compose_cells(cells: list[dict], user_overrides: list[str]) -> list[dict]:
    """The resolved config of every cell, as `ibci.cli.compose(user + cell overrides)` gives it.

    Hydra is initialized once for all cells: initializing per cell costs
    about as much as composing, which would double the time for a 24-cell table.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return [
                OmegaConf.to_container(compose("config", overrides=[*user_overrides, *cell_overrides(c)]), resolve=True)
                for c in cells
            ]
    except (HydraException, OmegaConfBaseException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot compose the cells with overrides {user_overrides}: {first}") from None


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


def collect(spec: dict, user_overrides: list[str]) -> dict:
    """Everything the outputs are made of: results dir, records and metrics per cell key, seeds per cell."""
    grid = experiment_grid(spec)
    check_overrides(user_overrides, grid)
    cells = grid_cells(grid)
    cfgs = compose_cells(cells, [*spec.get("overrides", []), *user_overrides])  # as scripts/sweep.py composes them
    keys = tables.key_columns(spec)
    results_dir = Path(cfgs[0]["results_dir"])
    records.require_runs(results_dir)
    recs, metrics = {}, {}
    for cell, cfg in zip(cells, cfgs):
        key = tuple(cell[k] for k in keys)
        run_dir = results_dir / "runs" / records.cell_id(cfg)
        recs[key] = records.read_record(run_dir)
        if recs[key] is not None:
            metrics[key] = read_metrics(run_dir)
    return dict(results_dir=results_dir, records=recs, metrics=metrics, n_expected=int(cfgs[0]["seeds"]),
                failed_error=float(cfgs[0]["failed_error"]))


def read_paper(spec: dict) -> pd.DataFrame:
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
        for suffix, text in (("csv", tables.to_csv(df)), ("md", tables.to_markdown(df, spec)),
                             ("tex", tables.to_latex(df, spec))):
            path = table_dir / f"{name}.{suffix}"
            records.atomic_write_text(path, text)
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
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    spec = load_experiment(argv[0])
    for k in ("grid", "rows", "column", "paper"):
        if k not in spec:
            raise UserError(f"experiment {spec['name']!r} lacks the key {k!r}")
    collected = collect(spec, argv[1:])
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
