"""torchvision's ResNet-18 on one-channel 28x28 images: LSUV and IBCI on its 21 layers, then a few NSR steps.

    .venv/bin/python examples/resnet18_lsuv_ibci.py                  # MNIST, 500 images scored, 20 steps
    .venv/bin/python examples/resnet18_lsuv_ibci.py --samples 100 --steps 2 --pool-factor 1   # seconds

`ibci.init_` finds the model's Conv2d and Linear layers in forward order,
through the residual blocks and their downsampling 1x1 convolutions, and
initializes each from the inputs it receives; BatchNorm runs on its running
statistics while it does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models import resnet18  # noqa: E402

import ibci  # noqa: E402
from ibci.data import load_data  # noqa: E402


def one_channel_resnet18() -> nn.Module:
    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)  # grey images, not RGB
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data")
    ap.add_argument("--samples", type=int, default=500, help="training images the initializations look at")
    ap.add_argument("--steps", type=int, default=20, help="SGD steps with NSR after IBCI")
    ap.add_argument("--pool-factor", type=float, default=5, help="IBCI's candidates per neuron (the campaign's cost)")
    args = ap.parse_args()

    torch.manual_seed(0)
    d = load_data("mnist", args.root, download=False)
    x, y = d.x_train[: args.samples].view(-1, 1, 28, 28), d.y_train[: args.samples]
    for method in ("lsuv", "ibci"):
        model = one_channel_resnet18()
        start = time.perf_counter()
        options = {"pool_factor": args.pool_factor} if method == "ibci" else {}
        info = ibci.init_(model, (x, y), method=method, seed=0, **options)
        layers = info["layers"]
        print(f"{method}: {len(layers)} layers ({layers[0]['layer']} ... {layers[-1]['layer']}) "
              f"in {time.perf_counter() - start:.1f} s")
    nsr = ibci.NSR(model, layers=["fc"], lam=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for step in range(args.steps):
        idx = torch.randint(0, len(y), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx]) + nsr.penalty(y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"after {args.steps} steps with NSR: loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
