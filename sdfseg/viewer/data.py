"""What the viewer shows of a run, without a browser: the objects' meshes and index, the room, the
training cameras, prompted objects, picking by a ray, and the feature head's threshold query on the
mesh vertices.

All geometry is in world coordinates (the exported meshes'); the run's model works in normalised
coordinates and is only opened for the feature query (:class:`FeatureQuery`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import trimesh

from ..errors import SdfsegError
from ..export.mesh import palette
from ..export.scene import INDEX_FILE, drop_bounding_shell, node_name, object_record


@dataclass
class ViewObject:
    """One selectable object: its index row (id, class, bounding box, files, ...) and world mesh."""

    key: str  # node name, e.g. chair_004 or prompt:gt_001
    row: dict
    mesh: trimesh.Trimesh

    @property
    def size(self) -> np.ndarray:
        return np.asarray(self.row["bbox_max"]) - np.asarray(self.row["bbox_min"])

    def info(self) -> str:
        """Markdown lines for the selection panel."""
        s = self.size
        lines = [f"**{self.key}**", f"id {self.row['id']}, class {self.row.get('class_name', '')} ({self.row['class']})",
                 f"size {s[0]:.2f} x {s[1]:.2f} x {s[2]:.2f} m", f"{self.row['faces']} faces, "
                 f"{self.row['vertices']} vertices" + (", watertight" if self.row.get("watertight") else "")]
        if self.row.get("volume") is not None:
            lines.append(f"volume {self.row['volume']:.4f} m^3")
        if "fscore" in self.row:
            lines.append(f"F-score@5cm vs GT object {self.row.get('gt_object')}: {self.row['fscore']:.3f}")
        return "  \n".join(lines)


@dataclass
class Camera:
    c2w: np.ndarray  # [4, 4] world, OpenCV axes
    K: np.ndarray
    hw: tuple[int, int]
    name: str
    image: Optional[np.ndarray] = None  # small uint8 thumbnail


@dataclass
class ViewData:
    run_dir: Path
    objects: dict[str, ViewObject]
    background: Optional[trimesh.Trimesh]
    class_names: dict[int, str]
    cameras: list[Camera] = field(default_factory=list)
    has_features: bool = False
    notes: list[str] = field(default_factory=list)

    def object_colors(self) -> dict[str, tuple[int, int, int]]:
        ids = [o.row["id"] for o in self.objects.values()]
        pal = palette(max(ids, default=0) + 1)
        return {k: tuple(int(c) for c in pal[o.row["id"]]) for k, o in self.objects.items()}

    def class_colors(self) -> dict[str, tuple[int, int, int]]:
        n = max([o.row["class"] for o in self.objects.values()] + list(self.class_names) + [0]) + 1
        pal = palette(n, seed=7)
        return {k: tuple(int(c) for c in pal[o.row["class"]]) for k, o in self.objects.items()}


def _class_names(run_dir: Path) -> dict[int, str]:
    f = run_dir / "channels.json"
    if not f.is_file():
        return {}
    return {int(c["class"]): c["name"] for c in json.loads(f.read_text())["channels"] if c.get("name")}


def _index_rows(mesh_dir: Path, run_dir: Path) -> list[dict]:
    """Rows of ``objects.json``; for meshes exported before the index existed, rows rebuilt from the
    ``object_<id>.ply`` files and ``channels.json``."""
    f = mesh_dir / INDEX_FILE
    if f.is_file():
        try:
            return list(json.loads(f.read_text())["objects"])
        except (ValueError, KeyError) as e:
            raise SdfsegError(f"{f}: not an objects index (expected a JSON object with an 'objects' list): {e}")
    plys = sorted(mesh_dir.glob("object_*.ply"))
    if not plys:
        raise SdfsegError(f"{mesh_dir}: no object meshes (run tools/extract_mesh.py {run_dir} first)")
    chan = {}
    if (run_dir / "channels.json").is_file():
        chan = {int(c["instance_id"]): c for c in json.loads((run_dir / "channels.json").read_text())["channels"]
                if c["object"]}
    rows = []
    for p in plys:
        k = int(p.stem.split("_")[1])
        c = chan.get(k, {"class": 0, "name": ""})
        row = object_record(trimesh.load(p, process=False), k, int(c["class"]), c.get("name") or "object")
        row["files"] = {"ply": p.name}
        rows.append(row)
    return rows


def _background(mesh_dir: Path) -> Optional[trimesh.Trimesh]:
    """The room: ``background.ply``, or the background-owned faces of ``scene_by_object.ply`` (grey)."""
    f = mesh_dir / "background.ply"
    if f.is_file():
        m = trimesh.load(f, process=False)
        return m if isinstance(m, trimesh.Trimesh) and len(m.faces) else None
    f = mesh_dir / "scene_by_object.ply"
    if not f.is_file():
        return None
    m = trimesh.load(f, process=False)
    cols = np.asarray(m.visual.vertex_colors)[:, :3]
    bg = (cols == palette(1)[0]).all(axis=1)
    faces = np.flatnonzero(bg[np.asarray(m.faces)].all(axis=1))
    return drop_bounding_shell(m.submesh([faces], append=True)) if len(faces) else None


def load_view_data(run_dir: str | Path, with_cameras: bool = True, max_cameras: int = 100) -> ViewData:
    """The run's exported objects (``RUN/meshes``), the room, prompted objects (``RUN/prompts/*/object.ply``)
    and, when the run's scene is readable, its training cameras."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise SdfsegError(f"{run_dir}: not a run folder (no config.yaml)")
    mesh_dir = run_dir / "meshes"
    rows = _index_rows(mesh_dir, run_dir)
    objects: dict[str, ViewObject] = {}
    notes = []
    for row in rows:
        f = mesh_dir / row["files"].get("ply", f"object_{row['id']:03d}.ply")
        if not f.is_file():
            raise SdfsegError(f"{f}: listed in {mesh_dir / INDEX_FILE} but missing")
        key = row.get("name") or node_name(row.get("class_name", "object"), row["id"])
        mesh = trimesh.load(f, process=False)
        if not isinstance(mesh, trimesh.Trimesh) or not len(mesh.faces):
            notes.append(f"{key}: empty mesh, not shown")
            continue
        objects[key] = ViewObject(key, row, mesh)
    for f in sorted((run_dir / "prompts").glob("*/object.ply")):
        m = trimesh.load(f, process=False)
        if len(m.faces):
            key = f"prompt:{f.parent.name}"
            row = object_record(m, -1, 0, "prompt")
            row["name"] = key
            objects[key] = ViewObject(key, row, m)
    data = ViewData(run_dir, objects, _background(mesh_dir), _class_names(run_dir), notes=notes)
    data.has_features = _has_feature_head(run_dir)
    if with_cameras:
        try:
            data.cameras = training_cameras(run_dir, max_cameras)
        except SdfsegError as e:
            data.notes.append(f"no cameras: {e}")
    return data


def _has_feature_head(run_dir: Path) -> bool:
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return bool((cfg.get("features") or {}).get("enabled"))


def training_cameras(run_dir: Path, max_cameras: int = 100) -> list[Camera]:
    """Training cameras in world coordinates, with small thumbnails (at most ``max_cameras``)."""
    from ..training.rundir import read_run_config
    from ..training.trainer import load_training_scene

    cfg = read_run_config(run_dir)
    if not Path(cfg.data.path).exists():
        raise SdfsegError(f"data.path: scene folder '{cfg.data.path}' of run {run_dir} not found")
    scene = load_training_scene(cfg)
    norm = scene.normalization
    frames = np.asarray(scene.split["train"])
    if len(frames) > max_cameras:
        frames = frames[np.linspace(0, len(frames) - 1, max_cameras).round().astype(int)]
    out = []
    step = max(1, scene.hw[0] // 48)
    for i in frames:
        c2w = np.array(scene.c2w[i], dtype=np.float64)
        c2w[:3, 3] = norm.to_world(c2w[:3, 3])
        img = scene.rgb[i][::step, ::step] if getattr(scene, "rgb", None) is not None else None
        if img is not None and img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        out.append(Camera(c2w, np.asarray(scene.intrinsics[i], np.float64), scene.hw, scene.frame_names[int(i)], img))
    return out


def ray_hits(mesh: trimesh.Trimesh, origin: np.ndarray, direction: np.ndarray, front_only: bool = False
             ) -> Optional[float]:
    """Distance along the ray to its first hit of ``mesh`` (Moller-Trumbore on every triangle), or None.
    ``front_only``: only faces whose normal faces the ray (as a one-sided render shows them)."""
    tri = np.asarray(mesh.vertices, np.float64)[np.asarray(mesh.faces)]
    if not len(tri):
        return None
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(d, e2)
    det = (e1 * p).sum(-1)
    ok = det > 1e-12 if front_only else np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = np.asarray(origin, np.float64) - tri[:, 0]
    u = (s * p).sum(-1) * inv
    q = np.cross(s, e1)
    v = (q * d).sum(-1) * inv
    t = (e2 * q).sum(-1) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    return float(t[hit].min()) if hit.any() else None


def pick(data: ViewData, origin, direction, visible: Optional[set[str]] = None,
         include_background: bool = True) -> tuple[Optional[str], Optional[np.ndarray]]:
    """The visible object the ray hits first (None: the room or nothing) and the world hit point."""
    best, key = np.inf, None
    for k, o in data.objects.items():
        if visible is not None and k not in visible:
            continue
        t = ray_hits(o.mesh, origin, direction)
        if t is not None and t < best:
            best, key = t, k
    if include_background and data.background is not None:
        t = ray_hits(data.background, origin, direction, front_only=True)  # the room is drawn one-sided
        if t is not None and t < best:
            best, key = t, None
    if not np.isfinite(best):
        return None, None
    d = np.asarray(direction, np.float64)
    return key, np.asarray(origin, np.float64) + best * d / np.linalg.norm(d)


class FeatureQuery:
    """The feature head's threshold query on mesh vertices: features of every object's and the room's
    vertices (computed once, on the first query), a clicked point's feature, and the vertices whose
    score ``(f . f_click + 1) / 2`` reaches a threshold (as :mod:`sdfseg.methods.hierarchy.query`)."""

    def __init__(self, data: ViewData, device: Optional[str] = None):
        self.data = data
        self.device = device
        self._run = None
        self.points: Optional[np.ndarray] = None
        self.features: Optional[np.ndarray] = None

    def _open(self):
        if self._run is None:
            from ..runs import open_run

            self._run = open_run(self.data.run_dir, device=self.device)
            if self._run.model.features is None:
                raise SdfsegError(f"{self.data.run_dir}: the run has no feature head (features.enabled)")
        return self._run

    def point_features(self, world: np.ndarray) -> np.ndarray:
        from ..methods.hierarchy.run import point_features

        run = self._open()
        f = point_features(run.model, run.scene.normalization.to_normalized(world).astype(np.float32))
        return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-8)

    def vertices(self) -> tuple[np.ndarray, np.ndarray]:
        if self.points is None:
            parts = [np.asarray(o.mesh.vertices) for o in self.data.objects.values()]
            if self.data.background is not None:
                parts.append(np.asarray(self.data.background.vertices))
            self.points = np.concatenate(parts) if parts else np.zeros((0, 3))
            self.features = self.point_features(self.points)
        return self.points, self.features

    def select(self, click_world: np.ndarray, threshold: float) -> np.ndarray:
        """World points of the mesh vertices selected by a click at ``click_world [3]``."""
        pts, feats = self.vertices()
        q = self.point_features(np.asarray(click_world, np.float64)[None])[0]
        score = (feats @ q + 1.0) / 2.0
        return pts[score >= threshold]
