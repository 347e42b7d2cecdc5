"""A conv net of one's own, with BatchNorm and Dropout, initialized by IBCI and trained with NSR in a plain loop.

    .venv/bin/python examples/conv_fashion_nsr.py                    # Fashion-MNIST, 3 epochs
    .venv/bin/python examples/conv_fashion_nsr.py --data mnist --epochs 1 --train-limit 2000

Two library calls are all it takes: `ibci.init_(model, (x, y))` before
training, and `ibci.NSR(model, ...)` whose `penalty(y)` joins the loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import ibci  # noqa: E402
from ibci.data import load_data  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
                                  nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.features(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion", choices=["fashion", "mnist"])
    ap.add_argument("--root", default="data", help="where the IDX files are (make data builds them)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--lam", type=float, default=0.1, help="NSR's weight on the logits' intra-class variance")
    args = ap.parse_args()

    torch.manual_seed(0)
    d = load_data(args.data, args.root, download=False)
    x, y = d.x_train.view(-1, 1, 28, 28), d.y_train
    if args.train_limit:
        x, y = x[: args.train_limit], y[: args.train_limit]
    model = Net()
    info = ibci.init_(model, (x, y), method="ibci", base="he", num_samples=2000, seed=0)
    print("IBCI:", ", ".join(f"{e['layer']} {e['neurons']} of {e['pool_size']}" for e in info["layers"]))

    nsr = ibci.NSR(model, lam=args.lam)  # the logits: the official default
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for idx in torch.randperm(len(y)).split(128):
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx]) + nsr.penalty(y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            err = (model(d.x_test.view(-1, 1, 28, 28)).argmax(1) != d.y_test).float().mean().item() * 100
        print(f"epoch {epoch}: train loss {loss.item():.3f}, test error {err:.2f}%")


if __name__ == "__main__":
    main()
