"""The tables (ibci.tables builds the frame, ibci.render writes it): a golden test on a committed fake sweep,
the flags, the formats, the figures.

The golden files are tests/golden/expected/<name>.{csv,md,tex}. After an
intended change of the output, regenerate and then read them:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_tables.py
"""

import importlib.util
import io
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ibci.report import plots
from ibci.runs import records
from ibci.report import render
from ibci.report import tables
from ibci import ROOT
from ibci.experiments import experiment_grid, load_experiment
from ibci.errors import UserError

GOLDEN = Path(__file__).resolve().parent / "golden"
EXPECTED = GOLDEN / "expected"
SWEEP = GOLDEN / "records"
NAMES = ("golden", "golden_ablation")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
# The budget the fake sweep was "run" with (see tests/golden/make_fake_sweep.py).
SWEEP_OVERRIDES = ["seeds=3", "epochs=8", "data.train_limit=1000"]
SWEEP_BUDGET = "3 seeds × 8 epochs, 1,000 training images"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def spec_of(name: str) -> dict:
    return load_experiment(str(GOLDEN / f"{name}.yaml"))


def paper_of(spec: dict) -> pd.DataFrame:
    return pd.read_csv(ROOT / spec["paper"])


def golden_table(name: str) -> tuple[dict, pd.DataFrame]:
    spec = spec_of(name)
    recs = tables.index_records(records.load_records(SWEEP))
    return spec, tables.build_table(spec, recs, paper_of(spec), n_expected=3)


def rendered(name: str) -> dict[str, str]:
    spec, df = golden_table(name)
    return {"csv": render.to_csv(df), "md": render.to_markdown(df, spec), "tex": render.to_latex(df, spec)}


def check_golden(name: str, suffix: str, text: str) -> None:
    path = EXPECTED / f"{name}.{suffix}"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; generate it with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs; if intended, regenerate with UPDATE_GOLDEN=1 and read it"


# ---- golden ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_golden_outputs_byte_for_byte(name):
    for suffix, text in rendered(name).items():
        check_golden(name, suffix, text)


def test_golden_numbers_match_a_hand_computation():
    """Xavier / depth 2 / vanilla from its record.json, with the statistics module rather than numpy."""
    rec = tables.index_records(records.load_records(SWEEP))[("xavier", 2, "vanilla")]
    errors = [s["min_error"] for s in rec["seeds"]]
    epochs = [s["best_epoch"] for s in rec["seeds"]]
    _, df = golden_table("golden")
    row = df[(df.base == "xavier") & (df.depth == 2) & (df.init == "vanilla")].iloc[0]
    assert row.err_mean == pytest.approx(statistics.mean(errors))
    assert row.err_std == pytest.approx(statistics.stdev(errors))
    assert row.best_epoch_mean == pytest.approx(statistics.mean(epochs))
    cell = f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f} ({statistics.mean(epochs):.0f})"
    assert f"| Xavier | 2 | {cell} | 2.04 ± 0.03 (75) |" in render.to_markdown(df, spec_of("golden"))


def test_golden_layout_is_the_papers():
    md = (EXPECTED / "golden.md").read_text()
    assert "| Base | Depth | Vanilla (ours) | Vanilla (paper) | IBCI (ours) | IBCI (paper) |" in md
    assert "Protocol: min" in md and "ddof=1" in md and "n = 3 seeds per cell" in md
    assert "### Significance vs Vanilla" in md
    ablation = (EXPECTED / "golden_ablation.md").read_text()
    # Table 2 style: vanilla is no column of the main table, only the comparison's reference.
    assert "Vanilla (paper)" not in ablation and "| Vanilla (ours) | IBCI − Vanilla | TIE − Vanilla |" in ablation


def load_script():
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "scripts" / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_table_on_another_data_set_has_its_own_name_and_no_paper_numbers():
    script = load_script()
    spec = load_experiment("table1")
    assert script.for_data(spec, "mnist") is spec
    fashion = script.for_data(spec, "fashion")
    assert fashion["name"] == "table1_fashion" and "paper" not in fashion
    assert fashion["title"] == "Table 1: minimal test error (%) of MLPs on Fashion-MNIST"
    assert script.read_paper(fashion).empty
    # A grid whose rows are data sets (Table 4) keeps its name: no file of it is overwritten.
    table4 = load_experiment("table4")
    assert script.for_data(table4, None) is table4


def fixture_dirs() -> dict[tuple, Path]:
    """Fake run directories by cell key, unfinished ones included (they must read as missing)."""
    out = {}
    for d in sorted((SWEEP / "runs").iterdir()):
        cell = json.loads((d / "record.json").read_text())["cell"]
        out[(cell["base"], cell["depth"], cell["init"])] = d
    return out


@pytest.mark.parametrize("name", NAMES)
def test_script_writes_the_golden_tables(name, tmp_path, capsys):
    """The script's own path: finding runs by their records (no config composed), atomic writes, figures."""
    script = load_script()
    overrides = [*SWEEP_OVERRIDES, f"results_dir={tmp_path}"]
    shutil.copytree(SWEEP / "runs", tmp_path / "runs")

    assert script.main([str(GOLDEN / f"{name}.yaml"), *overrides]) == 0

    for suffix in ("csv", "md", "tex"):
        assert (tmp_path / "tables" / f"{name}.{suffix}").read_bytes() == (EXPECTED / f"{name}.{suffix}").read_bytes()
    for figure in ("curves", "min_error"):
        assert (tmp_path / "figures" / f"{name}_{figure}.png").read_bytes()[:8] == PNG_MAGIC
        assert (tmp_path / "figures" / f"{name}_{figure}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()], "a temporary file was left behind"
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("wrote ") for line in out) == 7
    expected_found = {"golden": "7/8", "golden_ablation": "10/12"}[name]
    assert out[-1].startswith(f"{name}: {expected_found} cells found")


def test_script_rejects_an_override_of_the_grid(capsys):
    with pytest.raises(SystemExit) as exc:
        load_script().main(["table1", "init=ibci"])
    assert exc.value.code == 2
    assert "init is set by the table's grid" in capsys.readouterr().err


# ---- flags and comparisons ---------------------------------------------------------------------

SPEC = {
    "name": "t",
    "title": "T",
    "grid": {"base": ["xavier"], "depth": [2], "init": ["vanilla", "ibci"]},
    "rows": ["base", "depth"],
    "column": "init",
    "baseline": "vanilla",
}
PAPER = pd.DataFrame(
    {"base": ["xavier", "xavier"], "depth": [2, 2], "init": ["vanilla", "ibci"],
     "err_mean": [2.04, 1.93], "err_std": [0.03, 0.06], "best_epoch": [75, 60]}
)  # fmt: skip


def fake_record(init: str, errors: list[float], diverged: tuple[int, ...] = (), seeds: int | None = None) -> dict:
    seed_rows = [
        {"seed": i, "epoch0_error": 90.0, "min_error": e, "best_epoch": 10 + i, "final_error": e + 0.1,
         "last10_error": e + 0.05, "selected_epoch": 10 + i, "selected_error": e, "min_val_error": None,
         "diverged": i in diverged, "diverged_epoch": 3 if i in diverged else None}
        for i, e in enumerate(errors)
    ]  # fmt: skip
    return {
        "schema": records.SCHEMA,
        "cell_id": f"xavier-{init}-d2-fake",
        "cell": {"base": "xavier", "init": init, "depth": 2, "data": "mnist", "protocol": "min"},
        "budget": {"seeds": seeds or len(errors), "seed_offset": 0, "epochs": 20, "train_limit": None,
                   "batch_size": 100, "lr": 0.1},
        "seeds": seed_rows,
    }  # fmt: skip


def row_of(df: pd.DataFrame, init: str) -> pd.Series:
    return df[df.init == init].iloc[0]


def test_missing_cell_is_flagged_and_empty():
    df = tables.build_table(SPEC, {("xavier", 2, "vanilla"): fake_record("vanilla", [2.0, 2.1, 2.2])}, PAPER,
                            n_expected=3)
    r = row_of(df, "ibci")
    assert r.flag == "missing" and r.n == 0 and math.isnan(r.err_mean) and math.isnan(r.diff_vs_baseline)
    assert r.paper_mean == 1.93  # the paper's value still shows beside the gap
    assert "missing †" in render.to_markdown(df, SPEC)


def test_incomplete_cell_is_flagged_with_its_counts():
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.0, 2.1], seeds=3),
            ("xavier", 2, "ibci"): fake_record("ibci", [1.9, 1.95, 2.0], seeds=3)}
    df = tables.build_table(SPEC, recs, PAPER, n_expected=3)
    assert row_of(df, "vanilla").flag == "incomplete 2/3"
    assert row_of(df, "ibci").flag == ""
    assert "Vanilla: incomplete 2/3 (n = 2)" in render.to_markdown(df, SPEC)


def test_diverged_seeds_are_flagged_and_never_averaged():
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.0, 2.1, 2.2]),
            ("xavier", 2, "ibci"): fake_record("ibci", [1.9, 50.0, 2.1], diverged=(1,))}
    r = row_of(tables.build_table(SPEC, recs, PAPER, n_expected=3), "ibci")
    assert r.flag == "1/3 diverged" and (r.n, r.n_diverged) == (2, 1)
    assert r.err_mean == pytest.approx(2.0) and r.err_std == pytest.approx(math.sqrt(0.02))
    assert r.diff_vs_baseline == pytest.approx(2.0 - 2.1)


def test_seeds_that_never_leave_chance_are_flagged_and_never_averaged():
    # lr=50: finite losses, about 89% error; such a seed failed to train.
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.0, 2.1, 2.2]),
            ("xavier", 2, "ibci"): fake_record("ibci", [1.9, 88.65, 2.1])}
    df = tables.build_table(SPEC, recs, PAPER, n_expected=3)
    r = row_of(df, "ibci")
    assert r.flag == "1/3 failed" and (r.n, r.n_diverged, r.n_failed) == (2, 0, 1)
    assert r.err_mean == pytest.approx(2.0)
    assert "IBCI: 1/3 failed (n = 2)" in render.to_markdown(df, SPEC)
    # The threshold is a setting: at 90% the same seed counts.
    r = row_of(tables.build_table(SPEC, recs, PAPER, n_expected=3, failed_error=90), "ibci")
    assert (r.n, r.n_failed) == (3, 0)


def test_incomplete_and_diverged_together():
    recs = {("xavier", 2, "ibci"): fake_record("ibci", [1.9, 2.0], diverged=(0,), seeds=3)}
    r = row_of(tables.build_table(SPEC, recs, PAPER, n_expected=3), "ibci")
    assert r.flag == "incomplete 2/3; 1/3 diverged" and r.n == 1 and math.isnan(r.err_std)


def test_a_single_seed_shows_its_n_and_no_spread():
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.1]), ("xavier", 2, "ibci"): fake_record("ibci", [1.9])}
    df = tables.build_table(SPEC, recs, PAPER, n_expected=1)
    md, tex = render.to_markdown(df, SPEC), render.to_latex(df, SPEC)
    # Seed 0 of fake_record has best epoch 10.
    assert "| Xavier | 2 | 2.10 (10; n = 1) | 2.04 ± 0.03 (75) | 1.90 (10; n = 1) |" in md
    assert "| 2.10 (n = 1) | -0.20 [n/a], p n/a |" in md  # one run against one: no CI, no p
    assert "n = 1 seed per cell" in md and "2.10 (10; n = 1)" in tex
    for text in (md, tex):
        assert "nan" not in text.lower() and "± n/a" not in text and r"$\pm$ n/a" not in text


def test_a_ci_needs_three_seeds_a_side_but_welch_p_does_not():
    # ibci has 2 seeds: its bootstrap CI is n/a (stats.bootstrap_diff_ci says why), the diff and p are shown.
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.0, 2.1, 2.2]),
            ("xavier", 2, "ibci"): fake_record("ibci", [1.9, 2.0], seeds=3)}
    df = tables.build_table(SPEC, recs, PAPER, n_expected=3)
    r = row_of(df, "ibci")
    assert r.diff_vs_baseline == pytest.approx(-0.15) and not math.isnan(r.p_welch)
    assert math.isnan(r.ci_low) and math.isnan(r.ci_high)
    assert f"| -0.15 [n/a], p = {r.p_welch:.3f} |" in render.to_markdown(df, SPEC)
    assert "[n/a]" in render.to_latex(df, SPEC)


def test_within_2std_uses_the_combined_std():
    # ibci: mean 2.0, std 0.1 vs paper 1.93 +- 0.06: |0.07| <= 2 sqrt(0.01 + 0.0036) -> True.
    # vanilla: mean 2.3, std 0.1 vs paper 2.04 +- 0.03: |0.26| > 2 sqrt(0.01 + 0.0009) = 0.209 -> False.
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.2, 2.3, 2.4]),
            ("xavier", 2, "ibci"): fake_record("ibci", [1.9, 2.0, 2.1])}
    df = tables.build_table(SPEC, recs, PAPER, n_expected=3)
    assert bool(row_of(df, "ibci").within_2std) is True
    assert bool(row_of(df, "vanilla").within_2std) is False
    assert row_of(df, "vanilla")["diff"] == pytest.approx(0.26)


def test_within_2std_is_unknown_without_paper_numbers():
    _, df = golden_table("golden_ablation")
    vanilla = df[df.init == "vanilla"]
    assert vanilla.within_2std.isna().all() and vanilla.paper_mean.isna().all()
    assert df[(df.init == "ibci") & (df.flag == "")].within_2std.notna().all()


def test_baseline_gets_no_comparison_with_itself():
    _, df = golden_table("golden")
    assert df[df.init == "vanilla"][["diff_vs_baseline", "ci_low", "ci_high", "p_welch"]].isna().all().all()
    compared = df[(df.init == "ibci") & df.ci_low.notna()]
    assert len(compared) == 1  # xavier/2; he/2/ibci and he/3/vanilla have 2 seeds, xavier/3/ibci none
    assert (compared.ci_low <= compared.diff_vs_baseline).all()
    assert (compared.diff_vs_baseline <= compared.ci_high).all()


def test_records_of_two_protocols_are_refused():
    heldout = fake_record("ibci", [1.9, 2.0])
    heldout["cell"]["protocol"] = "heldout"
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.0, 2.1]), ("xavier", 2, "ibci"): heldout}
    with pytest.raises(UserError, match="mix protocols"):
        tables.build_table(SPEC, recs, PAPER, n_expected=2)


def test_heldout_protocol_is_stated():
    recs = {k: fake_record(k[2], [1.9, 2.0]) for k in [("xavier", 2, "vanilla"), ("xavier", 2, "ibci")]}
    for r in recs.values():
        r["cell"]["protocol"] = "heldout"
    df = tables.build_table(SPEC, recs, PAPER, n_expected=2)
    assert "Protocol: heldout" in render.to_markdown(df, SPEC)
    assert "mean selected epoch" in render.to_latex(df, SPEC)
    # All training images less the 10,000 held out to select the epoch.
    assert "Budget: 2 seeds × 20 epochs, 50,000 training images (batch 100, lr 0.1)." in render.to_markdown(df, SPEC)


def test_budget_words():
    budget = {"seeds": 5, "epochs": 100, "train_limit": None, "batch_size": 100, "lr": 0.1}
    assert render.budget_words(budget, "min") == "5 seeds × 100 epochs, 60,000 training images"
    assert render.budget_words(budget, "min", times="x", detail=True) == (
        "5 seeds x 100 epochs, 60,000 training images (batch 100, lr 0.1)")
    smoke = {"seeds": 1, "epochs": 1, "train_limit": 2000}
    assert render.budget_words(smoke, "heldout") == "1 seed × 1 epoch, 2,000 training images"
    assert render.budget_words(None) == "budget unknown (no finished cells)"


def test_the_budget_comes_from_the_records():
    spec, df = golden_table("golden")
    assert df.attrs["budget"] == {"seeds": 3, "seed_offset": 0, "epochs": 8, "train_limit": 1000,
                                  "batch_size": 100, "lr": 0.1}
    assert f"Budget: {SWEEP_BUDGET} (batch 100, lr 0.1)." in render.to_markdown(df, spec)
    assert tables.build_table(spec, {}, paper_of(spec), n_expected=3).attrs["budget"] is None


def test_the_tables_say_where_the_models_trained():
    recs = {("xavier", 2, "vanilla"): fake_record("vanilla", [2.0, 2.1, 2.2]),
            ("xavier", 2, "ibci"): fake_record("ibci", [1.9, 1.95, 2.0])}
    # Records without a device (written before it was recorded) say nothing rather than guess.
    assert "Trained on" not in render.to_markdown(tables.build_table(SPEC, recs, PAPER, n_expected=3), SPEC)
    for rec, device, version in zip(recs.values(), ("cuda", "cpu"), ("2.11.0+cu130", "2.14.1+cu130")):
        rec.update(host={"device": device}, versions={"torch": version})
    df = tables.build_table(SPEC, recs, PAPER, n_expected=3)
    expected = "Trained on: cpu, torch 2.14.1+cu130; cuda, torch 2.11.0+cu130."
    assert expected in render.to_markdown(df, SPEC)
    assert expected in render.to_latex(df, SPEC)


def test_two_records_for_one_cell_are_refused():
    with pytest.raises(UserError, match="two records"):
        tables.index_records([fake_record("ibci", [1.9]), fake_record("ibci", [2.0])])


def test_csv_is_the_tidy_frame():
    _, df = golden_table("golden_ablation")
    back = pd.read_csv(io.StringIO(render.to_csv(df)))
    assert list(back.columns) == ["base", "depth", "init", *tables.STAT_COLUMNS]
    assert len(back) == 12 and set(back.flag.fillna("")) == {"", "missing", "1/3 diverged", "incomplete 2/3"}


@pytest.mark.parametrize("name, n_cells", [("table1", 18), ("table2", 24)])
def test_the_papers_tables_have_paper_numbers_for_every_column(name, n_cells):
    spec = load_experiment(name)
    df = tables.build_table(spec, {}, paper_of(spec), n_expected=5)
    assert len(df) == n_cells and (df.flag == "missing").all()
    shown = df[df.init.isin(spec["grid"]["init"])]
    assert shown.paper_mean.notna().all() and shown.paper_epoch.notna().all()
    # Table 2 has no vanilla column in the paper; Table 1's is its own.
    assert df[df.init == "vanilla"].paper_mean.notna().all() == (name == "table1")
    if name == "table2":
        # The paper prints these two with three decimals; the CSV keeps them.
        assert ",2.034,0.09,62," in render.to_csv(df) and ",1.856,0.05,55," in render.to_csv(df)


# ---- LaTeX -------------------------------------------------------------------------------------


def unescaped(tex: str, char: str) -> int:
    return len(re.findall(r"(?<!\\)" + re.escape(char), tex))


def full_table(name: str) -> tuple[dict, pd.DataFrame]:
    """A paper table (table1, table2) with every cell finished: 5 seeds, two-digit best epochs, the widest it gets."""
    spec = load_experiment(name)
    grid = experiment_grid(spec)
    recs = {}
    for k, (base, depth, init) in enumerate(itertools.product(grid["base"], grid["depth"], grid["init"])):
        rec = fake_record(init, [2.0 + 0.01 * ((k * 7 + i) % 13) for i in range(5)])
        rec["cell"].update(base=base, depth=depth)
        rec["budget"].update(epochs=100)
        for seed in rec["seeds"]:
            seed["selected_epoch"] = seed["best_epoch"] = 47 + 11 * seed["seed"]
        recs[(base, depth, init)] = rec
    return spec, tables.build_table(spec, recs, paper_of(spec), n_expected=5)


@pytest.mark.parametrize("name", NAMES)
def test_latex_is_a_booktabs_table_float(name):
    tex = rendered(name)["tex"]
    comments = [line for line in tex.splitlines() if line.startswith("%")]
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    # The first lines say what the preamble needs; the file itself loads nothing.
    assert r"\usepackage{booktabs}" in comments[2] and r"\usepackage{graphicx}" in comments[2]
    assert r"\usepackage" not in body
    assert body.startswith(r"\begin{table}[t]") and body.rstrip().endswith(r"\end{table}")
    assert body.count(r"\caption[") == 1 and rf"\label{{tab:{name}}}" in body
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in body
    assert body.count(r"\begin{tabular}") == body.count(r"\end{tabular}") == 2
    assert body.count(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}") == 2
    assert unescaped(body, "{") == unescaped(body, "}")
    assert unescaped(body, "$") % 2 == 0
    assert "±" not in tex and r"$\pm$" in tex and tex.isascii()


@pytest.mark.parametrize("name", NAMES)
def test_latex_caption_states_table_protocol_budget_and_n(name):
    caption = rendered(name)["tex"].split(r"\caption[", 1)[1]
    assert "Protocol: min (minimal test error over the training epochs" in caption
    assert r"Budget: 3 seeds $\times$ 8 epochs, 1,000 training images (batch 100, lr 0.1); n = 3 seeds per cell" in caption
    assert spec_of(name)["title"].split(":")[0] in caption


def test_latex_caption_names_the_papers_table():
    spec, df = full_table("table1")
    tex = render.to_latex(df, spec)
    assert (r"\caption[{Minimal test error (\%) of MLPs on MNIST, ours and as printed in Table 1 of "
            "Mao et al. (CIKM 2021)}]") in tex
    assert r"Budget: 5 seeds $\times$ 100 epochs, 60,000 training images (batch 100, lr 0.1); n = 5 seeds per cell." in tex
    assert r"\label{tab:table1}" in tex


LATEX_CASES = [*NAMES, "table1", "table2"]


def latex_of(name: str) -> str:
    return rendered(name)["tex"] if name in NAMES else render.to_latex(*reversed(full_table(name)))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("name", LATEX_CASES)
def test_latex_compiles_and_fits_the_text_width(name, tmp_path):
    """As the README says to include it: the packages its first lines name, then \\input."""
    (tmp_path / "table.tex").write_text(latex_of(name))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
        "As Table~\\ref{tab:" + name + "} shows.\n\\input{table}\n\\end{document}\n"
    )
    for _ in range(2):  # the second run resolves \ref
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:]
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log, log[log.find("Overfull"):][:500]
    assert "undefined" not in log
    assert (tmp_path / "doc.pdf").stat().st_size > 0


@pytest.mark.parametrize("name", ["table1", "table2"])
def test_latex_fits_without_shrinking(name):
    """The layout, not \\resizebox, makes the paper's tables fit: each tabular has at most 6 columns,
    ours above the paper's, and at \\small with 4pt column gaps it is about 320pt of article's 345pt
    (measured with pdflatex; \\resizebox only shrinks a grid wider than the paper's)."""
    tex = latex_of(name)
    assert r"\small" in tex and r"\setlength{\tabcolsep}{4pt}" in tex
    for spec_line in re.findall(r"\\begin\{tabular\}\{(\w+)\}", tex):
        assert len(spec_line) <= 6
    assert "& ours &" in tex and "& paper &" in tex


# ---- figures -----------------------------------------------------------------------------------


def labelled(fig) -> bool:
    """Some panel names the x axis and some the y axis (panels in a grid share the outer labels)."""
    axes = [ax for ax in fig.axes if ax.has_data()]
    return bool(axes) and any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)


def has_legend(fig) -> bool:
    return bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)


def one_legend_outside(fig) -> bool:
    """One figure legend, none inside a panel, overlapping neither the title nor any panel."""
    if len(fig.legends) != 1 or any(ax.get_legend() is not None for ax in fig.axes):
        return False
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    box = fig.legends[0].get_window_extent(renderer)
    others = [fig._suptitle.get_window_extent(renderer)] + [ax.get_window_extent(renderer) for ax in fig.axes]
    return not any(box.overlaps(o) for o in others)


def golden_curves() -> pd.DataFrame:
    spec = spec_of("golden")
    recs = tables.index_records(records.load_records(SWEEP))
    metrics = {k: pd.read_csv(d / "metrics.csv") for k, d in fixture_dirs().items() if k in recs}
    return tables.curves_frame(spec, recs, metrics)


def test_learning_curves_figure():
    curves = golden_curves()
    # The diverged seed (he/2/ibci seed 2) is left out of the curves, as of the means.
    assert set(curves[(curves.base == "he") & (curves.depth == 2) & (curves.init == "ibci")].seed) == {0, 1}
    fig = plots.learning_curves(curves, title="golden")
    # 4 cells, each a narrow log panel (epochs 0-3, down to twice the final error) beside a linear one (3-8).
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert len(panels) == 8 and labelled(fig) and one_legend_outside(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Vanilla", "IBCI"]
    assert [ax.get_xlim() for ax in panels[:2]] == [(0, 3), (3, 8)]
    assert panels[0].get_yscale() == "log" and panels[1].get_yscale() == "linear"
    # The linear panels show where the inits differ (the fixture's errors level off near 1.7-2.2%).
    for ax in panels[1::2]:
        low, high = ax.get_ylim()
        assert 1.5 < low and high < 2.5
    # No tick past the last epoch: the x range ends there and has no margin.
    assert max(ax.get_xlim()[1] for ax in panels) == 8
    title = fig._suptitle.get_text()
    assert SWEEP_BUDGET in title and "ddof=1" in title
    # A cell with fewer seeds than the budget says so in its panel's title.
    assert "He, depth 2 (IBCI n = 2)" in [sub._suptitle.get_text() for sub in fig.subfigs]
    assert "epoch" in panels[-1].get_xlabel() and "%" in panels[0].get_ylabel()


def test_learning_curves_of_a_short_run_are_one_log_panel_each():
    curves = golden_curves()
    short = curves[curves.epoch <= 1]
    short.attrs.update(curves.attrs)
    fig = plots.learning_curves(short, title="smoke")
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert len(panels) == 4 and all(ax.get_yscale() == "log" and ax.get_xlim() == (0, 1) for ax in panels)
    assert one_legend_outside(fig)


def test_min_error_figure():
    _, df = golden_table("golden")
    fig = plots.min_error_vs_paper(df, title="golden")
    assert len(fig.axes) == 2 and labelled(fig) and one_legend_outside(fig)
    assert [ax.get_title() for ax in fig.axes] == ["Xavier", "He"]
    assert "%" in fig.axes[0].get_ylabel()
    assert SWEEP_BUDGET in fig._suptitle.get_text() and "n = 3 seeds per cell" in fig._suptitle.get_text()


def test_information_plane_figure():
    rng = np.random.default_rng(0)
    iim, tie = rng.gamma(2.0, 1.0, 50), rng.normal(0.0, 1.0, 50)
    picked = np.zeros(50, dtype=bool)
    picked[:10] = True
    fig = plots.information_plane(iim, tie, picked, title="layer 1")
    ax = fig.axes[0]
    assert labelled(fig) and ax.get_title() == "layer 1"
    assert len(fig.legends) == 1 and ax.get_legend() is None  # below the plane, not over the pool
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["not elected (40)", "elected (10)"]
    with pytest.raises(ValueError, match="differ in length"):
        plots.information_plane(iim, tie[:10], picked, title="bad")
    with pytest.raises(ValueError, match="must be boolean"):
        plots.information_plane(iim, tie, np.arange(10), title="indices")


def test_figures_survive_an_empty_sweep():
    spec = spec_of("golden")
    df = tables.build_table(spec, {}, paper_of(spec), n_expected=3)
    assert has_legend(plots.min_error_vs_paper(df))
    fig = plots.learning_curves(tables.curves_frame(spec, {}, {}))
    assert has_legend(fig) and "budget unknown (no finished cells)" in fig._suptitle.get_text()


def test_save_figure_writes_png_and_pdf_atomically(tmp_path):
    _, df = golden_table("golden")
    fig = plots.min_error_vs_paper(df, title="golden")
    written = plots.save_figure(fig, tmp_path / "figures" / "golden_min_error")
    assert written == [tmp_path / "figures" / "golden_min_error.png", tmp_path / "figures" / "golden_min_error.pdf"]
    assert written[0].read_bytes()[:8] == PNG_MAGIC and written[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["golden_min_error.pdf", "golden_min_error.png"]
    # Drawing and saving the same figure again gives the same PDF bytes (no creation date inside).
    again = plots.save_figure(plots.min_error_vs_paper(df, title="golden"), tmp_path / "again")
    assert again[1].read_bytes() == written[1].read_bytes()
