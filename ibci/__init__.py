"""ibci: Neuron Campaign for Initialization guided by Information Bottleneck theory.

A library of the initializations compared in Mao et al. (CIKM 2021) and the
pieces needed to reproduce the paper's tables; `ibci.init_(model, x, y)` applies
them to your own `nn.Sequential`. Plain functions over tensors and
plain configs; no I/O except in `ibci.data` (which reads and writes the data root)
and `ibci.records` (which reads and writes run directories).
"""

from pathlib import Path

__version__ = "0.1.0"
# The checkout: configs/, experiments/ and results/paper/ live here.
ROOT = Path(__file__).resolve().parent.parent


def __getattr__(name: str):
    # `ibci.init_` and the loaders without importing torch or pandas on `import ibci`
    # (the entry points import torch late, on purpose).
    if name == "init_":
        from .api import init_

        return init_
    if name in ("load_cells", "load_runs"):
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module 'ibci' has no attribute {name!r}")
