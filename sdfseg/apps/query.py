"""Click queries on a trained feature head, in 2D (any view) and 3D (mesh or point cloud).

2D: render the feature map of a view (a training or test frame, or a novel pose), take
the normalised feature under each click, score every pixel with ``(f . q + 1) / 2``
(max over clicks = multi-select) and threshold it; the query features can be applied to
other views (the same feature answers consistently across views). 3D: features of the
scene mesh vertices (or of points back-projected from rendered depth), a kNN graph with
feature-distance edges, connected components below a distance threshold -> segments,
exported in world coordinates. Every file is written atomically.

Output layout (``OUT``)::

    query.json                       clicks, thresholds, query features, mask areas
    <view>/rgb.png features.png score.png mask_<t>.png overlay_<t>.png
    3d/d<dist>/segments.ply          all segments, coloured (mesh or point cloud)
    3d/d<dist>/segment_<i>.ply       one file per segment (largest first)
    3d/selection_<t>.ply             the clicked query in 3D (score > t), with clicks
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import trimesh

from ..core.model import BOUND_RADIUS
from ..errors import SdfsegError
from ..export.mesh import palette, scene_mesh
from ..io import atomic_path, save_image_atomic, write_json_atomic
from ..methods.hierarchy.query import click_feature, feature_score, segment_points
from ..methods.hierarchy.run import (
    FeatureRun, frame_index, pca_image, point_features, read_pose, render_feature_view, render_frame,
)
from ..progress import progress_iter


@dataclass
class QueryView:
    """A camera to query: ``name`` (output folder), normalised ``c2w [4, 4]``, ``K [3, 3]``, ``hw``,
    and the dataset frame index (None for a novel pose)."""

    name: str
    c2w: np.ndarray
    K: np.ndarray
    hw: tuple[int, int]
    frame: Optional[int] = None


def resolve_view(run: FeatureRun, frame: Optional[str], pose: Optional[Path]) -> QueryView:
    """The view of ``--frame NAME`` or of a novel ``--pose FILE`` (intrinsics of ``frame`` or frame 0)."""
    scene = run.scene
    if frame is None and pose is None:
        raise SdfsegError("give --frame NAME (a training or test frame) or --pose FILE (a novel camera)")
    i = frame_index(scene, frame) if frame is not None else 0
    if pose is None:
        return QueryView(scene.frame_names[i], scene.c2w[i], scene.intrinsics[i], scene.hw, i)
    return QueryView(f"pose_{Path(pose).stem}", read_pose(pose, scene), scene.intrinsics[i], scene.hw)


def check_clicks(clicks: Sequence[Sequence[int]], hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Validate ``--click Y X`` pixels against the image size ``hw``."""
    h, w = hw
    out = []
    for c in clicks:
        y, x = int(c[0]), int(c[1])
        if not (0 <= y < h and 0 <= x < w):
            raise SdfsegError(f"--click {y} {x}: outside the {h}x{w} image (expected 0 <= Y < {h}, 0 <= X < {w})")
        out.append((y, x))
    return out


def check_thresholds(thresholds: Sequence[float]) -> list[float]:
    for t in thresholds:
        if not 0.0 <= t <= 1.0:
            raise SdfsegError(f"--thresholds: {t} is not a score in [0, 1]")
    return [float(t) for t in thresholds]


def query_scores(features: np.ndarray, qfeats: np.ndarray) -> np.ndarray:
    """Multi-select score float32 ``[...]``: max over query features ``[C, D]`` of ``(f . q + 1) / 2``."""
    return np.max(np.stack([feature_score(features, q) for q in qfeats]), axis=0)


def _overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.astype(np.float32) * 0.45
    out[mask] = 0.45 * rgb[mask] + 0.55 * np.array([1.0, 0.15, 0.1], np.float32)
    return out


def write_view_outputs(out_dir: Path, features: np.ndarray, score: np.ndarray, thresholds: Sequence[float],
                       rgb: np.ndarray) -> dict[str, int]:
    """PNGs of one view; returns the mask area (pixels) per threshold."""
    save_image_atomic(out_dir / "rgb.png", rgb)
    save_image_atomic(out_dir / "features.png", pca_image(features))
    save_image_atomic(out_dir / "score.png", score)
    areas = {}
    for t in thresholds:
        mask = score > t
        save_image_atomic(out_dir / f"mask_{t:.2f}.png", mask.astype(np.uint8) * 255)
        save_image_atomic(out_dir / f"overlay_{t:.2f}.png", _overlay(rgb, mask))
        areas[f"{t:.2f}"] = int(mask.sum())
    return areas


def query_2d(run: FeatureRun, view: QueryView, clicks: Sequence[tuple[int, int]], thresholds: Sequence[float],
             out_dir: Path, apply_to: Sequence[int] = ()) -> dict:
    """Click query on ``view``, then the same query features on frames ``apply_to``; writes PNGs + query.json."""
    if view.frame is not None:  # a dataset frame: its photo underlays the overlays
        r = dict(render_frame(run, view.frame), rgb=run.scene.rgb_float(view.frame))
    else:
        r = render_feature_view(run.model, view.c2w, view.K, view.hw, run.cfg.render.chunk, with_rgb=True)
    qfeats = np.stack([click_feature(r["features"], c) for c in clicks])
    summary = {"view": view.name, "clicks": [list(c) for c in clicks], "thresholds": list(thresholds),
               "query_features": qfeats.tolist(), "mask_area": {}}
    summary["mask_area"][view.name] = write_view_outputs(out_dir / view.name, r["features"],
                                                         query_scores(r["features"], qfeats), thresholds, r["rgb"])
    scene = run.scene
    for i in progress_iter(apply_to, "apply query to views", unit="view"):
        name = scene.frame_names[int(i)]
        ri = render_frame(run, int(i))
        summary["mask_area"][name] = write_view_outputs(out_dir / name, ri["features"],
                                                        query_scores(ri["features"], qfeats), thresholds,
                                                        scene.rgb_float(int(i)))
    write_json_atomic(out_dir / "query.json", summary)
    return summary


# ---------------------------------------------------------------- 3D


def mesh_points(run: FeatureRun, resolution: int) -> trimesh.Trimesh:
    """Scene mesh (min over SDF channels) in normalised coordinates, by marching cubes at ``resolution``."""
    model = run.model
    mesh, _ = scene_mesh(lambda p: model.sdf(p)[0], resolution, BOUND_RADIUS, run.device)
    if len(mesh.vertices) == 0:
        raise SdfsegError(f"{run.run_dir}: the scene SDF has no zero level set at resolution {resolution}")
    return mesh


def depth_points(run: FeatureRun, frames: Sequence[int], stride: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Back-projected rendered depth of ``frames`` (normalised coords) ``[P, 3]`` and their features ``[P, D]``."""
    scene, pts, feats = run.scene, [], []
    for i in progress_iter(frames, "render depth + features", unit="view"):
        r = render_frame(run, int(i))
        h, w = scene.hw
        v, u = np.mgrid[0:h:stride, 0:w:stride]
        ok = r["acc"][::stride, ::stride] > 0.5
        z = r["depth"][::stride, ::stride][ok]
        pix = np.stack([u[ok] + 0.5, v[ok] + 0.5, np.ones_like(z)], axis=0)
        cam = np.linalg.inv(scene.intrinsics[i]) @ pix * z[None]
        c2w = scene.c2w[i].astype(np.float64)
        pts.append((c2w[:3, :3] @ cam + c2w[:3, 3:4]).T)
        feats.append(r["features"][::stride, ::stride][ok])
    return np.concatenate(pts), np.concatenate(feats)


def _save_geometry(path: Path, geom) -> None:
    with atomic_path(path) as tmp:
        geom.export(str(tmp), file_type="ply")


def _colored(points_world: np.ndarray, faces: Optional[np.ndarray], colors: np.ndarray):
    rgba = np.c_[colors, np.full(len(colors), 255, np.uint8)]
    if faces is None:
        return trimesh.PointCloud(points_world, colors=rgba)
    return trimesh.Trimesh(points_world, faces, vertex_colors=rgba, process=False)


def _subset(points_world: np.ndarray, faces: Optional[np.ndarray], keep: np.ndarray):
    """Geometry of the points ``keep`` (bool [P]): faces with all three vertices kept, or the points."""
    if faces is None:
        return trimesh.PointCloud(points_world[keep])
    sel = faces[keep[faces].all(axis=1)]
    used, inv = np.unique(sel, return_inverse=True)
    return trimesh.Trimesh(points_world[used], inv.reshape(-1, 3), process=False)


def export_segments(out_dir: Path, points_world: np.ndarray, faces: Optional[np.ndarray], labels: np.ndarray,
                    min_size: int, max_segments: int) -> list[int]:
    """Write ``segments.ply`` (coloured) and ``segment_<i>.ply`` for segments of >= ``min_size`` points."""
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, np.int64)
    keep = [int(s) for s in np.flatnonzero(sizes >= min_size)[:max_segments]]
    cols = palette(max(keep, default=0) + 2)
    shown = np.isin(labels, keep)
    colors = np.full((len(labels), 3), 160, dtype=np.uint8)
    colors[shown] = cols[labels[shown] + 1]
    _save_geometry(out_dir / "segments.ply", _colored(points_world, faces, colors))
    for s in keep:
        _save_geometry(out_dir / f"segment_{s:03d}.ply", _subset(points_world, faces, labels == s))
    return [int(sizes[s]) for s in keep]


def query_3d(run: FeatureRun, out_dir: Path, distances: Sequence[float], source: str = "mesh",
             resolution: int = 128, frames: Sequence[int] = (), knn: int = 16, voxel: Optional[float] = None,
             min_size: int = 50, max_segments: int = 64, qfeats: Optional[np.ndarray] = None,
             thresholds: Sequence[float] = ()) -> dict:
    """3D segments at each feature-distance threshold (and click selections); returns a summary."""
    if source == "mesh":
        mesh = mesh_points(run, resolution)
        pts, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        feats = point_features(run.model, pts)
    elif source == "depth":
        pts, feats = depth_points(run, frames)
        faces = None
        if len(pts) == 0:
            raise SdfsegError("--3d --points depth: the rendered views hit no surface")
    else:
        raise SdfsegError(f"--points: expected mesh or depth, got '{source}'")
    world = run.scene.normalization.to_world(pts)
    summary: dict = {"source": source, "points": int(len(pts)), "segments": {}}
    for d in progress_iter(distances, "3D segments"):
        labels = segment_points(pts, feats, threshold=float(d), k=knn, voxel=voxel)
        sizes = export_segments(out_dir / "3d" / f"d{d:.2f}", world, faces, labels, min_size, max_segments)
        summary["segments"][f"{d:.2f}"] = sizes
    if qfeats is not None:
        score = query_scores(feats, qfeats)
        summary["selection"] = {}
        for t in thresholds:
            keep = score > t
            summary["selection"][f"{t:.2f}"] = int(keep.sum())
            _save_geometry(out_dir / "3d" / f"selection_{t:.2f}.ply", _subset(world, faces, keep))
    write_json_atomic(out_dir / "3d" / "segments.json", summary)
    return summary
