"""Label noise of the room scenes: a Mask2Former-like panoptic segmenter and a SAM-like
class-agnostic one, each drawn per frame from the GT maps (ids never agree across frames).

Mask2Former-like (:func:`m2f_frame`): touching instances of one class merged, instances
missed (small and cut-off ones more often) or split in two, thing classes confused with
similar ones, masks dilated or eroded with ragged edges, stuff regions relabelled now and
then, blobs left unlabelled; and a test-time-augmentation confidence map: the share of 8
augmented predictions that agree, low at boundaries and on the segments it got wrong, so
some pixels are exactly 0.

SAM-like (:func:`sam_frame`): over-segmentation. Masks of whole objects, of their parts
(each leg, the seat, the back ...), of groups (a table with its chairs), and walls and
floors cut into irregular pieces; the flat instance map takes, per pixel, the smallest
mask that covers it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..formats.common import PL_REDUCED_CLASSES, PL_REDUCED_NAMES
from ..masks import MaskSet

_C = PL_REDUCED_NAMES.index
CONFUSIONS = {_C("chair"): (_C("sofa"),), _C("sofa"): (_C("chair"), _C("bed")), _C("bed"): (_C("sofa"),),
              _C("television"): (_C("otherprop"), _C("window")), _C("bag"): (_C("otherprop"),),
              _C("refrigerator"): (_C("cabinet"), _C("door")), _C("cabinet"): (_C("shelves"), _C("table")),
              _C("shelves"): (_C("cabinet"),), _C("door"): (_C("wall"),), _C("window"): (_C("wall"),),
              _C("table"): (_C("cabinet"),), _C("lamp"): (_C("otherprop"),), _C("ceiling"): (_C("wall"),)}
"""Classes a segmenter mistakes each class for."""

THING_IDS = list(PL_REDUCED_CLASSES.thing_ids)
"""Thing classes of the reduced set: only their pixels carry instance ids."""


@dataclass
class M2FNoise:
    """Rates of the Mask2Former-like noise (per frame and segment)."""

    merge: float = 0.5
    """Two touching instances of one class come out as one."""
    miss: float = 0.08
    miss_small: float = 0.35
    """Added miss rate of instances under ``small`` of the image, or cut by the image border."""
    small: float = 0.01
    split: float = 0.12
    confuse: float = 0.1
    """A thing segment gets a similar class."""
    stuff_confuse: float = 0.2
    """A furniture-like stuff region (table, cabinet, door ...) gets a similar class."""
    blobby: float = 0.7
    """A mask loses its thin parts (legs, stems) and fills the gaps between them (opening, then closing)."""
    dilate: float = 0.25
    erode: float = 0.2
    ragged: float = 0.05
    """Flip rate of pixels within 2 px of a mask's boundary."""
    bleed: float = 0.3
    """A wall, floor or ceiling region grows by 1-3 px into its neighbours."""
    void_blobs: float = 0.5
    """Expected blobs per frame left unlabelled or called 'otherprop' (the segmenter's catch-all)."""


    def scaled(self, s: float) -> "M2FNoise":
        """The segment-level error rates (merges, misses, splits, confusions, blobs) times ``s`` (at most
        0.95); the edge noise stays as it is."""
        out = {k: min(0.95, getattr(self, k) * s) for k in EVENTS}
        out["void_blobs"] = self.void_blobs * s
        return dataclasses.replace(self, **out)


EVENTS = ("merge", "miss", "miss_small", "split", "confuse", "stuff_confuse")
"""The rates :meth:`M2FNoise.scaled` scales."""


STRUCTURE = tuple(_C(n) for n in ("wall", "floor", "ceiling"))
"""Stuff that only gets ragged boundaries; other stuff (furniture) gets the full mask noise."""


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def _boundary(mask: np.ndarray, width: int = 2) -> np.ndarray:
    return ndimage.binary_dilation(mask, _disk(width)) & ~ndimage.binary_erosion(mask, _disk(width))


def _ragged(mask: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``mask`` with its boundary wiggled: pixels within 2 px of it flip where a smooth random field is
    in its top ``rate`` (short runs of pixels, as a segmenter's ragged edge, not salt and pepper)."""
    if rate <= 0:
        return mask
    field = ndimage.gaussian_filter(rng.random(mask.shape), 1.2)
    flip = _boundary(mask) & (field > np.quantile(field, 1.0 - min(rate, 1.0)))
    return mask ^ flip


def _split(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``[H, W]``: one side of a random line through the mask's centroid."""
    ys, xs = np.nonzero(mask)
    a = rng.uniform(0, np.pi)
    v, u = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    return ((u - xs.mean()) * np.cos(a) + (v - ys.mean()) * np.sin(a)) > 0


def _merge_groups(inst: np.ndarray, sem: np.ndarray, ids: list[int], rate: float, rng) -> dict[int, int]:
    """Union-find over touching same-class instances, each pair merged with probability ``rate``."""
    root = {i: i for i in ids}

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i
    grown = {i: ndimage.binary_dilation(inst == i, _disk(2)) for i in ids}
    cls = {i: int(np.bincount(sem[inst == i]).argmax()) for i in ids}
    for k, i in enumerate(ids):
        for j in ids[k + 1:]:
            if cls[i] == cls[j] and (grown[i] & (inst == j)).any() and rng.random() < rate:
                root[find(j)] = find(i)
    return {i: find(i) for i in ids}


def _mask_noise(mask: np.ndarray, noise: M2FNoise, rng: np.random.Generator) -> np.ndarray:
    """A segmenter's version of the boolean ``mask``: blobby, dilated or eroded, ragged."""
    if rng.random() < noise.blobby:
        opened = ndimage.binary_opening(mask, _disk(1))
        mask = ndimage.binary_closing(opened if opened.any() else mask, _disk(2))
    r = rng.random()
    if r < noise.dilate:
        mask = ndimage.binary_dilation(mask, _disk(int(rng.integers(1, 3))))
    elif r < noise.dilate + noise.erode:
        eroded = ndimage.binary_erosion(mask, _disk(1))
        mask = eroded if eroded.any() else mask
    return _ragged(mask, noise.ragged, rng)


def m2f_frame(sem: np.ndarray, inst: np.ndarray, noise: M2FNoise, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy ``(semantic, instance, confidence)`` ``[H, W]`` of one frame from its GT maps (instance 0 = stuff)."""
    h, w = sem.shape
    out_sem = sem.copy()
    out_inst = np.zeros_like(inst)
    doubt = np.zeros((h, w))  # how much the augmented predictions disagree, per pixel
    for c in np.unique(sem[inst == 0]):  # stuff regions
        region = (sem == c) & (inst == 0)
        if c in STRUCTURE:  # walls, floor, ceiling bleed into each other and into furniture stuff
            grown = ndimage.binary_dilation(region, _disk(int(rng.integers(1, 4)))) if rng.random() < noise.bleed \
                else region
            out_sem[_ragged(grown, noise.ragged, rng) & ~region & (inst == 0)] = c
            continue
        noisy = _mask_noise(region, noise, rng) & (inst == 0)
        out_sem[noisy] = c
        if c in CONFUSIONS and rng.random() < noise.stuff_confuse:  # all of it, or the part on one side of a line
            part = noisy & (_split(noisy, rng) if noisy.any() and rng.random() < 0.5 else True)
            out_sem[part] = int(rng.choice(CONFUSIONS[c]))
            doubt[part] += rng.uniform(0.4, 0.7)
    ids = [int(i) for i in np.unique(inst) if i > 0]
    groups = _merge_groups(inst, sem, ids, noise.merge, rng)
    next_id = 1
    border = np.zeros((h, w), bool)
    border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
    for g in sorted(set(groups.values())):
        mask = np.isin(inst, [i for i in ids if groups[i] == g])
        cls = int(np.bincount(sem[mask]).argmax())
        small = mask.mean() < noise.small or (mask & border).sum() > 0.2 * mask.sum()
        if rng.random() < noise.miss + noise.miss_small * small:
            ring = ndimage.binary_dilation(mask, _disk(4)) & ~mask & (inst == 0)
            fill = int(np.bincount(out_sem[ring]).argmax()) if ring.any() and rng.random() < 0.6 else 0
            out_sem[mask] = fill
            doubt[mask] += 0.5
            continue
        if cls in CONFUSIONS and rng.random() < noise.confuse:
            cls = int(rng.choice(CONFUSIONS[cls]))
            doubt[mask] += rng.uniform(0.4, 0.8)
        mask = _mask_noise(mask, noise, rng)
        out_sem[mask] = cls
        if mask.sum() > 300 and rng.random() < noise.split:
            side = _split(mask, rng)
            out_inst[mask & side] = next_id
            out_inst[mask & ~side] = next_id + 1
            doubt[mask] += rng.uniform(0.3, 0.6)
            next_id += 2
        else:
            out_inst[mask] = next_id
            next_id += 1
    out_inst[~np.isin(out_sem, THING_IDS)] = 0  # stuff (and pixels a miss gave to stuff) carry no instance
    relabel = np.concatenate([[0], rng.choice(np.arange(1, 1000), size=next_id - 1, replace=False)])
    out_inst = relabel[out_inst]  # the segmenter's ids: arbitrary per frame
    for _ in range(rng.poisson(noise.void_blobs)):
        c = rng.integers([0, 0], [h, w])
        r = int(rng.integers(3, max(4, min(h, w) // 8)))
        v, u = np.mgrid[0:h, 0:w]
        blob = (v - c[0]) ** 2 + (u - c[1]) ** 2 <= r * r
        out_sem[blob], out_inst[blob] = _C("otherprop") if rng.random() < 0.5 else 0, 0  # catch-all or unlabelled
        doubt[blob] += 1.0
    edges = ndimage.binary_dilation(_label_edges(out_sem, out_inst), _disk(1))
    doubt += 0.45 * edges + 0.3 * ndimage.gaussian_filter(edges.astype(float), 1.5)
    agree = np.clip(1.0 - ndimage.gaussian_filter(doubt, 1.0) + rng.normal(0, 0.05, doubt.shape), 0.0, 1.0)
    conf = np.round(agree * 8) / 8  # share of 8 augmented predictions that agree
    return out_sem.astype(np.int32), out_inst.astype(np.int32), conf.astype(np.float32)


def _label_edges(sem: np.ndarray, inst: np.ndarray) -> np.ndarray:
    key = sem.astype(np.int64) * 100000 + inst
    e = np.zeros(key.shape, bool)
    e[:, 1:] |= key[:, 1:] != key[:, :-1]
    e[1:, :] |= key[1:, :] != key[:-1, :]
    return e


def sam_frame(item: np.ndarray, part: np.ndarray, item_groups: list[list[int]], stuff_items: set[int],
              rng: np.random.Generator) -> tuple[np.ndarray, MaskSet]:
    """SAM-like ``(instance map, MaskSet)`` of one frame from its item / part index maps ``[H, W]``."""
    h, w = item.shape
    masks: list[np.ndarray] = []

    def add(m: np.ndarray, keep: float) -> None:
        if m.sum() >= 15 and rng.random() < keep:
            r = rng.random()
            if r < 0.25:
                m = ndimage.binary_dilation(m, _disk(1))
            elif r < 0.5:
                eroded = ndimage.binary_erosion(m, _disk(1))
                m = eroded if eroded.sum() >= 15 else m
            masks.append(m)

    for it in np.unique(item):
        m = item == it
        if it in stuff_items and it >= 0 and m.sum() > 600:  # big surfaces come in irregular pieces
            ys, xs = np.nonzero(m)
            k = int(np.clip(m.sum() // 1500, 2, 8))
            seeds = rng.integers(0, len(ys), size=k)
            d = (ys[:, None] - ys[seeds][None]) ** 2 + (xs[:, None] - xs[seeds][None]) ** 2
            piece = np.full((h, w), -1)
            piece[ys, xs] = d.argmin(axis=1)
            for j in range(k):
                add(piece == j, 0.9)
            add(m, 0.5)
            continue
        add(m, 0.85)
        parts = np.unique(part[m])
        if len(parts) > 1:
            for p in parts:
                comps, n = ndimage.label(part == p)
                for j in range(1, n + 1):
                    add(comps == j, 0.75)
    for g in item_groups:
        m = np.isin(item, g)
        if len([i for i in g if (item == i).any()]) > 1:
            add(m, 0.5)
    order = np.argsort([-m.sum() for m in masks], kind="stable")  # large first: small masks paint over them
    flat = np.zeros((h, w), np.int32)
    ids = rng.permutation(np.arange(1, len(masks) + 1))
    for k in order:
        flat[masks[k]] = ids[k]
    return flat, MaskSet.from_masks([masks[k] for k in order], h, w)
