"""Ray casting a room with Embree (trimesh + embreex): colour, depth, normals and GT maps.

Per frame, the pixel-centre rays give depth (z), camera-frame normals and the item / part
hit (the GT maps); colour averages 2 x 2 sub-pixel rays, so object boundaries are mixed
the way a camera mixes them. Shading: procedural albedo at the hit point, a point light
near the ceiling with a shadow ray, and ambient light. A depth sensor's noise (growing with
z^2) and dropouts are added to the depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from ...errors import SdfsegError
from .assets import TEXTURES
from .layout import Room

SUBPIXELS = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))


def _intersector(mesh: trimesh.Trimesh):
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector
    except Exception as exc:  # noqa: BLE001 - embreex missing or unusable
        raise SdfsegError("the room scenes are ray-cast with Embree: pip install embreex "
                          f"(or pip install -e .[scenes]); ({type(exc).__name__}: {exc})") from None
    return RayMeshIntersector(mesh)


@dataclass
class RoomMesh:
    """Every part of a room in one mesh, with per-face item / part indices and looks."""

    mesh: trimesh.Trimesh
    face_item: np.ndarray
    """int32 ``[F]`` index into ``Room.items``."""
    face_part: np.ndarray
    """int32 ``[F]`` global part index (``parts[i]`` = (item index, part name))."""
    parts: list[tuple[int, str]]
    color: np.ndarray
    """float ``[P, 3]`` albedo per part."""
    texture: np.ndarray
    """int ``[P]`` index into :data:`TEXTURES`."""
    scale: np.ndarray
    """float ``[P]`` texture period per part."""
    light: np.ndarray
    intersector: object = None

    @classmethod
    def of(cls, room: Room) -> "RoomMesh":
        meshes, f_item, f_part, parts, color, tex, scale = [], [], [], [], [], [], []
        for i, item in enumerate(room.items):
            for p in item.asset.parts:
                meshes.append(p.mesh)
                f_item.append(np.full(len(p.mesh.faces), i, np.int32))
                f_part.append(np.full(len(p.mesh.faces), len(parts), np.int32))
                parts.append((i, p.name))
                color.append(p.color)
                tex.append(TEXTURES.index(p.texture))
                scale.append(p.scale)
        mesh = trimesh.util.concatenate(meshes)
        out = cls(mesh, np.concatenate(f_item), np.concatenate(f_part), parts, np.asarray(color, float),
                  np.asarray(tex), np.asarray(scale, float), np.asarray(room.light, float))
        out.intersector = _intersector(mesh)
        return out

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First hit of each ray: face index ``[R]`` (-1 = none) and distance ``[R]`` (inf = none)."""
        tri, ray, loc = self.intersector.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
        face = np.full(len(origins), -1, np.int64)
        dist = np.full(len(origins), np.inf)
        face[ray] = tri
        dist[ray] = np.einsum("ij,ij->i", loc - origins[ray], dirs[ray])
        return face, dist


def _hash(cells: np.ndarray) -> np.ndarray:
    """A value in [0, 1) per integer cell ``[N, 3]`` (deterministic)."""
    x = np.sin(cells @ np.array([12.9898, 78.233, 37.719])) * 43758.5453
    return x - np.floor(x)


def albedo(rm: RoomMesh, part: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Procedural albedo ``[N, 3]`` of parts ``[N]`` at world points ``p [N, 3]``."""
    base = rm.color[part]
    kind = rm.texture[part]
    s = rm.scale[part][:, None]
    q = p / s
    cell = np.floor(q)
    f = np.ones(len(p))
    wood = kind == TEXTURES.index("wood")
    f[wood] = 0.86 + 0.14 * np.sin(2 * np.pi * (q[wood, 0] + q[wood, 1] + 0.35 * np.sin(3 * q[wood, 2])))
    fabric = kind == TEXTURES.index("fabric")
    f[fabric] = 0.88 + 0.24 * _hash(cell[fabric])
    plaster = kind == TEXTURES.index("plaster")
    f[plaster] = 0.9 + 0.1 * _hash(cell[plaster]) + 0.04 * np.sin(q[plaster, 0] * 0.7 + q[plaster, 1] * 0.5)
    metal = kind == TEXTURES.index("metal")
    f[metal] = 0.9 + 0.1 * np.sin(q[metal, 2] * 9.0)
    screen = kind == TEXTURES.index("screen")
    f[screen] = 0.8 + 0.4 * (q[screen, 2] - cell[screen, 2])
    tiles = kind == TEXTURES.index("tiles")
    frac = q[tiles, :2] - cell[tiles, :2]
    grout = (frac < 0.05).any(axis=1)
    f[tiles] = np.where(grout, 0.55, 0.9 + 0.2 * _hash(cell[tiles] * [1, 1, 0]))
    return np.clip(base * f[:, None], 0.0, 1.0)


def facing_normals(rm: RoomMesh, face: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """World normals ``[N, 3]`` of the hit faces, turned towards the rays ``dirs [N, 3]``."""
    n = rm.mesh.face_normals[face]
    return np.where((np.einsum("ij,ij->i", n, dirs) > 0)[:, None], -n, n)


def shade(rm: RoomMesh, face: np.ndarray, points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Colour ``[N, 3]`` at ray hits (albedo, a point light with a shadow ray, ambient light)."""
    n = facing_normals(rm, face, dirs)
    to_light = rm.light[None] - points
    d_light = np.linalg.norm(to_light, axis=1)
    l = to_light / d_light[:, None]
    lambert = np.clip(np.einsum("ij,ij->i", n, l), 0.0, None)
    start = points + 2e-3 * n
    blocker, dist = rm.cast(start, l)
    lit = ~(dist < d_light - 5e-3)
    light = 0.32 + 0.1 * (n[:, 2] + 1) / 2 + 0.75 * lambert * lit / (1.0 + 0.04 * d_light ** 2)
    return np.clip(albedo(rm, rm.face_part[face], points) * light[:, None], 0.0, 1.0)


def pixel_rays(c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int], offset=(0.5, 0.5)):
    """World origins and unit directions ``[H*W, 3]`` through pixel ``(u + ox, v + oy)``, and the
    z of each unit direction in the camera frame ``[H*W]`` (OpenCV axes; pixel-edge convention)."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w]
    x = (u.ravel() + offset[0] - K[0, 2]) / K[0, 0]
    y = (v.ravel() + offset[1] - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x, y, np.ones_like(x)], 1)
    d_cam /= np.linalg.norm(d_cam, axis=1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], d_cam.shape).copy(), d_cam @ c2w[:3, :3].T, d_cam[:, 2]


def render(rm: RoomMesh, c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> dict:
    """One frame: ``rgb`` float ``[H, W, 3]``, ``depth`` z in metres ``[H, W]`` (0 = no reading),
    ``normal`` camera-frame ``[H, W, 3]``, ``item`` and ``part`` indices ``[H, W]`` (-1 = nothing hit)."""
    h, w = hw
    o, d, z_of_dir = pixel_rays(c2w, K, hw)
    face, dist = rm.cast(o, d)
    hit = face >= 0
    if not hit.all():
        raise SdfsegError(f"room rendering: {int((~hit).sum())} rays left the room (camera outside the walls?)")
    n_world = facing_normals(rm, face, d)
    rgb = np.zeros((h * w, 3))
    for off in SUBPIXELS:
        so, sd, _ = pixel_rays(c2w, K, hw, off)
        sf, sdist = rm.cast(so, sd)
        rgb += shade(rm, sf, so + sdist[:, None] * sd, sd) / len(SUBPIXELS)
    rgb = rgb * rng.uniform(0.97, 1.03) + rng.normal(0.0, 0.008, rgb.shape)
    z = dist * z_of_dir
    z = z + rng.normal(0.0, 1.0, z.shape) * 0.0015 * z ** 2
    z[rng.random(z.shape) < 0.005] = 0.0
    return {"rgb": np.clip(rgb, 0, 1).reshape(h, w, 3), "depth": z.reshape(h, w).astype(np.float32),
            "normal": (n_world @ c2w[:3, :3]).reshape(h, w, 3).astype(np.float32),
            "item": rm.face_item[face].reshape(h, w), "part": rm.face_part[face].reshape(h, w)}
