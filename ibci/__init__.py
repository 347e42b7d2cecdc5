"""ibci: Neuron Campaign for Initialization guided by Information Bottleneck theory.

A library of the initializations compared in Mao et al. (CIKM 2021) and the
pieces needed to reproduce the paper's tables. Plain functions over tensors and
plain configs; no I/O except in `ibci.data` (which reads and writes the data root)
and `ibci.records` (which reads and writes run directories).
"""

__version__ = "0.1.0"
