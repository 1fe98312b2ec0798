"""Simulated SAM-like multi-granular masks from ground-truth hierarchy maps.

Per view, each hierarchy level (part, object, group) is present with its own
probability (at least one level always is), like SAM's "everything" output that
sometimes returns parts, sometimes whole objects and sometimes groups. Each
region at a present level becomes a mask, then the masks are corrupted:
missed masks, adjacent masks of a level merged into one, masks split along a
random line, ragged boundaries (erosion or dilation). Stuff regions (connected
components of each stuff class) are masks too. Identical masks are kept once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import SdfsegError
from .label_noise import disk_footprint, touching_pairs
from .masks import MaskSet
from .scene import ClassInfo

LEVELS: tuple[str, ...] = ("part", "object", "group")


@dataclass
class MaskSimConfig:
    """Rates of the simulated mask generator."""

    p_part: float = 0.6
    """Probability that the part level is present in a view."""
    p_object: float = 0.9
    """Probability that the object level is present in a view."""
    p_group: float = 0.5
    """Probability that the group level is present in a view."""
    p_stuff: float = 0.9
    """Probability that a stuff region (connected component of one stuff class) gives a mask."""
    miss_rate: float = 0.1
    """Probability that a thing mask is dropped."""
    merge_rate: float = 0.05
    """Probability that two touching masks of the same level are replaced by their union."""
    split_rate: float = 0.05
    """Probability that a mask is split in two along a random line through its centroid."""
    boundary_rate: float = 0.3
    """Probability that a mask is eroded or dilated by 1..boundary_px pixels."""
    boundary_px: int = 2
    """Largest erosion/dilation radius in pixels."""
    min_area: int = 4
    """Masks with fewer pixels are dropped."""

    def validate(self) -> "MaskSimConfig":
        """Check value ranges; raises :class:`SdfsegError` naming the bad field."""
        for name in ("p_part", "p_object", "p_group", "p_stuff", "miss_rate", "merge_rate", "split_rate",
                     "boundary_rate"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise SdfsegError(f"mask_noise.{name}: expected a value in [0, 1], got {v}")
        if self.boundary_px < 0 or self.min_area < 0:
            raise SdfsegError("mask_noise.boundary_px / min_area: expected non-negative integers")
        return self


def choose_levels(rng: np.random.Generator, cfg: MaskSimConfig) -> list[str]:
    """The hierarchy levels present in one view (never empty: falls back to ``object``)."""
    probs = {"part": cfg.p_part, "object": cfg.p_object, "group": cfg.p_group}
    levels = [lv for lv in LEVELS if rng.random() < probs[lv]]
    return levels or ["object"]


def _split_mask(mask: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    ys, xs = np.nonzero(mask)
    angle = rng.uniform(0, np.pi)
    side = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle) > 0
    a = np.zeros_like(mask)
    a[ys[side], xs[side]] = True
    return [a, mask & ~a]


def _ragged(mask: np.ndarray, rng: np.random.Generator, cfg: MaskSimConfig) -> np.ndarray:
    disk = disk_footprint(int(rng.integers(1, cfg.boundary_px + 1)))
    if rng.random() < 0.5:
        return ndimage.binary_dilation(mask, structure=disk)
    return ndimage.binary_erosion(mask, structure=disk, border_value=1)


def level_masks(labels: np.ndarray, rng: np.random.Generator, cfg: MaskSimConfig) -> list[tuple[np.ndarray, bool]]:
    """Noisy masks of one level from its id map ``[H, W]`` (0 = none): ``[(bool [H, W], corrupted)]``."""
    ids = [int(i) for i in np.unique(labels) if i > 0]
    keep = {k: rng.random() >= cfg.miss_rate for k in ids}
    groups = {k: [k] for k in ids}
    for a, b in touching_pairs(labels):
        if keep[a] and keep[b] and rng.random() < cfg.merge_rate and groups[a] is not groups[b]:
            merged = groups[a] + groups[b]
            for k in merged:
                groups[k] = merged
    out: list[tuple[np.ndarray, bool]] = []
    seen: set[int] = set()
    for k in ids:
        if not keep[k] or k in seen:
            continue
        members = groups[k]
        seen.update(members)
        mask = np.isin(labels, members)
        pieces = _split_mask(mask, rng) if rng.random() < cfg.split_rate else [mask]
        corrupted = len(members) > 1 or len(pieces) > 1
        for piece in pieces:
            if cfg.boundary_px >= 1 and rng.random() < cfg.boundary_rate:
                out.append((_ragged(piece, rng, cfg), True))
            else:
                out.append((piece, corrupted))
    return out


def stuff_masks(sem: np.ndarray, classes: ClassInfo, rng: np.random.Generator,
                cfg: MaskSimConfig) -> list[np.ndarray]:
    """One mask per connected component of each stuff class in ``sem`` ``[H, W]`` (kept with ``p_stuff``)."""
    out = []
    for c in classes.stuff_ids:
        comps, n = ndimage.label(sem == c)
        for k in range(1, n + 1):
            if rng.random() < cfg.p_stuff:
                out.append(comps == k)
    return out


def simulate_masks(gt_part: np.ndarray, gt_object: np.ndarray, gt_group: np.ndarray, gt_sem: np.ndarray,
                   rng: np.random.Generator, cfg: MaskSimConfig, classes: ClassInfo) -> MaskSet:
    """SAM-like masks of one view from its GT maps (all int ``[H, W]``, 0 = stuff/none).

    Scores are in [0.85, 1] for clean masks and 0.8x that for corrupted ones.
    """
    maps = {"part": gt_part, "object": gt_object, "group": gt_group}
    h, w = gt_sem.shape
    masks: list[np.ndarray] = []
    scores: list[float] = []
    for level in choose_levels(rng, cfg):
        for mask, corrupted in level_masks(np.asarray(maps[level]), rng, cfg):
            masks.append(mask)
            scores.append(float(rng.uniform(0.85, 1.0)) * (0.8 if corrupted else 1.0))
    for mask in stuff_masks(np.asarray(gt_sem), classes, rng, cfg):
        masks.append(mask)
        scores.append(float(rng.uniform(0.85, 1.0)))
    kept, kept_scores, seen = [], [], set()
    for mask, score in zip(masks, scores):
        sig = np.packbits(mask).tobytes()
        if mask.sum() < max(cfg.min_area, 1) or sig in seen:
            continue
        seen.add(sig)
        kept.append(mask)
        kept_scores.append(score)
    return MaskSet.from_masks(kept, h, w, kept_scores)
