"""The authors' election, transcribed from their released code (src/Initiailization.py) in its own float32
arithmetic, against `ibci.init.authors` on shared inputs: the same candidates, data and alpha must elect the same
neurons in the same order, the repeat winners of negative scores included.

The transcription is ours (no line of their repository is here); it follows their code step by step: class means
and within-class stds as torch_scatter's scatter_mean / scatter_std compute them (an absent class has mean 0, the
std divides by count - 1 + 1e-6), std over classes and over samples with ddof 1, each criterion divided by its L2
norm, the score alpha * TIE + (1 - alpha) * IIM, owners by argmax of the class means, the quotas of
get_split_strategy_, then per class a fresh classical Gram-Schmidt against the class's original candidates.
"""

import pytest
import torch

from ibci.init import authors
from ibci.init.campaign import class_quotas


def their_election(x: torch.Tensor, y: torch.Tensor, W: torch.Tensor, n_out: int, alpha: float, hidden: bool,
                   C: int = 10) -> list[int]:
    pred = x @ W + 0.01  # the scoring bias their inverted use_bias flag gives
    pred = (pred.relu() if hidden else pred).t()  # [K, N], float32 throughout
    count = torch.zeros(C).index_add_(0, y, torch.ones(y.shape[0]))
    sums = torch.zeros(pred.shape[0], C).index_add_(1, y, pred)
    mean = sums / count.clamp(1)
    sq = torch.zeros(pred.shape[0], C).index_add_(1, y, (pred - mean[:, y]) ** 2)
    inner = (sq / ((count.clamp(1) - 1).clamp(1) + 1e-6)).sqrt().mean(1)
    outer = mean.std(1)
    inner, outer = inner / inner.norm(), outer / outer.norm()
    acc = outer - inner
    acc = acc / acc.norm()
    div = pred.std(1)
    div = div / div.norm()
    score = alpha * acc + (1 - alpha) * div
    owner = mean.argmax(1)
    quotas = class_quotas(torch.bincount(owner, minlength=C), n_out, ties="high").tolist()
    picked = []
    for k in range(C):
        idx = torch.nonzero(owner.eq(k), as_tuple=True)[0]
        Wk, sk = W[:, idx], score[idx]
        D = Wk
        for _ in range(quotas[k]):
            D_norm = D.norm(dim=0)
            best = torch.argmax(sk * D_norm / Wk.norm(dim=0))
            a = D[:, best] / D_norm[best]
            D = D - torch.mm(a.reshape(-1, 1), torch.mm(a.reshape(1, -1), Wk))
            picked.append(int(idx[best]))
    return picked


def ours(x, y, W, n_out, alpha, hidden, C=10) -> list[int]:
    R = x @ W + authors.SCORING_BIAS
    if hidden:
        R.relu_()
    s = authors.scores(R, y, C, alpha)
    q = class_quotas(torch.bincount(s["owner"], minlength=C), n_out, ties="high")
    return authors.elect(W, s["score"], s["owner"], q).tolist()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("alpha, hidden, fan_in, K, n_out", [(0.0, True, 64, 250, 50), (1.0, False, 50, 50, 10),
                                                             (0.5, True, 30, 100, 40)])
def test_the_same_inputs_elect_the_same_neurons_in_the_same_order(seed, alpha, hidden, fan_in, K, n_out):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(2000) % 10
    x = (torch.rand(2000, fan_in, generator=g) + 0.3 * torch.nn.functional.one_hot(y, fan_in)[:, :fan_in]).float()
    W = torch.randn(fan_in, K, generator=g) * (2 / K) ** 0.5
    theirs = their_election(x, y, W, n_out, alpha, hidden)
    assert ours(x, y, W, n_out, alpha, hidden) == theirs
    if alpha == 1.0:  # TIE alone goes negative: their campaign elects some neurons more than once
        assert len(set(theirs)) <= len(theirs)
