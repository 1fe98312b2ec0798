"""GT meshes of a synthetic scene's objects, from their exact SDFs (for mesh evaluation)."""

from __future__ import annotations

import numpy as np
import trimesh

from .mesh import GridSpec, marching_cubes


def synthetic_object_meshes(syn, resolution: int = 256, pad: float = 0.05) -> dict[int, trimesh.Trimesh]:
    """One world-coordinate mesh per GT object id, by marching cubes on the object's exact SDF.

    The grid spacing is the room's longest side / ``resolution``; each object is meshed over its
    bounding box padded by ``pad`` metres.
    """
    room_extent = 2.0 * float(np.max(syn.room.half))
    step = room_extent / resolution
    out = {}
    for obj in syn.objects:
        lo, hi = obj.aabb()
        lo, hi = lo - pad, hi + pad
        shape = tuple(int(np.ceil((hi[i] - lo[i]) / step)) + 1 for i in range(3))
        grid = GridSpec(lo, lo + step * (np.asarray(shape) - 1), shape)
        xs, ys, zs = grid.axes()
        pts = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1).reshape(-1, 3)
        vals = obj.sdf(pts).reshape(shape).astype(np.float32)
        v, f = marching_cubes(vals, grid)
        if len(f):
            out[int(obj.id)] = trimesh.Trimesh(v, f, process=True)
    return out
