"""A tiny CIFAR-10 archive in the official python-version format, for tests that cannot have the real one.

The layout is that of `cifar-10-python.tar.gz`: one folder `cifar-10-batches-py/`
holding data_batch_1..5, test_batch and batches.meta, each a dict pickled with
protocol 2 whose keys are bytes (as the official Python 2 pickles read with
encoding="bytes"): b"batch_label", b"labels" (a list of ints), b"data" (uint8
[n, 3072], R, G, B planes of 32x32) and b"filenames".
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

FOLDER = "cifar-10-batches-py"
LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def synthetic_batches(n_train_per_batch: int, n_test: int, seed: int) -> dict[str, dict]:
    """Every file of the archive as the dict it pickles, random pixels and labels drawn from `seed`."""
    rng = np.random.default_rng(seed)

    def batch(label: bytes, n: int) -> dict:
        labels = rng.integers(0, 10, n)
        return {
            b"batch_label": label,
            b"labels": [int(y) for y in labels],  # the official files hold a list, not an array
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"%s_s_%06d.png" % (LABEL_NAMES[y], k) for k, y in enumerate(labels)],
        }

    files = {name: batch(b"training batch %d of 5" % (i + 1), n_train_per_batch)
             for i, name in enumerate(TRAIN_BATCHES)}
    files["test_batch"] = batch(b"testing batch 1 of 1", n_test)
    files["batches.meta"] = {b"num_cases_per_batch": n_train_per_batch, b"label_names": LABEL_NAMES, b"num_vis": 3072}
    return files


def write_cifar10_archive(path: str | Path, n_train_per_batch: int = 4, n_test: int = 3, seed: int = 0) -> Path:
    """Write a synthetic `cifar-10-python.tar.gz` at `path` and return its path."""
    path = Path(path)
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, content in synthetic_batches(n_train_per_batch, n_test, seed).items():
            # The official files are numpy 1 pickles, which name the array builder numpy.core.multiarray;
            # numpy 2 writes numpy._core.multiarray (GLOBAL is a text opcode, so the name can be swapped).
            data = pickle.dumps(content, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
