"""Speed benchmark: the conventional PyTorch loop vs our engine vs this CPU's sgemm rate.

    make bench                      # or: python scripts/bench.py [--threads N] [--experiment table1]

In one process, on the same machine:
  (a) the conventional loop (torchvision MNIST + ToTensor, DataLoader batch 100
      shuffled with 2 workers, nn.Sequential, torch.optim.SGD): one depth-2 epoch;
  (b) our engine configured as `make table1` runs it (5 seeds per cell, the
      cells of one depth stacked, test error after the epoch): one epoch per depth;
  (c) this machine's float32 sgemm rate, measured between the sections (each ratio is of the higher
      of the two around its own section: the machine's speed drifts);
plus the campaign's time per seed per depth, NSR's overhead on one MLP-4 epoch
(`nsr_overhead`, the fraction of time NSR adds; the target is at most 0.10),
the peak RSS of a depth-3 cell, NSR's time and peak RSS per step on MLP-4
against plain training (`--json`: for the NSR verdict's C8), and
  (d) the CNN of `net=cnn` (ibci/nets/cnn.py), 5 seeds, one epoch with its test
      evaluation: the stacked engine (grouped convolutions) against the
      conventional loop (nn.Sequential + torch.optim.SGD, one seed after the
      other, batches from in-memory tensors), and the rate of its two grouped
      convolutions alone (`cnn_conv_fraction` of sgemm: the CNN's ceiling);
  (e) the general engine (ibci/train/general.py: autograd under vmap, what
      trains BatchNorm, Dropout, L1/L2/Jacobian and the zoo) on (b)'s depth-2
      stack: `general_vs_hand_d2`, its time over the hand-written engine's.
FLOPs of training count 6 x (sum of layer in x out) per image per model (the
forward and two backward matmuls); a conv layer counts in x out x kernel area
per output position. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ibci.init import campaign  # noqa: E402
from ibci.train import mlp as engine  # noqa: E402
from ibci import seeding  # noqa: E402
from ibci.experiments import cell_overrides, experiment_grid, grid_cells, load_experiment  # noqa: E402
from ibci.cli import compose_many  # noqa: E402
from ibci.init.bases import init_base  # noqa: E402
# cnn_net, not conv: main's `conv` is the conventional loop's time.
from ibci.init import conv as conv_init  # noqa: E402
from ibci.nets import cnn as cnn_net  # noqa: E402
from ibci.train import cnn as cnn_engine  # noqa: E402
from ibci.train import general  # noqa: E402
from ibci.nets.modules import mlp_modules  # noqa: E402
from ibci.nets.mlp import StackedMLP  # noqa: E402
from ibci.nets.spec import cnn_widths, layer_sizes  # noqa: E402
from ibci.runs.runner import load_splits, plan, reuse_freed_memory  # noqa: E402

DEPTHS = (2, 3, 5)
PAPER_CELLS = 30  # Tables 1 and 2 together: 2 bases x 5 inits x 3 depths
PAPER_EPOCHS = 100
CAMPAIGN_INITS = 3 * 2  # ibci, tie, iim x 2 bases, per depth


def train_flops(sizes: list[int], images: int) -> float:
    return 6.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * images


def sgemm_gflops(n: int = 2048, seconds: float = 3.0) -> float:
    """Sustained float32 GEMM rate of this machine at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = a @ b  # warm-up
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b, out=c)
        reps += 1
    return 2.0 * n**3 * reps / (time.perf_counter() - start) / 1e9


def conventional_epoch(data_root: str) -> float:
    """One depth-2 epoch written the usual way (as in the authors' released code)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    train = datasets.MNIST(data_root, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(train, batch_size=100, shuffle=True, num_workers=2)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    start = time.perf_counter()
    for x, y in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def engine_epochs(experiment: str, threads: int | None) -> dict[int, dict]:
    """One epoch per depth, stacked exactly as the experiment's sweep stacks its cells."""
    spec = load_experiment(experiment)
    overrides = ["profile=paper", "epochs=1", "progress=false", f"results_dir={ROOT / 'results' / '.bench'}"]
    if threads:
        overrides.append(f"threads={threads}")
    cfgs = compose_many([[*overrides, *cell_overrides(c)] for c in grid_cells(experiment_grid(spec))])
    _, groups = plan(cfgs, stack_cells=cfgs[0]["stack_cells"])
    out = {}
    for cells in groups:
        cfg = cells[0]
        depth = cfg["depth"]
        splits = load_splits(cfg)
        x, y = splits.pop("train")
        seeds = list(range(cfg["seeds"]))
        sizes = layer_sizes(depth)
        # The engine's cost does not depend on the weights' values, so base draws stand in for every init.
        model = StackedMLP.cat([init_base(sizes, [seeding.generator(s, f"bench{i}") for s in seeds], "he")
                                for i in range(len(cells))])
        engine.train(model, x[:1000], y[:1000], seeds * len(cells), 1, 100, 0.1, {})  # warm-up
        start = time.perf_counter()
        engine.train(model, x, y, seeds * len(cells), 1, cfg["batch_size"], cfg["lr"], splits)
        seconds = time.perf_counter() - start
        models = len(cells) * len(seeds)
        out[depth] = {"models": models, "cells": len(cells), "seconds": seconds,
                      "s_per_model_epoch": seconds / models,
                      "gflops": train_flops(sizes, x.shape[0]) * models / seconds / 1e9}
        if depth == 2:  # the general engine (autograd under vmap) on the same stack, batches and evaluations
            mods = mlp_modules(model)
            general.train(mods, x[:1000], y[:1000], seeds * len(cells), 1, 100, general.Recipe(lr=cfg["lr"]), {})
            start = time.perf_counter()
            general.train(mods, x, y, seeds * len(cells), 1, cfg["batch_size"], general.Recipe(lr=cfg["lr"]), splits)
            out[depth]["general_seconds"] = time.perf_counter() - start
    return out


def campaign_seconds(x: torch.Tensor, y: torch.Tensor) -> dict[int, float]:
    """IBCI's campaign on the whole training set, one seed, per depth."""
    out = {}
    for depth in DEPTHS:
        sizes = layer_sizes(depth)
        weights = campaign.tie_weights("ibci", len(sizes) - 1)
        start = time.perf_counter()
        campaign.ibci_init(sizes, x, y, "he", weights, seeding.generator(0, "init"))
        out[depth] = time.perf_counter() - start
    return out


def nsr_overhead(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor) -> dict:
    """One epoch of MLP-4 (table3's network), 4 cells x 5 seeds stacked, without and with NSR (best of 2)."""
    sizes = [784, 256, 100, 10]
    seeds = list(range(5)) * 4
    times = {}
    for name, lams in (("plain", None), ("nsr", [7.4865])):
        best = float("inf")
        for _ in range(2):
            model = init_base(sizes, [seeding.generator(s, "init") for s in seeds], "xavier")
            start = time.perf_counter()
            engine.train(model, x, y, seeds, 1, 100, 0.01, {"test": (x_test, y_test)}, nsr_lams=lams)
            best = min(best, time.perf_counter() - start)
        times[name] = best
    return dict(times, overhead=times["nsr"] / times["plain"] - 1)


def cnn_conv_macs(widths: list[int]) -> int:
    """Forward multiply-adds per image of the CNN's two convolutions."""
    c1, c2, _ = widths
    maps = [(s - cnn_net.KERNEL + 1) ** 2 for s in cnn_net.conv_sides()[:2]]  # output positions of each conv layer
    return maps[0] * c1 * cnn_net.KERNEL**2 + maps[1] * c2 * c1 * cnn_net.KERNEL**2


def cnn_train_flops(widths: list[int], images: int) -> float:
    """Training FLOPs of the CNN: 3 x its forward multiply-adds x 2, as `train_flops` counts an MLP's."""
    c2, h = widths[1], widths[2]
    macs = cnn_conv_macs(widths) + c2 * cnn_net.conv_sides()[2] ** 2 * h + h * 10
    return 6.0 * macs * images


def cnn_epochs(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
               images: int = 60000, seeds: int = 5) -> dict:
    """One CNN epoch of `seeds` models on the first `images` images, stacked and one at a time.

    Both evaluate the test set after the epoch (timed, not counted in FLOPs),
    both start from the same He draw and see each seed's batches in the
    engine's order.
    """
    x, y = x[:images], y[:images]
    ids = list(range(seeds))
    model = conv_init.init_base(cnn_widths(), [seeding.generator(s, "init") for s in ids], "he")
    cnn_engine.train(model, x[:200], y[:200], ids, 1, 100, 0.1, {})  # warm-up
    start = time.perf_counter()
    cnn_engine.train(model, x, y, ids, 1, 100, 0.1, {"test": (x_test, y_test)})
    stacked = time.perf_counter() - start
    c1, c2, h = cnn_widths()
    start = time.perf_counter()
    for s in ids:
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, c1, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(c1, c2, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(c2 * 16, h), torch.nn.ReLU(), torch.nn.Linear(h, 10))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        order = torch.randperm(x.shape[0], generator=seeding.generator(s, "data"))
        for i in range(0, x.shape[0], 100):
            idx = order[i : i + 100]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx].view(-1, 1, 28, 28)), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            (net(x_test.view(-1, 1, 28, 28)).argmax(1) != y_test).float().mean()
    loop = time.perf_counter() - start
    flops = cnn_train_flops(cnn_widths(), x.shape[0]) * seeds
    return {"models": seeds, "images": x.shape[0], "seconds": stacked, "loop_seconds": loop,
            "gflops": flops / stacked / 1e9, "loop_gflops": flops / loop / 1e9}


def cnn_conv_ceiling(seeds: int = 5, batches: int = 100, batch: int = 100) -> float:
    """GFLOP/s of the CNN's two grouped convolutions alone, forward and both backward passes, in the engine's
    layout (channels-last, one group per model) on `batches` batches: the ceiling of the CNN engine's rate on
    this machine, as sgemm is the MLP engine's."""
    c1, c2, _ = cnn_widths()
    k, sides = cnn_net.KERNEL, cnn_net.conv_sides()
    x = cnn_net.layout(torch.randn(batch, 784), seeds)
    h = torch.randn(batch, seeds * c1, sides[1], sides[1]).contiguous(memory_format=torch.channels_last)
    h.requires_grad_(True)
    w1 = torch.randn(seeds * c1, 1, k, k, requires_grad=True)
    w2 = torch.randn(seeds * c2, c1, k, k, requires_grad=True)

    grads = []

    def step():
        z = [torch.nn.functional.conv2d(x, w1, groups=seeds),  # the first layer needs no input gradient
             torch.nn.functional.conv2d(h, w2, groups=seeds)]
        if not grads:  # dense, in the outputs' memory format (a sum's expanded ones would take a slow path)
            grads.extend(torch.randn_like(t) for t in z)
        torch.autograd.backward(z, grads)

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    seconds = time.perf_counter() - start
    # As cnn_train_flops counts them: 3 passes (the first layer's input gradient counted too, for one ratio).
    flops = 6.0 * cnn_conv_macs(cnn_widths()) * batch * batches * seeds
    return flops / seconds / 1e9


def cnn_line(r: dict, gemm: float) -> str:
    """The CNN's row of the table: the stacked engine, with the loop's time and the speedup after it."""
    label = f"(d) CNN engine, {r['models']} seeds stacked" + ("" if r["images"] == 60000 else f", {r['images']} img")
    return (f"{label:44s} {r['seconds']:9.2f} {r['models']:6d} {r['seconds'] / r['models']:13.3f} "
            f"{r['gflops']:8.1f} {r['gflops'] / gemm:7.0%}  (loop {r['loop_seconds']:.2f} s, "
            f"{r['loop_gflops'] / gemm:.0%} of peak; x{r['loop_seconds'] / r['seconds']:.1f})")


def peak_rss_depth3_cell(threads: int | None) -> float:
    """Peak RSS (MB) of a child process that trains one depth-3 cell of 5 seeds for one epoch."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from ibci.cli import compose; from ibci.runs.runner import load_splits; from ibci import seeding; from ibci.train import mlp as engine\n"
        "from ibci.init.bases import init_base; from ibci.nets.spec import layer_sizes\n"
        "cfg = compose(['depth=3', 'epochs=1'] + %r)\n"
        "s = load_splits(cfg); x, y = s.pop('train')\n"
        "m = init_base(layer_sizes(3), [seeding.generator(i, 'init') for i in range(5)], 'he')\n"
        "engine.train(m, x, y, list(range(5)), 1, 100, 0.1, s)\n"
        "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    ) % (str(ROOT), [f"threads={threads}"] if threads else [])
    # The child reports its own peak: RUSAGE_CHILDREN would also count the DataLoader workers of (a).
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


NSR_COST_REPEATS = 3  # epochs each child times; the fastest counts


def nsr_cost(threads: int | None) -> dict:
    """NSR's cost per step on MLP-4 (5 seeds, the official lambda, Table 3's recipe) against plain training: the
    fastest of NSR_COST_REPEATS epochs over its steps, and the most memory (MB) a child process that does only
    that holds while it trains, beyond the data it loaded first."""
    # Memory: the child's resident set sampled every millisecond while it trains, less what it held before
    # (the data): a process's peak RSS alone is the data set's loading, the same with and without NSR.
    code = (
        "import os, sys, threading, time; sys.path.insert(0, %r)\n"
        "from ibci.cli import compose; from ibci.runs.runner import load_splits; from ibci import seeding\n"
        "from ibci.train import mlp as engine; from ibci.init.bases import init_base\n"
        "page = os.sysconf('SC_PAGE_SIZE')\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * page\n"
        "cfg = compose(['experiment=table3', 'net=mlp4', 'epochs=1'] + %r)\n"
        "s = load_splits(cfg); x, y = s.pop('train'); best = float('inf'); base = rss(); peak = [base]; on = [True]\n"
        "def watch():\n"
        "    while on[0]: peak[0] = max(peak[0], rss()); time.sleep(0.001)\n"
        "w = threading.Thread(target=watch); w.start()\n"
        "for _ in range(%d):\n"
        "    m = init_base([784, 256, 100, 10], [seeding.generator(i, 'init') for i in range(5)], 'xavier')\n"
        "    t = time.perf_counter(); engine.train(m, x, y, list(range(5)), 1, 100, 0.01, {}, nsr_lams=%s)\n"
        "    best = min(best, time.perf_counter() - t)\n"
        "on[0] = False; w.join()\n"
        "print(best / -(-x.shape[0] // 100), peak[0] - base)\n"
    )
    out = {"network": "mlp4", "repeats": NSR_COST_REPEATS, "seeds": 5}
    for name, lams in (("plain", None), ("nsr", [7.4865])):
        child = code % (str(ROOT), [f"threads={threads}"] if threads else [], NSR_COST_REPEATS, lams)
        step, rss = subprocess.run([sys.executable, "-c", child], check=True, capture_output=True,
                                   text=True).stdout.split()[-2:]
        out.setdefault("time", {})[name] = float(step)
        out.setdefault("memory", {})[name] = int(rss) / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--experiment", default="table1", help="whose stacking to measure (table1 or table2)")
    ap.add_argument("--data", default=os.environ.get("IBCI_DATA", str(ROOT / "data")),
                    help="MNIST data root (default: $IBCI_DATA, else data/)")
    ap.add_argument("--cnn-images", type=int, default=60000,
                    help="training images of the CNN's epoch (default: all 60,000; fewer for a quick check)")
    ap.add_argument("--json", default=None, help="also write the measurements here (the NSR verdict's C8 reads "
                    "<results_dir>/bench.json)")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    reuse_freed_memory()  # as every training process does (ibci.runs.runner.train_group)
    os.environ["IBCI_DATA"] = args.data
    from ibci.data import load_mnist

    mnist = load_mnist(args.data)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads")

    # This machine's speed drifts by up to 1.5x within minutes (neighbours on the host), so each ratio is taken
    # against sgemm measured just before and just after its own section, the higher of the two.
    rates = [sgemm_gflops()]
    conv = conventional_epoch(args.data)
    rates.append(sgemm_gflops())
    torch.set_num_threads(threads)  # DataLoader workers may have changed it
    ours = engine_epochs(args.experiment, threads)
    rates.append(sgemm_gflops())
    camp = campaign_seconds(mnist.x_train, mnist.y_train)
    nsr = nsr_overhead(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)
    rss = peak_rss_depth3_cell(threads)
    cost = nsr_cost(threads)
    rates.append(sgemm_gflops())
    cnn = cnn_epochs(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test, args.cnn_images)
    rates.append(sgemm_gflops())
    conv_rate = cnn_conv_ceiling()
    rates.append(sgemm_gflops())
    gemm = max(rates)
    peak_a, peak_b, peak_d, peak_conv = (max(rates[i : i + 2]) for i in (0, 1, 3, 4))

    conv_flops = train_flops(layer_sizes(2), 60000) / conv / 1e9
    print(f"\n{'what':44s} {'s/epoch':>9s} {'models':>6s} {'s/model-epoch':>13s} {'GFLOP/s':>8s} {'of peak':>7s}")
    print(f"{'(c) sgemm 2048^3, float32, the highest of':44s} {'':>9s} {'':>6s} {'':>13s} {gemm:8.1f} {1:7.0%}  "
          f"({' '.join(f'{r:.0f}' for r in rates)} between the sections; each row's % is of its own)")
    print(f"{'(a) conventional loop, depth 2':44s} {conv:9.2f} {1:6d} {conv:13.3f} {conv_flops:8.1f} {conv_flops / peak_a:7.0%}")
    for d, r in ours.items():
        label = f"(b) engine, depth {d}, {r['cells']} cells x 5 seeds"
        print(f"{label:44s} {r['seconds']:9.2f} {r['models']:6d} {r['s_per_model_epoch']:13.3f} "
              f"{r['gflops']:8.1f} {r['gflops'] / peak_b:7.0%}")
    for d, s in camp.items():
        print(f"{f'campaign, depth {d}, 60k images, per seed':44s} {s:9.2f}")
    print(f"{'NSR, MLP-4, 4 cells x 5 seeds: plain / with NSR':44s} {nsr['plain']:9.2f} / {nsr['nsr']:.2f}")
    print(cnn_line(cnn, peak_d))
    print(f"{'(d) its two grouped convolutions alone':44s} {'':>9s} {'':>6s} {'':>13s} {conv_rate:8.1f} "
          f"{conv_rate / peak_conv:7.0%}  (the CNN engine at {cnn['gflops'] / conv_rate:.0%} of them)")
    d2 = ours[2]
    general_gflops = d2["gflops"] * d2["seconds"] / d2["general_seconds"]
    print(f"{'(e) general engine, depth 2, ' + str(d2['cells']) + ' cells x 5 seeds':44s} {d2['general_seconds']:9.2f} "
          f"{d2['models']:6d} {d2['general_seconds'] / d2['models']:13.3f} {general_gflops:8.1f} "
          f"{general_gflops / peak_b:7.0%}")
    print(f"peak RSS of a depth-3 cell with 5 seeds: {rss:.0f} MB")
    print(f"{'NSR, MLP-4, 5 seeds, per step: plain / NSR':44s} {cost['time']['plain'] * 1e3:9.2f} / "
          f"{cost['time']['nsr'] * 1e3:.2f} ms, training memory {cost['memory']['plain']:.1f} / "
          f"{cost['memory']['nsr']:.1f} MB")

    # The paper's protocol: every cell of Tables 1 and 2 (10 per depth) x 5 seeds x 100 epochs, plus campaigns.
    per_depth_cells = PAPER_CELLS // len(DEPTHS)
    minutes = sum(per_depth_cells * 5 * PAPER_EPOCHS * r["s_per_model_epoch"] for r in ours.values())
    minutes += sum(CAMPAIGN_INITS * 5 * camp[d] for d in DEPTHS)
    minutes /= 60
    speedup = conv / ours[2]["s_per_model_epoch"]
    print(f"speedup={speedup:.1f} peak_fraction_d2={ours[2]['gflops'] / peak_b:.2f} "
          f"peak_fraction_d3={ours[3]['gflops'] / peak_b:.2f} peak_fraction_d5={ours[5]['gflops'] / peak_b:.2f} "
          f"protocol_minutes={minutes:.0f} nsr_overhead={nsr['overhead']:.3f} "
          f"cnn_speedup={cnn['loop_seconds'] / cnn['seconds']:.2f} cnn_peak_fraction={cnn['gflops'] / peak_d:.2f} "
          f"cnn_conv_fraction={conv_rate / peak_conv:.2f} general_vs_hand_d2={d2['general_seconds'] / d2['seconds']:.2f}")
    if args.json:
        from ibci.files import write_json

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(args.json), {"machine": {"cores": os.cpu_count(), "threads": threads,
                                                 "torch": torch.__version__, "sgemm_gflops": gemm,
                                                 "sgemm_between_sections": rates},
                                     "nsr_cost": cost, "nsr_overhead": nsr, "peak_rss_depth3_mb": rss})


if __name__ == "__main__":
    main()
