"""The CNN of `net=cnn` (ibci.conv): its stacked training, its campaign for conv layers, LSUV and the wiring."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import run
from ibci.init import campaign
from ibci.init import conv as conv_init
from ibci.nets.cnn import StackedCNN, layer_fans
from ibci.runs.validate import check_cnn
from ibci.init.settings import pool_size
from ibci.train import cnn as cnn_engine
from ibci.init import bases
from ibci.runs import records
from ibci import seeding
from ibci.cli import compose
from ibci.errors import UserError
from ibci.nets.spec import cnn_widths
from ibci.runs.runner import stack_key

WIDTHS = [4, 6, 16]  # small enough for tests of a few seconds; the default is cnn_widths()


def _images(n=300, seed=0):
    """28x28 images whose classes differ: a prototype per class plus noise, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 784, generator=g)
    y = torch.arange(n) % 10
    return 0.6 * protos[y] + 0.4 * torch.rand(n, 784, generator=g), y


def _module(model: StackedCNN, s: int) -> nn.Sequential:
    """Model s of a stack as the conventional nn.Sequential (nn.Linear stores W transposed)."""
    (c1, c2), h = (w.shape[1] for w in model.conv_weights), model.weights[0].shape[2]
    net = nn.Sequential(nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c1, c2, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(c2 * 16, h), nn.ReLU(), nn.Linear(h, 10))
    with torch.no_grad():
        for layer, W, b in zip((net[0], net[3]), model.conv_weights, model.conv_biases):
            layer.weight.copy_(W[s])
            layer.bias.copy_(b[s])
        for layer, W, b in zip((net[7], net[9]), model.weights, model.biases):
            layer.weight.copy_(W[s].T)
            layer.bias.copy_(b[s])
    return net


def _assert_same(model: StackedCNN, s: int, net: nn.Sequential, **tol) -> None:
    for layer, W, b in zip((net[0], net[3]), model.conv_weights, model.conv_biases):
        torch.testing.assert_close(W[s], layer.weight.detach(), **tol)
        torch.testing.assert_close(b[s], layer.bias.detach(), **tol)
    for layer, W, b in zip((net[7], net[9]), model.weights, model.biases):
        torch.testing.assert_close(W[s], layer.weight.T.detach(), **tol)
        torch.testing.assert_close(b[s], layer.bias.detach(), **tol)


# ---- the network and its training ---------------------------------------------------


def test_logits_match_nn_modules_for_shared_and_per_model_inputs():
    x, _ = _images(120)
    model = conv_init.init_base(WIDTHS, [seeding.generator(s, "init") for s in range(3)], "xavier", bias=0.05)
    nets = [_module(model, s) for s in range(3)]
    shared = cnn_engine.logits_shared(model, x)
    per_model = torch.stack([x, x.flip(0), x.roll(7, 0)])
    own = model.forward(per_model)
    for s, net in enumerate(nets):
        torch.testing.assert_close(shared[s], net(x.view(-1, 1, 28, 28)), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(own[s], net(per_model[s].view(-1, 1, 28, 28)), atol=1e-5, rtol=1e-5)


def test_stacked_training_matches_each_seed_trained_alone(train_alone):
    x, y = _images(200)
    seeds = [0, 1, 2]
    model = conv_init.init_base(WIDTHS, [seeding.generator(s, "init") for s in seeds], "he", bias=0.01)
    alone = [_module(model, s) for s in range(len(seeds))]
    trained, hist = cnn_engine.train(model, x, y, seeds, epochs=2, batch_size=64, lr=0.1, eval_sets={})
    for s, seed in enumerate(seeds):
        # 4 steps an epoch, the last one of 8 images
        net = train_alone(alone[s], x, y, seed, epochs=2, batch_size=64, lr=0.1, image_shape=(1, 28, 28))
        _assert_same(trained, s, net, atol=2e-5, rtol=1e-4)
    assert hist.diverged_epoch == [None] * 3
    _assert_same(model, 0, _module(conv_init.init_base(WIDTHS, [seeding.generator(0, "init")], "he", bias=0.01), 0),
                 atol=0, rtol=0)  # the stack given is left as it was


def test_a_diverging_model_is_frozen_and_the_others_keep_training():
    x, y = _images(200)
    model = conv_init.init_base(WIDTHS, [seeding.generator(s, "init") for s in range(2)], "he")
    model.conv_weights[0][1].mul_(1e30)  # model 1 overflows on its first step
    model.weights[0][1].mul_(1e30)
    trained, hist = cnn_engine.train(model, x, y, [0, 1], 2, 50, 0.1, {"test": (x, y)})
    assert hist.diverged_epoch == [None, 1]
    assert math.isnan(hist.errors["test"][1, 1]) and math.isnan(hist.train_loss[2, 1])
    assert math.isnan(hist.intra_var["test"][2, 1]) and not math.isnan(hist.intra_var["test"][2, 0])
    assert hist.errors["test"].shape == (3, 2) and torch.isnan(hist.train_loss[0]).all()
    assert hist.train_loss[2, 0] < hist.train_loss[1, 0]
    assert all(torch.isfinite(p).all() for p in trained.parameters())


# ---- base draws and LSUV --------------------------------------------------------------


@pytest.mark.parametrize("base", ["xavier", "he"])
def test_base_draw_uses_the_fans_torch_gives_a_conv(base):
    model = conv_init.init_base(cnn_widths(), [seeding.generator(s, "init") for s in range(2)], base)
    for W in model.conv_weights:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(W[0])
        expected = math.sqrt(2 / (fan_in + fan_out)) if base == "xavier" else math.sqrt(2 / fan_in)
        assert abs(W.std().item() - expected) < 5 * expected / math.sqrt(2 * W.numel())
    assert [tuple(W.shape[1:]) for W in model.conv_weights] == [(20, 1, 5, 5), (50, 20, 5, 5)]
    assert [tuple(W.shape[1:]) for W in model.weights] == [(800, 500), (500, 10)]


def test_lsuv_gives_unit_output_variance_in_every_layer():
    x, _ = _images(400)
    model = conv_init.init_base(WIDTHS, [seeding.generator(s, "init") for s in range(2)], "xavier", bias=0.1)
    batches = torch.stack([x[:200], x[200:]])
    iterations = conv_init.lsuv(model, batches, tol=0.02)
    assert len(iterations) == 4
    for s, net in enumerate(_module(model, s) for s in range(2)):
        h = batches[s].view(-1, 1, 28, 28)
        for k, layer in enumerate(net):
            h = layer(h)
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                assert abs(h.var().item() - 1) < 0.02, f"layer {k}"


# ---- the campaign for conv layers -------------------------------------------------------


def _reference_election(cand, score, owner, quotas):
    """The global-scope campaign by brute force: each step, the voting class's free candidate with the
    highest score x (distance to the span of the winners so far) / norm, the span from a fresh QR."""
    cand, score = cand.double(), score.double()
    picked = []
    for c, q in enumerate(quotas.tolist()):
        for _ in range(q):
            resid = cand
            if picked:
                basis = torch.linalg.qr(cand[:, picked])[0]
                resid = cand - basis @ (basis.T @ cand)
            key = score * resid.norm(dim=0) / cand.norm(dim=0)
            key[owner != c] = -math.inf
            key[picked] = -math.inf
            picked.append(int(key.argmax()))
    return picked


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_conv_layers_elect_as_the_mlp_campaign_does(pool):
    x, y = _images(300)
    base, bias, seed = "he", 0.02, 5
    tw = campaign.tie_weights("ibci", 4)
    weights, biases, info = conv_init.ibci_init(WIDTHS, x, y, base, tw, torch.Generator().manual_seed(seed), bias=bias,
                                           conv_pool=pool)
    # Replay the pools: drawn from the base with the conv's fans, layer after layer from the one generator.
    g = torch.Generator().manual_seed(seed)
    fans = layer_fans(WIDTHS)
    pools = [bases.sample_base(base, *fans[l], pool_size(w, 5, 1000), g) for l, w in enumerate(WIDTHS[:2])]
    filters, conv_biases = [], []
    for l, (cand, width) in enumerate(zip(pools, WIDTHS[:2])):
        p, layer = info["pools"][l], info["layers"][l]
        picked = p["picked"]
        assert torch.equal(weights[l], cand[:, picked]) and torch.all(biases[l] == bias)
        # Responses: the ReLU feature map of each candidate filter on the layers elected so far, pooled.
        h = x.view(-1, 1, 28, 28)
        for W, b in zip(filters, conv_biases):
            h = F.max_pool2d(F.relu(F.conv2d(h, W, b)), 2)
        maps = F.relu(F.conv2d(h, cand.T.reshape(-1, h.shape[1], 5, 5)) + bias)
        R = maps.mean((2, 3)) if pool == "mean" else maps.amax((2, 3))
        torch.testing.assert_close(conv_init.conv_responses(x, filters, conv_biases, cand, bias, pool), R)
        # Scores: IIM is each response's variance; the score lies in [0, 1] and reaches both ends.
        torch.testing.assert_close(p["iim"], R.double().var(0, correction=0), rtol=1e-4, atol=1e-9)
        assert p["score"].min() == 0 and p["score"].max() == 1
        class_means = torch.stack([R[y == c].mean(0) for c in range(10)])
        assert torch.equal(p["owner"], class_means.argmax(0))
        # Quotas: the water-filling split of the layer's slots over the classes' candidates.
        counts = torch.bincount(p["owner"], minlength=10)
        assert layer["quotas"] == campaign.class_quotas(counts, width).tolist() and sum(layer["quotas"]) == width
        assert torch.bincount(p["owner"][picked], minlength=10).tolist() == layer["quotas"]
        # Election: class by class, the best score x orthogonal-residual novelty.
        assert picked.tolist() == _reference_election(cand, p["score"], p["owner"], torch.tensor(layer["quotas"]))
        assert torch.linalg.matrix_rank(cand[:, picked]) == width  # novel filters: width <= fan_in here
        filters.append(cand[:, picked].T.reshape(width, -1, 5, 5))
        conv_biases.append(biases[l])
    assert [w.shape for w in weights] == [(25, 4), (100, 6), (96, 16), (16, 10)]
    assert [layer["tie_weight"] for layer in info["layers"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    json.dumps(info["layers"])


def test_initialize_from_a_config_every_init():
    x, y = _images(200)
    gens = lambda: [seeding.generator(s, "init") for s in range(2)]  # noqa: E731
    for init in ("vanilla", "lsuv", "ibci", "tie", "iim"):
        sample = [] if init == "vanilla" else ["init.num_samples=100"]
        cfg = compose(["net=cnn", f"init={init}", f"hidden={WIDTHS}".replace(" ", ""), *sample])
        model, info = conv_init.initialize(cfg, x, y, gens())
        assert model.num_models == 2 and model.num_layers == 4
        json.dumps(info)
        if init in ("tie", "iim"):
            assert info["tie_weights"] == [1.0 if init == "tie" else 0.0] * 4
    # The same seeds draw the same campaign.
    a, _ = conv_init.initialize(cfg, x, y, gens())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters()))


# ---- wiring: config, cell ids, runner ----------------------------------------------------


def test_the_config_names_the_cnn_and_leaves_mlp_cells_alone():
    cfg = compose(["net=cnn", "init=ibci"])
    assert cfg["hidden"] == cnn_widths() and cfg["init"]["conv_pool"] == "mean"
    assert records.cell_id(cfg).startswith("xavier-ibci-cnn-mnist-min-s5e100-")
    assert "-cnn8x16x32-" in records.cell_id(compose(["net=cnn", "hidden=[8,16,32]"]))
    assert records.cell_id(compose(["net=cnn", "init=ibci", "init.conv_pool=max"])) != records.cell_id(cfg)
    mlp = compose(["hidden=[20,50,500]"])
    assert "conv_pool" not in compose(["init=ibci"])["init"] and "arch" not in mlp
    assert stack_key(mlp) != stack_key(compose(["net=cnn"]))


@pytest.mark.parametrize("overrides, parts", [
    (["hidden=[8,16]"], ["hidden=[8, 16]", "3 widths"]),
    (["base=authors"], ["base=authors", "xavier, he or normal"]),
    (["init=ibci", "init.reading=authors"], ["init.reading=authors", "init.reading=paper"]),
    (["init=tie", "init.conv_pool=median"], ["init.conv_pool='median'", "mean, max"]),
])
def test_settings_the_cnn_cannot_honour_are_one_line(overrides, parts):
    with pytest.raises(UserError) as e:
        check_cnn(compose(["net=cnn", *overrides]))
    assert "\n" not in str(e.value) and all(p in str(e.value) for p in parts)


def test_nsr_on_the_cnn_is_on_its_logits_and_other_readings_are_refused():
    from ibci.runs.validate import trains_on_general, validate

    cfg = compose(["net=cnn", "reg=nsr"])
    validate(cfg)
    assert not trains_on_general(cfg) and trains_on_general(compose(["net=cnn", "reg=l2"]))
    for overrides, part in ((["reg=nsr", "reg.reading=penultimate"], "reg.reading=logits"),
                            (["batchnorm=true"], "batchnorm and dropout are for MLPs"),
                            (["reg=nsr", "observe=true"], "observe=true is for MLPs")):
        with pytest.raises(UserError) as e:
            validate(compose(["net=cnn", *overrides]))
        assert "\n" not in str(e.value) and part in str(e.value), str(e.value)


def test_a_cnn_cell_writes_the_same_record_and_curves_as_an_mlp(small_cfg):
    cfg = small_cfg("net=cnn", "init=ibci", f"hidden={WIDTHS}".replace(" ", ""), "threads=1",
                    "data.train_limit=300", "init.num_samples=300")
    rec = run.run_cell(cfg)
    run_dir = Path(cfg["results_dir"]) / "runs" / rec["cell_id"]
    assert records.read_record(run_dir) is not None and rec["cell"]["net"] == "cnn4x6x16"
    assert len(rec["init_info"]["seeds"][0]["layers"]) == 4
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,seed,train_loss,test_error,test_intra_var" and len(lines) == 1 + 2 * 2
    for s in rec["seeds"]:
        assert 0 <= s["min_error"] <= 100 and not s["diverged"]
