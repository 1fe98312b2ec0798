"""Camera conventions shared by the readers: pixel-index vs pixel-edge intrinsics, depth resampling.

sdfseg's :class:`~sdfseg.data.scene.Scene` uses the pixel-edge convention: the centre of
pixel ``(u, v)`` is ``(u + 0.5, v + 0.5)``. Codes that cast rays through integer pixel
indices (Panoptic Lifting, MonoSDF / ObjectSDF++, ClusteringSDF) store K in the
pixel-index convention, whose principal point is 0.5 pixel smaller.
"""

from __future__ import annotations

import numpy as np


def index_to_edge(K: np.ndarray) -> np.ndarray:
    """``[3, 3]`` K of a code that shoots rays through integer pixels -> the same rays in our convention."""
    out = np.asarray(K, dtype=np.float64).copy()
    out[0, 2] += 0.5
    out[1, 2] += 0.5
    return out


def edge_to_index(K: np.ndarray) -> np.ndarray:
    """Inverse of :func:`index_to_edge`: our ``[3, 3]`` K -> the pixel-index convention (what such codes store)."""
    out = np.asarray(K, dtype=np.float64).copy()
    out[0, 2] -= 0.5
    out[1, 2] -= 0.5
    return out


def pixel_rays(K: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Camera-frame directions ``[H, W, 3]`` (z = 1) through the pixel centres of an ``hw`` image with K (edge)."""
    h, w = hw
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    return pix @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T


def depth_pixel_index(K_depth: np.ndarray, depth_hw: tuple[int, int], K_target: np.ndarray,
                      hw: tuple[int, int]) -> np.ndarray:
    """For each pixel of an ``hw`` image with ``K_target``: the flat index of the ``depth_hw`` depth pixel
    its centre falls on through ``K_target^-1`` then ``K_depth`` (same pose), or -1 outside. int64 ``[H, W]``.

    Both K are in the pixel-edge convention; nearest neighbour (the depth pixel containing the point).
    """
    p = pixel_rays(K_target, hw) @ np.asarray(K_depth, dtype=np.float64).T
    x = np.floor(p[..., 0] / p[..., 2]).astype(np.int64)
    y = np.floor(p[..., 1] / p[..., 2]).astype(np.int64)
    hd, wd = depth_hw
    inside = (x >= 0) & (x < wd) & (y >= 0) & (y < hd) & (p[..., 2] > 0)
    return np.where(inside, y * wd + x, -1)


def resample_depth(depth: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Depth ``[Hd, Wd]`` looked up at :func:`depth_pixel_index` ``index`` ``[H, W]``: float32 ``[H, W]``, 0 outside."""
    flat = np.asarray(depth, dtype=np.float32).ravel()
    return np.where(index >= 0, flat[np.maximum(index, 0)], 0.0).astype(np.float32)


def ray_distance_to_z(distance: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Distance from the camera centre along each pixel's ray ``[H, W]`` -> z-depth ``[H, W]`` (float32).

    ``z = distance / |K^-1 [u + 0.5, v + 0.5, 1]|`` with K (edge convention) at the map's resolution.
    """
    norm = np.linalg.norm(pixel_rays(K, distance.shape[:2]), axis=-1)
    return (np.asarray(distance, dtype=np.float64) / norm).astype(np.float32)
