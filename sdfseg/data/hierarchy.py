"""Hierarchical 2D representation of many overlapping masks (OmniSeg3D, ultrametric fields).

From one image's :class:`~sdfseg.data.masks.MaskSet` (``M`` masks) this module builds

* the **patch index map** ``[H, W]`` int32: a patch is the set of pixels sharing the
  same membership vector over the masks; pixels covered by no mask get ``-1``.
  Patches are numbered in raster order of their first pixel;
* the **mask-patch incidence** (sparse ``[M, Np]``), from which the **correlation
  matrix** ``C[p_i, p_j]`` = number of masks containing both patches (OmniSeg3D eq. 1)
  is computed for any subset of patches (a full dense ``C`` can be huge);
* the per-anchor **hierarchy levels**: for anchor patch ``i`` the distinct non-zero
  values of ``C[i, :]`` in decreasing order; level ``d`` (0-based) holds the patches
  whose correlation with ``i`` equals the ``d``-th value (level 0 contains ``i``);
* the **mask inclusion tree** of the ultrametric paper: ``A`` is a child of ``B`` when
  ``|A n B| / |A| > 0.95`` and ``IoU(A, B) < 0.85``; the parent is the smallest such
  ``B``; masks without a parent hang below the all-image root (``-1``);
* hierarchical positive / negative **pixel pairs** sampled from that tree.

Memory stays bounded by a few ``[H, W]`` maps: no dense ``[M, H, W]`` tensor is built.
Each mask adds a random 64-bit key (XOR) to the pixels of its bounding-box crop; the
distinct per-pixel keys are the patches. The result is verified exactly (every patch
lies entirely inside or outside each mask), so a key collision cannot go unnoticed;
it triggers a retry with fresh keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import SdfsegError
from .masks import MaskSet


@dataclass
class PatchHierarchy:
    """Patches of one image and their mask memberships (see the module docstring)."""

    patch_map: np.ndarray
    """int32 ``[H, W]`` patch id per pixel, ``-1`` where no mask covers the pixel."""
    incidence: sp.csc_matrix
    """int32 ``[M, Np]``: 1 where mask ``m`` contains patch ``p``."""
    patch_area: np.ndarray
    """int64 ``[Np]`` pixel count of each patch."""

    @property
    def num_masks(self) -> int:
        return int(self.incidence.shape[0])

    @property
    def num_patches(self) -> int:
        return int(self.incidence.shape[1])

    def mask_patches(self, m: int) -> np.ndarray:
        """int64 ``[k]`` sorted ids of the patches making up mask ``m``."""
        return np.sort(self.incidence.getrow(m).indices).astype(np.int64)

    def patch_masks(self, p: int) -> np.ndarray:
        """int64 ``[k]`` sorted ids of the masks containing patch ``p``."""
        col = self.incidence[:, [p]]
        return np.sort(col.indices).astype(np.int64)

    def correlation(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Dense int64 ``[K, K]`` correlation among patches ``ids`` (all patches when None).

        Meant for the few thousand patches of a ray batch: a dense float32 product of the
        ``[M', K]`` incidence of the masks involved (exact below 2^24 masks; BLAS is much
        faster than a sparse product whose result is nearly dense).
        """
        inc = self.incidence if ids is None else self.incidence[:, np.asarray(ids, dtype=np.int64)]
        inc = inc.tocsr()
        inc = inc[np.flatnonzero(np.diff(inc.indptr))].toarray().astype(np.float32)
        return np.rint(inc.T @ inc).astype(np.int64)

    def patch_levels(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Hierarchy of anchor patch ``p`` over all patches.

        Returns (values int64 ``[L]`` distinct non-zero correlations, decreasing;
        level int64 ``[Np]`` = index into ``values`` per patch, ``-1`` if unrelated).
        """
        row = np.asarray(self.incidence[self.patch_masks(p)].sum(axis=0)).ravel().astype(np.int64)
        values = np.unique(row[row > 0])[::-1]
        level = np.full(row.shape, -1, dtype=np.int64)
        nz = row > 0
        level[nz] = np.searchsorted(-values, -row[nz])
        return values, level

    def mask_areas(self) -> np.ndarray:
        """int64 ``[M]`` pixel count of each mask."""
        return np.asarray(self.incidence @ self.patch_area, dtype=np.int64).ravel()

    def mask_intersections(self) -> np.ndarray:
        """Dense int64 ``[M, M]`` pairwise intersection areas (diagonal = mask areas)."""
        weighted = (self.incidence @ sp.diags(self.patch_area, dtype=np.int64)).tocsr()
        return np.asarray((weighted @ self.incidence.T).toarray(), dtype=np.int64)

    def membership(self, pixels: np.ndarray) -> np.ndarray:
        """bool ``[M, R]``: whether pixel ``pixels[r] = (y, x)`` (int ``[R, 2]``) lies in mask ``m``."""
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
        pid = self.patch_map[pixels[:, 0], pixels[:, 1]]
        out = np.zeros((self.num_masks, pixels.shape[0]), dtype=bool)
        covered = np.flatnonzero(pid >= 0)
        if covered.size:
            out[:, covered] = self.incidence[:, pid[covered]].toarray() > 0
        return out


def _patch_keys(masks: MaskSet, keys: np.ndarray) -> np.ndarray:
    """uint64 ``[H, W]`` XOR of the keys of the masks covering each pixel."""
    acc = np.zeros((masks.height, masks.width), dtype=np.uint64)
    for i in range(len(masks)):
        (y0, x0, y1, x1), crop = masks.crop(i)
        sub = acc[y0:y1, x0:x1]
        sub[crop] ^= keys[i]
    return acc


def _number_patches(acc: np.ndarray) -> tuple[np.ndarray, int]:
    """Patch ids int32 ``[H, W]`` (raster order of first pixel, -1 for key 0) and their count."""
    uniq, first, inverse = np.unique(acc.ravel(), return_index=True, return_inverse=True)
    covered = uniq != 0
    order = np.argsort(first[covered], kind="stable")
    remap = np.full(uniq.shape[0], -1, dtype=np.int64)
    remap[np.flatnonzero(covered)[order]] = np.arange(order.size)
    return remap[inverse.ravel()].reshape(acc.shape).astype(np.int32), int(order.size)


def _incidence(masks: MaskSet, patch_map: np.ndarray, area: np.ndarray) -> sp.csc_matrix | None:
    """Mask-patch incidence, or None if some patch straddles a mask border (key collision)."""
    cols, counts = [], np.zeros(len(masks), dtype=np.int64)
    for i in range(len(masks)):
        (y0, x0, y1, x1), crop = masks.crop(i)
        ids = patch_map[y0:y1, x0:x1][crop]
        if ids.size and ids.min() < 0:
            return None
        hist = np.bincount(ids, minlength=0) if ids.size else np.zeros(0, dtype=np.int64)
        inside = np.flatnonzero(hist)
        if not np.array_equal(hist[inside], area[inside]):
            return None
        cols.append(inside.astype(np.int32))
        counts[i] = inside.size
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate(cols)
    data = np.ones(indices.size, dtype=np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(masks), area.shape[0])).tocsc()


def build_patch_hierarchy(masks: MaskSet, seed: int = 0, max_tries: int = 4) -> PatchHierarchy:
    """Patch index map, patch areas and mask-patch incidence of one image's masks.

    Memory: one uint64 and one int32 ``[H, W]`` map plus the sorting buffers of
    ``np.unique``; time is linear in the summed bounding-box areas of the masks.
    """
    if len(masks) == 0:
        patch_map = np.full((masks.height, masks.width), -1, dtype=np.int32)
        return PatchHierarchy(patch_map, sp.csc_matrix((0, 0), dtype=np.int32), np.zeros(0, dtype=np.int64))
    for attempt in range(max_tries):
        rng = np.random.default_rng([seed, attempt])
        keys = rng.integers(1, np.iinfo(np.uint64).max, size=len(masks), dtype=np.uint64, endpoint=True)
        acc = _patch_keys(masks, keys)
        patch_map, num_patches = _number_patches(acc)
        del acc
        valid = patch_map.ravel()
        area = np.bincount(valid[valid >= 0], minlength=num_patches).astype(np.int64)
        incidence = _incidence(masks, patch_map, area)
        if incidence is not None:
            return PatchHierarchy(patch_map, incidence, area)
    raise SdfsegError(f"mask set ({len(masks)} masks): patch hashing failed {max_tries} times (key collisions)")


def level_matrix(corr: np.ndarray) -> np.ndarray:
    """Hierarchy level of each patch relative to each anchor.

    ``corr`` [K, K] correlation counts -> int64 [K, K]: entry ``[i, j]`` is the rank of
    ``corr[i, j]`` among the distinct non-zero values of row ``i`` sorted decreasingly
    (0 = strongest), ``-1`` where ``corr[i, j] == 0``.
    """
    corr = np.asarray(corr)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise SdfsegError(f"correlation matrix: expected [K, K], got shape {corr.shape}")
    k = corr.shape[0]
    order = np.argsort(-corr, axis=1, kind="stable")
    ranked = np.take_along_axis(corr, order, axis=1)
    new_value = np.ones_like(ranked, dtype=np.int64)
    new_value[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    rank_sorted = np.cumsum(new_value, axis=1) - 1
    level = np.empty((k, k), dtype=np.int64)
    np.put_along_axis(level, order, rank_sorted, axis=1)
    level[corr == 0] = -1
    return level


def batch_correlation(hier: PatchHierarchy, patch_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compact the patches hit by a ray batch.

    ``patch_ids`` int ``[R]`` (``-1`` = uncovered) -> (local ids int64 ``[R]`` in
    ``0..K-1`` with ``-1`` kept, correlation int64 ``[K, K]`` among the K patches).
    """
    patch_ids = np.asarray(patch_ids, dtype=np.int64)
    local = np.full(patch_ids.shape, -1, dtype=np.int64)
    covered = patch_ids >= 0
    ids, inv = np.unique(patch_ids[covered], return_inverse=True)
    local[covered] = inv.ravel()
    return local, hier.correlation(ids)


def inclusion_parents(intersections: np.ndarray, areas: np.ndarray, p_in: float = 0.95,
                      p_iou: float = 0.85) -> np.ndarray:
    """Parent of each mask in the inclusion tree (ultrametric paper, supplementary A.2).

    ``intersections`` int [M, M], ``areas`` int [M] -> int64 [M]: the smallest mask ``B``
    with ``|A n B| / |A| > p_in`` and ``IoU(A, B) < p_iou``; ``-1`` = child of the root.
    """
    inter = np.asarray(intersections, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    m = areas.shape[0]
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    inside = inter / np.maximum(areas[:, None], 1.0)
    union = areas[:, None] + areas[None, :] - inter
    iou = inter / np.maximum(union, 1.0)
    cand = (inside > p_in) & (iou < p_iou)
    np.fill_diagonal(cand, False)
    cost = np.where(cand, areas[None, :], np.inf)
    parent = np.argmin(cost, axis=1).astype(np.int64)
    parent[~cand.any(axis=1)] = -1
    return parent


def _row_lists(members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened True columns of ``members`` bool [M, R]: (columns, row starts [M], row counts [M])."""
    r_idx, c_idx = np.nonzero(members)
    counts = np.bincount(r_idx, minlength=members.shape[0]).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return c_idx.astype(np.int64), starts, counts


def _pick(lists: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """One uniformly random column per requested row (``-1`` for empty rows)."""
    cols, starts, counts = lists
    n = counts[rows]
    off = np.floor(rng.random(rows.shape[0]) * n).astype(np.int64)
    out = np.full(rows.shape[0], -1, dtype=np.int64)
    ok = n > 0
    out[ok] = cols[starts[rows[ok]] + np.minimum(off[ok], n[ok] - 1)]
    return out


def sample_hierarchical_pairs(membership: np.ndarray, parents: np.ndarray, pairs_per_mask: int = 64,
                              min_rays: int = 5, rng: np.random.Generator | None = None
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive / negative ray pairs from the mask inclusion tree, compared within one level.

    For every mask ``A`` with at least ``min_rays`` sampled rays inside it and parent ``B``
    (the whole image for root children): ``pairs_per_mask`` positives ``(a1, a2)`` with
    both rays in ``A`` and as many negatives ``(a, b)`` with ``a`` in ``A`` and ``b`` in
    ``B \\ A``; row ``i`` of the two outputs is one matched (positive, negative) pair.

    ``membership`` bool [M, R] (rays in masks), ``parents`` int [M] ->
    (pos int64 [P, 2], neg int64 [P, 2]) ray indices and owner int64 [P] (the mask ``A``).
    """
    rng = rng if rng is not None else np.random.default_rng()
    membership = np.asarray(membership, dtype=bool)
    parents = np.asarray(parents, dtype=np.int64)
    m, r = membership.shape
    if parents.shape != (m,):
        raise SdfsegError(f"parents: expected [{m}], got shape {parents.shape}")
    parent_rays = np.ones((m, r), dtype=bool)
    has_parent = parents >= 0
    parent_rays[has_parent] = membership[parents[has_parent]]
    ring = parent_rays & ~membership
    active = np.flatnonzero((membership.sum(axis=1) >= min_rays) & ring.any(axis=1))
    rows = np.repeat(active, pairs_per_mask)
    inside, outside = _row_lists(membership), _row_lists(ring)
    pos = np.stack([_pick(inside, rows, rng), _pick(inside, rows, rng)], axis=1)
    neg = np.stack([_pick(inside, rows, rng), _pick(outside, rows, rng)], axis=1)
    return pos, neg, rows
