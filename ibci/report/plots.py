"""Figures of the reproduction: each figure function returns a matplotlib Figure; `save_figure` writes one.

Figures are built on the Agg canvas directly rather than through pyplot: no
global backend switch (a notebook importing this keeps its own), and no figure
registry that keeps every figure of a long script alive. Every title states
the budget the numbers come from, and every legend sits outside the data.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..files import atomic_write
from ..vocab import INITS
from .render import budget_words, display

# One colour per init in every figure, so IBCI is the same colour in the curves and the bars.
INIT_ORDER = INITS  # the order tables show them in
STYLE = "whitegrid"
PANEL_SIZE = (4.2, 3.2)  # inches per panel
FIGURE_FORMATS = ("png", "pdf")  # PNG to look at, PDF for a paper
DPI = 120
# Learning curves: a narrow log panel shows the first epochs (from ~90% at epoch 0), a wide
# linear one the rest; the split is at least ZOOM_FRACTION of the run, and late enough that every
# mean curve has come down to ZOOM_FACTOR times its minimum.
ZOOM_FRACTION = 0.1
ZOOM_FACTOR = 2.0


def save_figure(fig: Figure, path, formats=FIGURE_FORMATS) -> list[Path]:
    """Write `fig` as <path without suffix>.<format> for each format; returns the paths written.

    Each file is drawn into memory, then written atomically
    (`ibci.files.atomic_write`): readers never see half a figure, and an
    interrupted write leaves nothing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        buffer = io.BytesIO()
        # No creation date in the PDF: the same figure gives the same bytes.
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata={"CreationDate": None} if fmt == "pdf" else None)
        atomic_write(target, buffer.getvalue())
        written.append(target)
    return written


def init_colors(inits) -> dict:
    """A fixed colour for each init: the paper's five first, then any other in order of appearance."""
    names = list(INIT_ORDER) + [i for i in dict.fromkeys(inits) if i not in INIT_ORDER]
    palette = sns.color_palette("colorblind", len(names))
    return dict(zip(names, palette))


def _ordered_inits(values) -> list:
    present = list(dict.fromkeys(values))
    return [i for i in INIT_ORDER if i in present] + [i for i in present if i not in INIT_ORDER]


def _figure(n_rows: int, n_cols: int, panel_size=PANEL_SIZE, **subplot_kw):
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(n_rows, n_cols, squeeze=False, **subplot_kw)
    return fig, axes


def _budget_line(frame: pd.DataFrame, protocol=None) -> str | None:
    """The budget a frame's records were trained with, from the attrs ibci.tables puts on it.

    None for a frame that did not come from ibci.tables (a notebook's own
    curves): its caller's title has to say the budget.
    """
    if "budget" not in frame.attrs:
        return None
    return budget_words(frame.attrs["budget"], frame.attrs.get("protocol", protocol))


def _empty(xlabel: str, ylabel: str, title: str) -> Figure:
    fig, axes = _figure(1, 1, panel_size=(7.0, 3.2))
    ax = axes[0, 0]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, "no finished cells yet", ha="center", va="center", transform=ax.transAxes)
    ax.plot([], [], label="no data")
    fig.legend(loc="outside lower center")
    fig.suptitle(title)
    return fig


def _zoom_start(means: list[pd.Series]) -> int | None:
    """The epoch where the wide linear panel starts: ZOOM_FRACTION of the run, or later if some mean
    curve is still above ZOOM_FACTOR times its minimum (it would squash the others).

    None when that is past half of the run (a short run has nothing to zoom
    into): the curves are then drawn whole on a log axis.
    """
    last = max(int(m.index.max()) for m in means)
    start = max(1, math.ceil(ZOOM_FRACTION * last))
    for m in means:
        above = m.index[m.to_numpy() > ZOOM_FACTOR * m.min()]
        if len(above):
            start = max(start, int(above.max()) + 1)
    return start if start <= last // 2 else None


def _log_percent(ax) -> None:
    ax.set_yscale("log")
    # Plain numbers (2, 5, 10, 20, 50) read better than 2x10^0 for percentages.
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
    ax.yaxis.grid(True, which="minor", lw=0.5)  # a range within one decade has no major tick


def _panel_title(base, depth) -> str:
    """A panel's (row, column) as words: `Xavier, depth 3`; a column that is not a depth by its name (`He`, `MLP-4`)."""
    col = f"depth {depth}" if isinstance(depth, (int, np.integer)) else display(depth)
    return col if base == "" else f"{display(base)}, {col}"


def learning_curves(curves: pd.DataFrame, title: str = "Learning curves") -> Figure:
    """Test error vs epoch: mean over seeds with a ±1 std band (ddof=1), one line per init.

    `curves` is long: base, depth, init, seed, epoch, test_error (percent), as
    `ibci.tables.curves_frame` builds it (its attrs give the budget for the
    title). One panel pair per (base, depth), bases down, depths across: a
    narrow log panel with the first epochs (at least a tenth of the run), from
    the init alone at epoch 0 (~90%) down to twice each curve's lowest error,
    and beside it the rest of training on a linear axis whose range covers
    only those epochs, where the inits differ by tenths of a point. A run too short for that (the smoke budget's one
    epoch) gets one log panel per cell. One legend for the figure, below it;
    a panel whose cell has fewer seeds than the others says so in its title.
    """
    xlabel, ylabel = "epoch", "test error (%)"
    budget_line = _budget_line(curves)
    full_title = f"{title}\n" + (f"{budget_line}; " if budget_line else "") + "mean ± std over seeds (ddof=1)"
    if curves.empty:
        return _empty(xlabel, ylabel, f"{title}\n{budget_line}" if budget_line else title)
    bases = list(dict.fromkeys(curves["base"]))
    depths = list(dict.fromkeys(curves["depth"]))  # the table's order
    inits = _ordered_inits(curves["init"])
    colors = init_colors(inits)
    summary = {}  # (base, depth, init) -> (mean, std, n) over seeds per epoch
    for (base, depth, init), g in curves.groupby(["base", "depth", "init"], sort=False):
        per_epoch = g.groupby("epoch")["test_error"]
        summary[(base, depth, init)] = (per_epoch.mean(), per_epoch.std(ddof=1).fillna(0.0), g["seed"].nunique())
    last = int(curves["epoch"].max())
    zoom = _zoom_start([mean for mean, _, _ in summary.values()])
    # The seeds a cell asked for (or, without a budget, the most any cell has); fewer is said in the panel's title.
    n_full = (curves.attrs.get("budget") or {}).get("seeds", max(n for _, _, n in summary.values()))

    with sns.axes_style(STYLE):
        fig = Figure(figsize=(PANEL_SIZE[0] * 1.15 * len(depths), PANEL_SIZE[1] * len(bases) + 0.9),
                     layout="constrained")
        FigureCanvasAgg(fig)
        subfigs = fig.subfigures(len(bases), len(depths), squeeze=False)
        for i, base in enumerate(bases):
            for j, depth in enumerate(depths):
                sub = subfigs[i, j]
                if zoom is None:
                    panels = [sub.subplots()]
                else:
                    panels = list(sub.subplots(1, 2, width_ratios=[1, 3]))
                cell = [(init, *summary[(base, depth, init)]) for init in inits if (base, depth, init) in summary]
                for k, ax in enumerate(panels):
                    first = zoom is not None and k == 0
                    log_axis = zoom is None or first
                    lo_epoch, hi_epoch = (0, zoom) if first else (zoom or 0, last)
                    tops, bottoms = [], []
                    for init, mean, std, _ in cell:
                        m = mean.loc[lo_epoch:hi_epoch]
                        sd = std.loc[lo_epoch:hi_epoch]
                        low = (m - sd).clip(lower=m.min() * 0.5) if log_axis else m - sd
                        ax.plot(m.index, m.values, color=colors[init], lw=1.5, label=display(init))
                        ax.fill_between(m.index, low.values, (m + sd).values, color=colors[init], alpha=0.2, lw=0)
                        tops.append(float((m + sd).max()))
                        bottoms.append(float(low.min()))
                    ax.set_xlim(lo_epoch, hi_epoch)  # no margin: no tick past the last epoch
                    ax.xaxis.set_major_locator(
                        ticker.MaxNLocator(nbins=2 if first else 5, integer=True, steps=[1, 2, 2.5, 5, 10]))
                    if i == len(bases) - 1:
                        ax.set_xlabel(xlabel)
                    if log_axis:
                        _log_percent(ax)
                        if j == 0:
                            ax.set_ylabel(ylabel)
                    else:
                        # Its own scale, on the right: the pair reads as one axis broken at `zoom`.
                        pad = 0.05 * (max(tops) - min(bottoms))
                        ax.set_ylim(min(bottoms) - pad, max(tops) + pad)
                        ax.yaxis.tick_right()
                short = [f"{display(init)} n = {n}" for init, _, _, n in cell if n != n_full]
                where = _panel_title(base, depth)
                sub.suptitle(where + (f" ({', '.join(short)})" if short else ""),
                             fontsize="medium")
    if zoom is not None:
        full_title += f"\neach panel: epochs 0–{zoom} on a log scale (left), {zoom}–{last} on a linear one (right)"
    handles = [Line2D([], [], color=colors[i], lw=1.5, label=display(i)) for i in inits]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle(full_title)
    return fig


def intra_variance_curves(curves: pd.DataFrame, title: str = "Intra-class variance of the output layer") -> Figure:
    """NSR's quantity over training: the output layer's intra-class variance on the test set.

    `curves` is long (base, depth, init, seed, epoch, test_intra_var), as
    `tables.curves_frame(..., value="test_intra_var")` builds it: one panel per
    (base, depth), one line per init, the mean over seeds with a ±1 std band,
    on a log axis (NSR moves it by orders of magnitude).
    """
    xlabel, ylabel = "epoch", "intra-class variance of the logits"
    budget_line = _budget_line(curves)
    full_title = f"{title}\n" + (f"{budget_line}; " if budget_line else "") + "mean ± std over seeds (ddof=1)"
    if curves.empty:
        return _empty(xlabel, ylabel, full_title)
    panels = list(dict.fromkeys(zip(curves["base"], curves["depth"])))
    inits = _ordered_inits(curves["init"])
    colors = init_colors(inits)
    fig, axes = _figure(1, len(panels), sharey=True)
    for ax, (base, depth) in zip(axes[0], panels):
        for init in inits:
            g = curves[(curves["base"] == base) & (curves["depth"] == depth) & (curves["init"] == init)]
            if g.empty:
                continue
            per_epoch = g.groupby("epoch")["test_intra_var"]
            m, sd = per_epoch.mean(), per_epoch.std(ddof=1).fillna(0.0)
            ax.plot(m.index, m.values, color=colors[init], lw=1.5, label=display(init))
            ax.fill_between(m.index, (m - sd).clip(lower=m.min() * 0.5).values, (m + sd).values,
                            color=colors[init], alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_xlim(0, int(curves["epoch"].max()))
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=5, integer=True))
        ax.set_title(_panel_title(base, depth))
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel(ylabel)
    legend = {}  # every init once, whichever panel it appears in
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=len(legend), frameon=False)
    fig.suptitle(full_title)
    return fig


def min_error_vs_paper(table: pd.DataFrame, title: str = "Minimal test error", xlabel: str = "depth (layers)") -> Figure:
    """Each cell's error (mean ± std) beside the paper's, one panel per base.

    `table` is the tidy frame of `ibci.tables.build_table` (its attrs give the
    budget for the title). Depths along x, one slot per init: ours filled,
    the paper's open, both with ±1 std bars. Flagged cells (missing seeds,
    diverged seeds) carry a dagger. The legend sits below the panels.
    """
    protocols = table["protocol"].dropna().unique() if "protocol" in table else []
    protocol = protocols[0] if len(protocols) == 1 else None
    ylabel = "test error at selected epoch (%)" if protocol == "heldout" else "minimal test error (%)"
    budget_line = _budget_line(table, protocol)
    if budget_line:
        known = bool(table.attrs.get("budget")) and len(table) > 0 and "n_expected" in table
        n = int(table["n_expected"].iloc[0]) if known else None
        seeds = "" if n is None else f"; mean ± std over n = {n} seed{'' if n == 1 else 's'} per cell (ddof=1)"
        title = f"{title}\n{budget_line}{seeds}"
    if table.empty:
        return _empty(xlabel, ylabel, title)
    bases = list(dict.fromkeys(table["base"]))
    depths = list(dict.fromkeys(table["depth"]))  # the table's order
    inits = _ordered_inits(table["init"])
    colors = init_colors(inits)
    slot = 0.8 / len(inits)
    fig, axes = _figure(1, len(bases), sharey=True)
    flagged_any = False
    for ax, base in zip(axes[0], bases):
        for k, init in enumerate(inits):
            rows = table[(table["base"] == base) & (table["init"] == init)].set_index("depth").reindex(depths)
            center = np.arange(len(depths)) - 0.4 + slot * (k + 0.5)
            ax.errorbar(center - slot * 0.2, rows["err_mean"], yerr=rows["err_std"], fmt="o", color=colors[init],
                        capsize=3, ms=6)
            ax.errorbar(center + slot * 0.2, rows["paper_mean"], yerr=rows["paper_std"], fmt="s", color=colors[init],
                        mfc="white", capsize=3, ms=6)
            for x, (_, r) in zip(center, rows.iterrows()):
                if isinstance(r["flag"], str) and r["flag"] and not np.isnan(r["err_mean"]):
                    flagged_any = True
                    top = r["err_mean"] + (0.0 if np.isnan(r["err_std"]) else r["err_std"])
                    ax.annotate("†", (x - slot * 0.2, top), ha="center", va="bottom", fontsize=12)
        ax.set_xticks(np.arange(len(depths)), [display(d) for d in depths])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(display(base))
    handles = [Line2D([], [], color=colors[i], marker="o", ls="", label=display(i)) for i in inits]
    if table["paper_mean"].notna().any():  # a grid no paper reports has no open squares to explain
        handles += [
            Line2D([], [], color="0.3", marker="o", ls="", label="ours (mean ± std)"),
            Line2D([], [], color="0.3", marker="s", mfc="white", ls="", label="paper (mean ± std)"),
        ]
    if flagged_any:
        handles.append(Line2D([], [], ls="", marker="$†$", color="black", label="flagged (see table)"))
    # Below the panels, clear of the title and of the data.
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize="small", frameon=False)
    fig.suptitle(title)
    return fig


def information_plane(iim, tie, picked_mask, title: str) -> Figure:
    """One layer's campaign: IIM score (x) vs TIE score (y) of every candidate, the elected ones highlighted.

    `picked_mask` is a boolean mask over the pool (True = elected).
    IIM is the variance of a candidate's response over the data sample
    (squared activation units); TIE is between-class minus within-class
    variance with each term first divided by its norm over the pool, so it
    has no unit.
    """
    iim, tie = np.asarray(iim, dtype=float).ravel(), np.asarray(tie, dtype=float).ravel()
    picked = np.asarray(picked_mask).ravel()
    if picked.dtype != bool:
        # Integers could be a 0/1 mask or election indices (campaign_layer's "picked"); refuse to guess.
        raise ValueError(f"picked_mask must be boolean, got {picked.dtype}; from indices: mask[indices] = True")
    if not iim.size == tie.size == picked.size:
        raise ValueError(f"iim, tie and picked_mask differ in length ({iim.size}, {tie.size}, {picked.size})")
    fig, axes = _figure(1, 1, panel_size=(6.4, 4.8))
    ax = axes[0, 0]
    ax.scatter(iim[~picked], tie[~picked], s=12, color="0.65", alpha=0.7, lw=0,
               label=f"not elected ({(~picked).sum()})")
    ax.scatter(iim[picked], tie[picked], s=30, color=sns.color_palette("colorblind")[3], edgecolor="black", lw=0.5,
               label=f"elected ({picked.sum()})")
    ax.set_xlabel("IIM score (activation²)")
    ax.set_ylabel("TIE score (normalized over the pool, no unit)")
    fig.legend(loc="outside lower center", ncol=2, frameon=False)  # below the axes: a pool fills the plane
    ax.set_title(title)
    return fig


NSR_COLORS = {"vanilla": "tab:gray", "nsr": "tab:red"}  # the slides' two arms


def observation_bars(observed: dict[str, dict], title: str) -> Figure:
    """The slides' Observation 1: per class, the mean over seeds of the penultimate deviation of correctly and
    of wrongly classified test images, one panel per method (`observed`: method -> a record's `observation`)."""
    if not observed:
        return _empty("class", "deviation from the class mean", title)
    fig, axes = _figure(1, len(observed), panel_size=(5.0, 3.2))
    for ax, (method, obs) in zip(axes[0], observed.items()):
        correct, wrong = (np.nanmean(np.array(obs[k], dtype=float), axis=0) for k in ("correct", "wrong"))
        classes = np.arange(correct.size)
        ax.bar(classes - 0.2, correct, 0.4, label="correct", color=NSR_COLORS.get(method, "tab:blue"))
        ax.bar(classes + 0.2, wrong, 0.4, label="misclassified", color="white", edgecolor=NSR_COLORS.get(
            method, "tab:blue"), hatch="//")
        ax.set_xticks(classes)
        ax.set_xlabel("class")
        ax.set_ylabel("deviation from the class mean")
        ax.set_title(display(method) if method != "nsr" else "+NSR")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def observation_curves(curves: dict[str, pd.DataFrame], title: str) -> Figure:
    """The slides' Observation 2: test accuracy, training cross-entropy and training intra-class variance per
    epoch, the mean over seeds with its range, Vanilla against +NSR (`curves`: method -> its metrics.csv)."""
    if not curves:
        return _empty("epoch", "", title)
    fig, axes = _figure(1, 3)
    panels = (("test accuracy (%)", lambda m: 100 - m["test_error"]), ("training cross-entropy", lambda m: m["train_ce"]),
              ("training intra-class variance", lambda m: m["train_intra_var"]))
    for ax, (label, value) in zip(axes[0], panels):
        for method, m in curves.items():
            m = m.assign(v=value)
            g = m.groupby("epoch")["v"]
            color = NSR_COLORS.get(method, "tab:blue")
            ax.plot(g.mean().index, g.mean().to_numpy(), color=color, label="+NSR" if method == "nsr" else "Vanilla")
            ax.fill_between(g.mean().index, g.min().to_numpy(), g.max().to_numpy(), color=color, alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if "cross" in label or "variance" in label:
            ax.set_yscale("log")
    axes[0, 0].legend()
    fig.suptitle(title)
    return fig
