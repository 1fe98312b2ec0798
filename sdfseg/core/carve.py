"""Depth carving: space the training views' sensor depth saw through is empty in the maps and meshes.

A trained SDF is fatter than the scene where the views constrain it least: at silhouettes a ray that
passes an object's edge gathers opacity from its density halo, and under a chair's seat or a table's
top, seen only by a few grazing rays, the solid grows down towards the floor. The sensor depth of the
training views says where each pixel's ray met the scene, so every point a ray passed on its way there
is free space. After training, :class:`DepthCarve` lifts the SDF of every point the views saw through
above the surface: the maps and the per-object meshes then keep no geometry in front of what the
cameras measured.

A point ``x`` is projected into every training view (pinhole ``K``, OpenCV axes); in a view where it
lands on a pixel with depth ``D`` (z-depth, 0 = no reading) at camera depth ``z``, the view says
*free* when ``z < D - margin`` and *surface* when ``|z - D| <= margin`` (behind the surface, or outside
the image, it says nothing). ``x`` is carved when at least one view says free and free views make at
least ``share`` of the views that say either: a structure thinner than a pixel (a chair leg), missed
by some views' pixel centres and seen by the others, keeps the points those others see.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

VIEW_BATCH = 16
"""Views projected at once (points x views x 3 floats of work memory)."""


class DepthCarve:
    """Free space of the training views' depth maps (see the module docstring).

    Args:
        c2w: ``[F, 4, 4]`` camera-to-world (normalised scene units, OpenCV axes).
        K: ``[F, 3, 3]`` intrinsics. depth: ``[F, H, W]`` z-depth in normalised units (0 = no reading).
        margin: depth tolerance (normalised units): sensor noise and the width of a pixel's footprint.
        share: the least share of the views that see a point which must see through it.
        lift: carved points get an SDF of at least this (normalised units) in every channel.
    """

    def __init__(self, c2w, K, depth, margin: float, share: float, lift: float, device="cpu"):
        if margin <= 0 or not 0 < share <= 1 or lift <= 0:
            raise ValueError(f"DepthCarve: margin {margin} and lift {lift} must be > 0, share {share} in (0, 1]")
        self.w2c = torch.linalg.inv(torch.as_tensor(np.asarray(c2w), dtype=torch.float32)).to(device)
        self.K = torch.as_tensor(np.asarray(K), dtype=torch.float32, device=device)
        # stored as given (float16 scenes stay float16): one lookup per point and view
        self.depth = torch.as_tensor(np.asarray(depth), device=device)
        self.margin, self.share, self.lift = float(margin), float(share), float(lift)

    @property
    def device(self) -> torch.device:
        return self.depth.device

    def counts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per point of ``x [P, 3]``: how many views see through it and how many see it on their surface."""
        x = x.to(self.device, torch.float32)
        n_views, h, w = self.depth.shape
        free = torch.zeros(x.shape[0], device=self.device)
        surface = torch.zeros_like(free)
        for a in range(0, n_views, VIEW_BATCH):
            w2c, k, depth = self.w2c[a:a + VIEW_BATCH], self.K[a:a + VIEW_BATCH], self.depth[a:a + VIEW_BATCH]
            p = torch.einsum("vij,pj->vpi", w2c[:, :3, :3], x) + w2c[:, None, :3, 3]  # [V, P, 3]
            z = p[..., 2]
            zs = z.clamp(min=1e-6)
            u = torch.floor(k[:, None, 0, 0] * p[..., 0] / zs + k[:, None, 0, 2])
            v = torch.floor(k[:, None, 1, 1] * p[..., 1] / zs + k[:, None, 1, 2])
            inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
            flat = (v.clamp(0, h - 1) * w + u.clamp(0, w - 1)).long()  # [V, P]
            d = torch.gather(depth.reshape(depth.shape[0], -1), 1, flat).float()
            seen = inside & (d > 0)
            free += (seen & (z < d - self.margin)).sum(dim=0)
            surface += (seen & ((z - d).abs() <= self.margin)).sum(dim=0)
        return free, surface

    def free(self, x: Tensor) -> Tensor:
        """``[P]`` bool: the points of ``x [P, 3]`` the views saw through."""
        free, surface = self.counts(x)
        return (free >= 1) & (free >= self.share * (free + surface))

    def __call__(self, x: Tensor, sdf: Tensor) -> Tensor:
        """Channel SDFs ``sdf [P, K]`` at ``x [P, 3]`` with the carved points lifted to at least :attr:`lift`."""
        carved = self.free(x).to(sdf.device)
        return torch.where(carved[:, None], sdf.clamp(min=self.lift), sdf)


def scene_carve(scene, margin: float, share: float, lift: float, device="cpu") -> Optional[DepthCarve]:
    """The carve of a normalised ``scene``'s training views (``margin`` in the scene's own depth units,
    e.g. metres; ``share`` and ``lift`` as in :class:`DepthCarve`); None when the scene has no dense
    sensor depth (no depth, or a COLMAP capture's sparse points)."""
    if scene.depth is None or scene.depth_kind != "metric":
        return None
    frames = np.asarray(scene.split["train"])
    return DepthCarve(scene.c2w[frames], scene.intrinsics[frames], scene.depth[frames],
                      margin / scene.normalization.scale, share, lift, device)


def map_carve(model, scene, render) -> Optional[DepthCarve]:
    """The depth carve of the maps and meshes of ``render`` (a :class:`sdfseg.config.RenderConfig`) for
    ``model`` on its normalised ``scene``; None when ``render.carve_margin`` is 0, or when the scene has no
    dense sensor depth (said on stdout). Carved points lie 4 Laplace scales of the maps' density above the
    surface (``render.beta``, else the trained one), where the density is 2% of its value at the surface."""
    if render.carve_margin <= 0:
        return None
    beta = render.beta if render.beta is not None else float(model.beta())
    carve = scene_carve(scene, render.carve_margin, render.carve_share, 4.0 * beta,
                        next(model.parameters()).device)
    if carve is None:
        print("render.carve_margin: the scene has no dense sensor depth; the maps and meshes are not carved")
    return carve
