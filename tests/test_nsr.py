"""NSR (Neuron Steadiness Regularization) in the engine's hand-written backward, against autograd."""

import pytest
import torch
import torch.nn.functional as F

from ibci.train.history import intra_class_variance
from ibci.train.mlp import Packed
from ibci.train.nsr import Steadiness
from ibci.init.bases import init_base


def _reference_steps(model, x_batches, y_batches, lr, lams, queue):
    """One model trained with autograd on the official code's loss, written out (one model of the stack).

    Per step: push the batch's responses of the penalized layers (detached) and
    labels into queues of the last `queue` batches; the output layer's class
    means are plain means over the queue, a hidden layer's are over its firing
    (non-zero) responses; the penalty is lam * the mean of (h - m[y])^2, over
    every response for the output layer and over the firing ones for a hidden
    layer.
    """
    Ws = [w.clone().requires_grad_() for w in model[0]]
    bs = [b.clone().requires_grad_() for b in model[1]]
    L = len(Ws)
    layers = {L - 1 - k: lam for k, lam in enumerate(lams)}
    logs = {l: [] for l in layers}
    targets = []
    for x, y in zip(x_batches, y_batches):
        hs, h = [], x
        for l in range(L):
            h = h @ Ws[l] + bs[l]
            if l < L - 1:
                h = h.relu()
            hs.append(h)
        targets = (targets + [y])[-queue:]
        t = torch.cat(targets)
        loss = F.cross_entropy(hs[-1], y)
        for l, lam in layers.items():
            logs[l] = (logs[l] + [hs[l].detach()])[-queue:]
            past = torch.cat(logs[l])
            onehot = F.one_hot(t, hs[-1].shape[1]).float()
            if l == L - 1:
                means = (onehot.T @ past) / onehot.sum(0).clamp_min(1)[:, None]
                loss = loss + lam * ((hs[l] - means[y]) ** 2).mean()
            else:
                counts = (onehot.T @ (past != 0).float()).clamp_min(1)
                means = (onehot.T @ past) / counts
                mask = hs[l].abs() > 1e-5
                loss = loss + lam * torch.masked_select((hs[l] - means[y]) ** 2, mask).mean()
        grads = torch.autograd.grad(loss, [*Ws, *bs])
        with torch.no_grad():
            for p, g in zip([*Ws, *bs], grads):
                p -= lr * g
    return [w.detach() for w in Ws], [b.detach() for b in bs]


def test_nsr_steps_match_autograd_on_the_official_loss():
    sizes, classes, B, steps = [12, 9, 7, 4], 4, 16, 7
    gens = [torch.Generator().manual_seed(s) for s in range(2)]
    model = init_base(sizes, gens, "he", bias=0.05)
    packed = Packed(model.clone(), data_seeds=[0, 1])
    nsr = Steadiness.for_layers([0.3, 0.2], model.num_layers, queue=3)
    g = torch.Generator().manual_seed(9)
    xs = torch.rand(steps, 2, B, sizes[0], generator=g)
    ys = torch.randint(0, classes, (steps, 2, B), generator=g)
    for t in range(steps):
        packed.step(xs[t], ys[t], 0.1, torch.ones(2), nsr)
    trained = packed.unpack()
    for m in range(2):
        mine = ([w[m] for w in model.weights], [b[m] for b in model.biases])
        W_ref, b_ref = _reference_steps(mine, xs[:, m], ys[:, m], 0.1, [0.3, 0.2], 3)
        for a, b in zip(trained.weights, W_ref):
            torch.testing.assert_close(a[m], b, atol=2e-5, rtol=1e-4)
        for a, b in zip(trained.biases, b_ref):
            torch.testing.assert_close(a[m], b, atol=2e-5, rtol=1e-4)


def test_nsr_with_zero_lambda_is_plain_sgd():
    sizes = [10, 8, 3]
    model = init_base(sizes, [torch.Generator().manual_seed(0)], "xavier")
    x, y = torch.rand(1, 20, 10), torch.randint(0, 3, (1, 20))
    plain, reg = Packed(model.clone(), [0]), Packed(model.clone(), [0])
    plain.step(x, y, 0.1, torch.ones(1))
    reg.step(x, y, 0.1, torch.ones(1), Steadiness.for_layers([0.0], 2))
    for a, b in zip(plain.unpack().weights, reg.unpack().weights):
        torch.testing.assert_close(a, b)


def test_nsr_lowers_the_intra_class_variance_it_penalizes():
    sizes = [20, 16, 4]
    g = torch.Generator().manual_seed(1)
    x = torch.rand(400, 20, generator=g)
    y = torch.randint(0, 4, (400,), generator=g)
    x = x + F.one_hot(y, 20).float()  # learnable
    variances = []
    for lams in (None, [2.0]):
        model = init_base(sizes, [torch.Generator().manual_seed(0)], "he")
        packed = Packed(model, [0])
        nsr = Steadiness.for_layers(lams, 2) if lams else None
        for _ in range(3):
            for start in range(0, 400, 20):
                packed.step(x[None, start:start + 20], y[None, start:start + 20], 0.05, torch.ones(1), nsr)
        variances.append(float(intra_class_variance(packed.unpack().forward(x), y)))
    assert variances[1] < 0.5 * variances[0]


def test_intra_class_variance_by_hand():
    logits = torch.tensor([[[0.0, 1.0], [2.0, 1.0], [5.0, 5.0]]])  # one model, 3 samples, 2 units
    y = torch.tensor([0, 0, 1])
    # class 0: unit vars 1.0 and 0.0; class 1: a single sample, var 0 -> mean of [1, 0, 0, 0]
    assert float(intra_class_variance(logits, y)) == 0.25


def test_new_settings_keep_earlier_cells_ids_and_name_new_cells():
    from ibci.runs import records
    from ibci.cli import compose

    plain = compose(["init=ibci", "depth=3"])
    assert "reg" not in records.identity(plain) and "hidden" not in records.identity(plain)
    # The id a depth-3 IBCI cell had before `reg` and `hidden` existed (Table 1's runs keep theirs).
    before = {k: v for k, v in plain.items() if k not in ("reg", "hidden")}
    assert records.cell_id(before) == records.cell_id(plain)
    nsr = compose(["net=mlp6", "method=ibci_nsr"])
    assert records.cell_id(nsr).startswith("xavier-ibci+nsr-h256x128x64x32-mnist-")
    assert records.cell_id(compose(["net=mlp6", "method=ibci_nsr", "reg.lambda=1"])) != records.cell_id(nsr)


def test_each_network_carries_its_official_lambda():
    from ibci.cli import compose

    official = {"mlp3": 0.02475, "mlp4": 7.4865, "mlp6": 0.0538, "mlp8": 0.2542, "mlp10": 0.4158}
    for net, lam in official.items():
        cfg = compose([f"net={net}", "method=nsr"])
        assert cfg["reg"] == {"name": "nsr", "lambda": lam, "queue_batches": 5, "layers": 1, "reading": "logits",
                              "layer": None}
    assert compose(["net=mlp10"])["hidden"] == [256, 128, 64, 64, 32, 32, 16, 16]


def test_a_cell_with_nsr_trains_end_to_end(small_cfg):
    import csv
    from pathlib import Path

    from ibci.runs import runner

    cfg = small_cfg("net=mlp4", "method=nsr", "reg.lambda=0.05", "lr=0.01", "protocol=heldout", "epochs=2",
                    "data.train_limit=1000")
    (rec,) = runner.run_cells([cfg], log=lambda line: None)
    assert rec["cell"]["reg"] == "nsr" and rec["cell"]["net"] == "h256x100"
    rows = list(csv.DictReader((Path(cfg["results_dir"]) / "runs" / rec["cell_id"] / "metrics.csv").open()))
    assert {"test_intra_var", "val_intra_var"} <= set(rows[0]) and float(rows[-1]["test_intra_var"]) > 0


def test_readings_name_their_layers():
    from ibci.train.nsr import reading_lams

    assert reading_lams("logits", 0.5, 4) == [0.5, 0, 0, 0]
    assert reading_lams("penultimate", 0.5, 4) == [0, 0.5, 0, 0]
    assert reading_lams("every", 0.5, 3) == [0.5, 0.5, 0.5]
    variances = torch.tensor([[1.0, 3.0, 2.0], [1.0, 2.0, 2.5]])  # layer 1 (of 0, 1, 2) is largest on average
    assert reading_lams("largest", 0.5, 3, variances) == [0, 0.5, 0]


def test_a_layer_of_weight_zero_changes_nothing():
    """reading=penultimate is weights [0, lam]: the output layer's zero weight is no penalty at all."""
    from ibci.train.mlp import train

    x, y = torch.rand(300, 20), torch.arange(300) % 3
    model = init_base([20, 8, 6, 3], [torch.Generator().manual_seed(s) for s in range(2)], "he")
    runs = [train(model.clone(), x, y, [0, 1], 2, 50, 0.1, {"test": (x, y)}, nsr_lams=lams)[1] for lams in
            ([0.0, 0.3], [0.0, 0.3, 0.0])]
    assert torch.equal(runs[0].errors["test"], runs[1].errors["test"])
    assert torch.equal(runs[0].train_loss[1:], runs[1].train_loss[1:])


@pytest.mark.parametrize("reading", ["penultimate", "largest", "every"])
def test_each_reading_trains_and_says_what_it_penalized(small_cfg, reading):
    import run

    cfg = small_cfg("reg=nsr", f"reg.reading={reading}", "reg.lambda=0.1", "hidden=[16,8]", "depth=3")
    rec = run.run_cell(cfg)
    lams = rec["nsr"]["lambdas"]
    assert rec["nsr"]["reading"] == reading and len(lams) == 3
    if reading == "largest":
        assert sorted(lams) == [0, 0, 0.1] and len(rec["nsr"]["layer_variances"]) == 3
        assert lams.index(0.1) == max(range(3), key=rec["nsr"]["layer_variances"].__getitem__)
    else:
        assert lams == ([0, 0.1, 0] if reading == "penultimate" else [0.1] * 3)


@pytest.mark.parametrize("output", [True, False])
def test_the_module_equals_the_engines_steadiness_on_one_stream_of_batches(output):
    """ibci.NSR (autograd, any model) and Steadiness (the engine's hand-written gradient): same penalties and
    gradients, batch after batch, as the queue fills and wraps."""
    import ibci

    g = torch.Generator().manual_seed(0)
    ident = torch.nn.Sequential(torch.nn.Identity())
    nsr = ibci.NSR(ident, layers=["0"], lam=0.7, queue=3, num_classes=4, firing=[not output])
    ref = Steadiness({0: 0.7}, 3)
    for _ in range(7):
        y = torch.randint(0, 4, (20,), generator=g)
        h = (torch.randn(20, 6, generator=g) + (0 if output else 0.3)).relu_() if not output else \
            torch.randn(20, 6, generator=g)
        h.requires_grad_(True)
        ident(h)
        p = nsr.penalty(y)
        p.backward()
        grad, pen = ref.penalty_grad(0, h.detach()[None], F.one_hot(y, 4).float()[None], output)
        ref.advance()
        assert torch.allclose(p, pen[0], rtol=1e-5, atol=1e-7)
        assert torch.allclose(h.grad, grad[0], rtol=1e-5, atol=1e-7)


def test_nsr_in_a_plain_loop_trains_as_the_engine_does(toy_data, train_alone):
    """An MLP trained by torch.optim.SGD with ibci.NSR on its logits follows the MLP engine's +NSR trajectory."""
    import ibci
    from ibci import seeding
    from ibci.train.mlp import train

    x, y = toy_data
    stack = init_base([784, 32, 10], [seeding.generator(s, "init") for s in (0, 1)], "he")
    trained, _ = train(stack.clone(), x, y, [0, 1], 2, 64, 0.1, {}, nsr_lams=[0.5], nsr_queue=5)
    for s in (0, 1):
        net = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
        with torch.no_grad():
            for layer, W, b in zip(net[::2], stack.weights, stack.biases):
                layer.weight.copy_(W[s].T)
                layer.bias.copy_(b[s])
        nsr = ibci.NSR(net, lam=0.5, queue=5, num_classes=10)
        train_alone(net, x, y, s, epochs=2, batch_size=64, lr=0.1, penalty=nsr.penalty)
        for layer, W in zip(net[::2], trained.weights):
            assert torch.allclose(layer.weight, W[s].T, atol=2e-5), (layer.weight - W[s].T).abs().max()


def test_nsr_checkpoints_its_queues():
    """Stopped after a step and loaded into a new NSR, the penalty goes on as if it had never stopped."""
    import ibci

    net = torch.nn.Sequential(torch.nn.Linear(5, 3))
    batches = [(torch.randn(8, 5, generator=torch.Generator().manual_seed(i)), torch.arange(8) % 3) for i in range(3)]
    whole = ibci.NSR(net, lam=0.2, queue=2, num_classes=3)
    expected = []
    for x, y in batches:
        net(x)
        expected.append(whole.penalty(y))
    whole.remove()
    first = ibci.NSR(net, lam=0.2, queue=2, num_classes=3)
    net(batches[0][0])
    first.penalty(batches[0][1])
    first.remove()
    later = ibci.NSR(net, lam=0.2, queue=2, num_classes=3)
    later.load_state_dict(first.state_dict())
    for (x, y), want in zip(batches[1:], expected[1:]):
        net(x)
        assert torch.equal(later.penalty(y), want)
    with pytest.raises(ValueError, match="queue of 2"):
        ibci.NSR(net, lam=0.2, queue=3).load_state_dict(first.state_dict())


def test_deviation_by_outcome_is_each_groups_mean_squared_distance_to_its_class_mean():
    import numpy as np

    from ibci import seeding
    from ibci.init.bases import init_base
    from ibci.train.nsr import deviation_by_outcome

    torch.manual_seed(0)
    x, y = torch.randn(300, 6), torch.randint(0, 3, (300,))
    model = init_base([6, 5, 4, 3], [seeding.generator(s, "init") for s in range(2)], "he")
    got = deviation_by_outcome(model, x, y)
    for s in range(2):
        h = torch.relu(torch.relu(x @ model.weights[0][s] + model.biases[0][s]) @ model.weights[1][s]
                       + model.biases[1][s]).double().numpy()
        pred = (torch.from_numpy(h).float() @ model.weights[2][s] + model.biases[2][s]).argmax(1).numpy()
        for c in range(3):
            cls = y.numpy() == c
            dev = ((h - h[cls].mean(0)) ** 2).mean(1)
            for name, mask in (("correct", cls & (pred == c)), ("wrong", cls & (pred != c))):
                want = dev[mask].mean() if mask.any() else np.nan
                assert np.isclose(got[name][s, c].item(), want, rtol=1e-5, equal_nan=True)
                assert got[f"n_{name}"][s, c].item() == mask.sum()
