"""Per-object mesh extraction from the multi-channel SDF.

Object ``k``'s owned region is where its SDF is negative AND the smallest of all
channels: the zero level set of ``f_k = max(s_k, s_k - min_{j != k} s_j)``.
Marching cubes (PyMCubes) on ``f_k`` over a padded grid gives one watertight mesh
per channel. Memory stays bounded: a coarse pass finds each channel's bounding box,
then each channel's box is evaluated at full resolution in chunks of points and only
that channel's float32 grid is kept (at resolution 512 the largest grid is 512^3 x 4 B).
Meshes are written as PLY (trimesh) in the original world coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import trimesh

from ..data.scene import Normalization
from ..io import atomic_path
from ..progress import progress_iter

SdfFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps points ``[P, 3]`` to channel SDFs ``[P, K]``."""


@dataclass
class GridSpec:
    lo: np.ndarray  # [3]
    hi: np.ndarray  # [3]
    shape: tuple[int, int, int]

    def axes(self) -> list[np.ndarray]:
        return [np.linspace(self.lo[i], self.hi[i], self.shape[i]) for i in range(3)]

    @property
    def spacing(self) -> np.ndarray:
        return (self.hi - self.lo) / (np.asarray(self.shape) - 1)


def _eval_grid(fn: Callable[[torch.Tensor], torch.Tensor], grid: GridSpec, chunk: int, device) -> np.ndarray:
    """Evaluate ``fn`` (points -> ``[P]`` values) on the grid, z-slab by z-slab. Returns ``[X, Y, Z]`` float32."""
    xs, ys, zs = grid.axes()
    out = np.empty(grid.shape, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    plane = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    plane_t = torch.as_tensor(plane, device=device)
    for iz, z in enumerate(zs):
        vals = []
        pts_z = torch.cat([plane_t, torch.full((plane_t.shape[0], 1), float(z), device=device)], dim=1)
        for i in range(0, pts_z.shape[0], chunk):
            vals.append(fn(pts_z[i:i + chunk]).float().cpu())
        out[:, :, iz] = torch.cat(vals).numpy().reshape(grid.shape[0], grid.shape[1])
    return out


def owned_field(sdf: torch.Tensor, k: int) -> torch.Tensor:
    """``f_k = max(s_k, s_k - min_{j != k} s_j)`` ``[P]`` from channel SDFs ``[P, K]``."""
    sk = sdf[:, k]
    others = torch.cat([sdf[:, :k], sdf[:, k + 1:]], dim=1)
    if others.shape[1] == 0:
        return sk
    return torch.maximum(sk, sk - others.min(dim=1).values)


def marching_cubes(values: np.ndarray, grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of ``values`` ``[X,Y,Z]`` (negative inside) -> (vertices ``[V,3]``, faces ``[F,3]``).

    The grid is padded with a positive border so surfaces touching the box are closed.
    """
    import mcubes

    padded = np.pad(values, 1, mode="constant", constant_values=max(float(values.max()), 1e-3))
    verts, faces = mcubes.marching_cubes(-padded.astype(np.float64), 0.0)
    if len(verts) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    verts = (verts - 1.0) * grid.spacing + grid.lo
    # on the negated field mcubes' winding gives outward normals (positive volume; tested)
    return verts, faces.astype(np.int64)


def channel_boxes(sdf_fn: SdfFn, bound: float, resolution: int, device, chunk: int = 65536
                  ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], GridSpec]:
    """Coarse pass: world-box ``(lo, hi)`` of each channel's owned interior, padded by two voxels."""
    grid = GridSpec(np.full(3, -bound), np.full(3, bound), (resolution,) * 3)
    xs, ys, zs = grid.axes()
    pts = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float32)
    owners, inside = [], []
    with torch.no_grad():
        for i in range(0, pts.shape[0], chunk):
            s = sdf_fn(torch.as_tensor(pts[i:i + chunk], device=device))
            mn, arg = s.min(dim=1)
            owners.append(arg.cpu().numpy())
            inside.append((mn < grid.spacing.max() * 2).cpu().numpy())
    owner = np.concatenate(owners)
    inn = np.concatenate(inside)
    boxes = {}
    pad = 2 * grid.spacing
    for k in np.unique(owner[inn]):
        p = pts[inn & (owner == k)]
        boxes[int(k)] = (np.maximum(p.min(0) - pad, -bound), np.minimum(p.max(0) + pad, bound))
    return boxes, grid


def extract_channel_meshes(sdf_fn: SdfFn, num_channels: int, resolution: int = 256, bound: float = 1.0,
                           device="cpu", chunk: int = 65536, channels: Optional[list[int]] = None,
                           coarse: int = 64, progress: bool = True) -> dict[int, trimesh.Trimesh]:
    """One watertight mesh per channel that owns geometry, in normalised coordinates.

    ``resolution`` is the number of grid points across the full bounding cube ``[-bound, bound]^3``;
    each channel is evaluated only over its own box at that spacing.
    """
    boxes, _ = channel_boxes(sdf_fn, bound, coarse, device, chunk)
    step = 2.0 * bound / (resolution - 1)
    meshes = {}
    todo = [k for k in sorted(boxes) if channels is None or k in channels]
    for k in progress_iter(todo, "meshes", progress, unit="mesh"):
        lo, hi = boxes[k]
        shape = tuple(int(max(2, np.ceil((hi[i] - lo[i]) / step) + 1)) for i in range(3))
        grid = GridSpec(lo, lo + step * (np.asarray(shape) - 1), shape)
        with torch.no_grad():
            vals = _eval_grid(lambda p, k=k: owned_field(sdf_fn(p), k), grid, chunk, device)
        v, f = marching_cubes(vals, grid)
        if len(f):
            meshes[k] = trimesh.Trimesh(v, f, process=True)
    return meshes


def scene_mesh(sdf_fn: SdfFn, resolution: int, bound: float = 1.0, device="cpu", chunk: int = 65536
               ) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Whole-scene mesh (min over channels) and the owning channel ``[V]`` of each vertex."""
    grid = GridSpec(np.full(3, -bound), np.full(3, bound), (resolution,) * 3)
    with torch.no_grad():
        vals = _eval_grid(lambda p: sdf_fn(p).min(dim=1).values, grid, chunk, device)
    v, f = marching_cubes(vals, grid)
    owner = np.zeros(len(v), dtype=np.int64)
    with torch.no_grad():
        for i in range(0, len(v), chunk):
            owner[i:i + chunk] = sdf_fn(torch.as_tensor(v[i:i + chunk], dtype=torch.float32, device=device)
                                        ).argmin(dim=1).cpu().numpy()
    return trimesh.Trimesh(v, f, process=False), owner


@torch.no_grad()
def label_solid(scene_sdf: Callable[[torch.Tensor], torch.Tensor], label_fn: Callable[[torch.Tensor], torch.Tensor],
                resolution: int, bound: float, device, chunk: int = 65536, max_depth: float = 0.1,
                deep_label: int = 0) -> torch.Tensor:
    """Label ``[n, n, n]`` (indexed z, y, x; int64) of every vertex of a grid over ``[-bound, bound]^3``:
    ``label_fn(points [P, 3]) -> [P]`` at the vertices within 1.5 voxels of the surface of ``scene_sdf``,
    every other vertex the label of the nearest of those (scipy's Euclidean distance transform), so the
    inside of a solid takes the label of its surface; vertices deeper than ``max_depth`` inside the solid
    (the ground under the floor, the space behind a wall: an object is thinner than that) get
    ``deep_label``. ``n`` is ``resolution`` rounded up so that ``n - 1`` is a multiple of 4 (the SDF
    grid's coarse-to-fine pass)."""
    from scipy import ndimage

    from ..core.render.surface import SdfGrid

    n = resolution + (-(resolution - 1)) % 4
    grid = SdfGrid(n, bound).to(device)
    grid.update(scene_sdf, chunk)
    idx = torch.nonzero(grid.values[0, 0].abs() < 1.5 * grid.voxel)  # z, y, x
    axis = torch.linspace(-bound, bound, n, device=device)
    labels = torch.empty(idx.shape[0], dtype=torch.long, device=device)
    for i in range(0, idx.shape[0], chunk):
        labels[i:i + chunk] = label_fn(axis[idx[i:i + chunk].flip(1)])
    out = np.full((n, n, n), -1, dtype=np.int64)
    zyx = idx.cpu().numpy()
    out[zyx[:, 0], zyx[:, 1], zyx[:, 2]] = labels.cpu().numpy()
    if zyx.shape[0]:
        _, nearest = ndimage.distance_transform_edt(out < 0, return_indices=True)
        out = out[nearest[0], nearest[1], nearest[2]]
    out[(grid.values[0, 0] < -max_depth).cpu().numpy()] = deep_label
    return torch.as_tensor(np.maximum(out, 0), device=device)


def cut_solid(scene_sdf: Callable[[torch.Tensor], torch.Tensor], label: torch.Tensor, bound: float,
              num_labels: int) -> SdfFn:
    """SDF columns ``points [P, 3] -> [P, num_labels]`` for :func:`extract_channel_meshes`: the scene SDF in
    the column of the point's label (nearest vertex of ``label``, :func:`label_solid`), 1 above it in the
    others. Label k's owned region is then the scene solid cut to k's vertices: one watertight mesh per
    label, whose surfaces meet where the labels meet."""
    n = label.shape[0]
    slots = torch.arange(num_labels, device=label.device)

    def columns(p: torch.Tensor) -> torch.Tensor:
        s = scene_sdf(p)
        v = ((p / bound + 1.0) * 0.5 * (n - 1)).round().long().clamp(0, n - 1)
        own = label[v[:, 2], v[:, 1], v[:, 0]]
        return s[:, None] + (slots[None, :] != own[:, None]).to(s.dtype)

    return columns


def palette(n: int, seed: int = 3) -> np.ndarray:
    """``[n, 3]`` uint8 distinct-ish colours; index 0 is grey."""
    rng = np.random.default_rng(seed)
    cols = (rng.random((n, 3)) * 200 + 40).astype(np.uint8)
    if n:
        cols[0] = 160
    return cols


def to_world(mesh: trimesh.Trimesh, norm: Normalization) -> trimesh.Trimesh:
    out = mesh.copy()
    out.vertices = norm.to_world(np.asarray(mesh.vertices))
    return out


def save_ply(path: Path, mesh: trimesh.Trimesh) -> None:
    """Write a PLY atomically."""
    with atomic_path(path) as tmp:
        mesh.export(str(tmp), file_type="ply")
