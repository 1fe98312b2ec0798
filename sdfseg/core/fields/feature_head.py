"""The feature head of the scene model: backbone geometry feature + its own hash grid -> D-d feature.

:class:`~sdfseg.core.fields.features.FeatureField` maps the backbone's geometry feature (and a
frequency encoding of x) to the feature; on its own it is too smooth to separate small
parts (the geometry feature is trained for colour and SDF, the frequency encoding is
low-pass). :class:`FeatureHead` adds a small multiresolution hash grid that only the
feature losses train (OmniSeg3D also gives its feature field its own hash grid), and
stops gradients at the backbone's geometry feature when ``detach_geometry`` is set.
"""

from __future__ import annotations

import torch
from torch import nn

from .encodings import HashGridEncoding
from .features import FeatureField


class FeatureHead(nn.Module):
    """``(geometry feature [P, F], x [P, 3]) -> feature [P, D]``.

    Args:
        geo_dim: size F of the backbone's geometry feature. dim: D. hidden, layers: MLP size.
        num_freqs: frequencies of the position encoding. detach_geometry: stop gradients at
        the geometry feature. grid_levels: levels of the head's own hash grid (0 = none).
        log2_hashmap_size, max_resolution: the grid's table size and finest resolution.
        backend: hash grid backend (auto | torch | tcnn).
    """

    def __init__(self, geo_dim: int, dim: int = 16, hidden: int = 64, layers: int = 2, num_freqs: int = 6,
                 detach_geometry: bool = True, grid_levels: int = 8, log2_hashmap_size: int = 15,
                 max_resolution: int = 256, backend: str = "auto") -> None:
        super().__init__()
        self.dim = dim
        self.detach_geometry = detach_geometry
        self.grid = None
        if grid_levels > 0:
            self.grid = HashGridEncoding(n_levels=grid_levels, n_features_per_level=2,
                                         log2_hashmap_size=log2_hashmap_size, base_resolution=16,
                                         max_resolution=max(max_resolution, 16), backend=backend)
        grid_dim = self.grid.out_dim if self.grid is not None else 0
        self.field = FeatureField(geo_dim + grid_dim, dim=dim, hidden=hidden, layers=layers, num_freqs=num_freqs,
                                  detach_geometry=False)

    def grid_parameters(self) -> list[nn.Parameter]:
        return list(self.grid.parameters()) if self.grid is not None else []

    def mlp_parameters(self) -> list[nn.Parameter]:
        return list(self.field.parameters())

    def forward(self, geo_feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``geo_feat`` [P, F], ``x`` [P, 3] (normalised scene coordinates) -> [P, D]."""
        h = geo_feat.detach() if self.detach_geometry else geo_feat
        if self.grid is not None:
            h = torch.cat([h, self.grid(x)], dim=-1)
        return self.field(h, x)
