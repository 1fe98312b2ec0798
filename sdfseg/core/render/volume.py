"""Volume-rendering maths as small pure functions (no modules, no state).

Shapes: ``R`` rays, ``S`` samples per ray (sorted ``t``), ``K`` SDF channels,
``C`` value channels. Quadrature (VolSDF/NeRF): sample ``i`` covers
``[t_i, t_i + delta_i)`` with constant density ``sigma_i``.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor


def points_along_rays(origins: Tensor, dirs: Tensor, t: Tensor) -> Tensor:
    """Sample positions ``o + t d``: ``[R, 3], [R, 3], [R, S] -> [R, S, 3]``."""
    return origins[:, None, :] + t[..., None] * dirs[:, None, :]


def deltas(t: Tensor, far: Optional[Union[Tensor, float]] = None, last_delta: float = 1e10) -> Tensor:
    """Interval lengths ``delta_i = t_{i+1} - t_i`` ``[R, S] -> [R, S]``.

    The last interval ends at ``far`` (``[R]`` or a float) when given, else has
    length ``last_delta`` (VolSDF's "infinite" last interval, so a ray that
    reaches the last sample inside a surface becomes fully opaque).
    """
    inner = t[..., 1:] - t[..., :-1]
    if far is None:
        last = torch.full_like(t[..., :1], float(last_delta))
    else:
        far_t = torch.as_tensor(far, dtype=t.dtype, device=t.device)
        last = (far_t.expand(t.shape[:-1]).unsqueeze(-1) - t[..., -1:]).clamp_min(0.0)
    return torch.cat([inner, last], dim=-1)


def alpha(sigma: Tensor, delta: Tensor) -> Tensor:
    """Per-interval opacity ``1 - exp(-sigma * delta)``; any broadcastable shapes."""
    return -torch.expm1(-sigma * delta)


def transmittance(sigma: Tensor, delta: Tensor) -> Tensor:
    """``T_i = exp(-sum_{j<i} sigma_j delta_j)`` (exclusive): ``[R, S], [R, S] -> [R, S]``."""
    tau = sigma * delta
    acc = torch.cumsum(tau[..., :-1], dim=-1)
    return torch.exp(-torch.cat([torch.zeros_like(tau[..., :1]), acc], dim=-1))


def render_weights(sigma: Tensor, delta: Tensor) -> Tensor:
    """Rendering weights ``w_i = T_i * alpha_i``: ``[R, S], [R, S] -> [R, S]``."""
    return transmittance(sigma, delta) * alpha(sigma, delta)


def composite(weights: Tensor, values: Tensor) -> Tensor:
    """``sum_i w_i v_i``: ``[R, S], [R, S, C] -> [R, C]``."""
    return (weights[..., None] * values).sum(dim=-2)


def render_depth(weights: Tensor, t: Tensor, normalize: bool = False) -> Tensor:
    """Expected ray distance ``sum_i w_i t_i`` ``[R, S], [R, S] -> [R]``.

    ``normalize=True`` divides by the accumulated opacity (depth of the hit
    surface even when the ray is not fully opaque).
    """
    depth = (weights * t).sum(dim=-1)
    if normalize:
        depth = depth / weights.sum(dim=-1).clamp_min(1e-8)
    return depth


def object_opacity(sigma_min: Tensor, sigma_k: Tensor, delta: Tensor) -> Tensor:
    """Occlusion-aware object opacity (ObjectSDF++ / ClusteringSDF eq. 1): ``O [R, K]``.

    ``T_i`` comes from the scene density ``sigma_min [R, S]`` (density of the min
    SDF), ``alpha_{k,i} = 1 - exp(-sigma_k,i delta_i)`` from each channel's density
    ``sigma_k [R, S, K]``; ``O_k = sum_i T_i alpha_{k,i}``. ``delta [R, S]``.
    """
    trans = transmittance(sigma_min, delta)  # [R, S]
    return (trans[..., None] * alpha(sigma_k, delta[..., None])).sum(dim=-2)
