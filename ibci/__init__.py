"""ibci: Neuron Campaign for Initialization guided by Information Bottleneck theory.

A library of the initializations compared in Mao et al. (CIKM 2021) and the
pieces needed to reproduce the paper's tables; `ibci.init_(model, (x, y))` applies
them to your own `nn.Module`, and `ibci.NSR(model, ...)` adds the follow-up's
regularizer to your own training loop. Plain functions over tensors and
plain configs, in sub-packages by pipeline stage: `nets`, `init`, `train`,
`runs`, `report`; `cli` is the Hydra boundary, which only the entry points
import. No I/O except in `ibci.data` (the data root), `ibci.runs` (run
directories) and `ibci.files` (atomic writes).
"""

from pathlib import Path

__version__ = "0.1.0"
# The checkout: configs/, experiments/ and results/paper/ live here.
ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"  # the Hydra config groups, also read as plain YAML (ibci.runs.calls)


def __getattr__(name: str):
    # `ibci.init_` and the loaders without importing torch or pandas on `import ibci`
    # (the entry points import torch late, on purpose).
    if name == "init_":
        from .init.api import init_

        return init_
    if name == "NSR":
        from .train.nsr import NSR

        return NSR
    if name in ("load_cells", "load_runs"):
        from .runs import load

        return getattr(load, name)
    raise AttributeError(f"module 'ibci' has no attribute {name!r}")
