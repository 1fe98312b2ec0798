"""Click / threshold / multi-select queries on hierarchical feature maps and 3D feature points.

Conventions. Features are L2-normalised before use. The click score of a feature ``f``
for a query feature ``q`` is ``(f . q + 1) / 2`` in [0, 1] (OmniSeg3D); a mask is
``score > threshold`` and raising the threshold moves from groups to objects to parts.
The feature *distance* used by the graph segmentations is ``d = 1 - f . q`` in [0, 2]
(the ultrametric loss's distance, so ``score = 1 - d / 2``); cutting a kNN graph at a
distance threshold and taking connected components gives one segmentation, and
increasing thresholds give nested (coarser) segmentations. For view-consistent queries,
take the query feature once (:func:`click_feature`) and use it in every view.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ...errors import SdfsegError

DEFAULT_THRESHOLDS = np.linspace(0.01, 0.5, 50)
"""Distance thresholds of the 3D hierarchy (ultrametric paper: 50 values 0.01 .. 0.5)."""


def _normalize(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-8)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_image_features(features) -> np.ndarray:
    features = _to_numpy(features)
    if features.ndim != 3:
        raise SdfsegError(f"feature map: expected [H, W, D], got shape {features.shape}")
    return features


def click_feature(features, click: tuple[int, int]) -> np.ndarray:
    """Normalised feature [D] of pixel ``click = (y, x)`` of a feature map [H, W, D]."""
    features = _check_image_features(features)
    y, x = int(click[0]), int(click[1])
    h, w = features.shape[:2]
    if not (0 <= y < h and 0 <= x < w):
        raise SdfsegError(f"click {(y, x)} is outside the {h}x{w} feature map")
    return _normalize(features[y, x])


def feature_score(features, query_feat) -> np.ndarray:
    """``(f . q + 1) / 2`` of features [..., D] against one query feature [D] -> float32 [...]."""
    f = _normalize(_to_numpy(features))
    q = _normalize(_to_numpy(query_feat))
    return ((f @ q + 1.0) * 0.5).astype(np.float32)


def score_map(features, click: tuple[int, int]) -> np.ndarray:
    """Score map float32 [H, W] of a click (y, x) on a feature map [H, W, D]."""
    return feature_score(_check_image_features(features), click_feature(features, click))


def multi_score_map(features, clicks: Sequence[tuple[int, int]]) -> np.ndarray:
    """Multi-select: max over the clicks' score maps, float32 [H, W]."""
    if len(clicks) == 0:
        raise SdfsegError("multi_score_map: at least one click is needed")
    return np.max(np.stack([score_map(features, c) for c in clicks]), axis=0)


def masks_at_thresholds(score, thresholds: Sequence[float]) -> np.ndarray:
    """bool [T, H, W]: ``score > t`` for each threshold (score [H, W])."""
    score = np.asarray(score)
    return score[None] > np.asarray(thresholds, dtype=np.float64).reshape(-1, *([1] * score.ndim))


def query_image(features, query_feat, threshold: float) -> np.ndarray:
    """bool [H, W]: pixels of a feature map [H, W, D] whose score for ``query_feat`` [D] exceeds ``threshold``."""
    return feature_score(_check_image_features(features), query_feat) > threshold


def query_points(feats, click_feat, threshold: float) -> np.ndarray:
    """bool [P]: 3D points with features [P, D] whose score for ``click_feat`` [D] exceeds ``threshold``."""
    feats = _to_numpy(feats)
    if feats.ndim != 2:
        raise SdfsegError(f"point features: expected [P, D], got shape {feats.shape}")
    return feature_score(feats, click_feat) > threshold


# ---------------------------------------------------------------- graph segmentation


def _components(num_nodes: int, edges: np.ndarray, dist: np.ndarray, threshold: float) -> np.ndarray:
    """Connected components int64 [V] of the graph keeping edges with ``dist <= threshold``, largest = 0."""
    keep = dist <= threshold
    graph = coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (edges[keep, 0], edges[keep, 1])),
                       shape=(num_nodes, num_nodes))
    _, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels)
    rank = np.empty_like(counts)
    rank[np.argsort(-counts, kind="stable")] = np.arange(counts.size)
    return rank[labels].astype(np.int64)


def _edge_distance(feats: np.ndarray, edges: np.ndarray) -> np.ndarray:
    fn = _normalize(feats)
    return 1.0 - np.einsum("ed,ed->e", fn[edges[:, 0]], fn[edges[:, 1]])


def _voxelize(points: np.ndarray, feats: np.ndarray, voxel: float | None):
    """Average points/features per voxel: (points [V, 3], feats [V, D], inverse [P])."""
    if voxel is None or voxel <= 0:
        return points, feats, np.arange(points.shape[0])
    _, inv = np.unique(np.floor(points / voxel).astype(np.int64), axis=0, return_inverse=True)
    inv = inv.ravel()
    n = np.bincount(inv).astype(np.float64)
    vp = np.stack([np.bincount(inv, weights=points[:, i]) for i in range(3)], axis=1) / n[:, None]
    vf = np.stack([np.bincount(inv, weights=feats[:, i]) for i in range(feats.shape[1])], axis=1) / n[:, None]
    return vp, vf, inv


def _point_graph(points, feats, k: int, voxel: float | None):
    points = np.asarray(_to_numpy(points), dtype=np.float64)
    feats = np.asarray(_to_numpy(feats), dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or feats.ndim != 2 or feats.shape[0] != points.shape[0]:
        raise SdfsegError(f"segment_points: expected points [P, 3] and feats [P, D], got {points.shape} and {feats.shape}")
    vp, vf, inv = _voxelize(points, feats, voxel)
    kk = min(k, vp.shape[0] - 1)
    if kk <= 0:
        return vp.shape[0], np.zeros((0, 2), dtype=np.int64), np.zeros(0), inv
    _, nbr = cKDTree(vp).query(vp, k=kk + 1)
    edges = np.stack([np.repeat(np.arange(vp.shape[0]), kk), nbr[:, 1:].reshape(-1)], axis=1)
    return vp.shape[0], edges, _edge_distance(vf, edges), inv


def _limit(labels: np.ndarray, max_segments: int | None) -> np.ndarray:
    if max_segments is not None:
        labels = np.where(labels < max_segments, labels, -1)
    return labels


def segment_points(points, feats, threshold: float, k: int = 16, voxel: float | None = None,
                   max_segments: int | None = None) -> np.ndarray:
    """Segments of a featurised point cloud at one distance threshold.

    kNN graph (k neighbours, cKDTree) over points [P, 3] (voxel-averaged first when
    ``voxel`` is given), edge length = feature distance ``1 - cos``; edges longer than
    ``threshold`` are dropped; connected components are the segments. Returns int64
    [P] labels numbered by decreasing size (0 = largest); with ``max_segments`` only
    that many largest segments are kept and the rest become -1.
    """
    n, edges, dist, inv = _point_graph(points, feats, k, voxel)
    return _limit(_components(n, edges, dist, threshold), max_segments)[inv]


def hierarchy_of_segments(points, feats, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, k: int = 16,
                          voxel: float | None = None, max_segments: int | None = None) -> np.ndarray:
    """int64 [T, P] :func:`segment_points` labels for each threshold (one graph build; nested segments)."""
    n, edges, dist, inv = _point_graph(points, feats, k, voxel)
    return np.stack([_limit(_components(n, edges, dist, t), max_segments)[inv] for t in thresholds])


def _grid_edges(h: int, w: int) -> np.ndarray:
    idx = np.arange(h * w).reshape(h, w)
    right = np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], axis=1)
    down = np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()], axis=1)
    return np.concatenate([right, down]).astype(np.int64)


def segment_image(features, threshold: float) -> np.ndarray:
    """2D segmentation int64 [H, W] of a feature map [H, W, D]: 4-neighbour graph cut at ``threshold``."""
    return segment_image_hierarchy(features, [threshold])[0]


def segment_image_hierarchy(features, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> np.ndarray:
    """int64 [T, H, W] :func:`segment_image` for each threshold (labels by decreasing size)."""
    features = _check_image_features(features)
    h, w, d = features.shape
    edges = _grid_edges(h, w)
    dist = _edge_distance(features.reshape(-1, d), edges)
    return np.stack([_components(h * w, edges, dist, t).reshape(h, w) for t in thresholds])


# ---------------------------------------------------------------- candidate masks for metrics

CandidateFn = Callable[[tuple[int, int]], np.ndarray]
"""A click (y, x) -> bool [T, H, W]: the model's masks for that click at T granularities."""


def feature_candidates(features, thresholds: Sequence[float] = np.linspace(0.0, 1.0, 101)[1:-1]) -> CandidateFn:
    """Click masks ``score > t`` of a feature map [H, W, D] for each score threshold."""
    features = _check_image_features(features)
    return lambda click: masks_at_thresholds(score_map(features, click), thresholds)


def segmentation_candidates(segmentations) -> CandidateFn:
    """Click masks from label maps [T, H, W] (one segmentation per granularity): the segment under the click."""
    seg = np.asarray(_to_numpy(segmentations))
    if seg.ndim != 3:
        raise SdfsegError(f"segmentations: expected [T, H, W], got shape {seg.shape}")

    def cands(click: tuple[int, int]) -> np.ndarray:
        at = seg[:, int(click[0]), int(click[1])]
        return (seg == at[:, None, None]) & (at[:, None, None] >= 0)

    return cands
