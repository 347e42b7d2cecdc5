"""Run directories and self-describing records.

One job is one table cell (base x init x depth) with all its seeds. It writes
`<results>/runs/<cell-id>/`: config.yaml, metrics.csv, record.json and, last,
`done`. The cell id is a readable prefix plus a hash of everything that changes
the numbers (not of where or how fast they are computed), so the same command
always maps to the same directory and a re-run can skip finished cells.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import UserError
from ..files import atomic_write
from ..nets.spec import network_name
from . import calls

SCHEMA = "ibci.record/1"
DONE = "done"

# Keys that say where or how a cell runs, or how it is read, not what it computes; they stay out of the cell id
# (one list, ibci.runs.calls.RUNTIME, of which these are the top-level keys and data's).
RUNTIME_KEYS = tuple(k for k in calls.RUNTIME if "." not in k)
RUNTIME_DATA_KEYS = tuple(k.removeprefix("data.") for k in calls.RUNTIME if k.startswith("data."))
# A seed whose best test error stays at or above this (percent) never left chance (90% for 10 classes).
FAILED_ERROR = 80.0


def _reg(cfg: dict) -> str:
    return cfg.get("reg", {}).get("name", "none")


def cell_keys(cfg: dict) -> dict:
    """The table coordinates of a cell."""
    return {
        "base": cfg["base"]["name"],
        "init": cfg["init"]["name"],
        "depth": int(cfg["depth"]),
        "net": network_name(cfg),
        "reg": _reg(cfg),
        "data": cfg["data"]["name"],
        "protocol": cfg["protocol"],
    }


def budget(cfg: dict) -> dict:
    """How much was spent on a cell; tables only compare cells of equal budget."""
    return {
        "seeds": int(cfg["seeds"]),
        "seed_offset": int(cfg["seed_offset"]),
        "epochs": int(cfg["epochs"]),
        "train_limit": cfg["data"]["train_limit"],
        "batch_size": int(cfg["batch_size"]),
        "lr": float(cfg["lr"]),
    }


def identity(cfg: dict) -> dict:
    """The part of a resolved config that determines a cell's numbers.

    Settings added after runs were made are left out at the value that gives
    those runs' numbers (no `hidden` widths, no regularizer), so every earlier
    cell keeps its id and its finished runs.
    """
    out = {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS}
    out["data"] = {k: v for k, v in cfg["data"].items() if k not in RUNTIME_DATA_KEYS}
    if out.get("hidden") is None:
        out.pop("hidden", None)
    init = out.get("init", {})
    if "authors_arithmetic" in init and init.get("reading", "paper") == "paper":  # read by the authors' reading only
        out["init"] = {k: v for k, v in init.items() if k != "authors_arithmetic"}
    for key, off in (("batchnorm", False), ("dropout", 0.0), ("observe", False), ("momentum", 0.0),
                     ("augment", "none")):  # added later, off before
        if out.get(key, off) == off:
            out.pop(key, None)
    if _reg(cfg) == "none":
        out.pop("reg", None)
    else:
        if out["reg"].get("reading") == "logits":  # the only reading before readings existed
            out["reg"] = {k: v for k, v in out["reg"].items() if k != "reading"}
        if out["reg"].get("layer", None) is None:  # nor a named layer
            out["reg"] = {k: v for k, v in out["reg"].items() if k != "layer"}
    return out


def cell_id(cfg: dict) -> str:
    """Deterministic directory name, e.g. `xavier-ibci-d2-mnist-min-s5e100-1a2b3c4d` (`xavier-ibci+nsr-h256x100-...`)."""
    k, b = cell_keys(cfg), budget(cfg)
    digest = hashlib.sha256(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:8]
    method = k["init"] if k["reg"] == "none" else f"{k['init']}+{k['reg']}"
    return f"{k['base']}-{method}-{k['net']}-{k['data']}-{k['protocol']}-s{b['seeds']}e{b['epochs']}-{digest}"


def run_dir_of(cfg: dict) -> Path:
    """The cell's run directory: `<results_dir>/runs/<cell_id>`."""
    return Path(cfg["results_dir"]) / "runs" / cell_id(cfg)


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).exists()


def mark_done(run_dir: Path) -> None:
    atomic_write(Path(run_dir) / DONE, "")


def try_lock(run_dir: Path) -> FileLock | None:
    """Hold the cell's lock (`runs/.<cell-id>.lock`) without waiting, or None if another job holds it.

    The lock lives beside the run directory, not in it, so that clearing an
    incomplete directory never removes it. It is an flock: it goes with the
    process that holds it, however that process ends.
    """
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir.parent / f".{run_dir.name}.lock")
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return None
    return lock


def prepare_run_dir(run_dir: Path) -> None:
    """A clean directory for a cell: an incomplete earlier attempt is removed (call it holding the cell's lock)."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


# What the tables, the verdict and the runner read from a record and from each of its seeds.
RECORD_KEYS = ("cell_id", "cell", "budget", "seeds", "config", "init_info", "init_time_s", "epoch_time_s")
SEED_KEYS = ("seed", "epoch0_error", "min_error", "best_epoch", "final_error", "last10_error", "selected_epoch",
             "selected_error", "diverged")


def _complete(rec) -> bool:
    return (isinstance(rec, dict) and rec.get("schema") == SCHEMA and all(k in rec for k in RECORD_KEYS)
            and isinstance(rec["seeds"], list) and bool(rec["seeds"])
            and all(isinstance(s, dict) and all(k in s for k in SEED_KEYS) for s in rec["seeds"]))


def read_record(run_dir: Path) -> dict | None:
    """The record of a finished cell, or None if the cell is not finished, unreadable or incomplete."""
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        return None
    try:
        rec = json.loads((run_dir / "record.json").read_text())
    except (OSError, ValueError):
        return None
    return rec if _complete(rec) else None


def require_runs(results_dir: Path) -> Path:
    """`<results_dir>/runs`, or a UserError when there is none to tabulate (nothing is created)."""
    runs = Path(results_dir) / "runs"
    if not runs.is_dir():
        raise UserError(f"results_dir={str(results_dir)!r} holds no runs (no folder {runs}); run the sweep first")
    return runs


def load_records(results_dir: Path) -> list[dict]:
    """Every finished record under `<results_dir>/runs/`, in directory order."""
    runs = Path(results_dir) / "runs"
    if not runs.is_dir():
        return []
    recs = (read_record(d) for d in sorted(runs.iterdir()) if d.is_dir())
    return [r for r in recs if r is not None]


# What a profile sets: how much a cell spends. A table reads whichever of these its runs have, unless told.
BUDGET_KEYS = ("seeds", "epochs", "data.train_limit")


def cell_of(rec: dict) -> dict:
    """A record's table coordinates, with the keys added since it was written at the values its run had."""
    added = {"net": f"d{rec['cell'].get('depth')}", "reg": "none"}  # before `hidden` and `reg` existed
    return {**added, **rec["cell"]}


def budget_label(budget: dict) -> str:
    """A budget as a user names it: `s5e100`, or `s2e1n2000` when it trained on the first 2,000 images."""
    limit = budget.get("train_limit")
    return f"s{budget['seeds']}e{budget['epochs']}" + ("" if limit is None else f"n{limit}")


def legacy(rec: dict) -> bool:
    """A record written before records kept their call (`overrides`). Tables still find it, by its config
    (`calls.expected`); a sweep over its cell, which trains nothing, adds the call (`ibci.runs.runner.plan`)."""
    return "overrides" not in rec


def legacy_agrees(rec: dict, cfg: dict, free: tuple[str, ...] = ()) -> bool:
    """Whether a record written before records kept their call is the cell whose config is `cfg`.

    Its table coordinates (`cell`) and budget must be the cell's, and its
    settings the cell's wherever both have one: a setting only one side has
    was added (or dropped) after the run was made. `cfg` is the cell's config
    as the configs' files give it (`calls.expected`).
    """
    if any(cell_of(rec).get(k) != v for k, v in cell_keys(cfg).items()):
        return False
    open_budget = {k.rpartition(".")[2] for k in free}
    if any(rec["budget"].get(k) != v for k, v in budget(cfg).items() if k not in open_budget):
        return False
    return calls.legacy_agrees(rec["config"], calls.flat(cfg), free)


def select_runs(recs: list[dict], cells: list[list[str]], free: tuple[str, ...] = (), budget: str | None = None,
                what: str = "the grid") -> list[dict | None]:
    """The finished run of every cell (None where there is none), read from records alone.

    A cell is its override list; a record is its run when their canonical
    calls are equal and its config has the call's settings (`ibci.runs.calls`).
    `free` settings (some of BUDGET_KEYS, and `profile`) may take any value,
    so a table finds its runs at whatever budget they were made; runs of
    several budgets are an error naming them, unless `budget` (a
    `budget_label`) picks one. Among runs of one cell (the configs changed
    between them), the one whose id today's configs give comes first, then the newest.
    """
    mine = [(r, calls.canonical(r["overrides"], free)) for r in recs if not legacy(r)]
    old = [r for r in recs if legacy(r)]
    found, ids = [], []
    for cell in cells:
        want, settings = calls.canonical(cell, free), calls.expected(cell)
        rs = [r for r, call in mine if call == want and calls.settings_agree(want, r["config"])]
        if old:
            rs += [r for r in old if legacy_agrees(r, calls.unflat(settings), free)]
        found.append(rs)
        ids.append(cell_id(calls.unflat(settings)))
    counts: dict[str, int] = {}
    for rs in found:
        for label in {budget_label(r["budget"]) for r in rs}:
            counts[label] = counts.get(label, 0) + 1
    named = ", ".join(f"{label} ({n} of {len(cells)} cells)" for label, n in sorted(counts.items()))
    if budget is not None:
        if budget not in counts:
            raise UserError(f"budget={budget}: no run of {what} has it; found {named or 'none'}")
        found = [[r for r in rs if budget_label(r["budget"]) == budget] for rs in found]
    elif free and len(counts) > 1:  # with the budget pinned, cells may differ in it by design (101 epochs)
        raise UserError(f"the runs of {what} have several budgets: {named}; pick one with budget=<label> "
                        "(or name it: profile=..., seeds=..., epochs=...)")
    # Among runs of one cell (the configs changed between them): the one today's configs name, then the newest.
    return [max(rs, key=lambda r: (r["cell_id"] == i, r.get("finished_at") or "", r["cell_id"]), default=None)
            for rs, i in zip(found, ids)]


def seed_status(seed: dict, failed_error: float = FAILED_ERROR) -> str:
    """"diverged", "failed" (finite but its best error >= failed_error) or "ok": only ok seeds enter a mean."""
    if seed["diverged"]:
        return "diverged"
    if seed["min_error"] is not None and seed["min_error"] >= failed_error:
        return "failed"
    return "ok"


def _num(x) -> float | None:
    """A JSON-friendly float: None for NaN."""
    x = float(x)
    return None if x != x else x


def summarize_seeds(seeds: list[int], train_loss, errors: dict, diverged_epoch: list, protocol: str) -> list[dict]:
    """Per-seed summary of a cell's curves (`errors[split]` is [epochs + 1, S] in percent).

    min_error/best_epoch is the paper's metric (it selects the epoch on the
    test set); final_error and last10_error do not select; under the heldout
    protocol `selected_*` is the test error at the epoch with the lowest
    validation error. A diverged seed is summarized over the epochs before it
    diverged.
    """
    test = errors["test"]
    out = []
    for s, seed in enumerate(seeds):
        curve = test[1:, s]
        ok = ~curve.isnan()
        rec = {"seed": int(seed), "epoch0_error": _num(test[0, s]), "min_error": None, "best_epoch": None,
               "final_error": None, "last10_error": None, "selected_epoch": None, "selected_error": None,
               "min_val_error": None, "diverged": diverged_epoch[s] is not None, "diverged_epoch": diverged_epoch[s]}
        if ok.any():
            valid = curve[ok]
            epochs = ok.nonzero().flatten() + 1
            best = int(valid.argmin())
            rec.update(min_error=_num(valid[best]), best_epoch=int(epochs[best]), final_error=_num(valid[-1]),
                       last10_error=_num(valid[-10:].mean()))
            if protocol == "heldout":
                val = errors["val"][1:, s][ok]
                pick = int(val.argmin())
                rec.update(selected_epoch=int(epochs[pick]), selected_error=_num(valid[pick]), min_val_error=_num(val[pick]))
            else:
                rec.update(selected_epoch=rec["best_epoch"], selected_error=rec["min_error"])
        out.append(rec)
    return out


def metrics_csv(seeds: list[int], train_loss, errors: dict, extra: dict | None = None) -> str:
    """Per-epoch curves as CSV text: epoch, seed, train_loss, one error column per split, then `extra` columns."""
    splits = ["test", *sorted(k for k in errors if k != "test")]
    extra = extra or {}
    lines = ["epoch,seed,train_loss," + ",".join([*(f"{k}_error" for k in splits), *extra])]
    for e in range(train_loss.shape[0]):
        for s, seed in enumerate(seeds):
            vals = [train_loss[e, s], *(errors[k][e, s] for k in splits), *(v[e, s] for v in extra.values())]
            lines.append(f"{e},{seed}," + ",".join(f"{float(v):.6g}" for v in vals))
    return "\n".join(lines) + "\n"
