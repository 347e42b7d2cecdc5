"""The one atomic write (`ibci.files.atomic_write`) and every writer that goes through it: run records, figures, data.

A file it writes has the mode a plain open() would give it (0o666 less the
umask), and a write that fails leaves neither the target nor its temp file.
"""

import os

import numpy as np
import pytest
from matplotlib.figure import Figure

from ibci import data, files
from ibci.report import plots
from ibci.runs import records
from ibci.errors import DataError


def write_text(path):
    files.atomic_write(path, "2.03 ± 0.09\n")
    return path


def write_record(path):
    files.write_json(path, {"cell_id": "x", "seeds": []})
    return path


def write_done(path):
    path.mkdir()
    records.mark_done(path)
    return path / records.DONE


def write_figure(path):
    return plots.save_figure(Figure(figsize=(1, 1)), path, formats=("png",))[0]


def write_idx(path):
    data.write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
    return path


WRITERS = [write_text, write_record, write_done, write_figure, write_idx]


@pytest.fixture(params=[(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def umask_mode(request):
    """Runs the test under a umask and gives the mode it implies; the process's umask is restored after."""
    mask, mode = request.param
    old = os.umask(mask)
    try:
        yield mode
    finally:
        os.umask(old)


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_writers_leave_the_umasks_mode_and_no_temp_file(writer, umask_mode, tmp_path):
    written = writer(tmp_path / "out")
    assert written.stat().st_mode & 0o777 == umask_mode
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [written]


def test_text_is_utf8_and_bytes_are_written_as_they_are(tmp_path):
    files.atomic_write(tmp_path / "t", "2.03 ± 0.09\n")
    assert (tmp_path / "t").read_bytes() == "2.03 ± 0.09\n".encode()
    files.atomic_write(tmp_path / "b", b"\x00\xff")
    assert (tmp_path / "b").read_bytes() == b"\x00\xff"


def fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_failed_write_leaves_nothing(step, tmp_path, monkeypatch):
    monkeypatch.setattr(os, step, fail)
    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(tmp_path / "t", "text")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    (tmp_path / "t").write_text("old")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        files.atomic_write(tmp_path / "t", "new")
    assert [p.name for p in tmp_path.iterdir()] == ["t"] and (tmp_path / "t").read_text() == "old"


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    # Ctrl-C mid-write is no OSError; the temp file must go all the same.
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(tmp_path / "t", "text")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        files.atomic_write(tmp_path / "no" / "t", "text")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_data_write_is_a_data_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(DataError, match="cannot write .*No space left"):
        data.write_idx(tmp_path / "raw" / "x-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    assert list((tmp_path / "raw").iterdir()) == []


def test_a_failed_figure_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        plots.save_figure(Figure(figsize=(1, 1)), tmp_path / "fig", formats=("png",))
    assert list(tmp_path.iterdir()) == []
