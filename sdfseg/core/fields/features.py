"""Hierarchical feature head (OmniSeg3D / ultrametric feature fields).

A small MLP maps the SDF backbone's per-sample geometry feature (optionally with its
own frequency encoding of the position) to a ``D``-dimensional segmentation feature
(``D = 16`` is enough, OmniSeg3D Tab. 4). The caller volume-renders the per-sample
features with the backbone's weights, ``f(r) = sum_i w_i f_i``; by default the
geometry feature is detached so the feature losses do not move the geometry.
"""

from __future__ import annotations

import torch
from torch import nn


def frequency_encoding(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """NeRF positional encoding ``[..., 3] -> [..., 3 + 6 * num_freqs]`` (x, sin, cos of 2^k pi x)."""
    if num_freqs <= 0:
        return x
    scales = (2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)) * torch.pi
    xs = x[..., None, :] * scales[:, None]
    return torch.cat([x, torch.sin(xs).flatten(-2), torch.cos(xs).flatten(-2)], dim=-1)


class FeatureField(nn.Module):
    """MLP ``geometry feature [..., in_dim] (+ encoded x) -> feature [..., dim]``.

    Args:
        in_dim: size of the backbone's geometry feature.
        dim: output feature size ``D``.
        hidden: hidden layer width.
        layers: number of hidden layers.
        num_freqs: frequencies of the head's own position encoding (0 = none; then
            ``forward`` ignores ``x``).
        detach_geometry: stop feature-loss gradients at the geometry feature.
    """

    def __init__(self, in_dim: int, dim: int = 16, hidden: int = 64, layers: int = 2, num_freqs: int = 0,
                 detach_geometry: bool = True) -> None:
        super().__init__()
        if in_dim < 0 or dim <= 0 or hidden <= 0 or layers < 0 or num_freqs < 0:
            raise ValueError(f"FeatureField: bad sizes in_dim={in_dim} dim={dim} hidden={hidden} "
                             f"layers={layers} num_freqs={num_freqs}")
        self.in_dim, self.dim, self.num_freqs = in_dim, dim, num_freqs
        self.detach_geometry = detach_geometry
        width = in_dim + (3 + 6 * num_freqs if num_freqs > 0 else 0)
        if width == 0:
            raise ValueError("FeatureField: no input (in_dim = 0 and num_freqs = 0)")
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        blocks.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*blocks)

    def forward(self, geo_feat: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """``geo_feat`` [..., in_dim], ``x`` [..., 3] (needed when ``num_freqs > 0``) -> [..., dim]."""
        if geo_feat.shape[-1] != self.in_dim:
            raise ValueError(f"FeatureField: geometry feature has {geo_feat.shape[-1]} channels, expected {self.in_dim}")
        h = geo_feat.detach() if self.detach_geometry else geo_feat
        if self.num_freqs > 0:
            if x is None:
                raise ValueError("FeatureField: positions x are required when num_freqs > 0")
            h = torch.cat([h, frequency_encoding(x, self.num_freqs)], dim=-1)
        return self.mlp(h)
