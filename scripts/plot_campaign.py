"""Plot one layer's neuron campaign on the information plane: IIM vs TIE of every candidate.

    .venv/bin/python scripts/plot_campaign.py                             # He, first layer, 10,000 images
    .venv/bin/python scripts/plot_campaign.py --base xavier --depth 3 --layer 1
    .venv/bin/python scripts/plot_campaign.py --samples 2000 --results /tmp/r --data /scratch/data

It runs the campaign a cell's model `--seed` runs under the paper profile with
`init.num_samples=<samples>` (e.g. `python run.py base=he init=ibci depth=2
init.num_samples=10000`): the same generator draws the sample of training
images and then every layer's candidate pool, layer by layer, so layer L is
scored on the output of the neurons elected for layers 0..L-1. Writes
<results>/figures/campaign_info_plane.{pdf,png} and prints their paths, the
PNG's last.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Runnable from a plain checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Torch-free: the arguments are checked (and --help answered) before torch and the plotting stack load.
from ibci.errors import UserError, report_user_errors  # noqa: E402
from ibci.init.settings import base_std, check_campaign  # noqa: E402
from ibci.nets.spec import layer_sizes, paper_networks  # noqa: E402
from ibci.vocab import BASES, CAMPAIGN_INITS, DATA  # noqa: E402

FIGURE_NAME = "campaign_info_plane"  # .pdf and .png
N_TRAIN = DATA["mnist"].train  # MNIST training images
# ibci.campaign divides TIE's two terms by their L2 norms over the pool before
# subtracting, so TIE is dimensionless (IIM is a plain variance); the label says so.


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="results dir; the figure goes to <results>/figures/")
    p.add_argument("--base", default="he", help=f"base distribution of the candidates: {', '.join(BASES)}")
    p.add_argument("--std", type=float, default=None, help="std of the `normal` base (unused by xavier and he)")
    p.add_argument("--init", default="ibci", help=f"campaign variant: {', '.join(CAMPAIGN_INITS)}")
    p.add_argument("--depth", type=int, default=2, help=f"network depth: {', '.join(map(str, paper_networks()))}")
    p.add_argument("--layer", type=int, default=0, help="which layer's campaign to plot (0 = first)")
    p.add_argument("--samples", type=int, default=10000, help="training images the campaign scores on")
    p.add_argument("--seed", type=int, default=0, help="run seed (the init sub-seed is derived from it)")
    p.add_argument("--data", default="data", help="MNIST data root (built offline if missing)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> list[int]:
    """The network's widths, once every argument is known good (before the data or torch load)."""
    sizes = layer_sizes(args.depth)
    n_layers = len(sizes) - 1
    if not 0 <= args.layer < n_layers:
        raise UserError(f"--layer={args.layer} is out of range; depth {args.depth} has layers 0..{n_layers - 1}")
    if args.samples < 1:
        raise UserError(f"--samples={args.samples} must be a positive number of training images")
    check_campaign(args.init)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        base_std(args.base, fan_in, fan_out, args.std)
    return sizes


def run_layer(args: argparse.Namespace, sizes: list[int]) -> tuple[dict, dict]:
    """(pool tensors of the chosen layer, its JSON-ready info)."""
    import torch

    from ibci.data import load_mnist
    from ibci.init import campaign
    from ibci.seeding import generator

    tie_weights = campaign.tie_weights(args.init, len(sizes) - 1)
    mnist = load_mnist(args.data, download=False)
    x, y = mnist.x_train, mnist.y_train
    g = generator(args.seed, "init")
    # As ibci.initialize draws a model's sample: from the model's own generator, before its pools.
    if args.samples < x.shape[0]:
        idx = torch.randperm(x.shape[0], generator=g)[: args.samples]
        x, y = x[idx], y[idx]
    # The whole network is elected (layers after the chosen one cost little):
    # ibci_init treats its last layer as the output layer, so it cannot stop early.
    _, _, info = campaign.ibci_init(sizes, x, y, args.base, tie_weights, g, std=args.std)
    return info["pools"][args.layer], info["layers"][args.layer]


def plot(pool: dict, title: str):
    import numpy as np

    from ibci.report import plots

    iim, tie = pool["iim"].numpy(), pool["tie"].numpy()
    picked = np.zeros(iim.size, dtype=bool)
    picked[pool["picked"].numpy()] = True
    return plots.information_plane(iim, tie, picked, title)


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = check_args(args)
    from ibci.report import plots
    from ibci.report.render import display

    start = time.perf_counter()
    pool, info = run_layer(args, sizes)
    L = args.layer
    role = "output layer" if L == len(sizes) - 2 else "hidden layer"
    title = (f"{display(args.init)} campaign, {display(args.base)} base, depth {args.depth}, layer {L} "
             f"({sizes[L]}→{sizes[L + 1]}, {role})\n"
             f"pool {info['pool_size']}, {len(pool['picked'])} elected, TIE weight {info['tie_weight']:g}\n"
             f"budget: seed {args.seed}, {min(args.samples, N_TRAIN):,} training images scored, no training")
    fig = plot(pool, title)
    try:
        paths = plots.save_figure(fig, Path(args.results) / "figures" / FIGURE_NAME, formats=("pdf", "png"))
    except OSError as e:
        raise UserError(f"--results={args.results!r} is not writable ({e.strerror or e})") from None
    print(f"quotas per class {info['quotas']}, mean elected score {info['mean_chosen_score']:.3f}, "
          f"{time.perf_counter() - start:.1f}s")
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
