"""IBCI as the authors' released code does it (`init.reading=authors`).

The paper's Algorithm 1 is implemented in `ibci.init.campaign` (`init.reading=paper`).
The authors' public code (HaitaoMao/Neuron-Campaign-for-Initialization-Guided-
by-Information-Bottleneck-Theory, `src/Initiailization.py` and `src/main.py`)
differs from it in ways that can matter; this module follows the code, each
difference being one function or constant here:

1. Scale: candidates are drawn by `kaiming_normal_` on a [fan_in, K] tensor,
   which PyTorch reads as fan_in = K, so every entry is N(0, 2 / K) whatever
   the base (`candidate_std`). The elected columns keep that scale, so the
   Xavier and He rows of this reading are the same draw.
2. Criteria on standard deviations (`scores`): IIM = std (ddof=1) of a
   candidate's response; TIE = std (ddof=1) of the class means minus the mean
   within-class std (ddof=1, over count - 1 + 1e-6 as torch_scatter's
   `scatter_std` divides); each of these two is divided by its L2 norm over the
   pool, TIE once more after the subtraction, IIM too; the score is
   alpha * TIE + (1 - alpha) * IIM, used raw (it can be negative).
3. Biases: candidates are scored with a bias of 0.01 (`SCORING_BIAS`, the
   code's inverted `use_bias` flag), while the model's biases stay at the base
   config's constant (0).
4. The campaign (`elect`) runs class by class with a fresh basis per class,
   classical Gram-Schmidt against the class's original candidates, keys
   score * ||residual|| / ||candidate|| with the first index winning a tie, and
   nothing that stops a candidate from winning twice: with negative scores an
   elected candidate (key ~0) beats every unelected one, so a layer can hold
   duplicate neurons (`distinct` in the info counts them). The slots an even
   split leaves over go to the classes with more candidates, the higher class
   index among equals (`class_quotas(..., ties="high")`).

Also in the code but not an init matter: 101 training epochs (`epochs=101`)
and per-layer TIE weights given only for depth 2 ([0, 1], the same as our
linear schedule there).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from .settings import AUTHORS_MAX_POOL, AUTHORS_POOL_FACTOR, candidate_std, pool_size
from .campaign import check_inputs, class_moments, class_quotas, layer_by_layer

# The code scores candidates with this bias whatever the model's bias is.
SCORING_BIAS = 0.01
# torch_scatter's scatter_std divides the squared deviations by (count - 1) + 1e-6.
_SCATTER_STD_EPS = 1e-6
# The code's defaults: --candidate_weights 5, --max_num_candidate 1000 (ibci.init.bases holds them: they set its scale).
# init.authors_arithmetic: float32 is the code's; float64 this suite's reading before it followed that.
ARITHMETIC = {"float32": torch.float32, "float64": torch.float64}
POOL_FACTOR = AUTHORS_POOL_FACTOR
MAX_POOL = AUTHORS_MAX_POOL


def _l2_normalized(v: Tensor) -> Tensor:
    norm = v.norm()
    return v / norm if norm > 0 else v


def scores(R: Tensor, y: Tensor, num_classes: int, alpha: float, dtype=torch.float32) -> dict:
    """The code's criteria for responses R [N, K] (activation and scoring bias applied), in its float32.

    Step by step as src/Initiailization.py computes them on [K, N]: class
    means and within-class stds as torch_scatter's scatter_mean / scatter_std
    give them (an absent class has mean 0 and std 0; the std divides by
    count - 1, at least 1, plus 1e-6), TIE = std over classes of the means
    (ddof=1) minus the mean within-class std, each divided by its L2 norm and
    the difference once more, IIM = std over samples (ddof=1) divided by its
    norm, score = alpha * TIE + (1 - alpha) * IIM. Float32 throughout, as
    there: the campaign's repeat winners and a layer whose residuals run out
    are decided by that rounding. Returns iim [K], tie [K], score [K],
    class_means [C, K] and owner [K] (argmax of the class means, the first
    class on ties). `dtype` float64: the same formulas from float64 class
    moments (`campaign.class_moments`), this suite's before it followed the
    code's float32 (`init.authors_arithmetic`).
    """
    if dtype == torch.float64:
        return _scores_float64(R, y, num_classes, alpha)
    pred = R.float().t()  # [K, N]
    y = y.long()
    count = torch.zeros(num_classes).index_add_(0, y, torch.ones(y.shape[0]))
    mean = torch.zeros(pred.shape[0], num_classes).index_add_(1, y, pred) / count.clamp(1)
    sq = torch.zeros(pred.shape[0], num_classes).index_add_(1, y, (pred - mean[:, y]) ** 2)
    inner = (sq / ((count.clamp(1) - 1).clamp(1) + _SCATTER_STD_EPS)).sqrt().mean(1)
    outer = mean.std(1)
    tie = _l2_normalized(_l2_normalized(outer) - _l2_normalized(inner))
    iim = _l2_normalized(pred.std(1))
    score = alpha * tie + (1 - alpha) * iim
    return dict(iim=iim, tie=tie, score=score, class_means=mean.t(), owner=mean.argmax(1))


def _scores_float64(R: Tensor, y: Tensor, num_classes: int, alpha: float) -> dict:
    stats = class_moments(R, y, num_classes)
    n = stats["counts"].unsqueeze(1)
    N = R.shape[0]
    means = (stats["means"] + stats["shift"]).nan_to_num(nan=0.0)
    within_var = (stats["variances"] * n / ((n - 1).clamp_min(1) + _SCATTER_STD_EPS)).nan_to_num(nan=0.0)
    inner = within_var.sqrt().mean(dim=0)
    outer = means.std(dim=0, correction=1)
    tie = _l2_normalized(_l2_normalized(outer) - _l2_normalized(inner))
    iim = _l2_normalized((stats["total_var"] * N / max(N - 1, 1)).sqrt())
    score = alpha * tie + (1.0 - alpha) * iim
    return dict(iim=iim, tie=tie, score=score, class_means=means, owner=means.argmax(dim=0))


def elect(candidates: Tensor, score: Tensor, owner: Tensor, quotas: Tensor, dtype=torch.float32) -> Tensor:
    """The code's campaign, in its float32; indices of the winners, class 0's first, in election order.

    Within class k (its candidates Wk, residuals D = Wk at the start), each
    slot goes to argmax score * ||D_j|| / ||Wk_j||; with a = D_best / ||D_best||
    the residuals become D - a (a^T Wk). Because every a is orthogonal to the
    ones before it, that is the projection of Wk off the span elected so far
    (classical Gram-Schmidt). A candidate may win more than once. `dtype`
    float64 is this suite's election before it followed the code's float32
    (`init.authors_arithmetic`): the same picks until a class's residuals
    run out, where rounding decides which repeat winner comes next.
    """
    picked = []
    W = candidates.to(dtype)
    for k, quota in enumerate(torch.as_tensor(quotas).tolist()):
        if quota == 0:
            continue
        idx = torch.nonzero(owner.eq(k), as_tuple=True)[0]
        Wk, sk = W[:, idx], score[idx].to(dtype)
        D = Wk
        for _ in range(quota):
            d_norm = D.norm(dim=0)
            best = torch.argmax(sk * d_norm / Wk.norm(dim=0))
            a = D[:, best] / d_norm[best]
            D = D - torch.mm(a.reshape(-1, 1), torch.mm(a.reshape(1, -1), Wk))
            picked.append(int(idx[best]))
    return torch.tensor(picked, dtype=torch.long)


def ibci_init(
    sizes: list[int],
    x: Tensor,
    y: Tensor,
    tie_weights: list[float],
    generator: torch.Generator,
    bias: float = 0.0,
    pool_factor: float = POOL_FACTOR,
    max_pool: int = MAX_POOL,
    num_classes: int = 10,
    arithmetic: str = "float32",
) -> tuple[list[Tensor], list[Tensor], dict]:
    """IBCI weights [fan_in, fan_out] and biases of one MLP, the authors' code's way.

    Same contract as `ibci.campaign.ibci_init` (which validates the shared
    arguments): layer l draws min(pool_factor * n_out, max_pool) candidates at
    std sqrt(2 / K), scores them on the previous layers' output with bias
    SCORING_BIAS, elects n_out with `elect`, and the layer gets the constant
    `bias`. info["layers"] adds draw_std and distinct (different neurons
    elected) to the paper reading's fields.
    """
    # The base plays no part here; "he" only satisfies the shared checks.
    check_inputs(sizes, x, y, "he", tie_weights, None, pool_factor, max_pool, "per_class", num_classes)
    y = y.long()
    if arithmetic not in ARITHMETIC:
        raise UserError(f"init.authors_arithmetic={arithmetic!r} is not one of: {', '.join(ARITHMETIC)}")
    dtype = ARITHMETIC[arithmetic]

    def elect_layer(l: int, H: Tensor, fan_in: int, fan_out: int, hidden: bool):
        K = pool_size(fan_out, pool_factor, max_pool)
        std = candidate_std(K)
        candidates = torch.randn(fan_in, K, generator=generator) * std
        R = H @ candidates
        R += SCORING_BIAS
        if hidden:
            R.relu_()
        s = scores(R, y, num_classes, tie_weights[l], dtype)
        del R
        counts = torch.bincount(s["owner"], minlength=num_classes)
        quotas = class_quotas(counts, fan_out, ties="high")
        picked = elect(candidates, s["score"], s["owner"], quotas, dtype)
        info = dict(
            pool_size=K, draw_std=std, class_counts=counts.tolist(), quotas=quotas.tolist(),
            mean_chosen_score=float(s["score"][picked].mean()), tie_weight=float(tie_weights[l]),
            distinct=int(picked.unique().numel()),
        )
        pool = dict(iim=s["iim"], tie=s["tie"], score=s["score"], owner=s["owner"], picked=picked)
        return candidates[:, picked].contiguous(), info, pool

    return layer_by_layer(sizes, x, bias, elect_layer)
