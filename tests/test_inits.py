import math

import pytest
import torch

from ibci.init import bases
from ibci.init.lsuv import lsuv
from ibci import seeding
from ibci.errors import UserError
from ibci.nets.spec import layer_sizes


@pytest.mark.parametrize("base", ["xavier", "he"])
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_base_std_matches_formula(base, depth):
    sizes = layer_sizes(depth)
    model = bases.init_base(sizes, [seeding.generator(s, "init") for s in range(4)], base, bias=0.25)
    for W, b, (fi, fo) in zip(model.weights, model.biases, zip(sizes[:-1], sizes[1:])):
        expected = math.sqrt(2 / (fi + fo)) if base == "xavier" else math.sqrt(2 / fi)
        n = W.numel()
        # The sample std of n normal draws is within a few times std/sqrt(2n) of the truth.
        assert abs(W.std().item() - expected) < 5 * expected / math.sqrt(2 * n)
        assert abs(W.mean().item()) < 5 * expected / math.sqrt(n)
        assert torch.all(b == 0.25)


def test_normal_base_uses_given_std():
    model = bases.init_base([784, 512, 10], [torch.Generator().manual_seed(0)], "normal", std=0.01)
    assert model.weights[0].std().item() == pytest.approx(0.01, rel=0.01)
    with pytest.raises(UserError, match="base.std"):
        bases.base_std("normal", 10, 10, std=-1)
    with pytest.raises(UserError, match="xavier, he, normal"):
        bases.base_std("glorot", 10, 10)


def test_models_differ_by_generator_and_repeat_with_same_seed():
    a = bases.init_base([784, 100, 10], [seeding.generator(s, "init") for s in (0, 1)], "he")
    b = bases.init_base([784, 100, 10], [seeding.generator(s, "init") for s in (0, 1)], "he")
    assert torch.equal(a.weights[0], b.weights[0])
    assert not torch.equal(a.weights[0][0], a.weights[0][1])


@pytest.mark.parametrize("base", ["xavier", "he"])
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_lsuv_gives_unit_output_variance_in_every_layer(base, depth, toy_data):
    x, _ = toy_data
    model = bases.init_base(layer_sizes(depth), [seeding.generator(s, "init") for s in range(3)], base, bias=0.1)
    biases = [b.clone() for b in model.biases]
    lsuv(model, x, tol=0.02, max_iter=10)
    h = x.expand(3, *x.shape)
    for l in range(model.num_layers):
        z = torch.baddbmm(model.biases[l].unsqueeze(1), h, model.weights[l])
        assert torch.all((z.var(dim=(1, 2)) - 1).abs() < 0.02), f"layer {l}"
        assert torch.equal(model.biases[l], biases[l])  # weights only
        h = z.relu() if l < model.num_layers - 1 else z


def test_lsuv_with_per_model_batches(toy_data):
    x, _ = toy_data
    model = bases.init_base([784, 100, 10], [seeding.generator(s, "init") for s in range(2)], "xavier")
    batches = torch.stack([x[:300], x[300:]])
    lsuv(model, batches)
    z = torch.baddbmm(model.biases[0].unsqueeze(1), batches, model.weights[0])
    assert torch.all((z.var(dim=(1, 2)) - 1).abs() < 0.02)
