"""The reproduction verdict: the paper's claims tested under every reading of IBCI.

An experiment spec (`experiments/verdict.yaml`) names columns (each a set of
overrides: a reading of IBCI, a comparator, a control), the rows (base x
depth) and the claims (column a against column b, per row). This module turns
the spec into the cells to run and, given each cell's per-seed values, into
the verdict: per claim, reading and row the difference, its bootstrap CI,
Welch's p, Holm's adjusted p over the whole family, the smallest difference
the design detects at the spec's power, and a verdict word. Plain functions
over dicts and arrays; the entry points do the I/O.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import stats
from .errors import UserError

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
KINDS = ("less", "equal")


def columns(spec: dict) -> dict:
    """The spec's columns with the chosen LSUV variant run at the full number of blocks."""
    cols = {name: dict(col) for name, col in spec["columns"].items()}
    best = spec.get("lsuv_best")
    if best is not None:
        if best not in cols:
            raise UserError(f"lsuv_best={best!r} is not one of the columns: {', '.join(cols)}")
        cols[best].pop("blocks", None)
    return cols


def cells(spec: dict, seeds: int, epochs: int) -> list[dict]:
    """Every cell the verdict needs: column, base, depth, seed_offset and its overrides.

    `seeds` and `epochs` are the budget's (a block holds `seeds` seeds; a
    column's `extra_epochs` add to `epochs`).

    Ordered block by block, then by depth, so that an interrupted sweep has
    finished whole blocks of seeds first. A base-free column runs once per
    depth with its own base, its cells serving both base rows.
    """
    rows = spec["rows"]
    n_blocks = int(spec["seed_blocks"])
    out = []
    for block, depth in itertools.product(range(n_blocks), rows["depth"]):
        for name, col in columns(spec).items():
            if block >= int(col.get("blocks", n_blocks)):
                continue
            bases = [None] if col.get("base_free") else rows["base"]
            for base in bases:
                overrides = [*col["overrides"], f"depth={depth}", f"seed_offset={block * seeds}"]
                if col.get("extra_epochs"):
                    overrides.append(f"epochs={epochs + int(col['extra_epochs'])}")
                if base is not None:
                    overrides.insert(0, f"base={base}")
                out.append(dict(column=name, base=base, depth=depth, seed_offset=block * seeds, overrides=overrides))
    return out
