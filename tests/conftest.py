"""Shared fixtures: the repository root on sys.path (for run.py) and small deterministic data."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests measure properties, not speed; fewer threads avoid oversubscribing a 2-core CI box.
    torch.set_num_threads(1)


@pytest.fixture
def toy_data():
    """A small learnable 10-class problem in [0, 1]^784: class k lights up its own pixel block."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 10
    x = torch.rand(600, 784, generator=g) * 0.3
    for k in range(10):
        x[y == k, k * 78 : (k + 1) * 78] += 0.7
    return x, y


def _train_alone(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, batch_size: int,
                 lr: float, image_shape: tuple = (), penalty=None, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> torch.nn.Module:
    """What a stacked engine must match for one seed: `net` trained by torch.optim.SGD, seeing the
    batches the engine gives that seed (its "data" generator's permutations, the last batch smaller).
    `penalty(y)`, called after each forward pass, joins the loss (`ibci.NSR`)."""
    from ibci import seeding

    g = seeding.generator(seed, "data")
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=g)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            inputs = x[idx].view(-1, *image_shape) if image_shape else x[idx]
            loss = torch.nn.functional.cross_entropy(net(inputs), y[idx])
            (loss if penalty is None else loss + penalty(y[idx])).backward()
            opt.step()
    return net


@pytest.fixture
def train_alone():
    """The plain-PyTorch reference loop (`_train_alone`) for tests of the stacked engines."""
    return _train_alone


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A data root holding verified MNIST IDX files, built once per test session (offline)."""
    from ibci.data import load_mnist

    root = tmp_path_factory.mktemp("data")
    load_mnist(root, download=False)
    return root


@pytest.fixture
def small_cfg(mnist_root, tmp_path):
    """A composed run config for a seconds-long cell; tests override what they need."""
    from ibci.cli import compose

    def make(*overrides):
        return compose(["profile=smoke", "seeds=2", "data.train_limit=500", "progress=false",
                        f"data.root={mnist_root}", f"results_dir={tmp_path / 'results'}", *overrides])

    return make


@pytest.fixture(scope="session")
def composed():
    """`compose_many` with each override list composed once per session: several tests walk every cell of
    every grid, and Hydra takes a tenth of a second or more per cell. Each call gets its own copies."""
    import copy

    from ibci.cli import compose_many

    cache: dict[tuple, dict] = {}

    def compose_jobs(jobs: list[list[str]]) -> list[dict]:
        todo = [j for j in dict.fromkeys(map(tuple, jobs)) if j not in cache]
        cache.update(zip(todo, compose_many([list(j) for j in todo])))
        return [copy.deepcopy(cache[tuple(j)]) for j in jobs]

    return compose_jobs
