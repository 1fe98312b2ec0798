"""Per-object mesh accuracy: Chamfer distance and F-score against GT meshes.

Predicted and GT objects are matched one-to-one (Hungarian) on the symmetric
Chamfer distance between surface samples; a pair only counts as matched when its
Chamfer distance is below ``match_max``. Unmatched GT objects score F = 0. All
distances are in world units (metres).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from ..errors import SdfsegError


def load_gt_meshes(folder: str | Path) -> dict[int, trimesh.Trimesh]:
    """GT object meshes ``{instance id: mesh}`` from ``folder/object_<id>.ply`` (world units; the ids of
    the scene's GT instance maps); a one-line error when the folder has none or one cannot be read."""
    folder = Path(folder)
    out = {}
    for f in sorted(folder.glob("object_*.ply")):
        try:
            out[int(f.stem.split("_", 1)[1])] = trimesh.load(f, force="mesh")
        except (ValueError, OSError) as exc:
            raise SdfsegError(f"{f}: not a readable object mesh (expected object_<id>.ply; {exc})") from None
    if not out:
        raise SdfsegError(f"{folder}: no GT object meshes (expected object_<id>.ply files)")
    return out


def scene_gt_meshes(scene, resolution: int = 256) -> dict[int, trimesh.Trimesh] | None:
    """The GT mesh of each object of a scene (world coordinates): a ``gt_meshes/`` folder (the room scenes)
    or the demo's analytic shapes meshed at ``resolution``; None when the scene has neither."""
    gt_dir, syn = scene.meta.get("gt_meshes"), scene.meta.get("synthetic")
    if gt_dir is not None:
        return load_gt_meshes(gt_dir)
    if syn is not None:
        from ..data.synthetic import load_synthetic
        from ..export.gt import synthetic_object_meshes

        return synthetic_object_meshes(load_synthetic(syn), resolution=resolution)
    return None


def surface_samples(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> np.ndarray:
    """``[n, 3]`` points uniformly on the mesh surface (area-weighted, seeded)."""
    rng = np.random.default_rng(seed)
    tri = np.asarray(mesh.triangles)
    area = np.asarray(mesh.area_faces)
    idx = rng.choice(len(tri), size=n, p=area / area.sum())
    a, b = rng.random((2, n, 1))
    flip = (a + b) > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    t = tri[idx]
    return t[:, 0] + a * (t[:, 1] - t[:, 0]) + b * (t[:, 2] - t[:, 0])


def chamfer_fscore(pred: np.ndarray, gt: np.ndarray, tau: float) -> dict[str, float]:
    """Accuracy, completeness, Chamfer (their mean), precision, recall and F-score at ``tau``."""
    d_pred = cKDTree(gt).query(pred)[0]
    d_gt = cKDTree(pred).query(gt)[0]
    prec = float((d_pred < tau).mean())
    rec = float((d_gt < tau).mean())
    f = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"accuracy": float(d_pred.mean()), "completeness": float(d_gt.mean()),
            "chamfer": float(0.5 * (d_pred.mean() + d_gt.mean())), "precision": prec, "recall": rec, "fscore": f}


def match_pairs(cost: np.ndarray, match_max: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, col)`` of ``cost [G, P]`` below ``match_max``: as many as possible, then the
    lowest total cost among them. Pairs at or above ``match_max`` cost the same large amount in the
    assignment, so a pair that cannot count never displaces one that can."""
    if cost.size == 0:
        return []
    ok = np.isfinite(cost) & (cost < match_max)
    rows, cols = linear_sum_assignment(np.where(ok, cost, 1e9))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if ok[i, j]]


def object_mesh_metrics(pred: dict[int, trimesh.Trimesh], gt: dict[int, trimesh.Trimesh], tau: float = 0.05,
                        n_samples: int = 20000, match_max: float = 0.25, seed: int = 0) -> dict:
    """Match predicted to GT objects and score each GT object. Returns per-object rows and means."""
    p_ids, g_ids = sorted(pred), sorted(gt)
    p_pts = {k: surface_samples(pred[k], n_samples, seed) for k in p_ids}
    g_pts = {k: surface_samples(gt[k], n_samples, seed + 1) for k in g_ids}
    cost = np.full((len(g_ids), len(p_ids)), np.inf)
    for i, g in enumerate(g_ids):
        for j, p in enumerate(p_ids):
            cost[i, j] = chamfer_fscore(p_pts[p], g_pts[g], tau)["chamfer"]
    rows = []
    matched = {g_ids[i]: p_ids[j] for i, j in match_pairs(cost, match_max)}
    for g in g_ids:
        if g in matched:
            m = chamfer_fscore(p_pts[matched[g]], g_pts[g], tau)
            rows.append({"gt_object": g, "pred_channel": matched[g], **m})
        else:
            rows.append({"gt_object": g, "pred_channel": None, "accuracy": None, "completeness": None,
                         "chamfer": None, "precision": 0.0, "recall": 0.0, "fscore": 0.0})
    found = [r for r in rows if r["pred_channel"] is not None]
    return {"tau": tau, "objects": rows,
            "mean_fscore": float(np.mean([r["fscore"] for r in rows])) if rows else 0.0,
            "mean_chamfer_matched": float(np.mean([r["chamfer"] for r in found])) if found else None,
            "matched": len(found), "gt_objects": len(g_ids), "pred_objects": len(p_ids)}
