"""The paper's tables as text: a frame of `ibci.tables.build_table` as CSV, Markdown and LaTeX.

`to_csv` writes the frame as it is. `to_markdown` and `to_latex` lay it out
as the paper does: one row per (base, depth), one column per init, each cell
"mean ± std (best epoch)", with the paper's value beside ours (below it in the
LaTeX, to fit a page's width), then how far we are from the paper and how each
init compares with the baseline. Every output states the protocol, the budget
(seeds x epochs, training images) and n. `display` and `budget_words` give the
figures the same words.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd

from ..vocab import train_images
from . import stats
from ..experiments import experiment_grid
from .tables import cell_key, key_columns

# How the paper writes the names of bases and inits.
DISPLAY = {
    "xavier": "Xavier",
    "he": "He",
    "normal": "Normal",
    "vanilla": "Vanilla",
    "lsuv": "LSUV",
    "ibci": "IBCI",
    "tie": "TIE",
    "iim": "IIM",
    # Table 3 (the NSR paper's MLP table): networks and init + regularizer pairs.
    "mlp3": "MLP-3",
    "mlp4": "MLP-4",
    "mlp6": "MLP-6",
    "mlp8": "MLP-8",
    "mlp10": "MLP-10",
    "nsr": "+NSR",
    "ibci_nsr": "IBCI + NSR",
    "lsuv_nsr": "LSUV + NSR",
    # Table 4 (beyond the papers): data sets.
    "mnist": "MNIST",
    "fashion": "Fashion-MNIST",
}

PROTOCOLS = {
    "min": "minimal test error over the training epochs, as in the paper; the epoch is picked on the test set",
    "heldout": "test error at the epoch of lowest error on 10,000 held-out training images",
}
EPOCH_WORDS = {"min": "best epoch", "heldout": "selected epoch"}

PAPER_SOURCE = "Mao et al. (CIKM 2021)"



def display(value) -> str:
    """A grid value as the paper writes it (`ibci` -> `IBCI`, 2 -> `2`)."""
    return DISPLAY.get(value, str(value)) if isinstance(value, str) else str(value)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def budget_words(budget: dict | None, protocol: str | None = None, *, times: str = "×",
                 detail: bool = False) -> str:
    """What the cells were trained with, e.g. `5 seeds × 100 epochs, 60,000 training images`.

    `budget` is a record's budget (seeds, epochs, train_limit, batch_size,
    lr); a train_limit of None means every training image the protocol
    leaves (the heldout protocol keeps 10,000 back). `detail` adds the batch
    size and learning rate.
    """
    if not budget:
        return "budget unknown (no finished cells)"
    images = budget.get("train_limit")
    if images is None:
        images = train_images("mnist", protocol or "min")  # MNIST and Fashion-MNIST have the same sizes
    text = f"{_count(budget['seeds'], 'seed')} {times} {_count(budget['epochs'], 'epoch')}, "
    text += _count(images, "training image")
    if detail and "batch_size" in budget and "lr" in budget:
        text += f" (batch {budget['batch_size']}, lr {budget['lr']:g})"
    return text


def to_csv(df: pd.DataFrame) -> str:
    """The tidy frame as CSV text; %.6g keeps the paper's 2.034 and is byte-stable."""
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n")


# ---- formatting ---------------------------------------------------------------------------------


def _isnan(x) -> bool:
    return x is None or x is pd.NA or (isinstance(x, (float, np.floating)) and math.isnan(x))


def _num(x, decimals: int = 2) -> str:
    if _isnan(x):
        return "n/a"
    s = f"{x:.{decimals}f}"
    # -0.00 would read as a sign where there is none.
    return s.lstrip("-") if float(s) == 0 else s


def _signed(x, decimals: int = 2) -> str:
    s = _num(x, decimals)
    return s if s == "n/a" or s.startswith("-") or float(s) == 0 else "+" + s


def _pvalue(p) -> str:
    if _isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


class _Style:
    """The markup that differs between Markdown and LaTeX."""

    def __init__(self, latex: bool):
        self.latex = latex
        self.pm = " $\\pm$ " if latex else " ± "
        self.dagger = "$^\\dagger$" if latex else " †"
        self.minus = "$-$" if latex else "−"
        self.times = "$\\times$" if latex else "×"

    def text(self, s: str) -> str:
        return "".join(_TEX_ESCAPES.get(ch, ch) for ch in s) if self.latex else s

    def number(self, s: str) -> str:
        # A leading minus in LaTeX text mode is a hyphen; set it as a math minus.
        return self.minus + s[1:] if self.latex and s.startswith("-") else s

    def p(self, p) -> str:
        s = _pvalue(p)
        if s == "n/a":  # Welch's test needs two seeds a side
            return "$p$ n/a" if self.latex else "p n/a"
        return f"$p {s}$" if self.latex else f"p {s}"


def _mean_std(st: _Style, mean, std) -> str:
    """`2.03 ± 0.09`; a single seed has no std, so its mean stands alone (never `± nan`)."""
    if _isnan(std):
        return st.number(_num(mean))
    return f"{st.number(_num(mean))}{st.pm}{_num(std)}"


def _ours_cell(st: _Style, r: dict) -> str:
    mark = st.dagger if r["flag"] else ""
    if r["flag"] == "missing":
        return "missing" + mark
    if r["n"] == 0:
        return "n/a" + mark
    epoch = _num(r["best_epoch_mean"], 0)
    if r["n"] == 1:  # says why there is no std
        return f"{_mean_std(st, r['err_mean'], r['err_std'])} ({epoch}; n = 1){mark}"
    return f"{_mean_std(st, r['err_mean'], r['err_std'])} ({epoch}){mark}"


def _paper_cell(st: _Style, r: dict) -> str:
    if _isnan(r["paper_mean"]):
        return "n/a"
    return f"{_mean_std(st, r['paper_mean'], r['paper_std'])} ({_num(r['paper_epoch'], 0)})"


def _cell_name(spec: dict, r: dict) -> str:
    keys = key_columns(spec)
    values = cell_key(r[k] for k in keys)
    return ", ".join(f"{k} {v}" if isinstance(v, int) else display(v) for k, v in zip(keys, values))


def _layout(df: pd.DataFrame, spec: dict):
    """Rows of the paper's layout: (row labels, {column value: row dict}) per table row."""
    keys = key_columns(spec)
    rows_keys, column = keys[:-1], keys[-1]
    by_key = {cell_key(r[k] for k in keys): r for r in df.to_dict("records")}
    grid = experiment_grid(spec)
    out, previous = [], None
    for row in itertools.product(*(grid[k] for k in rows_keys)):
        row = cell_key(row)
        # The first row key is printed once per group, as the paper prints the base.
        labels = [display(v) for v in row]
        if previous is not None and row[0] == previous:
            labels[0] = ""
        previous = row[0]
        out.append((labels, {c: by_key[(*row, c)] for c in grid[column]}))
    return out


def _summary_words(df: pd.DataFrame, spec: dict, st: _Style) -> dict:
    """Protocol, epoch and n statements, and the list of flagged cells (baseline included)."""
    protocols = sorted(df["protocol"].dropna().unique())
    protocol = protocols[0] if protocols else None
    if protocol is None:
        protocol_text = "unknown (no finished cells)"
    else:
        protocol_text = f"{st.text(protocol)} ({st.text(PROTOCOLS.get(protocol, 'as the records say'))})"
    n_expected = int(df["n_expected"].iloc[0]) if len(df) else 0
    n_text = f"n = {n_expected} seed{'' if n_expected == 1 else 's'} per cell"
    flagged = [r for r in df.to_dict("records") if r["flag"]]
    if flagged:
        n_text += f", except the flagged cells{st.dagger} (their n below)"
    flagged_text = [
        st.text(f"{_cell_name(spec, r)}: {r['flag']}" + ("" if r["flag"] == "missing" else f" (n = {r['n']})"))
        for r in flagged
    ]
    budget = budget_words(df.attrs.get("budget"), protocol, times=st.times, detail=True)  # nothing to escape
    on = df.attrs.get("trained_on")
    return dict(protocol=protocol_text, epoch=EPOCH_WORDS.get(protocol, "best epoch"), n=n_text, flagged=flagged_text,
                budget=budget, trained_on=[st.text(f"Trained on: {'; '.join(on)}.")] if on else [])


def _bootstrap_words(df: pd.DataFrame) -> str:
    b = df.attrs.get("bootstrap")
    if not b:
        return "seeded bootstrap, resampling the seeds within each cell"
    return f"seeded bootstrap, {b['n_resamples']} resamples of the seeds within each cell, seed {b['seed']}"


def _ci(st: _Style, r: dict) -> str:
    if _isnan(r["ci_low"]) or _isnan(r["ci_high"]):
        return "[n/a]"  # fewer than stats.BOOTSTRAP_MIN_N seeds in a cell
    return f"[{st.number(_signed(r['ci_low']))}, {st.number(_signed(r['ci_high']))}]"


def _significance(df: pd.DataFrame, spec: dict, st: _Style) -> tuple[list, list[tuple]]:
    """The baseline comparison: the other columns, then per table row
    (labels, baseline's mean ± std, its n, its dagger, and (diff, CI, p) or None per other column)."""
    baseline = spec["baseline"]
    others = [c for c in spec["grid"][spec["column"]] if c != baseline]
    rows = []
    for labels, cells in _layout(df, spec):
        b = cells[baseline]
        mark = st.dagger if b["flag"] else ""
        if b["flag"] == "missing":
            base, n = "missing", ""
        else:
            base, n = _mean_std(st, b["err_mean"], b["err_std"]), f"n = {b['n']}"
        comparisons = [
            None if _isnan(cells[c]["diff_vs_baseline"])
            else (st.number(_signed(cells[c]["diff_vs_baseline"])), _ci(st, cells[c]), st.p(cells[c]["p_welch"]))
            for c in others
        ]
        rows.append(([st.text(x) for x in labels], base, n, mark, comparisons))
    return others, rows


def _significance_header(spec: dict, st: _Style, others: list) -> list[str]:
    name = st.text(display(spec["baseline"]))
    return [*(st.text(k.capitalize()) for k in spec["rows"]), f"{name} (ours)",
            *(f"{st.text(display(c))} {st.minus} {name}" for c in others)]


def paper_source(spec: dict) -> str:
    """Whose numbers a table prints beside ours (an experiment's `paper_source`, else the IBCI paper)."""
    return spec.get("paper_source", PAPER_SOURCE)


def _caption_title(title: str, source: str = PAPER_SOURCE) -> str:
    """A table's title as a caption's first sentence: `Table 1: minimal ...` names the paper's table it reproduces."""
    m = re.match(r"(Table\s+\S+):\s*(.+)", title)
    if m is None:
        return title
    what = m[2][0].upper() + m[2][1:]
    return f"{what}, ours and as printed in {m[1]} of {source}"


def _ours_minus_paper(layout, columns, row_headers, md_row, md_rule) -> list[str]:
    lines = [
        "",
        "### Ours − paper",
        "",
        "Our mean minus the paper's, in percentage points; "
        "yes when |ours − paper| ≤ 2·sqrt(std_ours² + std_paper²).",
        "",
        md_row([*row_headers, *(display(c) for c in columns)]),
        md_rule(len(row_headers), len(columns)),
    ]
    agree = {True: "yes", False: "no"}
    for labels, cells in layout:
        values = []
        for c in columns:
            r = cells[c]
            verdict = "n/a" if _isnan(r["within_2std"]) else agree[bool(r["within_2std"])]
            values.append("n/a" if _isnan(r["diff"]) else f"{_signed(r['diff'])} ({verdict})")
        lines.append(md_row([*labels, *values]))
    return lines


def to_markdown(df: pd.DataFrame, spec: dict) -> str:
    """The table as GitHub Markdown: the paper's layout, ours beside the paper's, then the comparisons."""
    st = _Style(latex=False)
    words = _summary_words(df, spec, st)
    columns = spec["grid"][spec["column"]]
    row_headers = [k.capitalize() for k in spec["rows"]]

    def md_row(cells) -> str:
        return "| " + " | ".join(cells) + " |"

    def md_rule(n_labels: int, n_values: int) -> str:
        return "|" + "|".join([":--"] * n_labels + [":-:"] * n_values) + "|"

    # A grid no paper has (a data set or network beyond it): our numbers alone, no comparison with a paper.
    paper = bool(df["paper_mean"].notna().any())
    whose = ("ours", "paper") if paper else ("ours",)
    lines = [
        f"## {spec.get('title', spec.get('name', 'Table'))}",
        "",
        f"Protocol: {words['protocol']}.",
        f"Budget: {words['budget']}.",
        *words["trained_on"],
        f"Each cell is the test error in % as mean ± std over seeds (std with ddof=1), "
        f"with the mean {words['epoch']} in parentheses; {words['n']}.",
        f"Paper: the values printed in {paper_source(spec)}." if paper else "No paper reports this grid.",
        "",
        md_row([*row_headers, *(f"{display(c)} ({who})" if paper else display(c) for c in columns for who in whose)]),
        md_rule(len(row_headers), len(whose) * len(columns)),
    ]
    layout = _layout(df, spec)
    for labels, cells in layout:
        values = [x for c in columns for x in (_ours_cell(st, cells[c]), _paper_cell(st, cells[c]))[:len(whose)]]
        lines.append(md_row([*labels, *values]))
    if words["flagged"]:
        lines += ["", "† Flagged cells (diverged seeds and seeds that failed to train are left out of the means and of n):", ""]
        lines += [f"- {f}" for f in words["flagged"]]

    if paper:
        lines += _ours_minus_paper(layout, columns, row_headers, md_row, md_rule)
    if spec.get("baseline") is not None:
        others, body = _significance(df, spec, st)
        header = _significance_header(spec, st, others)
        lines += [
            "",
            f"### Significance vs {display(spec['baseline'])}",
            "",
            f"Difference of mean errors in percentage points, with a 95% CI ({_bootstrap_words(df)}; "
            f"n/a when either cell has fewer than {stats.BOOTSTRAP_MIN_N} seeds, where a bootstrap interval is "
            "falsely narrow) and the p-value of Welch's t-test.",
            "",
            md_row(header),
            md_rule(len(spec["rows"]), len(header) - len(spec["rows"])),
        ]
        for labels, base, n, mark, comparisons in body:
            base_text = f"{base} ({n}){mark}" if n else base + mark
            values = ["n/a" if c is None else f"{c[0]} {c[1]}, {c[2]}" for c in comparisons]
            lines.append(md_row([*labels, base_text, *values]))
    return "\n".join(lines) + "\n"


def _tex_row(cells) -> str:
    return " & ".join(cells) + r" \\"


# Shrinks a tabular to the line width only when it is wider (graphicx's \resizebox reads the
# box's natural \width), so a table that fits keeps its font size; a wider grid still fits.
_TEX_FIT = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


def _tex_groups(rows: list[tuple[list[str], list[list[str]]]]) -> list[str]:
    """Table lines from (labels, sub-rows) groups: a rule where the first label changes, a little space otherwise."""
    lines = []
    for i, (labels, sub_rows) in enumerate(rows):
        if i:
            lines.append(r"\midrule" if labels[0] else r"\addlinespace")
        for j, cells in enumerate(sub_rows):
            lines.append(_tex_row([*(labels if j == 0 else [""] * len(labels)), *cells]))
    return lines


def to_latex(df: pd.DataFrame, spec: dict) -> str:
    """The table as a complete LaTeX `table` float (booktabs and graphicx), caption and label included.

    Compact so that it fits the text width of a one-column article: our value
    above the paper's in each cell, the comparison with the baseline below
    the main table in a smaller font, and each tabular shrunk to \\linewidth
    only if it is still wider. The caption states the table, the protocol,
    the budget and n; the label is `tab:<name>`.
    """
    st = _Style(latex=True)
    words = _summary_words(df, spec, st)
    columns = spec["grid"][spec["column"]]
    n_rows = len(spec["rows"])
    name = spec.get("name", "table")
    title = spec.get("title", name)
    baseline = spec.get("baseline")
    lines = [
        f"% {title}",
        r"% Generated by scripts/make_tables.py (ibci.render.to_latex): a complete table float.",
        r"% Needs \usepackage{booktabs} (the rules) and \usepackage{graphicx} (\resizebox) in the preamble;",
        rf"% include it with \input{{{name}}} and refer to it with \ref{{tab:{name}}}. It fits \linewidth",
        r"% (one column); in a two-column paper, change table to table* to give it the full text width.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{4pt}",
        _TEX_FIT,
        r"\begin{tabular}{" + "l" * (n_rows + 1) + "c" * len(columns) + "}",
        r"\toprule",
        _tex_row([*(st.text(k.capitalize()) for k in spec["rows"]), "", *(st.text(display(c)) for c in columns)]),
        r"\midrule",
    ]
    has_paper = bool(df["paper_mean"].notna().any())
    lines += _tex_groups([
        ([st.text(x) for x in labels], [["ours", *(_ours_cell(st, cells[c]) for c in columns)],
                                        ["paper", *(_paper_cell(st, cells[c]) for c in columns)]][:1 + has_paper])
        for labels, cells in _layout(df, spec)
    ])
    lines += [r"\bottomrule", r"\end{tabular}}"]

    first = st.text(_caption_title(title, paper_source(spec)) if has_paper else title)
    paper = "the paper's" if paper_source(spec) in first else f"the values printed in {paper_source(spec)}"
    caption = [
        first + ".",
        ("Top: test" if baseline is not None else "Test") + r" error in \% as mean $\pm$ std over seeds (std with "
        f"ddof = 1), with the mean {words['epoch']} in parentheses"
        + (f"; ours above {paper}." if has_paper else "; no paper reports this grid."),
    ]
    if baseline is not None:
        others, body = _significance(df, spec, st)
        lines += [
            "",
            r"\medskip",
            _TEX_FIT,
            r"\footnotesize",
            r"\begin{tabular}{" + "l" * n_rows + "c" * (1 + len(others)) + "}",
            r"\toprule",
            _tex_row(_significance_header(spec, st, others)),
            r"\midrule",
        ]
        lines += _tex_groups([
            (labels, [[base + mark, *("n/a" if c is None else f"{c[0]}, {c[2]}" for c in comparisons)],
                      [n, *("" if c is None else c[1] for c in comparisons)]])
            for labels, base, n, mark, comparisons in body
        ])
        lines += [r"\bottomrule", r"\end{tabular}}"]
        name_b = st.text(display(baseline))
        caption.append(
            f"Bottom: our {name_b} (mean $\\pm$ std and n), and each init's mean error minus {name_b}'s in "
            rf"percentage points with the $p$-value of Welch's $t$-test and, below, a 95\% CI "
            f"({st.text(_bootstrap_words(df))}; n/a with fewer than {stats.BOOTSTRAP_MIN_N} seeds in a cell)."
        )
    caption += [
        f"Protocol: {words['protocol']}.",
        f"Budget: {words['budget']}; {words['n']}.",
        *words["trained_on"],
        *(f"{st.dagger}{f}." for f in words["flagged"]),
    ]
    lines += [
        r"\caption[{" + first + "}]{" + " ".join(caption) + "}",
        rf"\label{{tab:{name}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"
