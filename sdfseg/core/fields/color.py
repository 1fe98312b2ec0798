"""IDR-style colour head: (x, view direction, normal, geometry feature) -> rgb."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from .encodings import FrequencyEncoding


class ColorField(nn.Module):
    """Radiance MLP ``[x, enc(d), n, feature] -> n_layers x hidden -> 3`` with a sigmoid.

    ``forward(x [P, 3], dirs [P, 3], normals [P, 3], feature [P, feature_dim]) -> rgb [P, 3]``
    in [0, 1]. View directions get a ``n_dir_frequencies`` frequency encoding
    (input included); ``normals`` are the (unnormalised) scene-SDF gradients as in IDR.
    """

    def __init__(
        self,
        feature_dim: int = 256,
        hidden_dim: int = 256,
        n_layers: int = 2,
        n_dir_frequencies: int = 4,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        self.dir_encoding = FrequencyEncoding(n_dir_frequencies, include_input=True)
        dims = [3 + self.dir_encoding.out_dim + 3 + feature_dim] + [hidden_dim] * n_layers + [3]
        layers = []
        for i in range(len(dims) - 1):
            lin = nn.Linear(dims[i], dims[i + 1])
            layers.append(parametrizations.weight_norm(lin) if weight_norm else lin)
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, dirs: Tensor, normals: Tensor, feature: Tensor) -> Tensor:
        """Colour ``[P, 3]`` in [0, 1] for points ``x [P, 3]`` seen along ``dirs [P, 3]``."""
        h = torch.cat([x, self.dir_encoding(dirs), normals, feature], dim=-1)
        for i, lin in enumerate(self.layers):
            h = lin(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return torch.sigmoid(h)
