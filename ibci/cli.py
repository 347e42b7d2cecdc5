"""The boundary between users and the library: config composition and error reporting.

Entry points (`run.py`, `scripts/`) use these; the rest of `ibci` never sees
Hydra. An experiment (`configs/experiment/<name>.yaml`, a Hydra overlay) names a
grid of cells; every cell is the Hydra config composed from the grid's overrides
plus the user's.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from . import CONFIG_DIR
from .errors import UserError
from .experiments import cell_overrides, experiment_grid, grid_cells

INTERRUPTED = "interrupted: finished cells are kept; run the same command again to resume"

# Where Ctrl-C may raise. Python raises KeyboardInterrupt wherever the main thread is; inside Hydra's and
# OmegaConf's code (composing a config, between the jobs of -m) a half-done update turns it into some other
# error (seen: "'NoneType' object has no attribute '_invalidate_flags_cache'", exit 1 instead of 130). Under
# `hold_interrupts` a Ctrl-C outside `interrupts_at_once` is held and raised at the next `raise_if_interrupted`
# (or when a cell starts); a second Ctrl-C while one is held raises at once.
_ctrl_c = {"installed": False, "at_once": True, "pending": False}


def _on_ctrl_c(signum, frame) -> None:
    if _ctrl_c["at_once"] or _ctrl_c["pending"]:
        raise KeyboardInterrupt
    _ctrl_c["pending"] = True
    print("Ctrl-C: stopping once Hydra is done with this step (Ctrl-C again to stop now)", file=sys.stderr)


def hold_interrupts(at_once: bool) -> None:
    """Install the Ctrl-C gate; `at_once`: whether Ctrl-C raises at once outside the sections that say."""
    _ctrl_c.update(installed=True, at_once=at_once, pending=False)
    signal.signal(signal.SIGINT, _on_ctrl_c)


def raise_if_interrupted() -> None:
    if _ctrl_c["pending"]:
        _ctrl_c["pending"] = False
        raise KeyboardInterrupt


@contextmanager
def _interrupts(at_once: bool):
    if not _ctrl_c["installed"]:
        yield
        return
    before = _ctrl_c["at_once"]
    raise_if_interrupted()
    _ctrl_c["at_once"] = at_once
    try:
        yield
    finally:
        _ctrl_c["at_once"] = before
    raise_if_interrupted()


def interrupts_at_once():
    """A section of our own code (training a cell: finished work is on disk) where Ctrl-C raises at once."""
    return _interrupts(True)


def interrupts_held():
    """A section of Hydra's or OmegaConf's code, where a Ctrl-C waits for the section's end."""
    return _interrupts(False)


def compose_many(override_lists: list[list[str]], config_dir: Path = CONFIG_DIR,
                 config_name: str = "config") -> list[dict]:
    """The resolved run configs for several override lists, as run.py would see them.

    `config_dir` and `config_name`: another primary config, as run.py's `-cp` and `-cn` name it.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    out = []
    try:
        with interrupts_held(), initialize_config_dir(config_dir=str(Path(config_dir).absolute()), version_base="1.3"):
            for overrides in override_lists:
                cfg = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
                choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
                with open_dict(cfg):
                    del cfg["hydra"]
                out.append(with_call(OmegaConf.to_container(cfg, resolve=True), choices, list(overrides)))
    except (HydraException, OmegaConfBaseException) as e:
        raise hydra_error(e) from None
    return out

def with_call(cfg: dict, choices: dict, overrides: list[str]) -> dict:
    """A resolved config with the call that made it: `choices` (every config group's option, Hydra's own
    groups aside) and `overrides` (the command line's, less what says where or how it runs). Its record
    keeps both, so that tables find it without composing it again (`ibci.runs.calls`)."""
    from .runs.calls import RUNTIME, split_override

    cfg["choices"] = {g: v for g, v in choices.items() if not g.startswith("hydra")}
    cfg["overrides"] = [o for o in overrides if split_override(o)[0] not in RUNTIME
                        and not split_override(o)[0].startswith("hydra")]
    return cfg

def hydra_error(e: Exception) -> UserError:
    """Hydra's message for a bad command line, on one line; where an override does not parse, how to quote it."""
    from hydra.errors import OverrideParseException

    hint = ("; quote a value with non-ASCII or special characters, as in 'results_dir=\"/tmp/my runs\"'"
            if isinstance(e, OverrideParseException) else "")
    return UserError(" ".join(str(e).split()) + hint)

def compose(overrides: list[str] = ()) -> dict:
    """The resolved run config for `overrides`, as run.py would see it."""
    return compose_many([list(overrides)])[0]

def _override_key(override: str) -> str:
    """The key or group an override names: `init.tol` of `++init.tol=0.1`, `base` of `base@x=he`."""
    return override.lstrip("~+").partition("=")[0].partition("@")[0]

def _selects_group(key: str, config_dir: Path) -> bool:
    return "/" in key or (Path(config_dir) / key).is_dir()

def _key_paths(cfg: dict, prefix: str = "") -> list[str]:
    """Every key of a nested config as a dotted path (`init`, `init.tol`, `networks.2`)."""
    out = []
    for key, value in cfg.items():
        out.append(f"{prefix}{key}")
        if isinstance(value, dict):
            out += _key_paths(value, f"{prefix}{key}.")
    return out

def check_added_keys(jobs: list[list[str]], config_dir: Path = CONFIG_DIR, config_name: str = "config") -> None:
    """Raise UserError for a `+key=value` or `++key=value` that adds a key the job's config does not have.

    Hydra adds such a key without a word, and nothing reads it: `+epoch=3` is a
    typo that trains the default budget under a new cell id. Group selections
    (`+group=option`, `hydra/launcher=joblib`) and Hydra's own `hydra.` keys pass.
    `jobs` are single-valued override lists (a sweep expanded into one list per job).
    """
    import difflib

    def added(override: str) -> bool:
        key = _override_key(override)
        return override.startswith("+") and not key.startswith("hydra") and not _selects_group(key, config_dir)

    if not any(added(o) for job in jobs for o in job):
        return  # the usual command line composes nothing more
    # Which keys a config has depends only on its group selections; compose each distinct set once.
    selections = [tuple(o for o in job if _selects_group(_override_key(o), config_dir)) for job in jobs]
    distinct = list(dict.fromkeys(selections))
    keys = dict(zip(distinct, (set(_key_paths(c)) for c in compose_many(distinct, config_dir, config_name))))
    for job, selection in zip(jobs, selections):
        for override in filter(added, job):
            key, value = _override_key(override), override.partition("=")[2]
            if key in keys[selection]:
                continue  # `++key` overrides it; Hydra itself refuses `+key` for a key that exists
            # A sibling if the parent exists (`data.limit`: `data.train_limit`), never a depth (`networks.5`).
            parent = key.rpartition(".")[0]
            candidates = sorted(k for k in keys[selection] if not k.rpartition(".")[2].isdigit()
                                and (parent not in keys[selection] or k.rpartition(".")[0] == parent))
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
            hint = (f"did you mean {close[0]}={value}?" if close
                    else "nothing reads it (`python run.py --cfg job` lists the keys)")
            raise UserError(f"{override} adds a key the config does not have; {hint}")

def experiment_jobs(spec: dict, overrides: list[str]) -> list[list[str]]:
    """The full override list of every cell an experiment runs, user overrides first.

    A grid experiment (`grid:`) runs every combination; the IBCI verdict
    (`columns:`) runs each column per row in blocks of seeds
    (`ibci.report.verdict.cells`); the NSR verdict (`kind: nsr_verdict`) the
    cells its claims need so far (`ibci.report.nsr_verdict.plan`: with the
    test cells of every search whose records are all in results_dir).
    """
    if "grid" in spec:
        fixed = list(spec.get("overrides", []))  # the experiment's recipe, which the user's overrides may change
        return [[*fixed, *overrides, *cell_overrides(c)] for c in grid_cells(experiment_grid(spec))]
    from .report import nsr_verdict, verdict
    from .runs.calls import setting

    if spec.get("kind") == "nsr_verdict":  # its second stage, the searches' choices, comes from their records
        from .runs import records

        recs = records.load_records(Path(setting(overrides, "results_dir")))
        jobs = nsr_verdict.plan(spec, overrides, recs)[1]
        return [list(j) for j in dict.fromkeys(map(tuple, jobs))]  # a choice may be a cell the first stage has
    seeds, epochs = setting(overrides, "seeds"), setting(overrides, "epochs")
    return [[*overrides, *c["overrides"]] for c in verdict.cells(spec, seeds, epochs)]

def check_group_options(overrides: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """Raise UserError for `group=option` whose option has no file in `config_dir/<group>/`.

    Hydra would report it in many lines (and only when that job is composed);
    `overrides` are single-valued (a sweep expanded into one override per value).
    """
    for override in overrides:
        if override.startswith("~"):  # a deletion names no option
            continue
        key, _, option = override.lstrip("+").partition("=")
        group = Path(config_dir) / key
        if not key or key.startswith("hydra") or not group.is_dir():
            continue
        allowed = sorted(p.stem for p in group.glob("*.yaml"))
        if option not in allowed:
            raise UserError(f"{key}={option} is not one of: {', '.join(allowed)}")
