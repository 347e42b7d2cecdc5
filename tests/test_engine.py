import math

import pytest
import torch

from ibci.train import mlp as engine
from ibci.init import bases
from ibci import seeding
from ibci.nets.mlp import StackedMLP
from ibci.nets.spec import layer_sizes


def _sequential(model: StackedMLP, s: int) -> torch.nn.Sequential:
    """Model s of a stack as a conventional nn.Sequential (nn.Linear stores W transposed)."""
    layers = []
    for l in range(model.num_layers):
        lin = torch.nn.Linear(*model.weights[l].shape[1:])
        with torch.no_grad():
            lin.weight.copy_(model.weights[l][s].T)
            lin.bias.copy_(model.biases[l][s])
        layers += [lin, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_stacked_training_matches_each_seed_trained_alone(depth, toy_data, train_alone):
    x, y = toy_data
    seeds = [0, 1, 2]
    model = bases.init_base(layer_sizes(depth), [seeding.generator(s, "init") for s in seeds], "he", bias=0.01)
    alone = [_sequential(model, s) for s in range(len(seeds))]
    model, _ = engine.train(model, x, y, seeds, epochs=2, batch_size=64, lr=0.1, eval_sets={})
    for s, seed in enumerate(seeds):
        net = train_alone(alone[s], x, y, seed, epochs=2, batch_size=64, lr=0.1)
        for l in range(model.num_layers):
            torch.testing.assert_close(model.weights[l][s], net[2 * l].weight.T.detach(), atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(model.biases[l][s], net[2 * l].bias.detach(), atol=2e-5, rtol=1e-4)


def test_error_rate_matches_per_model_forward(toy_data):
    x, y = toy_data
    model = bases.init_base([784, 32, 10], [seeding.generator(s, "init") for s in range(3)], "xavier")
    err = engine.error_rate(model, x, y)
    for s in range(3):
        wrong = (_sequential(model, s)(x).argmax(1) != y).float().mean() * 100
        assert err[s].item() == pytest.approx(wrong.item(), abs=1e-4)


def test_model_forward_matches_the_shared_first_layer_gemm(toy_data):
    x, _ = toy_data
    model = bases.init_base([784, 32, 16, 10], [seeding.generator(s, "init") for s in range(3)], "he", bias=0.1)
    torch.testing.assert_close(model.forward(x), engine.logits_shared(model, x), atol=1e-5, rtol=1e-5)
    hidden = model.forward(x, upto=1)
    assert hidden.shape == (3, 600, 32) and (hidden >= 0).all()


def test_training_learns_and_history_has_epoch_zero(toy_data):
    x, y = toy_data
    model = bases.init_base([784, 100, 10], [seeding.generator(s, "init") for s in range(2)], "he")
    _, hist = engine.train(model, x, y, [0, 1], 3, 50, 0.1, {"test": (x, y)})
    assert hist.errors["test"].shape == (4, 2)
    assert torch.isnan(hist.train_loss[0]).all()
    assert torch.all(hist.errors["test"][-1] < 5) and torch.all(hist.errors["test"][0] > 50)
    assert hist.diverged_epoch == [None, None]


def test_a_diverging_model_is_frozen_and_the_others_keep_training(toy_data):
    x, y = toy_data
    gens = [seeding.generator(s, "init") for s in range(2)]
    model = bases.init_base([784, 32, 32, 32, 32, 10], gens, "he")
    model.weights[0][1].mul_(1e30)  # model 1 overflows on its first step
    model, hist = engine.train(model, x, y, [0, 1], 2, 50, 0.1, {"test": (x, y)})
    assert hist.diverged_epoch == [None, 1]
    assert math.isnan(hist.errors["test"][1, 1]) and math.isnan(hist.train_loss[2, 1])
    assert hist.errors["test"][2, 0] < 20
    assert all(torch.isfinite(w).all() for w in model.weights)


def test_packing_round_trips_and_groups_models_by_seed():
    sizes = [784, 16, 8, 10]
    model = bases.init_base(sizes, [seeding.generator(s, "init") for s in range(6)], "he", bias=0.5)
    packed = engine.Packed(model, [1, 0, 1, 0, 1, 0])
    assert (packed.G, packed.M) == (2, 3) and packed.W1.shape == (2, 784, 3 * 16)
    back = packed.unpack()
    for a, b in zip(model.weights + model.biases, back.weights + back.biases):
        assert torch.equal(a, b)
    uneven = engine.Packed(model, [0, 0, 1, 2, 2, 2])
    assert (uneven.G, uneven.M) == (6, 1)


@pytest.mark.parametrize("depth", [2, 5])
def test_cells_stacked_side_by_side_match_each_cell_alone(depth, toy_data):
    """Two cells x three seeds in one stack (first layers as one GEMM per seed) == each cell alone."""
    x, y = toy_data
    seeds = [0, 1, 2]
    cells = [bases.init_base(layer_sizes(depth), [seeding.generator(s, f"init{c}") for s in seeds], base)
             for c, base in enumerate(["xavier", "he"])]
    together, hist = engine.train(StackedMLP.cat([c.clone() for c in cells]), x, y, seeds * 2, 2, 100, 0.1,
                                  {"test": (x, y)})
    for c, cell in enumerate(cells):
        alone, h_alone = engine.train(cell, x, y, seeds, 2, 100, 0.1, {"test": (x, y)})
        part = together.select(slice(3 * c, 3 * c + 3))
        for a, b in zip(alone.weights + alone.biases, part.weights + part.biases):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(h_alone.errors["test"], hist.errors["test"][:, 3 * c : 3 * c + 3], atol=0.2, rtol=0)
