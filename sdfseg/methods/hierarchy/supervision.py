"""Training glue of the hierarchical feature head: per-frame mask hierarchies, feature rays, losses.

At trainer setup :class:`FeatureSupervision` reads every training frame's multi-granular
masks (``masks_<features.mask_source>/<frame>.npz``) and keeps, per frame, only its
:class:`~sdfseg.data.hierarchy.PatchHierarchy` (patch map + sparse mask-patch incidence),
the pixels sorted by patch (for patch-proportional sampling) and, for the ultrametric
loss, the parents of the mask inclusion tree. No ``[M, H, W]`` array is kept: memory is
about two int32 ``[H, W]`` maps per frame plus the incidence (:meth:`memory_bytes`).

Each iteration :meth:`FeatureSupervision.sample` draws ``features.rays`` rays of one
frame (half uniform over the image, half shared equally by its patches, at least
``loss.min_rays`` per patch, so that small parts are seen as often as walls) and gives each ray its patch id and pixel.
:class:`FeatureLoss` turns the rendered features of those rays into the weighted
contrastive (OmniSeg3D eq. 4, vectorised over rays, patches and levels) or ultrametric
loss plus the norm loss. It uses its own random generator, so enabling the head does
not change the main ray sampler's draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ...config import FeatureConfig
from ...data.hierarchy import (
    PatchHierarchy, batch_correlation, build_patch_hierarchy, inclusion_parents, sample_hierarchical_pairs,
)
from ...data.masks import MaskSet
from ...data.rays import Batch, RaySampler
from ...data.scene import Scene
from ...errors import SdfsegError
from ...progress import progress_iter
from . import losses as hl


def resize_maskset(masks: MaskSet, hw: tuple[int, int]) -> MaskSet:
    """Nearest-neighbour resize of every mask to ``hw = (H, W)`` (one mask at a time)."""
    h, w = hw
    if (masks.height, masks.width) == (h, w):
        return masks
    ys = np.minimum(((np.arange(h) + 0.5) * masks.height / h).astype(np.int64), masks.height - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * masks.width / w).astype(np.int64), masks.width - 1)
    return MaskSet.from_masks((m[ys][:, xs] for m in masks), h, w, masks.scores)


def frame_masks(scene: Scene, source: str, frame: int) -> Optional[MaskSet]:
    """The mask set of ``frame`` from ``scene.mask_dirs[source]`` at the scene's resolution, or None if absent."""
    if source not in scene.mask_dirs:
        have = ", ".join(sorted(scene.mask_dirs)) or "none"
        raise SdfsegError(f"features.mask_source: scene {scene.path} has no masks_{source}/ folder "
                          f"(available sources: {have}; write one with tools/segment2d.py)")
    path = scene.mask_dirs[source] / f"{scene.frame_names[frame]}.npz"
    if not path.exists():
        return None
    return resize_maskset(MaskSet.load(path), scene.hw)


@dataclass
class FrameHierarchy:
    """What training needs of one frame's masks (see the module docstring)."""

    hier: PatchHierarchy
    order: np.ndarray
    """int32 ``[C]`` covered pixels (flat index) sorted by patch id."""
    starts: np.ndarray
    """int64 ``[Np]`` start of each patch's pixels in ``order``."""
    parents: Optional[np.ndarray]
    """int64 ``[M]`` inclusion-tree parent of each mask (ultrametric loss only)."""

    def nbytes(self) -> int:
        inc = self.hier.incidence
        parts = [self.hier.patch_map, self.hier.patch_area, self.order, self.starts, inc.data, inc.indices,
                 inc.indptr] + ([self.parents] if self.parents is not None else [])
        return int(sum(a.nbytes for a in parts))


def frame_hierarchy(masks: MaskSet, ultrametric: bool, seed: int = 0) -> FrameHierarchy:
    """Patch hierarchy of one frame, its pixels sorted by patch, and (optionally) the inclusion tree."""
    hier = build_patch_hierarchy(masks, seed=seed)
    flat = hier.patch_map.ravel()
    covered = np.flatnonzero(flat >= 0)
    order = covered[np.argsort(flat[covered], kind="stable")].astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(hier.patch_area)[:-1]]).astype(np.int64)
    parents = None
    if ultrametric:
        parents = inclusion_parents(hier.mask_intersections(), hier.mask_areas())
    return FrameHierarchy(hier, order, starts, parents)


class FeatureSupervision:
    """Per-frame mask hierarchies of the training frames and the feature-ray sampler.

    Args:
        scene: the (normalised) training scene. cfg: the ``features`` config section.
        sampler: the trainer's :class:`RaySampler` (for ray geometry and frame list).
        seed: seed of this sampler's own generator. progress: show a progress bar.
    """

    def __init__(self, scene: Scene, cfg: FeatureConfig, sampler: RaySampler, seed: int = 0,
                 progress: bool = True):
        self.cfg = cfg
        self.sampler = sampler
        self.rng = np.random.default_rng([seed, 7])
        ultra = cfg.loss.kind == "ultrametric"
        self.frames: dict[int, FrameHierarchy] = {}
        for f in progress_iter(sampler.frames, f"mask hierarchies ({cfg.mask_source})", progress, unit="frame"):
            masks = frame_masks(scene, cfg.mask_source, int(f))
            if masks is not None and len(masks):
                self.frames[int(f)] = frame_hierarchy(masks, ultra, seed=int(f))
        if not self.frames:
            raise SdfsegError(f"features.mask_source: {scene.mask_dirs[cfg.mask_source]} has no masks for any "
                              f"training frame (expected <frame>.npz files)")
        self._with_masks = np.array(sorted(self.frames), dtype=np.int64)

    def memory_bytes(self) -> int:
        """Bytes held by the precomputed hierarchies of all frames."""
        return sum(fh.nbytes() for fh in self.frames.values())

    def pick_frame(self, preferred: int) -> int:
        """``preferred`` if it has masks, else a random training frame that has."""
        if preferred in self.frames:
            return preferred
        return self.random_frame()

    def random_frame(self) -> int:
        """A random training frame that has masks."""
        return int(self.rng.choice(self._with_masks))

    def _patch_pixels(self, fh: FrameHierarchy, n: int) -> np.ndarray:
        """About ``n`` pixels shared equally by the patches (>= min_rays each; random patches kept if too many)."""
        area = fh.hier.patch_area
        if n <= 0 or area.size == 0:
            return np.zeros(0, dtype=np.int64)
        m = self.cfg.loss.min_rays
        alloc = np.full(area.size, max(m, n // area.size), dtype=np.int64)
        perm = self.rng.permutation(area.size)
        keep = perm[np.cumsum(alloc[perm]) <= max(n, m)]
        seg = np.repeat(keep, alloc[keep])
        offs = (self.rng.random(seg.size) * area[seg]).astype(np.int64)
        return fh.order[fh.starts[seg] + offs].astype(np.int64)

    def sample(self, preferred_frame: int) -> Batch:
        """Feature rays of one frame, with ``patch`` ``[R]`` and ``pixel`` ``[R, 2]`` set."""
        f = self.pick_frame(int(preferred_frame))
        fh = self.frames[f]
        n_uniform = self.cfg.rays // 2
        h, w = fh.hier.patch_map.shape
        pix = np.concatenate([self.rng.integers(0, h * w, size=n_uniform),
                              self._patch_pixels(fh, self.cfg.rays - n_uniform)])
        batch = self.sampler.gather(np.full(pix.size, f), pix, np.zeros(pix.size, dtype=np.int64))
        dev = batch.origins.device
        batch.patch = torch.as_tensor(fh.hier.patch_map.ravel()[pix].astype(np.int64), device=dev)
        batch.pixel = torch.as_tensor(np.stack([pix // w, pix % w], axis=1), device=dev)
        return batch

    def hierarchy(self, frame: int) -> FrameHierarchy:
        return self.frames[int(frame)]


class FeatureLoss:
    """Weighted feature-head losses of one feature batch (config ``features.loss``)."""

    def __init__(self, cfg: FeatureConfig, seed: int = 0):
        self.cfg = cfg
        self.rng = np.random.default_rng([seed, 11])

    def __call__(self, features: torch.Tensor, batch: Batch, fh: FrameHierarchy) -> dict[str, torch.Tensor]:
        """``features`` [R, D] rendered for ``batch`` (rays of one frame with hierarchy ``fh``) -> losses."""
        lc = self.cfg.loss
        out = {"feat_norm": lc.norm_weight * hl.norm_loss(features)}
        if lc.kind == "contrastive":
            local, corr = batch_correlation(fh.hier, batch.patch.cpu().numpy())
            out["feat_contrastive"] = lc.weight * hl.hierarchical_contrastive_loss(
                features, local, corr, decay=lc.decay, min_rays=lc.min_rays, level_reduction=lc.level_reduction)
        else:
            pixels = batch.pixel.cpu().numpy()
            member = fh.hier.membership(pixels)
            pos, neg, _ = sample_hierarchical_pairs(member, fh.parents, lc.pairs_per_mask, rng=self.rng)
            um = hl.ultrametric_contrastive_loss(features, pixels.astype(np.float64), pos, neg, tau=lc.tau,
                                                 k=lc.knn, euclidean_weight=lc.euclidean_weight)
            out["feat_ultrametric"] = lc.weight * um.total
        return out


def feature_depth_t(batch: Batch, use_depth: bool, depth_kind: str) -> Optional[torch.Tensor]:
    """Ray distance of sensor depth ``[R]`` for depth-guided sampling (as the main rays), or None."""
    if use_depth and batch.depth is not None and depth_kind == "metric":
        return batch.depth * batch.ray_scale
    return None
