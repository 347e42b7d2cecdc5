"""LSUV (Mishkin & Matas, 2016): layer-sequential unit-variance rescaling of a base draw."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from ..nets.mlp import StackedMLP


def lsuv(
    model: StackedMLP, x: Tensor, tol: float = 0.02, max_iter: int = 10, output_layer: bool = True
) -> list[list[int]]:
    """Layer-sequential unit-variance scaling (Mishkin & Matas, 2016), in place.

    Layer by layer in forward order, every layer including the output layer
    (unless `output_layer` is False: it then keeps its draw), rescale each model's weights (not its biases) until the variance of the
    layer's pre-activation output over the batch `x` is within `tol` of 1, or
    `max_iter` rescalings were made. With nonzero biases one rescaling is not
    exact, which is why it iterates. Returns the number of rescalings per layer
    per model.
    """
    if not 0 < tol:
        raise UserError(f"lsuv tol must be positive, got {tol!r}")
    S = model.num_models
    iterations = []
    h = x.expand(S, *x.shape) if x.dim() == 2 else x
    for l in range(model.num_layers if output_layer else model.num_layers - 1):
        W, b = model.weights[l], model.biases[l]
        z, counts = unit_variance_(W, lambda: torch.baddbmm(b.unsqueeze(1), h, W), tol, max_iter)
        h = z.relu_() if l < model.num_layers - 1 else z
        iterations.append(counts.tolist())
    return iterations


def unit_variance_(W: Tensor, output, tol: float, max_iter: int) -> tuple[Tensor, Tensor]:
    """LSUV's step for one layer of a stack of S models, in place.

    W [S, ...]: the layer's weights, rescaled per model; `output()` returns
    the layer's pre-activation output [S, ...] with the current W (any shape
    after S: a linear layer's [S, batch, units], a convolution's feature maps),
    whose variance over everything but S is driven to within `tol` of 1 in
    at most `max_iter` rescalings. Returns (the final output, rescalings [S]).
    """
    S = W.shape[0]
    counts = torch.zeros(S, dtype=torch.long)
    for _ in range(max_iter):
        z = output()
        var = z.var(dim=tuple(range(1, z.dim())))
        todo = (var - 1).abs() >= tol
        if not todo.any():
            break
        # A dead layer (variance 0) cannot be rescaled to unit variance; leave it.
        scale = torch.where(todo & (var > 0), var.clamp_min(1e-30).rsqrt(), torch.ones_like(var))
        W.mul_(scale.view(S, *(1,) * (W.dim() - 1)))
        counts += todo.long()
    return output(), counts
