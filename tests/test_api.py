"""ibci.init_ on a user's nn.Sequential: the same numbers as the suite's own initializations."""

import pytest
import torch
from torch import nn

import ibci
from ibci.init import campaign
from ibci.errors import UserError
from ibci.init.bases import init_base
from ibci.init.lsuv import lsuv


def _data(n=600, d=30, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.rand(n, d, generator=g) + torch.nn.functional.one_hot(y, d).float()
    return x, y


def _net(*widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def test_ibci_equals_the_campaign_on_the_same_generator():
    x, y = _data()
    model = _net(30, 16, 12, 4)
    info = ibci.init_(model, x, y, method="ibci", base="he", generator=torch.Generator().manual_seed(7))
    weights, biases, _ = campaign.ibci_init([30, 16, 12, 4], x, y, "he", campaign.tie_weights("ibci", 3),
                                           torch.Generator().manual_seed(7), num_classes=4)
    for layer, W, b in zip(model[::2], weights, biases):
        assert torch.equal(layer.weight, W.T) and torch.equal(layer.bias, b)
    assert len(info["seeds"][0]["layers"]) == 3
    # The model computes what the stack would: nn.Linear's [out, in] layout is honoured.
    h = torch.relu(x @ weights[0]) @ weights[1]
    assert torch.allclose(model[:3](x), h, atol=1e-5)


def test_lsuv_and_vanilla_equal_the_suites_and_the_options_reach_them():
    x, y = _data()
    model = _net(30, 16, 4)
    ibci.init_(model, x, y, method="lsuv", base="xavier", seed=3, num_samples=100, output_layer=False)
    g = torch.Generator().manual_seed(3)
    stack = init_base([30, 16, 4], [g], "xavier")
    batch = x[torch.randperm(600, generator=g)[:100]]
    lsuv(stack, batch[None], output_layer=False)
    for layer, W in zip(model[::2], stack.weights):
        assert torch.equal(layer.weight, W[0].T)
    ibci.init_(model, x, y, method="vanilla", base="he", seed=3, bias=0.1)
    assert torch.equal(model[0].weight, init_base([30, 16, 4], [torch.Generator().manual_seed(3)], "he").weights[0][0].T)
    assert (model[2].bias == 0.1).all()


def test_the_authors_reading_through_the_api():
    x, y = _data()
    model = _net(30, 20, 4)
    info = ibci.init_(model, x, y, method="tie", reading="authors", seed=1)
    assert info["seeds"][0]["layers"][0]["draw_std"] == pytest.approx((2 / 100) ** 0.5)


@pytest.mark.parametrize("model, call, words", [
    (nn.Sequential(nn.Linear(30, 4), nn.ReLU()), {}, "no ReLU last"),
    (nn.Sequential(nn.Linear(30, 8), nn.Tanh(), nn.Linear(8, 4)), {}, "Linear, ReLU, Linear"),
    (_net(30, 8, 4), {"method": "xavier"}, "method='xavier' is not one of"),
    (_net(30, 8, 4), {"pool": 3}, "takes no option pool"),
    (_net(20, 8, 4), {}, "the model takes [N, 20]"),
])
def test_misuse_is_one_clear_error(model, call, words):
    x, y = _data()
    with pytest.raises(UserError) as e:
        ibci.init_(model, x, y, **call)
    assert words in str(e.value)
