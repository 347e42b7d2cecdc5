"""The neuron campaign of IBCI (Mao et al., CIKM 2021).

IBCI initializes an MLP layer by layer in forward order, the output layer
included. For each layer it draws a pool of candidate neurons from a base
distribution, measures how each candidate's response over a data sample scores
on two information-bottleneck criteria, and elects the layer's neurons from the
pool in a class-balanced campaign that favours high scores and novelty:

- IIM (input information maintenance): the variance of a candidate's response,
  i.e. its term of tr(Sigma) of the layer's response covariance.
- TIE (target information enhancement): inter-class minus intra-class variance
  of the response.

Every class owns the candidates that respond most to it and gets a share of the
layer's slots; within a class the candidate maximizing
score * ||residual|| / ||candidate|| wins, the residual being the candidate's
weight column after projecting out the neurons elected so far (Gram-Schmidt).
The layer keeps the winners' original columns, in election order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError
from ..vocab import SCOPES
from .bases import base_std, sample_base
from .settings import check_campaign, check_pool, check_tie_weights, pool_size


# A residual shorter than this fraction of its candidate lies in the span of the
# elected neurons up to rounding; normalizing it would only amplify rounding.
NOVELTY_EPS = 1e-6

# Rows of the response matrix reduced at a time: bounds the temporaries of the
# class sums to a few tens of MB whatever the sample size.
_CHUNK_ROWS = 8192


def tie_weights(variant: str, n_layers: int, explicit: list[float] | None = None) -> list[float]:
    """The TIE weight w_l of each layer (the score is w_l * TIE + (1 - w_l) * IIM).

    "ibci": from 0 at the first layer to 1 at the output layer, linearly
    (torch.linspace(0, 1, n_layers), so a one-layer network gets [0.0]);
    "tie": all 1; "iim": all 0. A list `explicit` overrides any variant.
    """
    check_campaign(variant)
    if n_layers < 1:
        raise UserError(f"a network needs at least one layer, got n_layers={n_layers!r}")
    if explicit is not None:
        weights = [float(w) for w in explicit]
        check_tie_weights(weights, n_layers)
        return weights
    if variant == "ibci":
        return torch.linspace(0.0, 1.0, n_layers, dtype=torch.float64).tolist()
    return [1.0 if variant == "tie" else 0.0] * n_layers


def class_moments(R: Tensor, y: Tensor, num_classes: int) -> dict:
    """Per-class statistics of the responses R [N, K] from one pass of segment sums.

    The class sums are of R minus a pilot mean `shift` of each column, so that
    variance = E[d^2] - E[d]^2 does not cancel catastrophically when a
    response's mean dwarfs its spread (e.g. a large bias). Chunks of rows are
    reduced by float32 matmuls against a one-hot label matrix and accumulated
    in float64. Returns present [C] (bool), counts [C], means [C, K] (of
    R - shift; NaN rows for absent classes), variances [C, K] (ddof=0),
    total_var [K] (ddof=0) and shift [K].
    """
    N, K = R.shape
    y = y.long()
    shift = R[: min(N, _CHUNK_ROWS)].mean(dim=0)
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    s1 = torch.zeros(num_classes, K, dtype=torch.float64)
    s2 = torch.zeros(num_classes, K, dtype=torch.float64)
    for start in range(0, N, _CHUNK_ROWS):
        d = R[start : start + _CHUNK_ROWS] - shift
        onehot_t = F.one_hot(y[start : start + _CHUNK_ROWS], num_classes).to(R.dtype).T
        s1 += (onehot_t @ d).double()
        s2 += (onehot_t @ d.square_()).double()
    present = counts > 0
    n = counts.clamp_min(1).unsqueeze(1)
    means = s1 / n
    variances = (s2 / n - means.square()).clamp_min(0)
    m = s1.sum(dim=0) / N
    total_var = (s2.sum(dim=0) / N - m.square()).clamp_min(0)
    means[~present] = float("nan")
    variances[~present] = float("nan")
    return dict(
        present=present, counts=counts, means=means, variances=variances, total_var=total_var, shift=shift.double()
    )


def _unit(v: Tensor) -> Tensor:
    """v / ||v||_2, or v itself when it is all zeros (nothing to normalize)."""
    norm = v.norm()
    return v / norm if norm > 0 else v


def _tie_from_stats(stats: dict) -> Tensor:
    present = stats["present"]
    means = stats["means"][present]
    inter = means.var(dim=0, correction=0)
    intra = stats["variances"][present].mean(dim=0)
    return _unit(inter) - _unit(intra)


def iim_score(R: Tensor) -> Tensor:
    """IIM of each candidate [K]: the population variance (ddof=0) of its response column."""
    return R.double().var(dim=0, correction=0)


def tie_score(R: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """TIE of each candidate [K]: inter-class minus intra-class variance of its response.

    inter = variance (ddof=0) of the class means, unweighted over the classes
    present in y; intra = mean over present classes of the within-class
    variance (ddof=0). Each term is divided by its L2 norm over the pool first
    (the two live on different scales), then TIE = inter_n - intra_n.
    """
    return _tie_from_stats(class_moments(R, y, num_classes))


def pool_scores(R: Tensor, y: Tensor, num_classes: int, tie_weight: float) -> dict:
    """Both criteria, the campaign score and the owner class of every candidate.

    R: responses [N, K] of the K candidates (after the activation); y: labels [N].
    IIM and TIE are each divided by their L2 norm over the pool, combined as
    tie_weight * TIE + (1 - tie_weight) * IIM and min-max scaled to [0, 1]
    (a constant score becomes all ones). The campaign multiplies the score by a
    novelty in [0, 1]; that product ranks sensibly only for non-negative scores,
    which is why the score is scaled to [0, 1] rather than left signed.

    The owner of a candidate is the class on which its mean response is highest
    (ties go to the lowest class; absent classes own nothing).

    Returns float64 tensors iim [K], tie [K], score [K], class_means [C, K]
    (NaN rows for classes absent from y) and owner [K] (long).
    """
    stats = class_moments(R, y, num_classes)
    iim = stats["total_var"]
    tie = _tie_from_stats(stats)
    combined = tie_weight * _unit(tie) + (1.0 - tie_weight) * _unit(iim)
    lo, hi = combined.min(), combined.max()
    span = hi - lo
    if span <= 1e-12 * max(abs(float(lo)), abs(float(hi)), 1e-300):
        score = torch.ones_like(combined)
    else:
        score = (combined - lo) / span
    owner = stats["means"].nan_to_num(nan=-math.inf).argmax(dim=0)
    class_means = stats["means"] + stats["shift"]
    return dict(iim=iim, tie=tie, score=score, owner=owner, class_means=class_means)


def class_quotas(counts: Tensor, n_out: int, ties: str = "low") -> Tensor:
    """Split a layer's n_out slots over classes as evenly as their candidates allow.

    counts [C]: candidates owned by each class. Water-filling: a class owning no
    more candidates than its even share of the open slots gives all it has, and
    the open slots are shared again over the other classes until every class
    left can fill its share. The slots an even split leaves over go to the
    classes with more candidates, which can always afford one more; among
    equal counts to the lower class index (`ties="low"`) or the higher
    (`"high"`, as the authors' code does). Returns quotas [C] (long) summing
    to n_out, each at most its count.
    """
    counts = torch.as_tensor(counts, dtype=torch.long)
    if int(counts.sum()) < n_out:
        raise UserError(
            f"the pool holds {int(counts.sum())} candidates but the layer needs {n_out} neurons"
        )
    quotas = torch.zeros_like(counts)
    active = counts > 0
    remaining = int(n_out)
    while remaining > 0:
        n_active = int(active.sum())
        # counts <= remaining / n_active, kept in integers to avoid rounding.
        saturated = active & (counts * n_active <= remaining)
        if saturated.any():
            quotas[saturated] = counts[saturated]
            remaining -= int(counts[saturated].sum())
            active &= ~saturated
            continue
        share, extra = divmod(remaining, n_active)
        quotas[active] = share
        if extra:
            idx = active.nonzero().squeeze(1)
            if ties == "high":
                idx = idx.flip(0)
            # Stable sort on -count: more candidates first, then idx's order among equals.
            order = torch.argsort(-counts[idx], stable=True)
            quotas[idx[order[:extra]]] += 1
        remaining = 0
    return quotas


def _elect(key: Tensor, novel: Tensor, score: Tensor, taken: Tensor) -> int:
    """Index of the winner among the candidates not taken: the highest key
    (score * novelty); among equal keys a still-novel candidate, then the
    higher score, then the lower index. Equal keys happen once residuals vanish
    (key 0 for every exhausted candidate) or between exact duplicates."""
    free = ~taken
    best = key.masked_fill(taken, -math.inf).max()
    tied = free & (key == best)
    if (tied & novel).any():
        tied &= novel
    return int(score.masked_fill(~tied, -math.inf).argmax())


def run_campaign(
    candidates: Tensor,
    score: Tensor,
    owner: Tensor,
    quotas: Tensor,
    scope: str = "global",
    return_basis: bool = False,
):
    """Elect sum(quotas) candidates; returns their indices (long) in election order.

    candidates [fan_in, K] (one column per neuron), score [K] (non-negative:
    it is multiplied by a novelty in [0, 1]), owner [K] in [0, C), quotas [C].
    Classes vote in order 0..C-1; class c elects quotas[c] of its own
    candidates one by one, each time the one maximizing
    score * ||residual|| / ||candidate||, where the residual is the candidate
    minus its projection on the span of the neurons elected so far. The span
    is kept as an orthonormal basis grown by Gram-Schmidt; a winner whose
    residual is below NOVELTY_EPS of its norm adds nothing to it (it can only
    win once no novel candidate with a positive key is left).

    scope "global": one basis for the whole layer (Algorithm 1 of the paper);
    "per_class": the basis starts empty for every class (the authors' code).
    With `return_basis=True` it returns (picked, bases), bases being a list of
    [fan_in, r] float64 tensors: one for "global", one per class for
    "per_class".
    """
    if scope not in SCOPES:
        raise UserError(f"init.orthogonal_scope={scope!r} is not one of {', '.join(SCOPES)}")
    fan_in, K = candidates.shape
    quotas = torch.as_tensor(quotas, dtype=torch.long)
    C = quotas.numel()
    owned = torch.bincount(owner, minlength=C)
    if owned.numel() > C:
        raise UserError(f"owner holds class {int(owner.max())} but quotas cover only {C} classes")
    if (quotas > owned).any():
        c = int((quotas > owned).nonzero()[0])
        raise UserError(
            f"class {c} has quota {int(quotas[c])} but owns only {int(owned[c])} candidates"
        )

    # Sorting by owner makes each class's candidates one contiguous block, so a
    # class only scans its own block and updates only the blocks still to vote;
    # keeping one row per candidate makes those blocks contiguous in memory
    # (strided column blocks made each matvec tens of times slower).
    order = torch.argsort(owner, stable=True)
    cand = candidates.T[order].double()
    s = score[order].double()
    norms = cand.norm(dim=1)
    ends = owned.cumsum(0).tolist()
    starts = [0, *ends[:-1]]
    resid = cand.clone()
    taken = torch.zeros(K, dtype=torch.bool)
    basis = torch.empty(int(quotas.sum()), fan_in, dtype=torch.float64)
    rank = 0
    bases = []
    picked = []
    for c in range(C):
        lo, hi = starts[c], ends[c]
        if scope == "per_class":
            # Only class c's own block is ever updated in this scope, so its
            # residuals are still the original candidates: resetting the basis
            # is all a fresh start takes.
            if c > 0:
                bases.append(basis[:rank].T.clone())
            rank = 0
        upto = K if scope == "global" else hi
        for _ in range(int(quotas[c])):
            r_norm = resid[lo:hi].norm(dim=1)
            novelty = torch.where(norms[lo:hi] > 0, r_norm / norms[lo:hi].clamp_min(1e-300), 0.0)
            novel = novelty >= NOVELTY_EPS
            novelty = novelty * novel
            j = _elect(s[lo:hi] * novelty, novel, s[lo:hi], taken[lo:hi]) + lo
            taken[j] = True
            picked.append(int(order[j]))
            if not novel[j - lo]:
                continue
            a = resid[j] / r_norm[j - lo]
            # One re-orthogonalization keeps the basis orthonormal to rounding
            # even after many nearly dependent winners ("twice is enough").
            if rank:
                a = a - (basis[:rank] @ a) @ basis[:rank]
                a = a / a.norm()
            basis[rank] = a
            rank += 1
            block = resid[lo:upto]
            block.addr_(block @ a, a, alpha=-1.0)
    bases.append(basis[:rank].T.clone())
    picked = torch.tensor(picked, dtype=torch.long)
    return (picked, bases) if return_basis else picked


def campaign_layer(
    H: Tensor,
    y: Tensor,
    candidates: Tensor,
    bias: float,
    hidden: bool,
    tie_weight: float,
    n_out: int,
    num_classes: int = 10,
    scope: str = "global",
) -> tuple[Tensor, dict]:
    """Elect one layer's n_out neurons from `candidates` [fan_in, K] on the sample H [N, fan_in].

    Responses are act(H @ candidates + bias), act = ReLU for a hidden layer and
    the identity for the output layer. Returns W [fan_in, n_out] (the winners'
    original columns, in election order) and a JSON-ready info dict (pool_size,
    class_counts, quotas, mean_chosen_score, tie_weight) whose "pool" entry
    holds tensors for an information plane (iim, tie, score, owner, picked);
    drop "pool" before writing the info out.
    """
    R = H @ candidates
    R += bias
    if hidden:
        R.relu_()
    scores = pool_scores(R, y, num_classes, tie_weight)
    del R
    return elect_from_scores(scores, candidates, tie_weight, n_out, num_classes, scope)


def elect_from_scores(
    scores: dict, candidates: Tensor, tie_weight: float, n_out: int, num_classes: int = 10, scope: str = "global"
) -> tuple[Tensor, dict]:
    """The second half of `campaign_layer`: quotas and campaign, given `pool_scores` of the candidates.

    Separate so that a layer whose responses are not H @ candidates can be
    elected the same way: a convolution's filters, flattened into the columns
    of `candidates` [fan_in, K], each scored on its pooled feature map
    (`ibci.conv`). Returns what `campaign_layer` returns.
    """
    counts = torch.bincount(scores["owner"], minlength=num_classes)
    quotas = class_quotas(counts, n_out)
    picked = run_campaign(candidates, scores["score"], scores["owner"], quotas, scope)
    info = dict(
        pool_size=int(candidates.shape[1]),
        class_counts=counts.tolist(),
        quotas=quotas.tolist(),
        mean_chosen_score=float(scores["score"][picked].mean()),
        tie_weight=float(tie_weight),
        pool=dict(
            iim=scores["iim"],
            tie=scores["tie"],
            score=scores["score"],
            owner=scores["owner"],
            picked=picked,
        ),
    )
    return candidates[:, picked].contiguous(), info


def check_inputs(sizes, x, y, base, tie_weights, std, pool_factor, max_pool, scope, num_classes) -> None:
    """Raise UserError for campaign inputs it cannot honour (both readings check theirs here)."""
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise UserError(f"sizes={list(sizes)} must list at least two positive widths")
    if scope not in SCOPES:
        raise UserError(f"init.orthogonal_scope={scope!r} is not one of {', '.join(SCOPES)}")
    check_tie_weights(list(tie_weights), len(sizes) - 1)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        base_std(base, fan_in, fan_out, std)
        check_pool(fan_out, pool_factor, max_pool)
    if x.dim() != 2 or x.shape[1] != sizes[0]:
        raise UserError(f"x has shape {list(x.shape)} but the network takes [N, {sizes[0]}]")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise UserError(f"y has shape {list(y.shape)} but x has {x.shape[0]} samples (need N >= 1)")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise UserError(f"y must hold integer class labels, got dtype {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise UserError(
            f"y holds labels {int(y.min())}..{int(y.max())} but num_classes={num_classes} "
            f"allows 0..{num_classes - 1}"
        )


def ibci_init(
    sizes: list[int],
    x: Tensor,
    y: Tensor,
    base: str,
    tie_weights: list[float],
    generator: torch.Generator,
    bias: float = 0.0,
    std: float | None = None,
    pool_factor: float = 5,
    max_pool: int = 1000,
    scope: str = "global",
    num_classes: int = 10,
) -> tuple[list[Tensor], list[Tensor], dict]:
    """IBCI weights and biases of one MLP with widths `sizes` (input first).

    Layer l draws its pool of min(pool_factor * n_out, max_pool) candidates
    from `base` (its own fan-in and fan-out) with `generator`, scores them on
    the post-activation output of the layers already elected (x for the first
    layer) with TIE weight tie_weights[l], and elects n_out of them. Every
    bias is the constant `bias`. Returns (weights [[fan_in, fan_out]],
    biases [[fan_out]], info); info["layers"] holds JSON-ready dicts
    (pool_size, class_counts, quotas, mean_chosen_score, tie_weight) and
    info["pools"][l] the pool tensors of layer l (iim, tie, score, owner,
    picked), to be dropped before writing.
    """
    check_inputs(sizes, x, y, base, tie_weights, std, pool_factor, max_pool, scope, num_classes)
    y = y.long()

    def elect_layer(l: int, H: Tensor, fan_in: int, fan_out: int, hidden: bool):
        K = pool_size(fan_out, pool_factor, max_pool)
        candidates = sample_base(base, fan_in, fan_out, K, generator, std)
        W, info = campaign_layer(H, y, candidates, bias, hidden, tie_weights[l], fan_out, num_classes, scope)
        return W, info, info.pop("pool")

    return layer_by_layer(sizes, x, bias, elect_layer)


def layer_by_layer(sizes: list[int], x: Tensor, bias: float, elect_layer) -> tuple[list[Tensor], list[Tensor], dict]:
    """A campaign's outer loop: each layer elected on the output of the layers elected before it.

    `elect_layer(l, H, fan_in, fan_out, hidden)` returns the layer's weights
    [fan_in, fan_out], its JSON-ready info and its pool tensors; H is x for the
    first layer, then the previous layer's ReLU output with the constant
    `bias`. Returns (weights, biases, {"layers": [...], "pools": {l: ...}}).
    """
    H = x.float()
    n_layers = len(sizes) - 1
    weights, biases, layers, pools = [], [], [], []
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        hidden = l < n_layers - 1
        W, info, pool = elect_layer(l, H, fan_in, fan_out, hidden)
        b = torch.full((fan_out,), float(bias))
        if hidden:
            H = torch.addmm(b, H, W).relu_()
        weights.append(W)
        biases.append(b)
        layers.append(info)
        pools.append(pool)
    # A dict, not a list, so that callers filtering tensors and dicts out of
    # the info to write drop it.
    return weights, biases, dict(layers=layers, pools=dict(enumerate(pools)))

