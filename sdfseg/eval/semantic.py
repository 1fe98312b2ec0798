"""Semantic mIoU (Panoptic Lifting protocol) and the frame helpers shared by all metrics.

Protocol (REFERENCE.md section 5):

* prediction maps are resized to the GT size with nearest neighbour;
* pixels whose GT class is void (0) are removed;
* one confusion matrix over all test frames, classes ``0 .. C-1`` with the void
  class 0 allowed as a *predicted* class (so predicting void is penalised);
* IoU per class; a class is skipped when its union is empty or when it covers
  less than 0.5% of the pixels in BOTH the GT and the prediction;
* mIoU = plain mean of the remaining per-class IoUs.

Frame inputs everywhere in :mod:`sdfseg.eval` are either a stacked integer array
``[N, H, W]`` or a sequence of ``N`` integer arrays ``[H_i, W_i]``.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from ..errors import SdfsegError

Frames = Union[np.ndarray, Sequence[np.ndarray]]
"""Per-frame 2D integer maps: ``[N, H, W]`` array or a sequence of ``[H, W]`` arrays."""

MIN_FRACTION = 0.005
"""Classes covering less than this fraction of the (void-free) pixels are filtered (0.5%)."""


def resize_nearest(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map ``[h, w]`` to ``[H, W]`` (pixel-centre aligned).

    Output pixel ``(r, c)`` takes the input pixel containing its centre, i.e. row
    ``floor((r + 0.5) * h / H)``, as PIL's NEAREST filter does. Ids are never mixed.
    """
    labels = np.asarray(labels)
    h, w = labels.shape
    H, W = int(hw[0]), int(hw[1])
    if (h, w) == (H, W):
        return labels
    rows = np.minimum(((np.arange(H) + 0.5) * (h / H)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * (w / W)).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


_LUT_MAX_RANGE = 1 << 24
"""Largest id range relabelled with a lookup table instead of sorting."""


def dense_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for 1D integer ``[P]``: (sorted ids ``[U]``, index ``[P]``).

    Uses an O(P) lookup table when the id range is small (the usual case) and sorting otherwise.
    """
    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return values.astype(np.int64), np.zeros(0, np.int64)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo >= _LUT_MAX_RANGE:
        uniq, inv = np.unique(values, return_inverse=True)
        return uniq, inv.reshape(-1)
    shifted = values - lo
    present = np.bincount(shifted, minlength=hi - lo + 1) > 0
    lut = np.cumsum(present) - 1
    return np.flatnonzero(present).astype(np.int64) + lo, lut[shifted]


def as_frames(maps: Frames, what: str) -> list[np.ndarray]:
    """Check and split ``[N, H, W]`` / a sequence of ``[H, W]`` integer maps into a list of 2D arrays."""
    if isinstance(maps, np.ndarray):
        if maps.ndim == 2:
            maps = maps[None]
        if maps.ndim != 3:
            raise SdfsegError(f"{what}: expected label maps [N, H, W], got shape {maps.shape}")
        frames = list(maps)
    else:
        frames = [np.asarray(m) for m in maps]
    for i, m in enumerate(frames):
        if m.ndim != 2 or m.dtype.kind not in "iu":
            raise SdfsegError(f"{what}[{i}]: expected a 2D integer label map, got {m.dtype} {m.shape}")
    return frames


def aligned_frames(gt: Frames, preds: Sequence[Frames], what: Sequence[str]) -> tuple[list, list[list]]:
    """GT frames as a list, and each prediction resized (nearest) to the GT frame sizes.

    Returns ``(gt_frames, [pred_frames, ...])``; every frame list has length ``N``.
    """
    gt_frames = as_frames(gt, "gt")
    out = []
    for p, name in zip(preds, what):
        p_frames = as_frames(p, name)
        if len(p_frames) != len(gt_frames):
            raise SdfsegError(f"{name}: {len(p_frames)} frames but the GT has {len(gt_frames)}")
        out.append([resize_nearest(pf, g.shape) for pf, g in zip(p_frames, gt_frames)])
    return gt_frames, out


def gather_valid(gt_sem: Frames, others: Sequence[tuple[Frames, bool]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Concatenate the non-void pixels of all frames.

    ``others`` are ``(maps, is_prediction)`` pairs; predictions are resized to the GT size,
    GT-side maps must already have the GT size. Returns the GT classes int64 ``[P]`` and
    each other map's values int64 ``[P]`` at the same pixels (``P`` = non-void GT pixels).
    """
    gt_frames = as_frames(gt_sem, "gt_sem")
    cols: list[list[np.ndarray]] = [[] for _ in others]
    keep_masks = [g != 0 for g in gt_frames]
    for k, (maps, is_pred) in enumerate(others):
        frames = as_frames(maps, "pred" if is_pred else "gt")
        if len(frames) != len(gt_frames):
            raise SdfsegError(f"got {len(frames)} frames for one map but {len(gt_frames)} GT semantic frames")
        for g, m, keep in zip(gt_frames, frames, keep_masks):
            if is_pred:
                m = resize_nearest(m, g.shape)
            elif m.shape != g.shape:
                raise SdfsegError(f"GT maps differ in size: {m.shape} vs {g.shape}")
            cols[k].append(m[keep].astype(np.int64))
    gt_vals = np.concatenate([g[k].astype(np.int64) for g, k in zip(gt_frames, keep_masks)]) \
        if gt_frames else np.zeros(0, np.int64)
    others_vals = [np.concatenate(c) if c else np.zeros(0, np.int64) for c in cols]
    return gt_vals, others_vals


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts int64 ``[C, C]`` (rows GT class, columns predicted class) of 1D class arrays ``[P]``."""
    C = int(num_classes)
    for arr, side in ((gt, "GT"), (pred, "predicted")):
        if arr.size and (arr.min() < 0 or arr.max() >= C):
            bad = int(arr.max()) if arr.max() >= C else int(arr.min())
            raise SdfsegError(f"{side} semantic class {bad} outside 0..{C - 1}")
    return np.bincount(gt * C + pred, minlength=C * C).reshape(C, C)


def mean_iou(gt_sem: Frames, pred_sem: Frames, num_classes: int, names: Sequence[str] = (),
             min_fraction: float = MIN_FRACTION) -> dict:
    """Scene mIoU over all frames (one confusion matrix), Panoptic Lifting protocol.

    Args:
        gt_sem: GT semantic maps ``[N, H, W]`` (0 = void, removed).
        pred_sem: predicted semantic maps ``[N, h, w]`` (resized to the GT size; 0 = void
            is a valid prediction and counts as a class).
        num_classes: ``C``, classes ``0 .. C-1`` including void.
        names: optional class names, ``names[c]``.
    Returns:
        ``{"miou": float | None, "num_pixels": int, "per_class": [{"class", "name", "iou",
        "gt_fraction", "pred_fraction", "skipped"}, ...]}`` with one row per class
        ``0 .. C-1``; ``iou`` is None for skipped classes; ``miou`` is None when no class is left.
    """
    gt, (pred,) = gather_valid(gt_sem, [(pred_sem, True)])
    cm = confusion_matrix(gt, pred, num_classes)
    inter = np.diag(cm).astype(np.float64)
    gt_count = cm.sum(axis=1).astype(np.float64)
    pred_count = cm.sum(axis=0).astype(np.float64)
    union = gt_count + pred_count - inter
    total = float(cm.sum())
    denom = max(total, 1.0)
    gt_frac, pred_frac = gt_count / denom, pred_count / denom
    keep = (union > 0) & ~((gt_frac < min_fraction) & (pred_frac < min_fraction))
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    rows = []
    for c in range(int(num_classes)):
        rows.append({
            "class": c,
            "name": names[c] if c < len(names) else f"class{c}",
            "iou": float(iou[c]) if keep[c] else None,
            "gt_fraction": float(gt_frac[c]),
            "pred_fraction": float(pred_frac[c]),
            "skipped": not bool(keep[c]),
        })
    miou = float(iou[keep].mean()) if keep.any() else None
    return {"miou": miou, "num_pixels": int(total), "per_class": rows}
