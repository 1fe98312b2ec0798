"""Hierarchy metrics: hierarchical mIoU (OmniSeg3D), NC, SI and VC (ultrametric feature fields).

All functions take plain arrays, so the same code scores rendered feature maps (via
:mod:`sdfseg.methods.hierarchy.query`) and the raw 2D masks baseline:

* **hierarchical mIoU**: per query pixel and GT level (e.g. part / object / group,
  nested masks containing the query), the IoU of ``score > th`` with the GT mask at the
  best threshold ``th`` (exact, over all distinct score values); mean per level, then
  mean over levels. Raw masks get the score map of :func:`raw_mask_score_map`.
* **Normalized Covering** NC: mean over GT segments of the best IoU of any predicted
  mask (GT segments smaller than ``min_area`` = 20 pixels are skipped, as in the paper).
* **Segmentation Injectivity** SI: for points p1, p2 in one GT segment, IoU of the
  model's masks at p1 and p2 at the granularity that best fits the GT for p1.
* **View Consistency** VC: a click's mask in view A warped into view B (known depth,
  intrinsics, poses; views about 10 degrees apart) against the mask of the warped
  click in B, IoU on the pixels visible in both views.

A *candidate function* ``click (y, x) -> bool [T, H, W]`` is the model's masks for a
click at T granularities (:func:`sdfseg.methods.hierarchy.query.feature_candidates`,
:func:`sdfseg.methods.hierarchy.query.segmentation_candidates`, :func:`raw_mask_candidates`).
Pixel conventions follow :mod:`sdfseg.data.scene` (OpenCV camera, pixel centres at +0.5).
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from ..data.masks import MaskSet
from ..errors import SdfsegError
from ..methods.hierarchy.query import CandidateFn


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def _ious(cands: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each candidate mask [T, H, W] with one mask [H, W] -> [T] (0 where the union is empty)."""
    inter = np.logical_and(cands, gt[None]).sum(axis=(1, 2))
    union = cands.sum(axis=(1, 2)) + gt.sum() - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


# ---------------------------------------------------------------- hierarchical mIoU


def best_threshold_iou(score: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """Best IoU of ``score > th`` with ``gt`` over all thresholds: (IoU, th); NaN if gt is empty.

    ``score`` float [H, W], ``gt`` bool [H, W], ``valid`` bool [H, W] pixels to score.
    """
    score, gt = np.asarray(score, dtype=np.float64), np.asarray(gt, dtype=bool)
    if score.shape != gt.shape:
        raise SdfsegError(f"score map {score.shape} and GT mask {gt.shape} differ in shape")
    if valid is not None:
        score, gt = score[valid], gt[valid]
    s, g = score.ravel(), gt.ravel()
    n_gt = int(g.sum())
    if n_gt == 0:
        return float("nan"), float("nan")
    order = np.argsort(-s, kind="stable")
    s, g = s[order], g[order]
    tp = np.cumsum(g)
    k = np.arange(1, s.size + 1)
    cut = np.ones(s.size, dtype=bool)
    cut[:-1] = s[:-1] > s[1:]
    iou = np.where(cut, tp / (n_gt + k - tp), -1.0)
    best = int(np.argmax(iou))
    th = s[best + 1] if best + 1 < s.size else np.nextafter(s[-1], -np.inf)
    return float(iou[best]), float(th)


def gt_level_masks(level_maps: Mapping[str, np.ndarray], click: tuple[int, int],
                   ignore_id: int | None = 0) -> dict[str, np.ndarray]:
    """GT masks containing a click, per level: ``{name: level_map == level_map[click]}``.

    ``level_maps`` name -> int [H, W] (e.g. ``scene.gt_hierarchy[level][frame]``); levels
    where the click has ``ignore_id`` are left out.
    """
    y, x = int(click[0]), int(click[1])
    out = {}
    for name, lm in level_maps.items():
        lm = np.asarray(lm)
        v = lm[y, x]
        if ignore_id is None or v != ignore_id:
            out[name] = lm == v
    return out


def hierarchical_miou(score_maps: Sequence[np.ndarray], gt_masks: Sequence[Mapping[str, np.ndarray]],
                      valid: Sequence[np.ndarray | None] | None = None) -> dict[str, float]:
    """OmniSeg3D hierarchical mIoU.

    ``score_maps[q]`` float [H, W] for query q; ``gt_masks[q]`` level name -> bool [H, W].
    Returns ``{level: mIoU over its queries, ..., "mean": mean over levels}``.
    """
    if len(score_maps) != len(gt_masks):
        raise SdfsegError(f"hierarchical_miou: {len(score_maps)} score maps but {len(gt_masks)} GT entries")
    per: dict[str, list[float]] = {}
    for q, (score, levels) in enumerate(zip(score_maps, gt_masks)):
        v = None if valid is None else valid[q]
        for name, gt in levels.items():
            iou, _ = best_threshold_iou(score, gt, v)
            if not np.isnan(iou):
                per.setdefault(name, []).append(iou)
    out = {name: float(np.mean(vals)) for name, vals in per.items()}
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out


# ---------------------------------------------------------------- raw 2D masks baseline


def _containing(masks: MaskSet | Sequence[np.ndarray], click: tuple[int, int]) -> list[np.ndarray]:
    """Full bool [H, W] masks containing the click, smallest first."""
    y, x = int(click[0]), int(click[1])
    if isinstance(masks, MaskSet):
        hits = []
        for i in range(len(masks)):
            (y0, x0, y1, x1), crop = masks.crop(i)
            if y0 <= y < y1 and x0 <= x < x1 and crop[y - y0, x - x0]:
                hits.append(masks.mask(i))
    else:
        hits = [np.asarray(m, dtype=bool) for m in masks if m[y, x]]
    return sorted(hits, key=lambda m: int(m.sum()))


def _rank_map(masks, click, hw: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Rank int64 [H, W] of the smallest click-containing mask covering each pixel (n = none), and n."""
    hits = _containing(masks, click)
    rank = np.full(hw, len(hits), dtype=np.int64)
    for r in range(len(hits) - 1, -1, -1):
        rank[hits[r]] = r
    return rank, len(hits)


def _mask_hw(masks) -> tuple[int, int]:
    if isinstance(masks, MaskSet):
        return masks.height, masks.width
    if len(masks) == 0:
        raise SdfsegError("raw masks baseline: no masks given")
    return tuple(np.asarray(masks[0]).shape)


def raw_mask_score_map(masks: MaskSet | Sequence[np.ndarray], click: tuple[int, int]) -> np.ndarray:
    """Score map float32 [H, W] of a click from raw masks: the n masks containing it, ordered by size.

    A pixel whose smallest covering click-mask has rank r scores ``(n - r) / n`` (0 when
    none covers it), so thresholding yields the union of the k smallest masks, k = 1..n.
    """
    rank, n = _rank_map(masks, click, _mask_hw(masks))
    return ((n - rank) / max(n, 1)).astype(np.float32)


def raw_mask_candidates(masks: MaskSet | Sequence[np.ndarray]) -> CandidateFn:
    """Candidate function of the raw masks: unions of the k smallest masks containing the click."""
    hw = _mask_hw(masks)

    def cands(click: tuple[int, int]) -> np.ndarray:
        rank, n = _rank_map(masks, click, hw)
        if n == 0:
            return np.zeros((1, *hw), dtype=bool)
        return rank[None] < np.arange(1, n + 1)[:, None, None]

    return cands


# ---------------------------------------------------------------- NC and SI


def _gt_segments(gt_labels: np.ndarray, ignore_id: int | None, min_area: int) -> np.ndarray:
    ids, counts = np.unique(np.asarray(gt_labels), return_counts=True)
    keep = counts >= min_area
    if ignore_id is not None:
        keep &= ids != ignore_id
    return ids[keep]


def normalized_covering(gt_labels: np.ndarray, predictions: Iterable[np.ndarray] | MaskSet,
                        ignore_id: int | None = 0, min_area: int = 20) -> float:
    """NC = mean over GT segments of the best IoU of any predicted mask.

    ``gt_labels`` int [H, W]; ``predictions``: bool masks [H, W] and/or integer label maps
    [H, W] (every label >= 0 is one mask; e.g. the T maps of a segmentation hierarchy),
    or a :class:`MaskSet`. NaN when no GT segment qualifies.
    """
    gt = np.asarray(gt_labels)
    ids = _gt_segments(gt, ignore_id, min_area)
    if ids.size == 0:
        return float("nan")
    g = np.searchsorted(ids, gt)
    g = np.where((g < ids.size) & (ids[np.minimum(g, ids.size - 1)] == gt), g, ids.size).ravel()
    gt_area = np.bincount(g, minlength=ids.size + 1)[: ids.size]
    best = np.zeros(ids.size)
    for pred in predictions:
        pred = np.asarray(pred)
        if pred.shape != gt.shape:
            raise SdfsegError(f"normalized_covering: prediction shape {pred.shape} != GT shape {gt.shape}")
        labels = np.where(pred, 0, -1) if pred.dtype == bool else pred
        uniq, p = np.unique(labels.ravel(), return_inverse=True)
        p = p.ravel()
        n_p = uniq.size
        inter = np.bincount(g * n_p + p, minlength=(ids.size + 1) * n_p).reshape(ids.size + 1, n_p)
        pred_area = inter.sum(axis=0)
        inter = inter[: ids.size][:, uniq >= 0]
        union = gt_area[:, None] + pred_area[None, uniq >= 0] - inter
        if inter.shape[1]:
            best = np.maximum(best, (inter / np.maximum(union, 1)).max(axis=1))
    return float(best.mean())


def segmentation_injectivity(candidates: CandidateFn, gt_labels: np.ndarray, n_samples: int | None = 100,
                             rng: np.random.Generator | None = None, ignore_id: int | None = 0,
                             min_area: int = 20) -> float:
    """SI: mean over GT segments and point pairs (p1, p2) in the segment of IoU(F(p1, t*), F(p2, t*)).

    ``t*`` is the candidate index that best fits the GT segment for p1. Points are drawn
    uniformly (with replacement); ``n_samples=None`` averages over ALL ordered pixel
    pairs of each segment instead (exact expectation, small images only).
    """
    gt = np.asarray(gt_labels)
    rng = rng if rng is not None else np.random.default_rng(0)
    cache: dict[tuple[int, int], np.ndarray] = {}

    def cand(p) -> np.ndarray:
        key = (int(p[0]), int(p[1]))
        if key not in cache:
            cache[key] = np.asarray(candidates(key), dtype=bool)
        return cache[key]

    scores = []
    for sid in _gt_segments(gt, ignore_id, min_area):
        seg = gt == sid
        pix = np.argwhere(seg)
        if n_samples is None:
            i1, i2 = np.meshgrid(np.arange(len(pix)), np.arange(len(pix)), indexing="ij")
            i1, i2 = i1.ravel(), i2.ravel()
        else:
            i1, i2 = rng.integers(0, len(pix), n_samples), rng.integers(0, len(pix), n_samples)
        vals = []
        for a, b in zip(i1, i2):
            c1, c2 = cand(pix[a]), cand(pix[b])
            t = int(np.argmax(_ious(c1, seg)))
            t2 = min(t, c2.shape[0] - 1)
            vals.append(_iou(c1[t], c2[t2]))
        scores.append(np.nanmean(vals))
        cache.clear()
    return float(np.mean(scores)) if scores else float("nan")


# ---------------------------------------------------------------- view consistency


class View(NamedTuple):
    """Geometry of one view: depth float [H, W] (along +z, 0 = invalid), K [3, 3], c2w [4, 4]."""

    depth: np.ndarray
    K: np.ndarray
    c2w: np.ndarray


def _backproject(view: View, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    d = np.asarray(view.depth, dtype=np.float64)[ys, xs]
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=np.float64)], axis=-1)
    cam = (pix @ np.linalg.inv(np.asarray(view.K, dtype=np.float64)).T) * d[..., None]
    c2w = np.asarray(view.c2w, dtype=np.float64)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def _project_visible(view: View, pts: np.ndarray, rel_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (y, x) int64 of world points [..., 3] in ``view`` and whether they are visible there."""
    c2w = np.asarray(view.c2w, dtype=np.float64)
    cam = (pts - c2w[:3, 3]) @ c2w[:3, :3]
    z = cam[..., 2]
    uv = cam @ np.asarray(view.K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.floor(uv[..., 0] / z)
        y = np.floor(uv[..., 1] / z)
    h, w = view.depth.shape
    inside = (z > 0) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    xi = np.where(inside, x, 0).astype(np.int64)
    yi = np.where(inside, y, 0).astype(np.int64)
    d = np.asarray(view.depth, dtype=np.float64)[yi, xi]
    vis = inside & (d > 0) & (np.abs(d - z) <= rel_tol * np.abs(z))
    return yi, xi, vis


def warp_to_view(mask_a: np.ndarray, view_a: View, view_b: View, rel_tol: float = 0.02
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Warp a mask of view A onto view B's pixel grid (backward, from B's depth).

    Returns (warped bool [Hb, Wb], covisible bool [Hb, Wb]): a B pixel is co-visible when
    its 3D point lands in A within ``rel_tol`` relative depth of A's depth.
    """
    hb, wb = view_b.depth.shape
    ys, xs = np.mgrid[0:hb, 0:wb]
    yi, xi, vis = _project_visible(view_a, _backproject(view_b, ys, xs), rel_tol)
    covis = vis & (np.asarray(view_b.depth) > 0)
    return covis & np.asarray(mask_a, dtype=bool)[yi, xi], covis


def warp_pixel(click: tuple[int, int], view_a: View, view_b: View, rel_tol: float = 0.02
               ) -> tuple[int, int] | None:
    """Pixel (y, x) of view B seeing the point of pixel ``click`` of view A, or None if not visible."""
    y, x = int(click[0]), int(click[1])
    if view_a.depth[y, x] <= 0:
        return None
    yi, xi, vis = _project_visible(view_b, _backproject(view_a, np.array([y]), np.array([x])), rel_tol)
    return (int(yi[0]), int(xi[0])) if bool(vis[0]) else None


def view_consistency_iou(mask_a: np.ndarray, mask_b: np.ndarray, view_a: View, view_b: View,
                         rel_tol: float = 0.02) -> float:
    """IoU in view B of the warped mask of A and the mask of B, on co-visible pixels."""
    warped, covis = warp_to_view(mask_a, view_a, view_b, rel_tol)
    return _iou(warped & covis, np.asarray(mask_b, dtype=bool) & covis)


def view_consistency(cands_a: CandidateFn, cands_b: CandidateFn, gt_a: np.ndarray, gt_b: np.ndarray,
                     view_a: View, view_b: View, n_samples: int = 100, rng: np.random.Generator | None = None,
                     ignore_id: int | None = 0, min_area: int = 20, rel_tol: float = 0.02) -> float:
    """VC over GT segments (ids shared by ``gt_a`` and ``gt_b``, int [H, W]).

    For random pixels p1 of a segment in A that are visible in B, p2 = warp(p1); each
    view's mask is the candidate that best fits that view's GT segment; score =
    :func:`view_consistency_iou`. Mean over samples, then over segments.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    gt_a, gt_b = np.asarray(gt_a), np.asarray(gt_b)
    shared = np.intersect1d(_gt_segments(gt_a, ignore_id, min_area), _gt_segments(gt_b, ignore_id, min_area))
    scores = []
    for sid in shared:
        seg_a, seg_b = gt_a == sid, gt_b == sid
        pix = np.argwhere(seg_a)
        vals = []
        for i in rng.integers(0, len(pix), n_samples):
            p2 = warp_pixel(tuple(pix[i]), view_a, view_b, rel_tol)
            if p2 is None:
                continue
            c1, c2 = np.asarray(cands_a(tuple(pix[i])), bool), np.asarray(cands_b(p2), bool)
            m1, m2 = c1[int(np.argmax(_ious(c1, seg_a)))], c2[int(np.argmax(_ious(c2, seg_b)))]
            vals.append(view_consistency_iou(m1, m2, view_a, view_b, rel_tol))
        if vals and not np.all(np.isnan(vals)):
            scores.append(np.nanmean(vals))
    return float(np.mean(scores)) if scores else float("nan")


def view_pairs(c2w: np.ndarray, angle_deg: float = 10.0, tol_deg: float = 3.0) -> list[tuple[int, int]]:
    """For each view i, the view j whose viewing direction is closest to ``angle_deg`` away (within tolerance).

    ``c2w`` [N, 4, 4] -> list of (i, j) pairs.
    """
    z = np.asarray(c2w, dtype=np.float64)[:, :3, 2]
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip(z @ z.T, -1.0, 1.0)))
    np.fill_diagonal(ang, np.inf)
    err = np.abs(ang - angle_deg)
    out = []
    for i in range(len(z)):
        j = int(np.argmin(err[i]))
        if err[i, j] <= tol_deg:
            out.append((i, j))
    return out
