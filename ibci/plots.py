"""Figures of the reproduction; each function returns a matplotlib Figure and saves nothing.

Figures are built on the Agg canvas directly rather than through pyplot: no
global backend switch (a notebook importing this keeps its own), and no figure
registry that keeps every figure of a long script alive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .tables import display

# One colour per init in every figure, so IBCI is the same colour in the curves and the bars.
INIT_ORDER = ("vanilla", "lsuv", "ibci", "tie", "iim")
STYLE = "whitegrid"
PANEL_SIZE = (4.2, 3.2)  # inches per panel


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


def _empty(fig: Figure, ax, xlabel: str, ylabel: str, title: str) -> Figure:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.text(0.5, 0.5, "no finished cells yet", ha="center", va="center", transform=ax.transAxes)
    ax.plot([], [], label="no data")
    ax.legend(loc="upper right")
    fig.suptitle(title)
    return fig


def learning_curves(curves: pd.DataFrame, title: str = "Learning curves", log_y: bool = True) -> Figure:
    """Test error vs epoch: mean over seeds with a ±1 std band (ddof=1), one line per init.

    `curves` is long: base, depth, init, seed, epoch, test_error (percent).
    One panel per (base, depth): bases down, depths across. Epoch 0 is the
    init before training; with a log y axis its ~90% error and the ~2% at the
    end are both readable.
    """
    xlabel, ylabel = "epoch", "test error (%)"
    if curves.empty:
        fig, axes = _figure(1, 1)
        return _empty(fig, axes[0, 0], xlabel, ylabel, title)
    bases = list(dict.fromkeys(curves["base"]))
    depths = sorted(curves["depth"].unique())
    colors = init_colors(curves["init"])
    fig, axes = _figure(len(bases), len(depths), sharex=True)
    for i, base in enumerate(bases):
        for j, depth in enumerate(depths):
            ax = axes[i, j]
            panel = curves[(curves["base"] == base) & (curves["depth"] == depth)]
            for init in _ordered_inits(panel["init"]):
                g = panel[panel["init"] == init].groupby("epoch")["test_error"]
                mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
                n = panel.loc[panel["init"] == init, "seed"].nunique()
                low = (mean - std).clip(lower=mean.min() * 0.5) if log_y else mean - std
                ax.plot(mean.index, mean.values, color=colors[init], lw=1.5, label=f"{display(init)} (n={n})")
                ax.fill_between(mean.index, low.values, (mean + std).values, color=colors[init], alpha=0.2, lw=0)
            if log_y:
                ax.set_yscale("log")
                # Plain numbers (2, 5, 10, 20, 50) read better than 2x10^0 for percentages.
                ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
                ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
                ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
            ax.set_title(f"{display(base)}, depth {depth}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if ax.has_data():
                ax.legend(loc="upper right", fontsize="small")
    fig.suptitle(f"{title} (mean ± std over seeds, ddof=1)")
    return fig


def min_error_vs_paper(table: pd.DataFrame, title: str = "Minimal test error") -> Figure:
    """Each cell's error (mean ± std) beside the paper's, one panel per base.

    `table` is the tidy frame of `ibci.tables.build_table`. Depths along x,
    one slot per init: ours filled, the paper's open, both with ±1 std bars.
    Flagged cells (missing seeds, diverged seeds) carry a dagger.
    """
    protocols = table["protocol"].dropna().unique() if "protocol" in table else []
    heldout = len(protocols) == 1 and protocols[0] == "heldout"
    ylabel = "test error at selected epoch (%)" if heldout else "minimal test error (%)"
    xlabel = "depth (layers)"
    if table.empty:
        fig, axes = _figure(1, 1)
        return _empty(fig, axes[0, 0], xlabel, ylabel, title)
    bases = list(dict.fromkeys(table["base"]))
    depths = sorted(table["depth"].unique())
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
        ax.set_xticks(np.arange(len(depths)), [str(d) for d in depths])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(display(base))
    handles = [Line2D([], [], color=colors[i], marker="o", ls="", label=display(i)) for i in inits]
    handles += [
        Line2D([], [], color="0.3", marker="o", ls="", label="ours (mean ± std)"),
        Line2D([], [], color="0.3", marker="s", mfc="white", ls="", label="paper (mean ± std)"),
    ]
    if flagged_any:
        handles.append(Line2D([], [], ls="", marker="$†$", color="black", label="flagged (see table)"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
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
    ax.legend(loc="best")
    ax.set_title(title)
    return fig
