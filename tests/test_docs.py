"""docs/*.md are generated from docs/src/ by scripts/make_docs.py, and the committed pages are up to date.

The script runs as a user runs it (a subprocess of this interpreter); the behaviour
tests run it with --root on a small copy of a checkout under tmp_path.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_docs.py"


def make_docs(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--root", str(root)] if root is not None else []
    return subprocess.run([sys.executable, str(SCRIPT), *args, *extra], capture_output=True, text=True, timeout=30)


def checkout(tmp_path: Path, template: str) -> Path:
    """A minimal checkout: one template, one Markdown report and one text report it may include."""
    (tmp_path / "docs" / "src").mkdir(parents=True)
    (tmp_path / "docs" / "src" / "page.md").write_text(template, encoding="utf-8")
    reports = tmp_path / "results" / "reference"
    reports.mkdir(parents=True)
    (reports / "table.md").write_text("## A table\n\n| a | b |\n|:--|:-:|\n| 1.23 ± 0.04 (5) | −0.07 |\n",
                                      encoding="utf-8")
    (reports / "bench.txt").write_text("speedup=37.1 peak_fraction=0.59", encoding="utf-8")  # no final newline
    return tmp_path


def test_committed_pages_are_up_to_date():
    result = make_docs("--check")
    assert result.returncode == 0, result.stdout + result.stderr + "\n(run `make docs` and commit docs/)"


def test_include_is_verbatim_and_check_sees_a_stale_page(tmp_path):
    root = checkout(tmp_path, "# Page\n\nBefore.\n<!-- include: results/reference/table.md -->\nBetween.\n"
                              "  <!-- include:   results/reference/bench.txt -->  \nAfter.\n")
    assert make_docs("--check", root=root).returncode == 1  # the page does not exist yet
    result = make_docs(root=root)
    assert result.returncode == 0, result.stderr
    page = (root / "docs" / "page.md").read_text(encoding="utf-8")
    table = (root / "results" / "reference" / "table.md").read_text(encoding="utf-8")
    assert page.startswith("<!-- Generated from docs/src/page.md by scripts/make_docs.py")
    assert "do not edit" in page.splitlines()[0]
    assert f"\nBefore.\n{table}Between.\n" in page  # the Markdown report, byte for byte
    assert "\nBetween.\n```text\nspeedup=37.1 peak_fraction=0.59\n```\nAfter.\n" in page  # a text report, fenced
    assert "include:" not in page
    assert make_docs("--check", root=root).returncode == 0
    assert not list((root / "docs").glob(".*.tmp"))  # the atomic write left no temp file

    # A report regenerated after the page was written: --check names the page, writes nothing.
    (root / "results" / "reference" / "table.md").write_text("## A table\n\n| a |\n|:--|\n| 9.99 |\n", encoding="utf-8")
    result = make_docs("--check", root=root)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "docs/page.md" in lines[0], lines
    assert (root / "docs" / "page.md").read_text(encoding="utf-8") == page

    # A hand edit of the generated page is stale too.
    assert make_docs(root=root).returncode == 0
    with open(root / "docs" / "page.md", "a", encoding="utf-8") as f:
        f.write("A hand-written line.\n")
    assert make_docs("--check", root=root).returncode == 1


def test_missing_include_is_one_line_naming_it(tmp_path):
    root = checkout(tmp_path, "# Page\n\n<!-- include: results/reference/nowhere.md -->\n")
    for args in ((), ("--check",)):
        result = make_docs(*args, root=root)
        assert result.returncode == 2
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert len(lines) == 1 and "results/reference/nowhere.md" in lines[0], lines
    assert not (root / "docs" / "page.md").exists()


def quoted_results(text: str) -> list[tuple[str, str]]:
    """The differences with a CI ("-1.28 points [-1.37, -1.19]") and the means ± SD ("2.73 ± 0.14") prose quotes,
    each as the cells a generated table writes it in."""
    import re

    num = r"[+-]?\d+\.\d+"
    found = [(f"| {d} | [{lo}, {hi}] |", m.group(0)) for m in re.finditer(rf"({num})(?: points)? \[({num}), ({num})\]",
                                                                      text) for d, lo, hi in [m.groups()]]
    found += [(m.group(0), m.group(0)) for m in re.finditer(r"\d+\.\d+ ± \d+\.\d+", text)]
    return found


def test_every_result_the_prose_quotes_is_in_a_generated_report():
    """README's and the docs' prose type their numbers; each must be a row of a report the records gave, so
    the prose cannot drift from them (regenerate a report and the number it changed fails here)."""
    reports = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "results" / "reference").rglob("*.md"))
    pages = [ROOT / "README.md", *sorted((ROOT / "docs" / "src").glob("*.md"))]
    quoted = [(page.name, cell, shown) for page in pages for cell, shown in quoted_results(page.read_text("utf-8"))]
    assert len(quoted) >= 5  # the pattern still finds the bottom line's numbers
    # A verdict writes "| d | [lo, hi] |", a table's cell "d [lo, hi], p = ..."
    plain = {cell: cell.strip("| ").replace(" | ", " ") for _, cell, _ in quoted}
    missing = [f"{name}: {shown}" for name, cell, shown in quoted if cell not in reports and plain[cell] not in reports]
    assert not missing, "quoted but in no report under results/reference/: " + "; ".join(missing)


def test_the_prose_reader_finds_both_forms_as_tables_write_them():
    cells = [cell for cell, _ in quoted_results("gain (-0.14 [-0.29, +0.01]) and 2.73 ± 0.14 (n = 3)")]
    assert cells == ["| -0.14 | [-0.29, +0.01] |", "2.73 ± 0.14"]
    assert "| -0.13 | [-0.29, +0.01] |" not in cells
