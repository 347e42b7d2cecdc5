"""The general stacked engine (ibci.train.general): on the cells the hand-written engines train it computes what
they compute, and what they cannot (momentum, weight decay, L1, Jacobian, BatchNorm, Dropout) as a single model
trained alone with torch.optim.SGD computes it."""

import copy

import pytest
import torch
from torch import nn

from ibci import seeding
from ibci.init.bases import init_base
from ibci.train import general
from ibci.nets.modules import cnn_modules, mlp_modules
from ibci.train import mlp as engine


@pytest.mark.parametrize("nsr", [0.0, 0.5])
def test_on_a_plain_mlp_it_follows_the_hand_written_engine(toy_data, nsr):
    x, y = toy_data
    stack = init_base([784, 32, 16, 10], [seeding.generator(s, "init") for s in (0, 1, 2)], "he", bias=0.01)
    evals = {"test": (x[:200], y[:200])}
    _, fast = engine.train(stack.clone(), x, y, [0, 1, 2], 3, 64, 0.1, evals, nsr_lams=[nsr] if nsr else None)
    _, ours = general.train(mlp_modules(stack), x, y, [0, 1, 2], 3, 64, general.Recipe(lr=0.1, nsr=nsr), evals)
    assert torch.allclose(ours.train_loss[1:], fast.train_loss[1:], rtol=1e-4)
    assert torch.allclose(ours.errors["test"], fast.errors["test"], atol=0.51)  # at most one image of 200 flips


def test_momentum_weight_decay_l1_batchnorm_as_a_single_model_trained_alone(toy_data, train_alone):
    x, y = toy_data

    def net():
        return nn.Sequential(nn.Linear(784, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 10))

    models = [net() for _ in range(2)]
    recipe = general.Recipe(lr=0.05, momentum=0.9, weight_decay=1e-3, l1=1e-5)
    trained, _ = general.train([copy.deepcopy(m) for m in models], x, y, [0, 1], 2, 64, recipe, {})
    for s, m in enumerate(models):
        l1 = lambda _y, m=m: recipe.l1 * sum(p.abs().sum() for p in m.parameters() if p.dim() > 1)  # noqa: E731
        alone = train_alone(m, x, y, s, epochs=2, batch_size=64, lr=0.05, penalty=l1, momentum=0.9,
                            weight_decay=1e-3)
        for p, q in zip(alone.state_dict().values(), trained[s].state_dict().values()):
            assert torch.allclose(p.float(), q.float(), atol=2e-4), (p - q).abs().max()


def test_the_jacobian_estimate_is_the_frobenius_norm_on_average():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(4, 6)
    exact = sum(torch.autograd.functional.jacobian(net, x[i : i + 1]).square().sum() for i in range(4)) / 4
    base = copy.deepcopy(net).to("meta")
    loss = general._loss(base, general.Recipe(lr=0.1, jacobian=2.0, projections=4000), 3, False, True)
    params, buffers = dict(net.named_parameters()), {}
    v = torch.randn(4000, 4, 3)
    v = v / v.norm(dim=-1, keepdim=True)
    y = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(net(x), y)
    got = loss({k: p.detach() for k, p in params.items()}, buffers, x, y, v, torch.zeros(1, 3, 3),
               torch.zeros(1, 3, 3), torch.tensor([0.0, 2.0]))[0] - ce
    assert got.item() == pytest.approx(exact.item(), rel=0.05)  # strength 2 times the half-norm


def test_copies_with_their_own_strengths_train_as_each_would_with_that_strength_alone(toy_data):
    """A stacked search: per-copy L1, weight decay and Jacobian strengths give each copy what a stack of it alone
    with that one strength gives (its batches, its Jacobian directions, its update)."""
    x, y = toy_data
    stack = init_base([784, 24, 10], [seeding.generator(s, "init") for s in (0, 1, 2)], "he", bias=0.01)
    per_copy = {"l1": [1e-4, 0.0, 0.0], "weight_decay": [0.0, 1e-2, 0.0], "jacobian": [0.0, 0.0, 0.05]}
    together, hist = general.train(mlp_modules(stack), x, y, [0, 1, 2], 2, 64, general.Recipe(lr=0.1, **per_copy), {})
    for s in range(3):
        recipe = general.Recipe(lr=0.1, **{k: v[s] for k, v in per_copy.items()})
        alone, alone_hist = general.train(mlp_modules(stack.select([s])), x, y, [s], 2, 64, recipe, {})
        assert torch.allclose(hist.train_loss[1:, s], alone_hist.train_loss[1:, 0], rtol=1e-5)
        for p, q in zip(alone[0].state_dict().values(), together[s].state_dict().values()):
            assert torch.allclose(p, q, atol=1e-5), (s, (p - q).abs().max())
    with pytest.raises(ValueError, match="2 strengths for a stack of 3"):
        general.train(mlp_modules(stack), x, y, [0, 1, 2], 1, 64, general.Recipe(lr=0.1, l1=[1e-4, 0.0]), {})


def test_dropout_draws_differ_between_copies_and_repeat_with_the_seed(toy_data):
    x, y = toy_data
    base = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
    runs = [general.train([copy.deepcopy(base) for _ in range(2)], x, y, [0, 0], 1, 64, general.Recipe(lr=0.1), {},
                          dropout_seed=seed)[0] for seed in (1, 1, 2)]
    w = [[m[0].weight for m in r] for r in runs]
    assert not torch.equal(w[0][0], w[0][1])  # same data order, other dropout masks
    assert torch.equal(w[0][0], w[1][0]) and not torch.equal(w[0][0], w[2][0])


def test_on_the_cnn_it_follows_the_cnn_engine_and_a_model_trained_alone(toy_data, train_alone):
    from ibci.init import conv as conv_init
    from ibci.train import cnn as cnn_engine

    x, y = toy_data
    stack = conv_init.init_base([4, 6, 16], [seeding.generator(s, "init") for s in (0, 1)], "he")
    evals = {"test": (x[:200], y[:200])}
    trained, fast = cnn_engine.train(stack.clone(), x, y, [0, 1], 2, 64, 0.1, evals)
    mods, ours = general.train(cnn_modules(stack), x, y, [0, 1], 2, 64, general.Recipe(lr=0.1), evals,
                               image_shape=(1, 28, 28))
    assert torch.allclose(ours.train_loss[1:], fast.train_loss[1:], rtol=1e-4)
    for s in (0, 1):
        alone = train_alone(cnn_modules(stack)[s], x, y, s, epochs=2, batch_size=64, lr=0.1, image_shape=(1, 28, 28))
        assert torch.allclose(alone[0].weight, mods[s][0].weight, atol=1e-4)
        assert torch.allclose(mods[s][0].weight, trained.conv_weights[0][s], atol=1e-4)


def test_the_cnn_engines_nsr_is_the_general_engines(toy_data):
    """One epoch (10 steps): with NSR on the logits a perturbation of the weights by 1e-7 moves them by about 2e-4
    after the second epoch (a kink of ReLU or max-pool crossed), so a longer run compares rounding, not engines."""
    from ibci.init import conv as conv_init
    from ibci.train import cnn as cnn_engine

    x, y = toy_data
    stack = conv_init.init_base([4, 6, 16], [seeding.generator(s, "init") for s in (0, 1)], "he")
    evals = {"test": (x[:200], y[:200])}
    trained, fast = cnn_engine.train(stack.clone(), x, y, [0, 1], 1, 64, 0.1, evals, nsr_lams=[0.5], nsr_queue=3)
    plain, _ = cnn_engine.train(stack.clone(), x, y, [0, 1], 1, 64, 0.1, evals)
    mods, ours = general.train(cnn_modules(stack), x, y, [0, 1], 1, 64, general.Recipe(lr=0.1, nsr=0.5, nsr_queue=3),
                               evals, image_shape=(1, 28, 28))
    assert torch.allclose(ours.train_loss[1:], fast.train_loss[1:], rtol=1e-5)
    for s in (0, 1):
        assert torch.allclose(mods[s][0].weight, trained.conv_weights[0][s], atol=1e-5)
        assert not torch.allclose(plain.conv_weights[0][s], trained.conv_weights[0][s], atol=1e-3)


def test_the_suite_trains_batchnorm_dropout_and_observing_cells_and_says_so_in_their_records(small_cfg):
    import json
    from pathlib import Path

    import pandas as pd

    import run

    for overrides, net in ((["batchnorm=true", "reg=nsr"], "d2bn"), (["dropout=0.2"], "d2do0.2")):
        rec = run.run_cell(small_cfg(*overrides, "threads=1"))
        assert rec["cell"]["net"] == net and rec["cell_id"].split("-")[2] == net
        assert len(rec["seeds"]) == 2 and all(s["min_error"] is not None for s in rec["seeds"])
    plain = run.run_cell(small_cfg("threads=1"))
    cfg = small_cfg("observe=true", "reg=nsr", "threads=1")
    rec = run.run_cell(cfg)
    metrics = pd.read_csv(Path(cfg["results_dir"]) / "runs" / rec["cell_id"] / "metrics.csv")
    assert {"train_error", "train_ce", "train_intra_var", "test_ce"} <= set(metrics.columns)
    assert (metrics[metrics["epoch"] == 0]["train_ce"] > 1.5).all()  # an untrained net: about ln 10
    obs = json.loads((Path(cfg["results_dir"]) / "runs" / rec["cell_id"] / "record.json").read_text())["observation"]
    n = [[a + b for a, b in zip(r, w)] for r, w in zip(obs["n_correct"], obs["n_wrong"])]
    assert all(sum(row) == 10000 for row in n)  # every test image counted once, per seed
    assert "train_ce" not in pd.read_csv(Path(cfg["results_dir"]) / "runs" / plain["cell_id"] / "metrics.csv")


def test_nsr_on_a_named_layer_is_nsr_on_that_layers_output(toy_data):
    x, y = toy_data
    stack = init_base([784, 16, 10], [seeding.generator(s, "init") for s in (0, 1)], "he")
    evals = {"test": (x[:100], y[:100])}
    last = str(len(mlp_modules(stack)[0]) - 1)  # the output Linear: its output is the logits
    _, on_logits = general.train(mlp_modules(stack), x, y, [0, 1], 1, 64, general.Recipe(lr=0.1, nsr=0.5), evals)
    _, on_named = general.train(mlp_modules(stack), x, y, [0, 1], 1, 64,
                                general.Recipe(lr=0.1, nsr=0.5, nsr_layer=last), evals)
    _, on_hidden = general.train(mlp_modules(stack), x, y, [0, 1], 1, 64,
                                 general.Recipe(lr=0.1, nsr=0.5, nsr_layer="1"), evals)
    assert torch.allclose(on_named.train_loss[1:], on_logits.train_loss[1:], rtol=1e-6)
    assert not torch.allclose(on_hidden.train_loss[1:], on_logits.train_loss[1:], rtol=1e-3)


def test_cells_differing_only_in_a_general_strength_share_a_stack_each_with_its_own(small_cfg, tmp_path):
    from ibci.runs.runner import run_cells, stack_key

    cells = [small_cfg("reg=l1", f"reg.strength={a}", "threads=1") for a in (1e-5, 1e-3)]
    assert stack_key(cells[0]) == stack_key(cells[1])
    assert stack_key(small_cfg("reg=nsr", "reg.lambda=1")) != stack_key(small_cfg("reg=nsr", "reg.lambda=10"))
    stacked = run_cells(cells, stack_cells=2, log=lambda _: None)
    assert [r["stacked_cells"] for r in stacked] == [2, 2]
    for cfg, rec in zip(cells, stacked):
        alone = run_cells([{**cfg, "results_dir": str(tmp_path / "alone")}], log=lambda _: None)[0]
        assert alone["stacked_cells"] == 1 and alone["cell_id"] == rec["cell_id"]
        assert [s["final_error"] for s in alone["seeds"]] == pytest.approx([s["final_error"] for s in rec["seeds"]],
                                                                           abs=0.11)
    assert stacked[0]["seeds"] != stacked[1]["seeds"]  # the two strengths trained differently
