"""The examples a researcher would copy run, on a tiny budget, as they are written (examples/)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_conv_net_with_batchnorm_and_dropout_initialized_by_ibci_and_trained_with_nsr(mnist_root):
    from ibci.data import raw_dir

    fashion = raw_dir("data", "fashion").is_dir()  # Debian's package, where `make data-fashion` has run
    data = ["--data", "fashion", "--root", "data"] if fashion else ["--data", "mnist", "--root", str(mnist_root)]
    out = run("conv_fashion_nsr.py", *data, "--epochs", "1", "--train-limit", "1000")
    assert "IBCI: features.0 16 of 80, features.4 32 of 160, head.2 128 of 640, head.4 10 of 50" in out
    error = float(out.strip().splitlines()[-1].rpartition("test error ")[2].rstrip("%"))
    assert error < 60  # one epoch on 1,000 images already learns (chance is 90%)


@pytest.mark.parametrize("args", [["--samples", "100", "--steps", "2", "--pool-factor", "1"]])
def test_torchvisions_resnet18_takes_lsuv_ibci_and_nsr(mnist_root, args):
    out = run("resnet18_lsuv_ibci.py", "--root", str(mnist_root), *args)
    assert "lsuv: 21 layers (conv1 ... fc)" in out and "ibci: 21 layers (conv1 ... fc)" in out
    assert "after 2 steps with NSR: loss" in out
