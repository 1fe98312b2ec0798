"""Simulated Mask2Former-like 2D labels: ground-truth maps corrupted the way a real segmenter errs.

:func:`simulate_labels` turns one frame's GT semantic and instance maps into a noisy
per-frame prediction, applying in order:

1. missed objects: a small or truncated (touching the image border) object vanishes;
   its pixels take the most common stuff class around it, or void;
2. under-segmentation: objects that touch in the image are merged into one id with the
   class of the larger one (each touching pair independently);
3. class confusion: an object's class is replaced by another thing class;
4. over-segmentation: an object is split into two ids along a random line through its centroid;
5. ragged boundaries: an object's mask is eroded or dilated by 1..``boundary_px`` pixels;
6. boundary jitter: each label-boundary pixel takes a neighbour's label;
7. fresh random instance ids per frame (no correspondence across frames); stuff and void get 0.

Every effect has a rate (probability per object, per touching pair or per boundary pixel)
in :class:`NoiseConfig`; a rate of 0 switches the effect off. A per-pixel confidence map
is lower at label boundaries and on corrupted regions. All randomness comes from the
``np.random.Generator`` passed in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import numpy as np
from scipy import ndimage

from ..errors import SdfsegError
from .scene import ClassInfo

T = TypeVar("T")


@dataclass
class NoiseConfig:
    """Rates of the label corruptions. Defaults resemble Mask2Former on ScanNet: noticeably bad but usable."""

    miss_small_rate: float = 0.4
    """Probability that a small object (area below ``small_area`` of the image) is missed."""
    small_area: float = 0.003
    """Area fraction of the image below which an object counts as small."""
    miss_truncated_rate: float = 0.15
    """Probability that an object touching the image border (and below ``truncated_max_area``) is missed."""
    truncated_max_area: float = 0.05
    """Truncated objects larger than this fraction of the image are never missed."""
    miss_to_void: float = 0.3
    """Probability that a missed object's pixels become void instead of the surrounding stuff class."""
    under_seg_rate: float = 0.2
    """Probability that a pair of objects touching in the image is merged into one segment."""
    class_confusion_rate: float = 0.12
    """Probability that a segment's thing class is replaced by another thing class."""
    over_seg_rate: float = 0.1
    """Probability that a segment is split into two ids along a random line."""
    boundary_rate: float = 0.6
    """Probability that a segment's mask is eroded or dilated (ragged boundary)."""
    boundary_px: int = 2
    """Largest erosion/dilation radius in pixels."""
    jitter_rate: float = 0.2
    """Probability that a label-boundary pixel takes the label of a differing neighbour."""
    conf_mean: float = 0.9
    """Confidence away from boundaries on uncorrupted segments."""
    conf_spread: float = 0.05
    """Per-segment confidence offsets are uniform in +-conf_spread."""
    conf_boundary_drop: float = 0.5
    """Relative confidence drop on a boundary pixel (decays with distance)."""
    conf_boundary_px: float = 2.0
    """Decay length (pixels) of the boundary confidence drop."""
    conf_corrupt_factor: float = 0.6
    """Confidence multiplier on pixels of missed, merged, split, confused or reshaped segments."""

    def validate(self) -> "NoiseConfig":
        """Check value ranges; raises :class:`SdfsegError` naming the bad field."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.endswith(("_rate", "_to_void", "_area", "_factor", "_drop", "conf_mean")) and not 0 <= v <= 1:
                raise SdfsegError(f"noise.{f.name}: expected a value in [0, 1], got {v}")
            if v < 0:
                raise SdfsegError(f"noise.{f.name}: expected a non-negative value, got {v}")
        return self


def apply_overrides(cfg: T, items: Sequence[str], flag: str = "--noise") -> T:
    """A copy of dataclass ``cfg`` with ``key=value`` overrides applied (values cast to the field's type)."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SdfsegError(f"{flag} {item}: expected key=value")
        if key not in fields:
            raise SdfsegError(f"{flag} {key}: unknown key (expected one of {', '.join(fields)})")
        kind = type(getattr(cfg, key))
        try:
            changes[key] = kind(float(value)) if kind is int and float(value).is_integer() else kind(value)
        except ValueError:
            raise SdfsegError(f"{flag} {key}={value}: expected {'an integer' if kind is int else 'a number'}") from None
    out = dataclasses.replace(cfg, **changes)  # type: ignore[type-var]
    validate = getattr(out, "validate", None)
    return validate() if validate else out


def touching_pairs(seg: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique pairs (a < b) of nonzero ids that are 4-neighbours somewhere in ``seg`` [H, W]."""
    pairs = set()
    for a, b in ((seg[:, :-1], seg[:, 1:]), (seg[:-1], seg[1:])):
        m = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[m], b[m]), np.maximum(a[m], b[m])
        pairs.update(zip(lo.tolist(), hi.tolist()))
    return sorted(pairs)


def disk_footprint(r: int) -> np.ndarray:
    """Boolean disk structuring element ``[2r + 1, 2r + 1]``."""
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def _ids(seg: np.ndarray) -> list[int]:
    return [int(i) for i in np.unique(seg) if i > 0]


def _miss(sem, seg, rng, cfg, classes, bad) -> None:
    """Step 1: drop small / truncated objects into the surrounding stuff class or void."""
    h, w = seg.shape
    border = np.zeros_like(seg, dtype=bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    stuff = np.isin(sem, classes.stuff_ids) & (seg == 0)
    for k in _ids(seg):
        mask = seg == k
        frac = mask.sum() / (h * w)
        rate = cfg.miss_small_rate if frac < cfg.small_area else 0.0
        if (mask & border).any() and frac <= cfg.truncated_max_area:
            rate = max(rate, cfg.miss_truncated_rate)
        if rate <= 0 or rng.random() >= rate:
            continue
        ring = ndimage.binary_dilation(mask, iterations=2) & stuff
        to_void = rng.random() < cfg.miss_to_void
        if to_void or not ring.any():
            sem[mask] = 0
        else:
            vals, counts = np.unique(sem[ring], return_counts=True)
            sem[mask] = vals[np.argmax(counts)]
        seg[mask] = 0
        bad |= mask


def _merge(sem, seg, rng, cfg, bad) -> None:
    """Step 2: merge touching pairs (union-find); the merged segment takes the larger member's class."""
    pairs = touching_pairs(seg)
    if not pairs or cfg.under_seg_rate <= 0:
        return
    parent = {k: k for k in _ids(seg)}

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    for a, b in pairs:
        if rng.random() < cfg.under_seg_rate:
            parent[root(b)] = root(a)
    ids = np.array(sorted(parent))
    roots = np.array([root(k) for k in ids])
    area = np.bincount(seg.ravel(), minlength=int(ids.max()) + 1)
    for r in np.unique(roots):
        members = ids[roots == r]
        if members.size < 2:
            continue
        mask = np.isin(seg, members)
        biggest = members[np.argmax(area[members])]
        sem[mask] = np.bincount(sem[seg == biggest]).argmax()
        seg[mask] = biggest
        bad |= mask


def _confuse(sem, seg, rng, cfg, classes, bad) -> None:
    """Step 3: replace a segment's class by a different thing class."""
    for k in _ids(seg):
        if rng.random() >= cfg.class_confusion_rate:
            continue
        mask = seg == k
        cls = int(np.bincount(sem[mask]).argmax())
        others = [c for c in classes.thing_ids if c != cls]
        if others:
            sem[mask] = int(rng.choice(others))
            bad |= mask


def _split(seg, rng, cfg, bad) -> None:
    """Step 4: split a segment in two along a random line through its centroid."""
    next_id = int(seg.max()) + 1
    for k in _ids(seg):
        if rng.random() >= cfg.over_seg_rate:
            continue
        ys, xs = np.nonzero(seg == k)
        angle = rng.uniform(0, np.pi)
        side = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle) > 0
        if side.any() and not side.all():
            seg[ys[side], xs[side]] = next_id
            next_id += 1
            bad[ys, xs] = True


def _reshape(sem, seg, rng, cfg, bad) -> None:
    """Step 5: erode or dilate a segment by 1..boundary_px pixels."""
    for k in _ids(seg):
        if cfg.boundary_px < 1 or rng.random() >= cfg.boundary_rate:
            continue
        mask = seg == k
        if not mask.any():  # swallowed by an earlier dilation
            continue
        disk = disk_footprint(int(rng.integers(1, cfg.boundary_px + 1)))
        cls = int(np.bincount(sem[mask]).argmax())
        if rng.random() < 0.5:
            grown = ndimage.binary_dilation(mask, structure=disk) & ~mask
            seg[grown], sem[grown] = k, cls
            bad |= grown
        else:
            lost = mask & ~ndimage.binary_erosion(mask, structure=disk, border_value=1)
            if not lost.any() or mask.all():
                continue
            _, (iy, ix) = ndimage.distance_transform_edt(mask, return_indices=True)
            seg[lost], sem[lost] = seg[iy[lost], ix[lost]], sem[iy[lost], ix[lost]]
            bad |= lost


def _jitter(sem, seg, rng, cfg) -> None:
    """Step 6: each boundary pixel takes a random differing 4-neighbour's label with prob jitter_rate."""
    if cfg.jitter_rate <= 0:
        return
    key = sem.astype(np.int64) * (int(seg.max()) + 1) + seg
    pad = np.pad(key, 1, mode="edge")
    h, w = key.shape
    nb = np.stack([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])
    differ = nb != key
    pick = differ.any(axis=0) & (rng.random((h, w)) < cfg.jitter_rate)
    choice = np.argmax(np.where(differ, rng.random((4, h, w)), -1.0), axis=0)
    ys, xs = np.nonzero(pick)
    off = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])[choice[ys, xs]]
    ny, nx = np.clip(ys + off[:, 0], 0, h - 1), np.clip(xs + off[:, 1], 0, w - 1)
    sem[ys, xs], seg[ys, xs] = sem[ny, nx], seg[ny, nx]


def _confidence(sem, inst, bad, rng, cfg) -> np.ndarray:
    """Per-pixel confidence ``[H, W]``: per-segment level, lower at boundaries and on corrupted pixels."""
    key = sem.astype(np.int64) * (int(inst.max()) + 1) + inst
    edge = np.zeros(key.shape, dtype=bool)
    edge[:, 1:] |= key[:, 1:] != key[:, :-1]
    edge[:, :-1] |= key[:, 1:] != key[:, :-1]
    edge[1:] |= key[1:] != key[:-1]
    edge[:-1] |= key[1:] != key[:-1]
    dist = ndimage.distance_transform_edt(~edge) if edge.any() else np.full(key.shape, np.inf)
    _, inv = np.unique(key, return_inverse=True)
    offset = rng.uniform(-cfg.conf_spread, cfg.conf_spread, size=int(inv.max()) + 1)[inv.reshape(key.shape)]
    conf = (cfg.conf_mean + offset) * (1 - cfg.conf_boundary_drop * np.exp(-dist / max(cfg.conf_boundary_px, 1e-6)))
    conf = np.where(bad, conf * cfg.conf_corrupt_factor, conf) + rng.normal(0, 0.02, size=key.shape)
    return np.clip(conf, 0.05, 1.0).astype(np.float32)


def simulate_labels(gt_sem: np.ndarray, gt_inst: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig,
                    classes: ClassInfo, max_id: int = 65535) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy per-frame labels from GT maps (see the module docstring for the effects and their order).

    Args:
        gt_sem: int ``[H, W]`` GT semantic classes (0 void).
        gt_inst: int ``[H, W]`` GT instance ids (0 = none); only pixels of thing classes count.
        rng: the source of all randomness.
        cfg: effect rates.
        classes: which class ids are things and which stuff.
        max_id: fresh instance ids are distinct random integers in ``1..max_id``.

    Returns:
        ``(sem int32 [H, W], inst int32 [H, W], confidence float32 [H, W])``; ``inst`` is 0 on stuff and void.
    """
    sem = np.asarray(gt_sem).astype(np.int64)
    thing = np.isin(sem, classes.thing_ids) & (np.asarray(gt_inst) > 0)
    raw = np.where(thing, np.asarray(gt_inst), 0).astype(np.int64)
    seg = np.where(raw > 0, np.searchsorted(np.unique(raw[raw > 0]), raw) + 1, 0)  # compact ids 1..n
    bad = np.zeros(sem.shape, dtype=bool)
    _miss(sem, seg, rng, cfg, classes, bad)
    _merge(sem, seg, rng, cfg, bad)
    _confuse(sem, seg, rng, cfg, classes, bad)
    _split(seg, rng, cfg, bad)
    _reshape(sem, seg, rng, cfg, bad)
    _jitter(sem, seg, rng, cfg)
    seg[~np.isin(sem, classes.thing_ids)] = 0
    ids = np.unique(seg[seg > 0])
    fresh = rng.choice(max_id, size=ids.size, replace=False) + 1
    lut = np.zeros(int(seg.max()) + 1, dtype=np.int64)
    lut[ids] = fresh
    inst = lut[seg].astype(np.int32)
    return sem.astype(np.int32), inst, _confidence(sem, inst, bad, rng, cfg)


def probability_map(sem: np.ndarray, confidence: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-pixel class probabilities ``[H, W, C]`` (float32, rows sum to 1).

    The labelled class gets ``confidence``; the rest is spread evenly over the other classes.
    """
    sem = np.asarray(sem)
    conf = np.clip(np.asarray(confidence, dtype=np.float32), 0.0, 1.0)
    rest = (1.0 - conf) / max(num_classes - 1, 1)
    prob = np.repeat(rest[..., None], num_classes, axis=-1)
    np.put_along_axis(prob, sem[..., None].astype(np.int64), conf[..., None], axis=-1)
    return prob
