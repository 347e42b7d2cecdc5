"""The authors' reading of IBCI (ibci/authors.py) against transcriptions of their code's formulas,
and the controls and LSUV switches the verdict needs."""

import math

import pytest
import torch

from ibci.init import authors, settings
from ibci.init import campaign
from ibci.cli import compose
from ibci.errors import UserError
from ibci.init.stack import initialize
from ibci.init.bases import base_std, init_base, orthonormal
from ibci.init.lsuv import lsuv
from ibci.runs.validate import validate


def _responses(n=600, k=40, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    # Class-dependent offsets so that both criteria vary over the pool.
    R = torch.randn(n, k, generator=g) + torch.randn(classes, k, generator=g)[y] * torch.rand(k, generator=g)
    return R.relu(), y


def _scores_by_hand(R, y, classes, alpha):
    """The code's formulas written out candidate by candidate, class by class (float64)."""
    R = R.double()
    K = R.shape[1]
    means = torch.zeros(K, classes, dtype=torch.float64)
    inner_std = torch.zeros(K, classes, dtype=torch.float64)
    for k in range(K):
        for c in range(classes):
            v = R[y == c, k]
            means[k, c] = v.mean()
            # torch_scatter.scatter_std: sum of squared deviations over (count - 1) + 1e-6
            inner_std[k, c] = math.sqrt(float(((v - v.mean()) ** 2).sum()) / (len(v) - 1 + 1e-6))
    inner = inner_std.mean(dim=1)
    outer = means.std(dim=1)  # torch's default: ddof=1
    inner = inner / inner.norm()
    outer = outer / outer.norm()
    acc = outer - inner
    acc = acc / acc.norm()
    div = R.std(dim=0)
    div = div / div.norm()
    return alpha * acc + (1 - alpha) * div, means.argmax(dim=1)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_scores_equal_a_transcription_of_the_authors_formulas(alpha):
    R, y = _responses()
    expected, owner = _scores_by_hand(R, y, 4, alpha)
    got = authors.scores(R, y, 4, alpha)
    torch.testing.assert_close(got["score"].double(), expected, rtol=1e-5, atol=1e-6)  # float32 as theirs; unit-norm scores
    assert torch.equal(got["owner"], owner)
    if alpha == 1.0:
        assert (got["score"] < 0).any()  # used raw: TIE-heavy scores go negative


def test_the_draw_is_kaiming_normal_on_the_pool_shape_whatever_the_base():
    torch.manual_seed(0)
    W = torch.empty(784, 500)
    torch.nn.init.kaiming_normal_(W, nonlinearity="relu")  # what the authors' code calls
    assert settings.candidate_std(500) == pytest.approx(math.sqrt(2 / 500))
    assert W.std().item() == pytest.approx(settings.candidate_std(500), rel=0.01)
    # The elected columns keep that scale: each is one of the pool's draws.
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(500, 20), torch.arange(500) % 10
    weights, _, info = authors.ibci_init([20, 12, 10], x, y, [0.0, 1.0], g)
    pool = torch.randn(20, 60, generator=torch.Generator().manual_seed(3)) * math.sqrt(2 / 60)
    for w in weights[0].T:
        assert (pool - w[:, None]).abs().amax(0).min() < 1e-6
    assert [l["draw_std"] for l in info["layers"]] == [math.sqrt(2 / 60), math.sqrt(2 / 50)]
    assert settings.scale_only_std(100) == math.sqrt(2 / 500)
    assert settings.scale_only_std(32) == math.sqrt(2 / 160)
    assert base_std("authors", 784, 100) == math.sqrt(2 / 500)
    assert base_std("authors", 100, 10) == math.sqrt(2 / 50)


def _elect_by_hand(W, scores, owner, quotas):
    """The authors' loop: per class, argmax of s * ||D|| / ||Wk||, then D = D - a (a^T Wk)."""
    picked = []
    for k, q in enumerate(quotas):
        idx = torch.nonzero(owner == k, as_tuple=True)[0]
        Wk, sk = W[:, idx].double(), scores[idx].double()
        D = Wk
        for _ in range(q):
            dn = D.norm(dim=0)
            best = int(torch.argmax(sk * dn / Wk.norm(dim=0)))
            a = D[:, best] / dn[best]
            D = D - a.reshape(-1, 1) @ (a.reshape(1, -1) @ Wk)
            picked.append(int(idx[best]))
    return picked


def test_election_matches_the_authors_loop_and_the_per_class_campaign():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(30, 50, generator=g)
    owner = torch.randint(0, 3, (50,), generator=g)
    quotas = campaign.class_quotas(torch.bincount(owner, minlength=3), 12, ties="high").tolist()
    scores = torch.rand(50, generator=g) + 0.1
    got = authors.elect(W, scores, owner, torch.tensor(quotas))
    assert got.tolist() == _elect_by_hand(W, scores, owner, quotas)
    # With positive scores classical and modified Gram-Schmidt elect the same: our per-class campaign.
    ours = campaign.run_campaign(W, scores.double(), owner, torch.tensor(quotas), scope="per_class")
    assert got.tolist() == ours.tolist()
    assert len(set(got.tolist())) == 12


def test_negative_scores_let_a_candidate_win_twice():
    W = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    owner = torch.zeros(4, dtype=torch.long)
    scores = torch.tensor([-0.5, -0.2, -0.9, -0.4])
    got = authors.elect(W, scores, owner, torch.tensor([3]))
    assert got.tolist()[0] == 1  # the least negative first
    assert len(set(got.tolist())) < 3  # then its spent residual (key ~0) beats every negative key


def _split_by_hand(selected, counts):
    """The authors' get_split_strategy_, written out."""
    ans = [0] * len(counts)
    n, res, st, each = len(counts), selected, 0, 0
    order = sorted((c, i) for i, c in enumerate(counts))
    while res > 0:
        each = res // (n - st)
        pre = st
        for i in range(st, n):
            if order[i][0] > each:
                st = i
                break
            ans[order[i][1]] = order[i][0]
            res -= order[i][0]
        if pre == st:
            break
    extra = res % (n - st)
    for i in range(n - extra, n):
        ans[order[i][1]] = each + 1
    for i in range(st, n - extra):
        ans[order[i][1]] = each
    return ans


def test_quotas_follow_the_authors_split_including_its_tie_break():
    assert campaign.class_quotas([3, 3], 3).tolist() == [2, 1]
    assert campaign.class_quotas([3, 3], 3, ties="high").tolist() == [1, 2]
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        counts = torch.randint(0, 12, (10,), generator=g)
        n_out = int(torch.randint(1, int(counts.sum()) + 1, (1,), generator=g))
        got = campaign.class_quotas(counts, n_out, ties="high").tolist()
        assert got == _split_by_hand(n_out, counts.tolist()), (counts.tolist(), n_out)


def test_scoring_bias_is_001_while_the_model_bias_stays_at_the_base_constant():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(300, 16), torch.arange(300) % 10
    _, biases, _ = authors.ibci_init([16, 20, 10], x, y, [0.0, 1.0], g)
    assert all((b == 0).all() for b in biases)
    # Scored with bias 0.01: the scores are those of responses shifted by 0.01 before the ReLU.
    g1 = torch.Generator().manual_seed(0)
    _, _, info = authors.ibci_init([16, 20, 10], x, y, [0.0, 1.0], g1)
    pool = torch.randn(16, 100, generator=torch.Generator().manual_seed(0)) * math.sqrt(2 / 100)
    expected = authors.scores((x @ pool + 0.01).relu(), y, 10, 0.0)["score"]
    torch.testing.assert_close(info["pools"][0]["score"], expected)


def test_the_authors_reading_is_one_draw_for_both_bases(tmp_path):
    x, y = torch.rand(400, 784), torch.arange(400) % 10
    models = []
    for base in ("xavier", "he"):
        cfg = compose([f"base={base}", "init=ibci", "init.reading=authors", "profile=smoke"])
        models.append(initialize(cfg, x, y, [torch.Generator().manual_seed(5)])[0])
    for wa, wb in zip(models[0].weights, models[1].weights):
        assert torch.equal(wa, wb)


def test_uniform_bias_is_nn_linear_default_and_leaves_the_weights_alone():
    sizes = [50, 20, 10]
    const = init_base(sizes, [torch.Generator().manual_seed(2)], "xavier", 0.0)
    unif = init_base(sizes, [torch.Generator().manual_seed(2)], "xavier", "uniform")
    for a, b in zip(const.weights, unif.weights):
        assert torch.equal(a, b)
    for fan_in, b in zip(sizes[:-1], unif.biases):
        assert b.abs().max() <= 1 / math.sqrt(fan_in)
        assert b.std() > 0.3 / math.sqrt(fan_in)  # spread over the interval, not a constant


@pytest.mark.parametrize("shape", [(40, 10), (10, 40)])
def test_orthonormal_pre_init(shape):
    q = orthonormal(*shape, torch.Generator().manual_seed(0)).double()
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    torch.testing.assert_close(gram, torch.eye(min(shape), dtype=torch.float64), atol=1e-6, rtol=0)


def test_lsuv_can_keep_the_output_layer():
    sizes = [30, 16, 10]
    x = torch.rand(200, 30)
    model = init_base(sizes, [torch.Generator().manual_seed(0)], "he")
    before = model.weights[-1].clone()
    lsuv(model, x, output_layer=False)
    assert torch.equal(model.weights[-1], before)
    assert abs(float((x @ model.weights[0][0]).var()) - 1) < 0.02  # the hidden layer is still scaled


@pytest.mark.parametrize("overrides, words", [
    (["init=ibci", "init.reading=code"], ["init.reading='code'", "paper", "authors"]),
    (["init=ibci", "base.bias=uniform"], ["base.bias=uniform", "vanilla"]),
    (["base.bias=abc"], ["base.bias='abc'", "uniform"]),
    (["init=lsuv", "init.output_layer=maybe"], ["init.output_layer='maybe'", "true or false"]),
])
def test_bad_readings_and_switches_are_one_line_errors(overrides, words):
    with pytest.raises(UserError) as e:
        validate(compose(overrides))
    assert all(w in str(e.value) for w in words), str(e.value)
