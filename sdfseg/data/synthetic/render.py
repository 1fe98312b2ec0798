"""Sphere-tracing renderer for synthetic scenes (vectorised numpy, no anti-aliasing).

One ray per pixel through the pixel centre (u + 0.5, v + 0.5). Sphere tracing of
the union SDF, accelerated with bounding boxes: a ray skips empty space up to the
next part's bounding box (or the wall, hit analytically) and steps by the exact
SDF of the parts whose boxes it is in, so it never overshoots. Every hit is then
labelled and shaded with the exact SDFs.
Shading: Lambertian from one point light plus ambient, on procedural 3D textures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import SyntheticScene

BOX_PAD = 1e-3
"""Parts' bounding boxes are padded by this (m) for the ray-box tests."""
HIT_EPS = 1e-4
"""A ray stops when the SDF drops below this (m)."""
VALID_EPS = 1e-3
"""A hit whose exact |SDF| is above this (m) is reported invalid (depth 0, void)."""


@dataclass
class RenderedView:
    """Everything rendered for one camera; all maps ``[H, W]`` (``[H, W, 3]`` for rgb/normal)."""

    rgb: np.ndarray
    """float32 in [0, 1]."""
    depth: np.ndarray
    """float32 z-depth in metres, 0 = invalid."""
    normal: np.ndarray
    """float32 unit normals in the camera frame (OpenCV axes), 0 where invalid."""
    semantic: np.ndarray
    """int32 class ids (0 void)."""
    instance: np.ndarray
    """int32 object ids (0 stuff)."""
    part: np.ndarray
    """int32 global part ids (0 stuff)."""
    group: np.ndarray
    """int32 group ids (0 stuff)."""


def camera_rays(c2w: np.ndarray, K: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World ray origins ``[R, 3]``, unit directions ``[R, 3]`` and ``zscale`` ``[R]`` (z-depth = t * zscale).

    Rays are in row-major pixel order (R = H * W).
    """
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=-1)
    d_cam = pix @ np.linalg.inv(K).T
    norm = np.linalg.norm(d_cam, axis=-1)
    dirs = (d_cam / norm[:, None]) @ c2w[:3, :3].T
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape).copy()
    return origins, dirs, 1.0 / norm


def ray_box_intervals(origins: np.ndarray, dirs: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit ray parameters ``[R, B]`` of rays ``[R, 3]`` through boxes ``[B, 2, 3]`` (slab test).

    Missed boxes get an empty interval (entry = +inf, exit = -inf); entries are clamped at 0.
    """
    # a zero direction component becomes tiny, so the slab bounds are huge instead of inf/nan
    safe = np.where(np.abs(dirs) < 1e-12, np.where(dirs < 0, -1e-12, 1e-12), dirs)
    inv = 1.0 / safe
    enter = np.zeros((len(dirs), len(boxes)))
    leave = np.full((len(dirs), len(boxes)), np.inf)
    for a in range(3):
        t0 = (boxes[None, :, 0, a] - origins[:, a, None]) * inv[:, a, None]
        t1 = (boxes[None, :, 1, a] - origins[:, a, None]) * inv[:, a, None]
        np.maximum(enter, np.minimum(t0, t1), out=enter)
        np.minimum(leave, np.maximum(t0, t1), out=leave)
    miss = leave < enter
    enter[miss], leave[miss] = np.inf, -np.inf
    return enter, leave


def _part_boxes(scene: SyntheticScene) -> np.ndarray:
    """Padded world bounding boxes ``[num_parts, 2, 3]`` of the parts, in part-id order."""
    return np.stack([p.aabb() for p in scene.parts]) + np.array([-BOX_PAD, BOX_PAD])[None, :, None]


def sphere_trace(scene: SyntheticScene, origins: np.ndarray, dirs: np.ndarray,
                 max_steps: int = 500) -> np.ndarray:
    """Ray parameters ``t`` ``[R]`` of the first surface hit; rays start inside the room's free space.

    Outside every part's bounding box the ray jumps to the next box entry (or to the room
    wall, found analytically); inside boxes it steps by the exact SDF of those parts.
    """
    room = scene.room
    room_box = np.stack([room.center - room.half, room.center + room.half])[None]
    wall_t = ray_box_intervals(origins, dirs, room_box)[1][:, 0]
    t = np.zeros(origins.shape[0])
    enter, leave = ray_box_intervals(origins, dirs, _part_boxes(scene))
    seen = np.flatnonzero(np.isfinite(enter).any(axis=0))  # parts that some ray passes through
    parts = [scene.parts[j] for j in seen]
    enter, leave = enter[:, seen], leave[:, seen]
    active = np.flatnonzero(np.isfinite(enter).any(axis=1))
    t[np.isinf(enter).all(axis=1)] = wall_t[np.isinf(enter).all(axis=1)]  # rays that only meet the wall
    for _ in range(max_steps):
        if active.size == 0:
            break
        ta, ea, la = t[active], enter[active], leave[active]
        inside = (ea <= ta[:, None] + 1e-9) & (ta[:, None] <= la)
        ahead = np.where(inside | (ea < ta[:, None]), np.inf, ea).min(axis=1) - ta
        exact = wall_t[active] - ta  # the room shell is hit exactly at wall_t
        pts = origins[active] + ta[:, None] * dirs[active]
        for j in np.flatnonzero(inside.any(axis=0)):
            sel = np.flatnonzero(inside[:, j])
            exact[sel] = np.minimum(exact[sel], parts[j].sdf(pts[sel]))
        t[active] = ta + np.minimum(exact, ahead)
        active = active[exact >= HIT_EPS]
    return t


def _label_hits(scene: SyntheticScene, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owning part id ``[P]`` (0 = room) and exact scene SDF ``[P]`` at hit points ``[P, 3]``.

    Only parts whose padded bounding box holds a point can own it (any other part is farther
    than the pad), so only those are evaluated.
    """
    boxes = _part_boxes(scene)
    cols = np.full((len(pts), len(boxes) + 1), np.inf)
    cols[:, 0] = scene.room.sdf(pts)
    for j, part in enumerate(scene.parts):
        sel = np.flatnonzero(np.all((pts >= boxes[j, 0]) & (pts <= boxes[j, 1]), axis=1))
        if sel.size:
            cols[sel, part.id] = part.sdf(pts[sel])
    owner = np.argmin(cols, axis=-1)
    return owner.astype(np.int32), cols[np.arange(len(pts)), owner]


def _normals(scene: SyntheticScene, pts: np.ndarray, owner: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """World unit normals ``[P, 3]``: central differences of the owning part's SDF (room: face normal)."""
    n = np.zeros_like(pts)
    room = owner == 0
    face_normals = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
    n[room] = face_normals[scene.room.face(pts[room])]
    for part in scene.parts:
        sel = np.flatnonzero(owner == part.id)
        if sel.size == 0:
            continue
        p = pts[sel]
        for a in range(3):
            off = np.zeros(3)
            off[a] = h
            n[sel, a] = part.sdf(p + off) - part.sdf(p - off)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def _pattern_factor(pattern: dict, pts: np.ndarray) -> np.ndarray:
    """Brightness factor ``[P]`` of an object's procedural texture."""
    kind, period, amp = pattern.get("kind", "plain"), pattern.get("period", 0.1), pattern.get("amplitude", 0.0)
    if kind == "stripes":
        f = 0.5 + 0.5 * np.sin(2 * np.pi * (pts @ np.asarray(pattern["direction"])) / period)
    elif kind == "checker":
        f = (np.floor(pts / period).astype(np.int64).sum(axis=-1) % 2).astype(np.float64)
    elif kind == "rings":
        r = np.linalg.norm((pts - np.asarray(pattern["origin"]))[:, :2], axis=-1)
        f = 0.5 + 0.5 * np.sin(2 * np.pi * r / period)
    else:
        f = np.full(len(pts), 0.5)
    return 1.0 + amp * (f - 0.5)


def _albedo(scene: SyntheticScene, pts: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Surface colour ``[P, 3]`` before lighting."""
    out = np.zeros_like(pts)
    room = np.flatnonzero(owner == 0)
    face = scene.room.face(pts[room])
    r = scene.room
    wall = np.where(face[:, None] < 4, r.wall_albedo[np.minimum(face, 3)], 0.0)
    along = np.where(face < 2, pts[room, 1], pts[room, 0])
    wall = wall * (1.0 + 0.08 * np.sin(2 * np.pi * along / 0.35))[:, None]
    tiles = (np.floor(pts[room, 0] / r.tile) + np.floor(pts[room, 1] / r.tile)).astype(np.int64) % 2
    col = np.where((face == 4)[:, None], r.floor_albedo[tiles], wall)
    out[room] = np.where((face == 5)[:, None], r.ceiling_albedo, col)
    for o in scene.objects:
        for part in o.parts:
            sel = np.flatnonzero(owner == part.id)
            if sel.size:
                out[sel] = part.albedo * _pattern_factor(o.pattern, pts[sel])[:, None]
    return np.clip(out, 0.0, 1.0)


def _shade(scene: SyntheticScene, pts: np.ndarray, normals: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """Lambertian + ambient colour ``[P, 3]`` from the scene's point light."""
    to_light = np.asarray(scene.light["position"], dtype=np.float64) - pts
    to_light /= np.maximum(np.linalg.norm(to_light, axis=-1, keepdims=True), 1e-9)
    lam = np.clip(np.sum(normals * to_light, axis=-1), 0.0, None)
    return np.clip(albedo * (scene.light["ambient"] + scene.light["diffuse"] * lam)[:, None], 0.0, 1.0)


def render_view(scene: SyntheticScene, c2w: np.ndarray, K: np.ndarray, height: int, width: int) -> RenderedView:
    """Render every output map of one view (camera-to-world ``c2w`` [4, 4], intrinsics ``K`` [3, 3])."""
    origins, dirs, zscale = camera_rays(np.asarray(c2w, dtype=np.float64), np.asarray(K, dtype=np.float64),
                                        height, width)
    t = sphere_trace(scene, origins, dirs)
    pts = origins + t[:, None] * dirs
    owner, s = _label_hits(scene, pts)
    valid = np.abs(s) < VALID_EPS
    tables = scene.part_tables()
    normals = _normals(scene, pts, owner)
    rgb = _shade(scene, pts, normals, _albedo(scene, pts, owner))
    semantic = np.where(owner > 0, tables["semantic"][owner], scene.room.stuff_class(pts))
    normals_cam = normals @ np.asarray(c2w, dtype=np.float64)[:3, :3]

    def img(a: np.ndarray, dtype, fill=0) -> np.ndarray:
        a = np.where(valid.reshape((-1,) + (1,) * (a.ndim - 1)), a, fill).astype(dtype)
        return a.reshape((height, width) + a.shape[1:])

    return RenderedView(rgb=img(rgb, np.float32), depth=img(t * zscale, np.float32),
                        normal=img(normals_cam, np.float32), semantic=img(semantic, np.int32),
                        instance=img(tables["object"][owner], np.int32), part=img(owner, np.int32),
                        group=img(tables["group"][owner], np.int32))

