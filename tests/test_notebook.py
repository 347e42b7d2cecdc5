"""The walkthrough notebook runs top to bottom on its fast budget, and the campaign figure script works.

The notebook is executed as Jupyter would run it (nbclient, a python3 kernel from
this environment), with IBCI_NOTEBOOK_FAST=1 so that it takes well under a minute.
"""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
SOURCE = ROOT / "notebooks" / "walkthrough.py"  # jupytext percent format, paired with NOTEBOOK
GOLDEN_RESULTS = ROOT / "tests" / "golden" / "records"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def execute(nb: nbformat.NotebookNode, env: dict, monkeypatch) -> nbformat.NotebookNode:
    """Run every cell of `nb` in place; a cell that raises fails the test with its traceback."""
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))  # the kernel inherits this process's environment
    # One torch thread per process, as the other tests: the CI box has 2 cores.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for o in outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            parts.extend(o.data.get(k, "") for k in ("text/plain", "text/markdown"))
    return "\n".join(parts)


def _cells(nb) -> list[tuple[str, str, list]]:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def test_the_notebook_is_paired_with_its_source():
    """walkthrough.py is the source; the .ipynb beside it must hold the same cells (`jupytext --sync`)."""
    source = jupytext.read(SOURCE)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert _cells(notebook) == _cells(source), "run `jupytext --sync notebooks/walkthrough.py`"
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")  # committed without outputs


def test_notebook_runs_on_the_fast_budget(mnist_root, tmp_path, monkeypatch):
    results = tmp_path / "results"  # empty: section 5 must say how to make results, not fail
    nb = execute(jupytext.read(SOURCE),
                 {"IBCI_NOTEBOOK_FAST": 1, "IBCI_DATA": mnist_root, "IBCI_RESULTS": results}, monkeypatch)
    images = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert len(images) >= 6, f"expected the notebook's figures, got {len(images)} images"
    text = text_of(nb)
    assert "IBCI_NOTEBOOK_FAST" in text  # it ran on the fast budget
    assert "the plain loop elects the same" in text
    assert "no finished runs" in text and "make smoke" in text


def test_results_section_reads_finished_runs(tmp_path, monkeypatch):
    # Only the setup and results cells, against the committed fake sweep of the golden table test.
    nb = jupytext.read(SOURCE)
    nb.cells = [c for c in nb.cells if {"setup", "results"} & set(c.metadata.get("tags", []))]
    assert len(nb.cells) >= 2
    nb = execute(nb, {"IBCI_NOTEBOOK_FAST": 1, "IBCI_RESULTS": GOLDEN_RESULTS, "IBCI_DATA": tmp_path}, monkeypatch)
    text = text_of(nb)
    finished = sum((d / "done").exists() for d in (GOLDEN_RESULTS / "runs").iterdir())
    assert f"{finished} finished cell(s)" in text
    assert "no finished runs" not in text
    assert any("image/png" in o.get("data", {}) for o in outputs(nb)), "no learning curves drawn"


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "plot_campaign.py"), *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_plot_campaign_writes_the_figure(mnist_root, tmp_path):
    out = run_script("--results", str(tmp_path), "--data", str(mnist_root), "--samples", "1000", "--layer", "1")
    assert out.returncode == 0, out.stderr
    path = tmp_path / "figures" / "campaign_info_plane.png"
    assert out.stdout.strip().splitlines()[-1] == str(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000, f"{len(data)} bytes: an empty or trivial figure?"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


@pytest.mark.parametrize("args, message", [
    (["--layer", "2"], "--layer=2 is out of range"),
    (["--base", "uniform"], "base='uniform' is not one of"),
])
def test_plot_campaign_reports_bad_arguments_in_one_line(tmp_path, args, message):
    out = run_script("--results", str(tmp_path), "--data", str(tmp_path / "nowhere"), *args)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
