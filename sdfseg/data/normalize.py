"""Scene normalisation: map a world-unit scene into the unit sphere, reversibly.

The room must fit inside the bounding sphere of the SDF (radius ``radius``, 1 by
default) with all cameras inside it. With depth, the extent is taken from
back-projected depth points (robust percentiles, subsampled); without depth, from
the camera centres padded by ``camera_margin`` of their spread. The transform is
recorded in ``Scene.normalization`` (normalised = (world - center) / scale) so
meshes and points can be exported in world coordinates. Depth keeps the scene's
storage dtype (float16): it is rescaled a few frames at a time, never as a float32
copy of the whole stack.
"""

from __future__ import annotations

import numpy as np

from ..errors import SdfsegError
from .scene import METRIC_DEPTH, Normalization, Scene


def backproject_depth(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, stride: int = 1) -> np.ndarray:
    """World points ``[M, 3]`` of the valid pixels of one depth map ``[H, W]`` (z-depth)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    d = np.asarray(depth[::stride, ::stride], dtype=np.float64)
    ok = d > 0
    pix = np.stack([u[ok] + 0.5, v[ok] + 0.5, np.ones(ok.sum())], axis=0)
    cam = np.linalg.inv(K) @ pix * d[ok][None]
    return (c2w[:3, :3] @ cam + c2w[:3, 3:4]).T


def scene_extent(scene: Scene, percentile: float = 0.5, stride: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned (lo [3], hi [3]) world bounds of cameras and (if present) depth points."""
    centres = scene.c2w[:, :3, 3].astype(np.float64)
    if not np.isfinite(scene.c2w).all():
        raise SdfsegError(f"{scene.path}: camera poses contain non-finite values")
    if scene.depth is not None and scene.depth_kind in METRIC_DEPTH:
        stride = 1 if scene.depth_kind == "sparse" else stride  # every SfM point counts
        # the points of every frame and the camera centres, one row per axis, filled in place (no list of
        # per-frame arrays and no concatenated copy); each row's percentiles partition it in place
        counts = [int((np.asarray(scene.depth[i][::stride, ::stride], dtype=np.float64) > 0).sum())
                  for i in range(scene.num_frames)]
        total = sum(counts)
        if total > 0:
            pts = np.empty((3, total + len(centres)), dtype=np.float64)
            at = 0
            for i, c in enumerate(counts):
                pts[:, at:at + c] = backproject_depth(scene.depth[i], scene.intrinsics[i], scene.c2w[i], stride).T
                at += c
            pts[:, at:] = centres.T
            q = np.stack([np.percentile(pts[k], [percentile, 100 - percentile], overwrite_input=True)
                          for k in range(3)], axis=1)
            return np.minimum(q[0], centres.min(0)), np.maximum(q[1], centres.max(0))
    lo, hi = centres.min(0), centres.max(0)
    pad = 0.5 * np.maximum(hi - lo, 1e-3).max()
    return lo - pad, hi + pad


def normalize_scene(scene: Scene, radius: float = 0.9, in_place: bool = False) -> Scene:
    """Return a copy of ``scene`` whose content fits in the sphere of ``radius`` (poses, depth rescaled).

    ``in_place``: rescale ``scene``'s depth array itself instead of a copy (the same values; for a caller that
    drops ``scene``, so the stack is never held twice)."""
    lo, hi = scene_extent(scene)
    center = 0.5 * (lo + hi)
    half_diag = 0.5 * float(np.linalg.norm(hi - lo))
    scale = half_diag / radius if half_diag > 0 else 1.0
    norm = Normalization(center=center, scale=scale)
    c2w = scene.c2w.astype(np.float64).copy()
    c2w[:, :3, 3] = norm.to_normalized(c2w[:, :3, 3])
    depth = scene.depth
    if depth is not None and scene.depth_kind in METRIC_DEPTH:
        depth = scaled_depth(depth, scale, out=depth if in_place else None)
    # compose with any normalisation the reader already applied (e.g. ObjectSDF++ scale_mat)
    prev = scene.normalization
    total = Normalization(center=prev.to_world(center), scale=prev.scale * scale)
    return scene.replace(c2w=c2w.astype(np.float32), depth=depth, normalization=total)


def scaled_depth(depth: np.ndarray, scale: float, chunk: int = 16, out: np.ndarray | None = None) -> np.ndarray:
    """``depth / scale`` ``[N, H, W]`` in ``depth``'s dtype (float16 scenes stay float16), computed in float32
    ``chunk`` frames at a time (no float32 copy of the whole stack), into ``out`` if given (may be ``depth``)."""
    out = np.empty_like(depth) if out is None else out
    for i in range(0, depth.shape[0], chunk):
        out[i:i + chunk] = depth[i:i + chunk].astype(np.float32) / np.float32(scale)
    return out


def inward_capture(scene: Scene, stride: int = 8) -> str | None:
    """A warning when the cameras look inward at an object (an object-centric capture), else None.

    The background channel starts as a room enclosing the cameras; in an object capture there is no
    such room. Taken as inward when at least 80% of the cameras look within 30 degrees of the point
    their optical axes converge to, and fewer than 10% of the scene's depth points (sensor or SfM)
    lie farther from that point than the median camera (in a room the walls lie behind the cameras).
    """
    if scene.depth is None or scene.depth_kind not in METRIC_DEPTH or scene.num_frames < 3:
        return None
    c2w = scene.c2w.astype(np.float64)
    origin, fwd = c2w[:, :3, 3], c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    proj = np.eye(3)[None] - fwd[:, :, None] * fwd[:, None, :]
    a, b = proj.sum(0), np.einsum("nij,nj->i", proj, origin)
    if np.linalg.cond(a) > 1e8:
        return None
    p = np.linalg.solve(a, b)
    to_p = p - origin
    dist = np.linalg.norm(to_p, axis=1)
    aim = (to_p * fwd).sum(1) / np.maximum(dist, 1e-9)
    if (aim > np.cos(np.radians(30))).mean() < 0.8:
        return None
    stride = 1 if scene.depth_kind == "sparse" else stride
    pts = [backproject_depth(scene.depth[i], scene.intrinsics[i], scene.c2w[i], stride) for i in range(scene.num_frames)]
    pts = np.concatenate(pts) if pts else np.zeros((0, 3))
    if len(pts) < 10:
        return None
    beyond = float((np.linalg.norm(pts - p, axis=1) > np.median(dist)).mean())
    if beyond >= 0.1:
        return None
    return (f"the cameras look inward at an object ({100 * beyond:.0f}% of the depth points lie beyond them): the "
            "background channel starts as a room enclosing the cameras, which this capture does not have; "
            "expect the object to be split from a background that is mostly empty space")

