"""VolSDF Laplace density: SDF values -> volume density.

``sigma(s) = (1 / beta) * Psi_beta(-s)`` where ``Psi_beta`` is the CDF of a
zero-mean Laplace distribution with scale ``beta``:

* ``s > 0`` (outside):  ``sigma = exp(-s / beta) / (2 beta)``
* ``s <= 0`` (inside):  ``sigma = (1 - exp(s / beta) / 2) / beta``

One learnable ``beta = |beta_param| + beta_min`` is shared by all SDF channels
(ObjectSDF++), so the per-object densities and the scene density agree.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn


class LaplaceDensity(nn.Module):
    """Laplace-CDF density with one learnable sharpness ``beta``; works on any shape."""

    def __init__(self, beta_init: float = 0.1, beta_min: float = 1e-4) -> None:
        super().__init__()
        self.beta_min = float(beta_min)
        self.beta_param = nn.Parameter(torch.tensor(float(beta_init)))

    @property
    def beta(self) -> Tensor:
        """Current ``beta`` (0-d tensor, differentiable)."""
        return self.beta_param.abs() + self.beta_min

    def forward(self, sdf: Tensor, beta: Optional[Union[float, Tensor]] = None) -> Tensor:
        """Density of ``sdf`` (any shape, e.g. ``[R, S]`` or ``[R, S, K]``); same shape out.

        ``beta`` overrides the learned value (samplers use this).
        """
        b = self.beta if beta is None else beta
        return laplace_density(sdf, b)


def laplace_density(sdf: Tensor, beta: Union[float, Tensor]) -> Tensor:
    """``(1 / beta) * Psi_beta(-sdf)`` elementwise; ``beta`` scalar or broadcastable tensor."""
    # 0.5 + 0.5 * sign(s) * (exp(-|s|/beta) - 1) equals Psi(-s) on both sides of 0
    return (0.5 + 0.5 * sdf.sign() * torch.expm1(-sdf.abs() / beta)) / beta
