"""What the authors' own scripts printed, run outside this suite, beside the suite's records.

Neither repository's code is part of this project. Their scripts were run
unchanged elsewhere (docs/src/readings.md says how); what they printed is kept
as logs, one per script and seed, named `<run>_s<seed>.log` with <run> one of
RUNS. This module reads those logs: the test accuracy right after
initialization, every test line, and what each script reports as its result.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import stats

# Each run: the script and its settings as run (flags beyond the script's defaults), and the number it gives.
RUNS = {
    "ibci_d2": dict(script="src/main.py (IBCI)", network="784-100-10", settings="defaults: alphas 0 1, 101 epochs, "
                    "lr 0.1, batch 100, 5x pool", result="min_error", epochs=101),
    "ibci0_d2": dict(script="src/main.py (IBCI)", network="784-100-10", settings="defaults, --training_epochs 1",
                     result="init_error", epochs=1),
    "nsr_mlp4": dict(script="fdnn_nsr.py (NSR)", network="MLP-4", settings="defaults: lambda 7.4865 on the logits, "
                     "100 epochs, lr 0.01, batch 100, 10k validation", result="selected_error",
                     epochs=100),
    "nsr_mlp10": dict(script="fdnn_nsr.py (NSR)", network="MLP-10", settings="--layer_unit_count_list 784 256 128 "
                      "64 64 32 32 16 16 10 --lambda_balance 0.4158", result="selected_error",
                      epochs=100),
}
RESULT_WORDS = {"min_error": "minimal test error over the epochs",
                "selected_error": "test error at the best-validation epoch (its last test line)",
                "init_error": "test error right after initialization"}

_INIT = re.compile(r"^Testing set: Average loss: \S+, Accuracy: \((\S+)%\)", re.M)
_TEST = re.compile(r"^Test_epoch\tTest_loss\tTest_accuracy\n(\d+)\t\S+\t(\S+)$", re.M)
_EPOCH = re.compile(r"^Train_epoch\t", re.M)
_NAME = re.compile(r"^(?P<run>.+)_s(?P<seed>\d+)\.log$")


def parse_log(text: str) -> dict:
    """The init accuracy and the (epoch, test accuracy) lines of one log, in percent, and its trained epochs."""
    init = _INIT.search(text)
    tests = [(int(e), float(a)) for e, a in _TEST.findall(text)]
    return {"init_accuracy": float(init.group(1)) if init else None, "tests": tests,
            "epochs": len(_EPOCH.findall(text))}


def result(parsed: dict, kind: str) -> float | None:
    """The run's number in points of test error: `kind` one of RESULT_WORDS."""
    if kind == "init_error":
        return None if parsed["init_accuracy"] is None else 100.0 - parsed["init_accuracy"]
    if not parsed["tests"]:
        return None
    if kind == "min_error":
        return 100.0 - max(a for _, a in parsed["tests"])
    return 100.0 - parsed["tests"][-1][1]  # fdnn_nsr prints the test only when validation reaches its best


def read_logs(folder: Path) -> dict[str, dict[int, float]]:
    """Per run, per seed: its result, for the logs of finished runs (one that trained fewer epochs than its
    settings say, e.g. cut off, is left out)."""
    out: dict[str, dict[int, float]] = {}
    for path in sorted(Path(folder).glob("*.log")):
        m = _NAME.match(path.name)
        if not m or m["run"] not in RUNS:
            continue
        parsed = parse_log(path.read_text(encoding="utf-8", errors="replace"))
        if parsed["epochs"] < RUNS[m["run"]]["epochs"]:
            continue
        value = result(parsed, RUNS[m["run"]]["result"])
        if value is not None:
            out.setdefault(m["run"], {})[int(m["seed"])] = value
    return out


def summary_rows(found: dict[str, dict[int, float]], paper: dict[str, float]) -> list[dict]:
    rows = []
    for run, by_seed in found.items():
        seeds = sorted(by_seed)
        s = stats.summarize([by_seed[k] for k in seeds])
        rows.append(dict(run=run, **RUNS[run], seeds=seeds, values=[by_seed[k] for k in seeds], summary=s,
                         paper=paper.get(run)))
    return rows


def compare(theirs: list[float], ours: list[float]) -> dict:
    """Theirs less ours: the difference of means, its bootstrap CI and Welch's p."""
    a, b = np.asarray(theirs, float), np.asarray(ours, float)
    low, high = stats.bootstrap_diff_ci(a, b)
    return {"diff": float(a.mean() - b.mean()), "ci": (low, high), "p": stats.welch_p(a, b),
            "theirs": stats.summarize(a), "ours": stats.summarize(b)}


def seed_ranges(seeds: list[int]) -> str:
    runs, start = [], seeds[0]
    for prev, cur in zip(seeds, seeds[1:] + [None]):
        if cur != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(runs)


def to_markdown(rows: list[dict], init: dict | None, ours_label: str) -> str:
    out = ["| script | network | settings | seeds | result | per seed | mean ± std (n) | paper |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per_seed = " ".join(f"{v:.2f}" for v in r["values"]) if len(r["values"]) <= 12 else "(see the logs)"
        paper = "" if r["paper"] is None else f"{r['paper']:.2f}"
        out.append(f"| {r['script']} | {r['network']} | {r['settings']} | {seed_ranges(r['seeds'])} | "
                   f"{RESULT_WORDS[r['result']]} | {per_seed} | {r['summary']} | {paper} |")
    if init is not None:
        lo, hi = init["ci"]
        out += ["", f"Test error right after initialization, their code (seeds {init['their_seeds']}) less this "
                    f"suite's `{ours_label}` (seeds {init['our_seeds']}): theirs {init['theirs']}, ours "
                    f"{init['ours']}; difference {init['diff']:+.2f} points, 95% bootstrap CI "
                    f"[{lo:+.2f}, {hi:+.2f}], Welch p = {init['p']:.3g}."]
    return "\n".join(out) + "\n"
