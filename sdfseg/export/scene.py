"""Per-object exports people open: coloured meshes (PLY, OBJ), one GLB scene with a node per object,
an ``objects.json`` index, optional per-object point clouds.

Vertex colours come from the run's colour field: each vertex is looked at along its inward normal
(view direction ``-n``, the SDF gradient's normal), so a surface gets the colour the training views
saw head-on. Everything is written atomically; the index is written last, so a folder whose
``objects.json`` exists is complete.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import trimesh

from ..errors import SdfsegError
from ..io import atomic_path, write_bytes_atomic, write_json_atomic

FORMATS = ("ply", "glb", "obj")
INDEX_FILE = "objects.json"
GLB_FILE = "scene.glb"


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The requested export formats, checked (a one-line error names the bad one)."""
    out = tuple(dict.fromkeys(f.lower() for f in formats))
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise SdfsegError(f"--format: expected one or more of {', '.join(FORMATS)}, got {', '.join(formats) or 'none'}")
    return out


def surface_colors(model, points: np.ndarray, chunk: int = 32768) -> np.ndarray:
    """uint8 ``[N, 3]`` colours of the colour field at normalised surface ``points [N, 3]``, each seen
    along its inward normal."""
    dev = next(model.parameters()).device
    out = []
    model.eval()
    for i in range(0, len(points), chunk):
        x = torch.as_tensor(points[i:i + chunk], dtype=torch.float32, device=dev).requires_grad_(True)
        with torch.enable_grad():
            sdf, feat = model.channel_sdf(x)
            (g,) = torch.autograd.grad(sdf.min(dim=-1).values.sum(), x)
        with torch.no_grad():
            n = torch.nn.functional.normalize(g, dim=-1)
            cn = n if model.cfg.model.color_use_normal else torch.zeros_like(n)
            rgb = model.color(x.detach(), -n, cn, model.color_features(feat.detach()))
        out.append((rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3), np.uint8)


def node_name(class_name: str, instance: int) -> str:
    """GLB node / file stem of an object: ``<class>_<id>`` (class name made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", class_name).strip("-") or "object"
    return f"{safe}_{instance:03d}"


def object_record(mesh: trimesh.Trimesh, instance: int, class_id: int, class_name: str) -> dict:
    """One ``objects.json`` row (world units): bounding box, centroid, volume (watertight meshes only)."""
    v = np.asarray(mesh.vertices)
    lo, hi = (v.min(axis=0), v.max(axis=0)) if len(v) else (np.zeros(3), np.zeros(3))
    watertight = bool(mesh.is_watertight) and len(mesh.faces) > 0
    return {"id": int(instance), "class": int(class_id), "class_name": class_name, "name": node_name(class_name, instance),
            "bbox_min": [float(a) for a in lo], "bbox_max": [float(a) for a in hi],
            "centroid": [float(a) for a in (mesh.centroid if len(v) else np.zeros(3))],
            "volume": float(abs(mesh.volume)) if watertight else None, "watertight": watertight,
            "vertices": int(len(v)), "faces": int(len(mesh.faces)), "files": {}}


def drop_bounding_shell(mesh: trimesh.Trimesh, tol: float = 0.005) -> trimesh.Trimesh:
    """``mesh`` without the faces that lie on one of its bounding box's planes (within ``tol`` of the
    box's size): the shell marching cubes closes the room's solid with at the edge of the grid, which
    would hide the room from outside."""
    if not len(mesh.faces):
        return mesh
    v = np.asarray(mesh.vertices)
    lo, hi = v.min(axis=0), v.max(axis=0)
    eps = tol * float(np.max(hi - lo))
    tri = v[np.asarray(mesh.faces)]  # [F, 3 corners, 3 axes]
    on_plane = ((np.abs(tri - lo) <= eps).all(axis=1) | (np.abs(tri - hi) <= eps).all(axis=1)).any(axis=1)
    return mesh.submesh([np.flatnonzero(~on_plane)], append=True) if on_plane.any() else mesh


def glb_bytes(meshes: dict[str, trimesh.Trimesh]) -> bytes:
    """One binary glTF scene, one node (and one mesh) per entry, named by its key."""
    scene = trimesh.Scene()
    for name, m in meshes.items():
        scene.add_geometry(m, node_name=name, geom_name=name)
    return scene.export(file_type="glb")


def save_obj(path: Path, mesh: trimesh.Trimesh) -> None:
    """Write an OBJ with vertex colours (``v x y z r g b``) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(trimesh.exchange.obj.export_obj(mesh, include_color=True, include_normals=False,
                                                       include_texture=False))


def point_cloud(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> trimesh.PointCloud:
    """``n`` points sampled uniformly on ``mesh``'s surface, coloured by the nearest vertex's colour."""
    pts, face = trimesh.sample.sample_surface(mesh, n, seed=seed)
    cols = np.asarray(mesh.visual.vertex_colors)[np.asarray(mesh.faces)[face, 0]]
    return trimesh.PointCloud(pts, colors=cols)


def write_object_exports(out_dir: Path, objects: dict[int, trimesh.Trimesh], classes: dict[int, tuple[int, str]],
                         formats: Sequence[str] = ("ply",), background: Optional[trimesh.Trimesh] = None,
                         points: int = 0, extra: Optional[dict] = None,
                         row_extra: Optional[dict[int, dict]] = None) -> dict:
    """Write every object of ``objects`` (instance id -> world-space mesh with vertex colours) in
    ``formats``; ``classes[id] = (class id, class name)``. ``background`` (the room's surface) becomes
    one more GLB node. ``points > 0``: also ``points_<id>.ply`` per object. Returns the index written to
    ``objects.json`` (with ``extra`` merged in, and ``row_extra[id]`` into that object's row)."""
    formats = check_formats(formats)
    rows = []
    for k in sorted(objects):
        m = objects[k]
        cid, cname = classes[k]
        row = object_record(m, k, cid, cname)
        row.update((row_extra or {}).get(k, {}))
        if "ply" in formats:
            from .mesh import save_ply

            save_ply(out_dir / f"object_{k:03d}.ply", m)
            row["files"]["ply"] = f"object_{k:03d}.ply"
        if "obj" in formats:
            save_obj(out_dir / f"object_{k:03d}.obj", m)
            row["files"]["obj"] = f"object_{k:03d}.obj"
        if "glb" in formats:
            row["files"]["glb"] = f"{GLB_FILE}#{row['name']}"
        if points > 0 and len(m.faces):
            from .mesh import save_ply

            save_ply(out_dir / f"points_{k:03d}.ply", point_cloud(m, points, seed=k))
            row["files"]["points"] = f"points_{k:03d}.ply"
        rows.append(row)
    if "glb" in formats:
        nodes = {r["name"]: objects[r["id"]] for r in rows if len(objects[r["id"]].faces)}  # glTF: no empty meshes
        if background is not None and len(background.faces):
            nodes["background"] = background
        write_bytes_atomic(out_dir / GLB_FILE, glb_bytes(nodes))
    index = {"units": "world", "formats": list(formats), "objects": rows, **(extra or {})}
    write_json_atomic(out_dir / INDEX_FILE, index)
    return index


def read_index(out_dir: Path) -> dict:
    """``objects.json`` of a mesh folder; a one-line error when it is missing or not an index."""
    import json

    f = Path(out_dir) / INDEX_FILE
    if not f.is_file():
        raise SdfsegError(f"{f}: not found (export the meshes first: tools/extract_mesh.py RUN)")
    try:
        index = json.loads(f.read_text())
        rows = index["objects"]
        assert isinstance(rows, list)
    except (ValueError, KeyError, AssertionError) as e:
        raise SdfsegError(f"{f}: not an objects index (expected a JSON object with an 'objects' list): {e}")
    return index
