"""ibci.init_ on a user's nn.Sequential: the same numbers as the suite's own initializations."""

import pytest
import torch
from torch import nn

import ibci
from ibci.init import campaign
from ibci.errors import UserError
from ibci.init.bases import init_base, sample_base
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


class Residual(nn.Module):
    """A user's own module: a residual block between two Linear layers."""

    def __init__(self):
        super().__init__()
        self.inp, self.block, self.head = nn.Linear(30, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        return self.head(torch.relu(h + self.block(h)))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 4 * 4, 16), nn.GELU(),
                                        nn.Linear(16, 4))

    def forward(self, x):
        return self.classifier(self.features(x))


def _images(n=400, classes=4):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % classes
    return torch.rand(n, 1, 12, 12, generator=g) + 0.2 * y.view(-1, 1, 1, 1), y


ORDINARY = {  # the models people write, each with the data it takes
    "flatten first": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(144, 20), nn.ReLU(), nn.Linear(20, 4)), _images),
    "dropout": (lambda: nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4)), _data),
    "batchnorm": (lambda: nn.Sequential(nn.Linear(30, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)), _data),
    "gelu": (lambda: nn.Sequential(nn.Linear(30, 16), nn.GELU(), nn.Linear(16, 4)), _data),
    "tanh": (lambda: nn.Sequential(nn.Linear(30, 8), nn.Tanh(), nn.Linear(8, 4)), _data),
    "relu last": (lambda: nn.Sequential(nn.Linear(30, 4), nn.ReLU()), _data),
    "conv net": (ConvNet, _images),
    "own module": (Residual, _data),
}


@pytest.mark.parametrize("name", list(ORDINARY))
@pytest.mark.parametrize("method", ["ibci", "lsuv", "vanilla"])
def test_ordinary_models_are_initialized(name, method):
    make, data = ORDINARY[name]
    model, (x, y) = make(), data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = ibci.init_(model, (x, y), method=method, seed=0)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert all(not torch.equal(m.weight, before[k]) for k, m in zip(
        [k for k in before if k.endswith("weight") and before[k].dim() > 1], layers))
    if "layers" in info:  # the general path says what it did to each layer, in forward order
        assert [e["neurons"] for e in info["layers"]] == [m.weight.shape[0] for m in layers]
        if method == "ibci":
            assert all(sum(e["quotas"]) == e["neurons"] for e in info["layers"])
    assert model.training  # left in the mode it came in


class WithOthers(nn.Module):
    """A ConvTranspose1d (a kind init_ does not initialize), a Linear the forward pass never reaches, a BatchNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.ConvTranspose1d(1, 3, 5)
        self.fc = nn.Linear(3 * 34, 12)
        self.bn = nn.BatchNorm1d(12)
        self.out = nn.Linear(12, 4)
        self.spare = nn.Linear(7, 7)

    def forward(self, x):
        h = torch.relu(self.conv(x.unsqueeze(1))).flatten(1)
        return self.out(torch.relu(self.bn(self.fc(h))))


@pytest.mark.parametrize("method", ["ibci", "lsuv"])
def test_what_init_leaves_alone_it_names_and_does_not_change(method):
    model, (x, y) = WithOthers(), _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = ibci.init_(model, (x, y), method=method, seed=0)
    assert [e["layer"] for e in info["layers"]] == ["fc", "out"]
    assert info["untouched"] == [{"layer": "conv", "kind": "ConvTranspose1d"}, {"layer": "spare", "kind": "Linear"}]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) == k.startswith(("conv.", "spare.", "bn.")), k


def test_a_grouped_convs_groups_are_campaigns_of_their_own():
    # Group g of a 2-group first layer reads channel g only and draws its pool after the groups before it: it
    # must elect what an ungrouped conv on channel g alone elects from a generator in that state.
    g = torch.Generator().manual_seed(1)
    y = torch.arange(300) % 4
    x = torch.rand(300, 2, 8, 8, generator=g) + y.view(-1, 1, 1, 1) / 4
    grouped = nn.Sequential(nn.Conv2d(2, 6, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 4))
    info = ibci.init_(grouped, (x, y), method="ibci", base="he", seed=0)
    for group in (0, 1):
        gen = torch.Generator().manual_seed(0)
        for _ in range(group):  # the pools of the groups before it: 5 candidates per neuron, He on 9 inputs
            sample_base("he", 9, 27, 15, gen)
        alone = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4))
        ibci.init_(alone, (x[:, group : group + 1], y), method="ibci", base="he", generator=gen)
        assert torch.equal(grouped[0].weight[3 * group : 3 * group + 3], alone[0].weight), group
    first = info["layers"][0]
    assert [sum(p["quotas"]) for p in first["per_group"]] == [3, 3] and sum(first["quotas"]) == 6
    assert first["pool_size"] == sum(p["pool_size"] for p in first["per_group"])
    for method in ("lsuv", "vanilla"):  # the same layer under the other methods: PyTorch's fans, a finite draw
        model = nn.Sequential(nn.Conv2d(2, 6, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 4))
        assert ibci.init_(model, (x, y), method=method, seed=0)["layers"][0]["fan_in"] == 9
        assert torch.isfinite(model[0].weight).all()


@pytest.mark.parametrize("method", ["ibci", "lsuv"])
def test_a_conv1d_is_initialized_as_the_conv2d_it_equals(method):
    # Conv1d(k) on [N, C, L] is Conv2d((1, k)) on [N, C, 1, L]: the same fans, draws, responses, elections.
    x, y = _data()
    one = nn.Sequential(nn.Conv1d(1, 4, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13, 4))
    two = nn.Sequential(nn.Conv2d(1, 4, (1, 5), stride=(1, 2)), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13, 4))
    ibci.init_(one, (x.unsqueeze(1), y), method=method, seed=0)
    ibci.init_(two, (x.view(-1, 1, 1, 30), y), method=method, seed=0)
    assert torch.allclose(one[0].weight, two[0].weight.squeeze(2), atol=1e-6)
    assert torch.allclose(one[3].weight, two[3].weight, atol=1e-6)


class Tokens(nn.Module):
    """A Linear on every token of [N, T, D] (as in a transformer's MLP), then a mean over tokens and a head."""

    def __init__(self, token_layer: nn.Module):
        super().__init__()
        self.tokens, self.head = token_layer, nn.Linear(16, 4)

    def forward(self, x):
        h = self.tokens(x) if isinstance(self.tokens, nn.Linear) else self.tokens(x.transpose(1, 2)).transpose(1, 2)
        return self.head(torch.relu(h).mean(1))


@pytest.mark.parametrize("method", ["ibci", "lsuv"])
def test_a_linear_on_tokens_is_initialized_as_the_1x1_conv_it_equals(method):
    x, y = _data()
    x = x.view(-1, 5, 6)
    linear, conv = Tokens(nn.Linear(6, 16)), Tokens(nn.Conv1d(6, 16, 1))
    ibci.init_(linear, (x, y), method=method, seed=0)
    ibci.init_(conv, (x, y), method=method, seed=0)
    assert torch.allclose(linear.tokens.weight, conv.tokens.weight.squeeze(2), atol=1e-6)
    assert torch.allclose(linear.head.weight, conv.head.weight, atol=1e-6)


class Text(nn.Module):
    """Token ids through an nn.Embedding, a Linear on every token, a mean over tokens, a head."""

    def __init__(self):
        super().__init__()
        self.emb, self.fc, self.head = nn.Embedding(50, 16), nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc(self.emb(x))).mean(1))


@pytest.mark.parametrize("method", ["ibci", "lsuv", "vanilla"])
def test_token_ids_reach_an_embedding_as_integers(method):
    x, y = torch.randint(0, 50, (400, 7), generator=torch.Generator().manual_seed(0)), torch.arange(400) % 4
    model = Text()
    embedding = model.emb.weight.clone()
    info = ibci.init_(model, (x, y), method=method, seed=0)
    assert [e["layer"] for e in info["layers"]] == ["fc", "head"]
    assert info["untouched"] == [{"layer": "emb", "kind": "Embedding"}] and torch.equal(model.emb.weight, embedding)


@pytest.mark.parametrize("method", ["ibci", "lsuv"])
def test_a_float64_model_is_initialized_as_its_float32_twin(method):
    x, y = _data()
    single = nn.Sequential(nn.Linear(30, 16), nn.GELU(), nn.Linear(16, 4))
    double = nn.Sequential(nn.Linear(30, 16), nn.GELU(), nn.Linear(16, 4)).double()
    ibci.init_(single, (x, y), method=method, seed=0)
    ibci.init_(double, (x, y), method=method, seed=0)
    assert double[0].weight.dtype == torch.float64
    for a, b in zip(single.parameters(), double.parameters()):
        assert torch.allclose(a.double(), b, atol=1e-5)


def test_a_candidates_response_is_the_layers_own_convolution():
    from ibci.init.modules import responses

    layer = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", stride=2)
    nn.init.zeros_(layer.bias)
    inp = torch.randn(5, 2, 7, 7)
    columns = layer.weight.detach().reshape(3, -1).T
    got = responses(layer, inp, columns, 0.0, lambda t: t, "mean")
    assert torch.allclose(got, layer(inp).mean((2, 3)), atol=1e-6)


def test_lsuv_on_any_model_gives_each_layer_unit_output_variance():
    model, (x, y) = ConvNet(), _images()
    ibci.init_(model, (x, y), method="lsuv", seed=0, num_samples=400, tol=0.01)
    model.eval()
    outs = {}
    hooks = [m.register_forward_hook(lambda m, _, o, n=n: outs.__setitem__(n, o)) for n, m in model.named_modules()
             if isinstance(m, (nn.Linear, nn.Conv2d))]
    model(x)
    for h in hooks:
        h.remove()
    # Each layer was rescaled on the inputs it got when it was its turn; later layers' rescaling leaves it at 1.
    assert all(abs(o.var().item() - 1) < 0.02 for o in outs.values()), {n: o.var().item() for n, o in outs.items()}


class Block(nn.Module):
    """torchvision's residual block in small: the shortcut's 1x1 conv runs after the block's own convs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1, self.bn = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(8)
        self.conv2, self.down = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(4, 8, 1, stride=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        out = self.conv2(torch.relu(self.bn(self.conv1(h))))
        return self.fc(torch.relu(out + self.down(h)).mean((2, 3)))


@pytest.mark.parametrize("method", ["ibci", "lsuv"])
def test_one_pass_initializes_as_a_pass_per_layer(method, monkeypatch):
    """Data that fits one chunk takes one forward pass for all layers, each initialized by a pre-hook as the
    pass reaches it; more data takes passes stopped at each layer. Both give each layer the same inputs."""
    from ibci.init import modules

    (x, y), options = _images(), {"num_samples": 400} if method == "lsuv" else {}
    one, per_layer = Block(), Block()
    per_layer.load_state_dict(one.state_dict())
    a = ibci.init_(one, (x, y), method=method, seed=0, **options)
    monkeypatch.setattr(modules, "CHUNK", 399)  # two chunks: a pass per layer and chunk
    b = ibci.init_(per_layer, (x, y), method=method, seed=0, **options)
    assert [e["layer"] for e in a["layers"]] == ["stem", "conv1", "conv2", "down", "fc"]
    for ea, eb in zip(a["layers"], b["layers"]):  # the same elections or rescalings; scores up to the chunks' rounding
        assert ea.pop("mean_chosen_score", 0) == pytest.approx(eb.pop("mean_chosen_score", 0), rel=1e-5)
        assert ea == eb
    for (k, p), q in zip(one.state_dict().items(), per_layer.state_dict().values()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), k


def test_a_dataloader_is_the_same_as_its_tensors():
    from torch.utils.data import DataLoader, TensorDataset

    (x, y), a, b = _images(), ConvNet(), ConvNet()
    ibci.init_(a, (x, y), method="ibci", seed=3)
    ibci.init_(b, DataLoader(TensorDataset(x, y), batch_size=64), method="ibci", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_general_path_elects_as_the_suite_does_on_a_plain_mlp():
    """A plain MLP wrapped in a module of one's own goes the general way: the same neurons, to float rounding."""

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net(30, 16, 12, 4)

        def forward(self, x):
            return self.net(x)

    x, y = _data()
    plain, wrapped = _net(30, 16, 12, 4), Wrapped()
    ibci.init_(plain, x, y, method="ibci", base="he", seed=7)
    ibci.init_(wrapped, x, y, method="ibci", base="he", seed=7)
    for p, q in zip(plain.state_dict().values(), wrapped.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("model, data, call, words", [
    (_net(30, 8, 4), lambda: (_data()[0].index_fill(0, torch.tensor([3]), float("nan")), _data()[1]), {},
     "NaN or infinite"),
    (_net(30, 8, 3), _data, {}, "labels 0..3 but the model has 3 outputs"),
    (ConvNet(), _data, {}, "does not fit the model"),
    (nn.Sequential(nn.Flatten(), nn.ReLU()), _data, {}, "no nn.Linear or nn.Conv1d/2d/3d"),
    (_net(30, 8, 5), _data, {}, "class(es) 4 of the model's 5 are absent"),
    (_net(30, 8, 4), lambda: [(torch.rand(4, 30),) for _ in range(3)], {}, "yields tuple of 1; init_ needs (x, y)"),
    (_net(30, 8, 4), _data, {"method": "xavier"}, "method='xavier' is not one of"),
    (_net(30, 8, 4), _data, {"pool": 3}, "takes no option pool"),
    (Residual(), _data, {"reading": "authors"}, "reading=authors is the authors' code"),
    (_net(20, 8, 4), _data, {}, "the model takes [N, 20]"),
    (nn.Sequential(nn.Linear(30, 8), nn.GELU(), nn.Linear(8, 1200), nn.GELU(), nn.Linear(1200, 4)), _data, {},
     "give a pool of 1000 candidates for a layer of 1200 neurons"),  # before the first layer is elected
])
def test_misuse_is_one_clear_error_and_changes_nothing(model, data, call, words):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = data()
    with pytest.raises(UserError) as e:
        ibci.init_(model, got if not isinstance(got, tuple) else got, **call)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
