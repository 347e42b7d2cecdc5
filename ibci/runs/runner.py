"""Running cells: the I/O around the engine (data, run directories, records, progress).

`run_cells` takes resolved configs, skips cells that are done, and trains the
rest. Cells that differ only in their init (same depth, data, budget and
seeds) can be trained as one stack: their models with the same seed share
batches, so their first layers run as one wide GEMM (see `ibci.train.mlp`).
Records stay per cell and are identical in form either way.

What is bitwise reproducible: the same cells trained in the same stack with
the same thread count on the same machine (and BLAS) give identical numbers;
a resumed sweep rebuilds the stacks it had, so it matches an uninterrupted one.
What is not: a stack's shape. Cells side by side widen the first layer's
GEMM, which changes the blocking of its float reductions; with more than one
thread, the number of seeds also changes how batched GEMMs are split between
threads. The last bits move and SGD amplifies them over the epochs, so
`run.py -m` (one cell a stack) and `scripts/sweep.py` (same-depth cells
stacked) can differ in a cell's numbers by a little (tests/test_robustness.py
gives the differences measured).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Collection

import numpy as np
import torch
import yaml
from tqdm import tqdm

from .. import ROOT, __version__, seeding
from ..data import CIFAR10_MEAN, CIFAR10_STD, load_group, split_heldout
from ..errors import UserError
from ..files import atomic_write, write_json
from ..init import conv as conv_init
from ..init.bases import init_base
from ..init.stack import initialize
from ..nets.cnn import StackedCNN
from ..nets import zoo
from ..nets.mlp import StackedMLP
from ..nets.spec import N_CLASSES, hidden_widths, is_cnn, is_zoo, network_name
from ..train import cnn as cnn_engine
from ..train import mlp as engine
from ..nets.modules import cnn_modules, mlp_modules
from ..train import general, nsr
from ..train.history import History
from . import memory, records
from ..vocab import HELDOUT_SIZE, STRENGTH_KEYS
from .validate import trains_on_general, validate

_DATA_CACHE: dict = {}


def load_splits(cfg: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The cell's splits: train (limited), test, and val under the heldout protocol."""
    data = cfg["data"]
    key = (data["name"], str(data["root"]), data["download"], str(data.get("path")), data.get("verify"))
    if key not in _DATA_CACHE:  # sweeps in one process load each data set once
        _DATA_CACHE[key] = load_group(data)
    d = _DATA_CACHE[key]
    x, y = d.x_train, d.y_train
    splits = {"test": (d.x_test, d.y_test)}
    if cfg["protocol"] == "heldout":
        x, y, x_val, y_val = split_heldout(d, HELDOUT_SIZE)
        splits["val"] = (x_val, y_val)
    limit = cfg["data"]["train_limit"]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    splits["train"] = (x, y)
    return splits


def available_cores() -> int:
    """Cores this process may run on: a SLURM or taskset allotment, not the whole machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        return os.cpu_count() or 1


def reuse_freed_memory() -> None:
    """Have glibc keep freed blocks of up to 32 MB for the next step instead of unmapping them.

    By default each training step maps its large activations (a CNN's conv
    maps) afresh and the kernel zero-fills every page on first touch: with 5
    stacked CNNs on 2 threads, 2.5 million page faults and about 3 s of kernel
    time per 19 s epoch of 12,000 images. Kept, the same buffers serve every
    step (CNN epochs about 12% faster, MLP epochs unchanged, measured on this
    project's CPU). Elsewhere (no glibc) it does nothing; results do not
    depend on it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's own upper bound for this threshold
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_top_pad, 64 << 20)


def git_state() -> dict:
    """The checked-out commit and whether tracked files differ from it (None, None outside a git checkout)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD") or None
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


# The code this process runs is the code checked out when it started: a record taken at the end of a long cell
# would otherwise name whatever was committed meanwhile.
CODE = git_state()


def stack_key(cfg: dict) -> tuple:
    """Cells with equal keys can share one stack: everything but base and init (and an L1, L2 or Jacobian
    strength) agrees."""
    d = cfg["data"]
    reg = dict(cfg.get("reg", {}))
    reg.pop(STRENGTH_KEYS.get(reg.get("name"), ""), None)  # the general engine takes it per model
    reg = json.dumps(reg, sort_keys=True)
    return (cfg["depth"], tuple(hidden_widths(cfg)), reg, d["name"], str(d["root"]), d["train_limit"],
            cfg["protocol"], cfg["epochs"], cfg["batch_size"], cfg["lr"], str(cfg["device"]), cfg["seeds"],
            cfg["seed_offset"], cfg["threads"], network_name(cfg), bool(cfg.get("observe")))


def plan(cfgs: list[dict], stack_cells: int = 1) -> tuple[list[dict], list[list[dict]]]:
    """Split cells into finished records and groups to train (at most `stack_cells` cells a group).

    A stack interrupted while it wrote its records (some cells done, some not)
    is trained again whole, as its done records list it: a stack's shape moves
    the last bits of its numbers (see the module docstring), and this way its other
    cells get exactly the numbers an uninterrupted run gives them.
    """
    finished, todo = [], {}
    for cfg in cfgs:
        validate(cfg)  # every cell is checked before any is trained
    for cfg in cfgs:
        run_dir = records.run_dir_of(cfg)
        rec = records.read_record(run_dir)
        if rec is not None:
            if records.legacy(rec) and "overrides" in cfg:
                rec = add_call(rec, cfg)  # this cell's config is the record's: the call that made it now is its own
                write_json(run_dir / "record.json", rec)
            finished.append(rec)
            continue
        if records.is_done(run_dir):
            print(f"warning: {run_dir / 'record.json'} is unreadable; rerunning the cell", file=sys.stderr)
        todo.setdefault(stack_key(cfg), []).append(cfg)
    by_id = {records.cell_id(cfg): cfg for cfg in cfgs}
    pending = {records.cell_id(cfg) for cells in todo.values() for cfg in cells}
    groups = []
    for rec in finished:
        stack = rec.get("stack", [])
        if pending & set(stack) and all(i in by_id for i in stack):
            groups.append([by_id[i] for i in stack])
            pending -= set(stack)
    for cells in todo.values():
        cells = [cfg for cfg in cells if records.cell_id(cfg) in pending]
        groups += [cells[i : i + stack_cells] for i in range(0, len(cells), stack_cells)]
    for group in groups:  # before any work: a stack that cannot fit says so at once
        memory.check_fits(group)
    return finished, groups


def settings_of(cfg: dict) -> dict:
    """A run config without the call that made it (`choices`, `overrides`: the record keeps those)."""
    return {k: v for k, v in cfg.items() if k not in ("choices", "overrides")}


def add_call(rec: dict, cfg: dict) -> dict:
    """A record with the call of `cfg` (which composed to its cell), for a record written before records kept it."""
    return {**rec, "choices": cfg["choices"], "overrides": cfg["overrides"]}


def _prepare(cfg: dict) -> Path:
    run_dir = records.run_dir_of(cfg)
    try:
        records.prepare_run_dir(run_dir)
        atomic_write(run_dir / "config.yaml", yaml.safe_dump(settings_of(cfg), sort_keys=False))
    except OSError as e:
        raise UserError(f"results_dir={cfg['results_dir']!r} is not writable ({e.strerror or e})") from None
    return run_dir


def show_bars(cfg: dict) -> bool:
    """Progress bars only on a terminal: in a log file (nohup, SLURM, submitit) their redraws are noise."""
    return bool(cfg["progress"]) and sys.stderr.isatty()


def train_group(cells: list[dict], log: Callable[[str], None] = print, done: Collection[str] = (),
                position: int = 0) -> list[dict]:
    """Train cells that share a stack key as one stack; write and return one record per cell.

    Cells whose ids are in `done` are trained too (for the stack's shape) but
    their records are neither written nor returned.
    """
    first = cells[0]
    torch.set_num_threads(first["threads"] or available_cores())
    reuse_freed_memory()
    started = time.perf_counter()
    splits = load_splits(first)  # before any run directory exists: a data error leaves nothing behind
    stack = [records.cell_id(cfg) for cfg in cells]
    run_dirs = [None if i in done else _prepare(cfg) for i, cfg in zip(stack, cells)]
    x, y = splits["train"]
    seeds = list(range(first["seed_offset"], first["seed_offset"] + first["seeds"]))
    name = records.cell_id(first) if len(cells) == 1 else f"stack of {len(cells)} cells, {records.cell_keys(first)['net']}"
    device = torch.device(first["device"])
    ckpt_path = checkpoint_path(first, stack)
    resumed = read_checkpoint(ckpt_path, stack, device, log)
    # net=cnn: the CNN's network, inits and engine; the rest is as for an MLP. A regularizer only autograd
    # computes (L1, L2, Jacobian), BatchNorm, Dropout, momentum, augmentation and the CIFAR-10 networks train on the
    # general engine, the network as ordinary nn.Modules (validate.trains_on_general).
    init, Stack, fit = (conv_init.initialize, StackedCNN, cnn_engine.train) if is_cnn(first) else (
        initialize, StackedMLP, engine.train)
    if trains_on_general(first):
        fit = general_fit(cells)
    if resumed is None:
        models, infos = [], []
        for cfg in cells:
            model, info = (zoo_init if is_zoo(cfg) else init)(cfg, x, y, [seeding.generator(s, "init") for s in seeds])
            models.append(model)
            infos.append(info)
        model = [m.to(device) for ms in models for m in ms] if is_zoo(first) else Stack.cat(models).to(device)
    else:
        log(f"resume {name} from epoch {resumed['loop']['epoch']}")
        infos, model = resumed["infos"], None
    splits = {k: (a.to(device), b.to(device)) for k, (a, b) in splits.items()}
    x, y = splits.pop("train")
    if first.get("observe"):  # the slides' Observation 2 reads the training split's curves
        splits["train"] = (x, y)
    bar = tqdm(total=first["epochs"], desc=name, unit="epoch", disable=not show_bars(first), leave=False,
               position=position)
    S_cell = first["seeds"]

    def on_epoch(epoch: int, hist: History) -> None:
        if epoch:
            bar.update(1)
            # Each cell's mean over its own seeds; a stack's cells are never averaged together.
            per_cell = hist.errors["test"][epoch].view(len(cells), S_cell).nanmean(1)
            shown = per_cell if len(cells) == 1 else per_cell.nan_to_num(float("inf")).aminmax()
            bar.set_postfix_str(f"test error {per_cell.item():.2f}%" if len(cells) == 1 else
                                f"test error of its cells {shown.min:.2f}-{shown.max:.2f}%")

    train_start = time.perf_counter()
    if resumed is None:
        nsr_args = nsr_settings(first, model, x, y)  # `largest` measures the stack at initialization
        nsr_info = nsr_args.pop("info", None)
        before = 0.0
    else:
        nsr_args, nsr_info, before = resumed["nsr_args"], resumed["nsr_info"], float(resumed["train_time_s"])
        bar.update(int(resumed["loop"]["epoch"]))
    # Every commit that trained part of this stack, oldest first (a checkpoint from before this field has none).
    commits = [*([] if resumed is None else resumed.get("commits", [])), CODE["git_commit"]]
    commits = list(dict.fromkeys(commits))
    earlier = [c for c in commits if c != CODE["git_commit"]]

    def keep(state: dict) -> dict:
        return {"stack": stack, "infos": infos, "nsr_args": nsr_args, "nsr_info": nsr_info,
                "train_time_s": before + time.perf_counter() - train_start, "commits": commits, "loop": state}

    saver = Saver(ckpt_path, first.get("checkpoint_every"), keep)
    model, hist = fit(model, x, y, seeds * len(cells), first["epochs"], first["batch_size"], first["lr"],
                      splits, on_epoch, **nsr_args, resume=None if resumed is None else resumed["loop"], save=saver)
    bar.close()
    train_time = before + time.perf_counter() - train_start
    S = len(seeds)
    observation = observe(model, splits["test"], len(cells), S) if first.get("observe") else None
    out = []
    for c, (cfg, run_dir, info) in enumerate(zip(cells, run_dirs, infos)):
        if run_dir is None:
            continue
        part = slice(c * S, (c + 1) * S)
        loss = hist.train_loss[:, part]
        errors = {k: v[:, part] for k, v in hist.errors.items()}
        per_seed = records.summarize_seeds(seeds, loss, errors, hist.diverged_epoch[part], cfg["protocol"])
        rec = {
            "schema": records.SCHEMA,
            "cell_id": records.cell_id(cfg),
            "cell": records.cell_keys(cfg),
            "budget": records.budget(cfg),
            "seeds": per_seed,
            "init_info": info,
            **({"nsr": nsr_info} if nsr_info else {}),  # which layers NSR penalized, with what weight
            "init_time_s": info["time_s"],
            # Time of the shared stack, split evenly: what this cell cost.
            "train_time_s": train_time / len(cells),
            "epoch_time_s": train_time / len(cells) / cfg["epochs"],
            "stacked_cells": len(cells),
            "stack": stack,  # the cells trained together, in stack order (a resume rebuilds it)
            "wall_time_s": (time.perf_counter() - started) / len(cells),
            "choices": cfg.get("choices"),  # the call that made the cell: how tables find it (ibci.runs.calls)
            "overrides": cfg.get("overrides", []),
            "config": settings_of(cfg),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": np.__version__, "ibci": __version__},
            **CODE,
            # A cell resumed from a checkpoint that other code wrote: the commits of its earlier parts.
            **({"earlier_commits": earlier} if earlier else {}),
            "host": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                     "threads": torch.get_num_threads(), "device": str(device)},
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        extra = {f"{k}_intra_var": v[:, part] for k, v in hist.intra_var.items()}
        if cfg.get("observe"):
            extra.update({f"{k}_ce": v[:, part] for k, v in hist.ce.items()})
            rec["observation"] = observation[c]
        atomic_write(run_dir / "metrics.csv", records.metrics_csv(seeds, loss, errors, extra))
        write_json(run_dir / "record.json", rec)
        records.mark_done(run_dir)
        log(finished_line(rec, cfg.get("failed_error", records.FAILED_ERROR)))
        out.append(rec)
    ckpt_path.unlink(missing_ok=True)  # every record is written: nothing left to resume
    return out


def observe(model: StackedMLP, test: tuple[torch.Tensor, torch.Tensor], n_cells: int, S: int) -> list[dict]:
    """Per cell: the trained models' penultimate deviation by outcome on the test set (`nsr.deviation_by_outcome`),
    as lists per seed and class, for its record."""
    with torch.no_grad():
        dev = nsr.deviation_by_outcome(model, *test)
    per_cell = []
    for c in range(n_cells):
        part = slice(c * S, (c + 1) * S)
        per_cell.append({"what": "penultimate deviation from the class mean, final epoch, test images",
                         **{k: [[None if math.isnan(v) else v for v in row] for row in t[part].tolist()]
                            for k, t in dev.items()}})
    return per_cell


def zoo_init(cfg: dict, x, y, gens: list[torch.Generator]) -> tuple[list[torch.nn.Module], dict]:
    """The NSR code's CIFAR-10 network of a cell, one per seed, with its own init (`base=official`)."""
    start = time.perf_counter()
    models = zoo.build(cfg["arch"], gens, N_CLASSES)
    return models, {"init": "vanilla", "base": "official", "network": cfg["arch"],
                    "time_s": time.perf_counter() - start}


def general_fit(cells: list[dict]) -> Callable:
    """engine.train's signature over the general engine (ibci.train.general) for a stack of cells, with their
    regularizer (each cell's own strength for its seeds), momentum, augmentation and (CIFAR-10) normalization."""
    cfg, reg = cells[0], cells[0]["reg"]

    def per_model(key: str) -> list[float]:  # each cell's reg.<key>, once for each of its seeds
        return [float(c["reg"].get(key, 0)) for c in cells for _ in range(c["seeds"])]

    recipe = general.Recipe(lr=float(cfg["lr"]), l1=per_model("strength") if reg["name"] == "l1" else 0.0,
                            momentum=float(cfg.get("momentum", 0.0)),
                            weight_decay=per_model("weight_decay"),
                            jacobian=per_model("strength") if reg["name"] == "jacobian" else 0.0,
                            projections=int(reg.get("projections", 1)),
                            nsr_layer=reg.get("layer") if reg["name"] == "nsr" else None,
                            augment=cfg.get("augment", "none") == "crop_flip",
                            mean=CIFAR10_MEAN if is_zoo(cfg) else None, std=CIFAR10_STD if is_zoo(cfg) else None)
    cnn = is_cnn(cfg)
    image = (3, 32, 32) if is_zoo(cfg) else (1, 28, 28) if cnn else ()  # what the network takes; an MLP, rows

    def fit(model, x, y, data_seeds, epochs, batch_size, lr, eval_sets, on_epoch, resume=None, save=None,
            nsr_lams=None, nsr_queue=5):
        # NSR's weights come output layer first (nsr_settings); validate allows no other layer here.
        steps = dataclasses.replace(recipe, nsr=float(nsr_lams[0]), nsr_queue=int(nsr_queue)) if nsr_lams else recipe
        if model is None:  # resumed: any draw of the right shapes will do, the checkpoint's values replace it
            gens = [torch.Generator() for _ in data_seeds]
            widths = hidden_widths(cfg)
            model = (zoo.build(cfg["arch"], gens, N_CLASSES) if is_zoo(cfg) else conv_init.init_base(widths, gens, "he")
                     if cnn else init_base([x.shape[1], *widths, N_CLASSES], gens, "he"))
        modules = (model if is_zoo(cfg) else cnn_modules(model) if cnn else
                   mlp_modules(model, bool(cfg.get("batchnorm")), float(cfg.get("dropout", 0.0))))
        return general.train(modules, x, y, data_seeds, epochs, batch_size, steps, eval_sets, on_epoch,
                             image_shape=image, dropout_seed=data_seeds[0], resume=resume, save=save)

    return fit


# An automatic `checkpoint_every` keeps about this many seconds of training at risk.
CHECKPOINT_SECONDS = 60.0


def checkpoint_path(cfg: dict, stack: list[str]) -> Path:
    """Where a stack keeps its checkpoint: named by the cells it trains, in the order it trains them."""
    digest = hashlib.sha256("\n".join(stack).encode()).hexdigest()[:16]
    return Path(cfg["results_dir"]) / "runs" / ".checkpoints" / f"{digest}.pt"


def read_checkpoint(path: Path, stack: list[str], device: torch.device, log: Callable[[str], None]) -> dict | None:
    """A stack's checkpoint, or None when there is none; a torn or foreign one is set aside with a warning."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or state.get("stack") != stack or "loop" not in state:
            raise ValueError("it belongs to another stack")
        return state
    except Exception as e:  # noqa: BLE001  (whatever is wrong with it, it is not trusted)
        log(f"warning: checkpoint {path} is unreadable ({' '.join(str(e).split())[:120]}); training the stack "
            "from the start")
        return None


class Saver:
    """engine.train's `save`: writes the stack's checkpoint every `every` epochs, atomically.

    `every` None: as many epochs as take about CHECKPOINT_SECONDS here,
    measured on the first epoch this process trains.
    """

    def __init__(self, path: Path, every: int | None, wrap: Callable[[dict], dict]):
        self.path, self.every, self.wrap = path, every, wrap
        self.started, self.count = time.perf_counter(), 0

    def __call__(self, epoch: int, state: Callable[[], dict]) -> None:
        self.count += 1
        if self.every is None:
            self.every = max(1, round(CHECKPOINT_SECONDS / max(time.perf_counter() - self.started, 1e-9)))
        if self.count % self.every:
            return
        buf = io.BytesIO()
        torch.save(self.wrap(state()), buf)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, buf.getvalue())


def nsr_settings(cfg: dict, model=None, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> dict:
    """engine.train's NSR arguments for a run config (none without `reg=nsr`), and what the record says of them.

    `reg.reading=largest` measures the stack at initialization (`model`) on
    the first training images (x, y): which layer it penalizes depends on it.
    """
    reg = cfg.get("reg", {"name": "none"})
    if reg["name"] != "nsr":
        return {}
    lam, reading = reg["lambda"], reg.get("reading", "logits")
    n_layers = len(hidden_widths(cfg)) + 1
    info = {"reading": reading}
    if reading == "logits":
        lams = [float(v) for v in lam] if isinstance(lam, list) else [float(lam)] * int(reg["layers"])
    else:
        variances = None
        if reading == "largest":
            n = nsr.LARGEST_IMAGES
            variances = nsr.layer_variances(model, x[:n], y[:n])
            info["layer_variances"] = variances.mean(0).tolist()  # at initialization, first layer first
        lams = nsr.reading_lams(reading, float(lam), n_layers, variances)
    info["lambdas"] = lams[::-1]  # per layer, first layer first
    return dict(nsr_lams=lams, nsr_queue=int(reg["queue_batches"]), info=info)


def finished_line(rec: dict, failed_error: float = records.FAILED_ERROR) -> str:
    """One line per finished cell: its error over the seeds that trained, their number, and what it cost."""
    status = [records.seed_status(s, failed_error) for s in rec["seeds"]]
    sel = [s["selected_error"] for s, st in zip(rec["seeds"], status) if st == "ok"]
    err = "n/a" if not sel else f"{np.mean(sel):.2f}%" if len(sel) == 1 else f"{np.mean(sel):.2f} ± {np.std(sel, ddof=1):.2f}%"
    extra = "".join(f", {status.count(w)} {w}" for w in ("diverged", "failed") if w in status)
    return (f"done {rec['cell_id']}: error {err} (n={len(sel)}{extra}), "
            f"init {rec['init_time_s']:.1f}s, {rec['epoch_time_s']:.2f}s/epoch")


def _claim(group: list[dict], by_id: dict, held: contextlib.ExitStack, log: Callable[[str], None]) -> list[dict]:
    """The cells of `group` this job trains: each one's lock is taken (and kept by `held`).

    A cell another job holds is left to it; one that another job finished
    since the plan is read, not retrained. Done cells stay in the group, for
    the stack's shape (`plan`), and need no lock: nothing of theirs is written.
    """
    mine = []
    for cfg in group:
        cid = records.cell_id(cfg)
        run_dir = records.run_dir_of(cfg)
        if cid not in by_id:
            try:
                lock = records.try_lock(run_dir)
            except OSError as e:
                raise UserError(f"results_dir={cfg['results_dir']!r} is not writable ({e.strerror or e})") from None
            if lock is None:
                log(f"skip {cid}: another job is training it")
                continue
            held.callback(lock.release)
            rec = records.read_record(run_dir)
            if rec is not None:
                log(f"skip {cid}: done by another job")
                by_id[cid] = rec
                continue
        mine.append(cfg)
    return mine


def run_cells(cfgs: list[dict], stack_cells: int = 1, log: Callable[[str], None] = print) -> list[dict]:
    """Run every cell not yet done (skipping done ones); returns the records of the cells given, in order.

    Any number of jobs may run cells into one results dir at once: a cell is
    trained by the job that holds its lock, and the others move on (their
    returned list lacks it).
    """
    finished, groups = plan(cfgs, stack_cells)
    for rec in finished:
        log(f"skip {rec['cell_id']}: done")
    todo = len(cfgs) - len(finished)
    if todo and len(cfgs) > 1:
        log(f"{len(finished)} of {len(cfgs)} cells done; training {todo} in {len(groups)} stack(s)")
    by_id = {r["cell_id"]: r for r in finished}
    for group in groups:  # a data error ends the job before it takes a lock or writes anything
        load_splits(group[0])
    sweep_bar = tqdm(total=len(cfgs), initial=len(finished), desc="cells", unit="cell",
                     disable=not (len(cfgs) > 1 and show_bars(cfgs[0])), position=0)

    def counted(line: str) -> None:
        with tqdm.external_write_mode():  # the line above the bars, not through them
            log(line)
        if line.startswith(("done ", "skip ")):
            sweep_bar.update(1)

    for group in groups:
        with contextlib.ExitStack() as held:
            mine = _claim(group, by_id, held, counted)
            if any(records.cell_id(cfg) not in by_id for cfg in mine):
                for rec in train_group(mine, counted, done=set(by_id), position=0 if sweep_bar.disable else 1):
                    by_id[rec["cell_id"]] = rec
    sweep_bar.close()
    ids = [records.cell_id(cfg) for cfg in cfgs]
    busy = [i for i in ids if i not in by_id]
    if busy:
        log(f"{len(busy)} cell(s) left to the jobs training them; run the same command again to collect them")
    return [by_id[i] for i in ids if i in by_id]
