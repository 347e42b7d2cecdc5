"""The neuron campaign against brute-force references and hand-made cases."""

import json

import numpy as np
import pytest
import torch

from ibci.init.campaign import (
    campaign_layer,
    class_quotas,
    ibci_init,
    iim_score,
    pool_scores,
    run_campaign,
    tie_score,
    tie_weights,
)
from ibci.init.api import configs
from ibci.errors import UserError
from ibci.init.stack import init_stack


def _responses(n=500, k=40, c=5, seed=0, bias=0.0):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(n, 30, generator=g)
    cand = torch.randn(30, k, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    r = (h @ cand + bias).relu()
    return r, y


def _naive_tie(r, y, c):
    r, y = r.double().numpy(), y.numpy()
    present = [k for k in range(c) if (y == k).any()]
    means = np.stack([r[y == k].mean(axis=0) for k in present])
    inter = means.var(axis=0)
    intra = np.mean([r[y == k].var(axis=0) for k in present], axis=0)
    return inter / np.linalg.norm(inter) - intra / np.linalg.norm(intra)


# ---- criteria ---------------------------------------------------------------


@pytest.mark.parametrize("bias", [0.0, 100.0])
def test_iim_is_column_variance(bias):
    r, y = _responses(bias=bias)
    expected = r.double().numpy().var(axis=0)
    np.testing.assert_allclose(iim_score(r).numpy(), expected, rtol=1e-6)
    # pool_scores gets IIM from the class sums; a large bias must not cancel it away.
    np.testing.assert_allclose(pool_scores(r, y, 5, 0.5)["iim"].numpy(), expected, rtol=1e-4)


def test_tie_matches_per_class_loop():
    r, y = _responses(c=5)
    np.testing.assert_allclose(tie_score(r, y, 5).numpy(), _naive_tie(r, y, 5), atol=1e-6)


def test_tie_ignores_absent_classes():
    r, y = _responses(c=5)
    y = torch.where(y == 2, torch.zeros_like(y), y)  # class 2 absent, 3 classes unused of 8
    np.testing.assert_allclose(tie_score(r, y, 8).numpy(), _naive_tie(r, y, 8), atol=1e-6)


def test_pool_scores_combination_and_owner():
    r, y = _responses(c=4)
    r[:, 0] = 0.0  # a dead neuron: equal class means, owned by class 0
    w = 0.3
    out = pool_scores(r, y, 4, w)
    iim = r.double().numpy().var(axis=0)
    tie = _naive_tie(r, y, 4)
    s = w * tie / np.linalg.norm(tie) + (1 - w) * iim / np.linalg.norm(iim)
    s = (s - s.min()) / (s.max() - s.min())
    np.testing.assert_allclose(out["score"].numpy(), s, atol=1e-6)
    assert float(out["score"].min()) == 0.0 and float(out["score"].max()) == 1.0
    rn, yn = r.double().numpy(), y.numpy()
    means = np.stack([rn[yn == k].mean(axis=0) for k in range(4)])
    np.testing.assert_allclose(out["class_means"].numpy(), means, atol=1e-5)
    assert out["owner"].tolist() == means.argmax(axis=0).tolist()
    assert int(out["owner"][0]) == 0


def test_constant_score_is_all_ones():
    r = torch.ones(50, 7)
    y = torch.arange(50) % 3
    assert pool_scores(r, y, 3, 0.5)["score"].tolist() == [1.0] * 7


# ---- quotas -----------------------------------------------------------------


def test_quotas_even_split():
    assert class_quotas(torch.tensor([10] * 10), 100).tolist() == [10] * 10


def test_quotas_class_without_candidates():
    q = class_quotas(torch.tensor([0, 20, 20, 20, 20]), 40)
    assert q.tolist() == [0, 10, 10, 10, 10]


def test_quotas_water_filling():
    counts = torch.tensor([1, 0, 3, 50, 50, 50, 50, 60, 50, 50])
    q = class_quotas(counts, 100)
    # 96 slots over 7 classes: 13 each, the 5 left over to the largest classes
    # (class 7 with 60, then classes 3, 4, 5, 6 as the lowest indices among the 50s).
    assert q.tolist() == [1, 0, 3, 14, 14, 14, 14, 14, 13, 13]


def test_quotas_saturation_cascades():
    # Share 20: class 0 gives its 5; share 25 then saturates class 1 (24); 71 over 2.
    q = class_quotas(torch.tensor([5, 24, 100, 100]), 100)
    assert q.tolist() == [5, 24, 36, 35]


def test_quotas_properties_on_random_counts():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        c = int(torch.randint(1, 12, (1,), generator=g))
        counts = torch.randint(0, 30, (c,), generator=g)
        if counts.sum() == 0:
            continue
        n_out = int(torch.randint(0, int(counts.sum()) + 1, (1,), generator=g))
        q = class_quotas(counts, n_out)
        assert int(q.sum()) == n_out
        assert (q <= counts).all() and (q >= 0).all()
        # Max-min fairness: a class left below its count holds at most one slot
        # fewer than any other class, and the extra slot goes to larger classes.
        short = (q < counts).nonzero().squeeze(1).tolist()
        for u in short:
            assert (q <= q[u] + 1).all()
            for v in short:
                if q[v] > q[u]:
                    assert counts[v] > counts[u] or (counts[v] == counts[u] and v < u)


def test_quotas_reject_small_pool():
    with pytest.raises(UserError, match="holds 5 candidates but the layer needs 6"):
        class_quotas(torch.tensor([2, 3]), 6)


# ---- campaign ---------------------------------------------------------------


def _naive_campaign(cand, score, owner, quotas):
    """Global-scope campaign with residuals from least squares, no basis kept."""
    cand, score = cand.double().numpy(), score.double().numpy()
    picked = []
    for c, q in enumerate(quotas.tolist()):
        for _ in range(q):
            best, best_key = None, -np.inf
            for j in np.nonzero(owner.numpy() == c)[0]:
                if j in picked:
                    continue
                resid = cand[:, j]
                if picked:
                    a = cand[:, picked]
                    resid = resid - a @ np.linalg.lstsq(a, resid, rcond=None)[0]
                key = score[j] * np.linalg.norm(resid) / np.linalg.norm(cand[:, j])
                if key > best_key:
                    best, best_key = j, key
            picked.append(int(best))
    return picked


def test_campaign_matches_least_squares_reference():
    g = torch.Generator().manual_seed(1)
    cand = torch.randn(40, 60, generator=g)
    score = torch.rand(60, generator=g)
    owner = torch.randint(0, 3, (60,), generator=g)
    quotas = class_quotas(torch.bincount(owner, minlength=3), 25)
    picked = run_campaign(cand, score, owner, quotas)
    assert picked.tolist() == _naive_campaign(cand, score, owner, quotas)
    assert [int(owner[j]) for j in picked] == sorted(int(owner[j]) for j in picked)


def test_basis_stays_orthonormal():
    g = torch.Generator().manual_seed(2)
    # Nearly dependent candidates: a low-rank part plus a little noise.
    cand = torch.randn(80, 5, generator=g) @ torch.randn(5, 400, generator=g)
    cand += 1e-3 * torch.randn(80, 400, generator=g)
    score = torch.rand(400, generator=g)
    owner = torch.randint(0, 10, (400,), generator=g)
    quotas = class_quotas(torch.bincount(owner, minlength=10), 75)
    picked, (basis,) = run_campaign(cand, score, owner, quotas, return_basis=True)
    assert basis.shape == (80, 75)
    eye = torch.eye(75, dtype=torch.float64)
    torch.testing.assert_close(basis.T @ basis, eye, atol=1e-5, rtol=0)
    # The basis spans exactly the elected neurons.
    w = cand[:, picked].double()
    torch.testing.assert_close(basis @ (basis.T @ w), w, atol=1e-6, rtol=1e-6)


def test_duplicates_never_win_twice_while_novel_remain():
    g = torch.Generator().manual_seed(3)
    novel = torch.randn(30, 20, generator=g)
    best = torch.randn(30, 1, generator=g)
    cand = torch.cat([novel[:, :7], best, best, novel[:, 7:], best, best], dim=1)
    dup = [7, 8, 22, 23]
    score = 0.1 + 0.8 * torch.rand(24, generator=g)
    score[dup] = 1.0
    picked = run_campaign(cand, score, torch.zeros(24, dtype=torch.long), torch.tensor([20]))
    assert sum(j in dup for j in picked.tolist()) == 1
    assert int(picked[0]) == 7  # the best score, lowest index among equals
    # Only once every novel one is taken may the copies follow.
    picked = run_campaign(cand, score, torch.zeros(24, dtype=torch.long), torch.tensor([24]))
    assert sorted(picked[-3:].tolist()) == [8, 22, 23]


def test_duplicate_loses_to_novel_candidate_with_zero_score():
    cand = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    score = torch.tensor([1.0, 1.0, 0.0])
    picked = run_campaign(cand, score, torch.zeros(3, dtype=torch.long), torch.tensor([2]))
    assert picked.tolist() == [0, 2]


def test_exhausted_span_falls_back_to_score_order():
    g = torch.Generator().manual_seed(4)
    cand = torch.randn(4, 12, generator=g)
    score = torch.rand(12, generator=g)
    picked, (basis,) = run_campaign(
        cand, score, torch.zeros(12, dtype=torch.long), torch.tensor([10]), return_basis=True
    )
    assert basis.shape == (4, 4)  # R^4 is spanned after four picks
    rest = picked[4:].tolist()
    assert rest == sorted(rest, key=lambda j: -float(score[j]))
    assert len(set(picked.tolist())) == 10


def test_per_class_scope_resets_the_basis():
    # Class 0 elects e1; class 1 holds 2*e1 (best score) and e2.
    cand = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    score = torch.tensor([1.0, 1.0, 0.5])
    owner = torch.tensor([0, 1, 1])
    quotas = torch.tensor([1, 1])
    assert run_campaign(cand, score, owner, quotas, scope="global").tolist() == [0, 2]
    assert run_campaign(cand, score, owner, quotas, scope="per_class").tolist() == [0, 1]


def test_per_class_bases_are_orthonormal():
    g = torch.Generator().manual_seed(5)
    cand = torch.randn(20, 300, generator=g)
    score = torch.rand(300, generator=g)
    owner = torch.randint(0, 4, (300,), generator=g)
    quotas = torch.tensor([15, 0, 25, 10])
    picked, bases = run_campaign(cand, score, owner, quotas, scope="per_class", return_basis=True)
    assert [b.shape[1] for b in bases] == [15, 0, 20, 10]  # class 2 exhausts R^20
    for b in bases:
        eye = torch.eye(b.shape[1], dtype=torch.float64)
        torch.testing.assert_close(b.T @ b, eye, atol=1e-5, rtol=0)
    glob = run_campaign(cand, score, owner, quotas, scope="global")
    assert glob[:15].tolist() == picked[:15].tolist()  # the first class sees no difference
    assert glob.tolist() != picked.tolist()


def test_campaign_layer_keeps_original_columns():
    g = torch.Generator().manual_seed(6)
    h = torch.rand(300, 16, generator=g)
    y = torch.randint(0, 3, (300,), generator=g)
    cand = torch.randn(16, 40, generator=g)
    w, info = campaign_layer(h, y, cand, 0.1, True, 0.5, 12, num_classes=3)
    picked = info["pool"]["picked"]
    assert torch.equal(w, cand[:, picked])
    assert sum(info["quotas"]) == 12 and info["pool_size"] == 40
    json.dumps({k: v for k, v in info.items() if k != "pool"})


# ---- the whole initialization ---------------------------------------------


def _synthetic(n=2000, seed=0):
    """MNIST-shaped data whose classes differ: a prototype per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 784, generator=g)
    y = torch.arange(n) % 10
    x = (0.5 * protos[y] + 0.5 * torch.rand(n, 784, generator=g)).clamp(0, 1)
    return x, y


def test_output_unit_k_responds_most_to_class_k():
    x, y = _synthetic()
    sizes = [784, 64, 10]
    weights, biases, info = ibci_init(
        sizes, x, y, "he", tie_weights("ibci", 2), torch.Generator().manual_seed(0)
    )
    assert all(c > 0 for c in info["layers"][-1]["class_counts"])  # the premise
    logits = (x @ weights[0] + biases[0]).relu() @ weights[1] + biases[1]
    class_means = torch.stack([logits[y == c].mean(0) for c in range(10)])  # [class, unit]
    assert class_means.argmax(dim=0).tolist() == list(range(10))
    assert [w.shape for w in weights] == [(784, 64), (64, 10)]


def test_same_seed_same_picks_other_seed_other_picks():
    x, y = _synthetic(n=600)
    sizes, tw = [784, 20, 10], [0.0, 1.0]
    run = lambda s: ibci_init(sizes, x, y, "xavier", tw, torch.Generator().manual_seed(s))[2]
    picks = lambda info: [p["picked"].tolist() for p in info["pools"].values()]
    a, b, c = run(0), run(0), run(1)
    assert picks(a) == picks(b)
    assert a["layers"] == b["layers"]
    assert picks(a) != picks(c)


def test_stack_holds_one_campaign_per_seed():
    x, y = _synthetic(n=400)
    sizes = [784, 16, 10]
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    base, init = configs("ibci", "he", bias=0.01, orthogonal_scope="per_class")
    model, info = init_stack(sizes, base, init, x, y, gens)
    assert model.num_models == 2 and model.sizes == sizes
    g1 = torch.Generator().manual_seed(1)
    w1, b1, _ = ibci_init(sizes, x, y, "he", [0.0, 1.0], g1, bias=0.01, scope="per_class")
    assert torch.equal(model.weights[0][1], w1[0]) and torch.equal(model.biases[1][1], b1[1])
    json.dumps(info)
    assert len(info["seeds"]) == 2 and info["time_s"] >= 0
    keys = {"pool_size", "quotas", "mean_chosen_score", "tie_weight"}
    assert keys <= set(info["seeds"][0]["layers"][0])


def test_tie_weight_variants():
    assert tie_weights("ibci", 2) == [0.0, 1.0]
    assert tie_weights("ibci", 3) == [0.0, 0.5, 1.0]
    assert tie_weights("tie", 3) == [1.0] * 3
    assert tie_weights("iim", 2) == [0.0, 0.0]
    assert tie_weights("iim", 2, explicit=[0.2, 0.7]) == [0.2, 0.7]


# ---- rejections -------------------------------------------------------------


def _one_line(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


@pytest.mark.parametrize(
    "kwargs, parts",
    [
        (dict(pool_factor=0.5), ["pool_factor=0.5", "100 neurons"]),
        (dict(max_pool=50), ["max_pool=50", "100 neurons"]),
        (
            dict(tie_weights=[0.5]),
            ["init.tie_weights=[0.5] has 1 value but the network has 2 layers"],
        ),
        (dict(tie_weights=[0.0, 1.5]), ["1.5", "[0, 1]"]),
        (dict(scope="local"), ["init.orthogonal_scope='local'", "global", "per_class"]),
        (dict(base="uniform"), ["'uniform'", "xavier"]),
        (dict(y_shift=10), ["num_classes=10", "0..9"]),
    ],
)
def test_ibci_init_rejects_bad_settings(kwargs, parts):
    x, y = _synthetic(n=50)
    y = y + kwargs.pop("y_shift", 0)
    args = dict(sizes=[784, 100, 10], x=x, y=y, base="he", tie_weights=[0.0, 1.0])
    args.update(kwargs)
    with pytest.raises(UserError) as excinfo:
        ibci_init(generator=torch.Generator().manual_seed(0), **args)
    _one_line(excinfo, *parts)


def test_tie_weights_rejects_bad_settings():
    with pytest.raises(UserError) as excinfo:
        tie_weights("lsuv", 2)
    _one_line(excinfo, "'lsuv'", "ibci", "tie", "iim")
    with pytest.raises(UserError) as excinfo:
        tie_weights("ibci", 2, explicit=[0.5])
    _one_line(excinfo, "init.tie_weights=[0.5] has 1 value but the network has 2 layers")
    with pytest.raises(UserError) as excinfo:
        tie_weights("ibci", 2, explicit=[-0.1, 1.0])
    _one_line(excinfo, "-0.1", "outside [0, 1]")
