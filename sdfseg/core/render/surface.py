"""Surface-first rendering: find where each ray meets the scene surface, then render only there.

A :class:`SdfGrid` holds the scene SDF (min over channels) on a dense grid over the bounding cube.
Rays are sphere-traced on that grid (trilinear lookups, no network), which finds the first surface
crossing to about a voxel. The network is then evaluated at a few samples in a narrow band around
it, and those samples are volume-rendered with the band's first sample as the start of the ray
(free space before it) and the last interval running to infinity (a ray that ends inside the
surface is opaque): colour, depth, normals, semantic logits and object opacities come out as the
full renderer's would, from a few network evaluations instead of a hundred.

A ray that passes close to a surface the grid does not close (the edge of an object it grazes, a
structure thinner than a voxel) gets a second band there. Rays the grid finds no surface for, or
whose bands hold no crossing of the network's own SDF (a stale grid), fall back to the full volume renderer
(``SceneModel.render`` with the model's sampler), so the result never depends on the grid being
right: the grid only decides how much work a ray costs.

The same grid gives training rays without sensor depth their surface samples
(:meth:`SdfGrid.depth`), as the sensor depth does for the depth-guided sampler.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn

SdfFn = Callable[[Tensor], Tensor]


class SdfGrid(nn.Module):
    """The scene SDF sampled on a ``resolution^3`` grid of vertices over ``[-radius, radius]^3``.

    The values are a buffer (saved in the model's state dict with the rest of training state).
    ``valid`` is False until the first :meth:`update`.
    """

    def __init__(self, resolution: int, radius: float):
        super().__init__()
        if resolution < 2:
            raise ValueError(f"SdfGrid: resolution must be >= 2, got {resolution}")
        self.resolution = int(resolution)
        self.radius = float(radius)
        self.register_buffer("values", torch.zeros(1, 1, resolution, resolution, resolution))
        self.register_buffer("valid", torch.zeros((), dtype=torch.bool))

    @property
    def voxel(self) -> float:
        """Vertex spacing (normalised units)."""
        return 2.0 * self.radius / (self.resolution - 1)

    @torch.no_grad()
    def update(self, sdf_fn: SdfFn, chunk: int = 65536, stride: int = 4) -> int:
        """Evaluate ``sdf_fn`` (points ``[P, 3]`` -> scene SDF ``[P]``); returns the evaluations spent.

        Coarse to fine when ``(resolution - 1)`` is a multiple of ``stride``: every ``stride``-th
        vertex first, then the network only at the vertices of coarse cells that may hold a surface
        (a corner within 1.5 cell diagonals of it; one cell of margin around those); elsewhere the
        coarse values, interpolated, stand in (they only size the tracer's steps there, and keep
        their sign: no surface appears or vanishes).
        """
        n = self.resolution
        dev = self.values.device
        axis = torch.linspace(-self.radius, self.radius, n, device=dev)

        def vertices(flat: Tensor) -> Tensor:  # flat indices -> points; values[0, 0, z, y, x]
            return torch.stack([axis[flat % n], axis[(flat // n) % n], axis[flat // (n * n)]], dim=-1)

        def evaluate(flat: Tensor, out: Tensor) -> None:
            for i in range(0, flat.numel(), chunk):
                f = flat[i:i + chunk]
                out[f] = sdf_fn(vertices(f)).float()

        if stride < 2 or (n - 1) % stride or (n - 1) // stride < 4:
            out = torch.empty(n ** 3, device=dev)
            evaluate(torch.arange(n ** 3, device=dev), out)
            self.values.copy_(out.view(1, 1, n, n, n))
            self.valid.fill_(True)
            return n ** 3
        c = (n - 1) // stride + 1
        coarse_idx = torch.arange(0, n, stride, device=dev)
        cz, cy, cx = torch.meshgrid(coarse_idx, coarse_idx, coarse_idx, indexing="ij")
        coarse_flat = (cz * n * n + cy * n + cx).reshape(-1)
        out = torch.empty(n ** 3, device=dev)
        evaluate(coarse_flat, out)
        coarse = out[coarse_flat].view(1, 1, c, c, c)
        fine = nn.functional.interpolate(coarse, size=(n, n, n), mode="trilinear", align_corners=True)
        diag = 1.5 * math.sqrt(3.0) * stride * self.voxel
        near_corner = (coarse.abs() < diag).float()
        cell = nn.functional.max_pool3d(near_corner, kernel_size=2, stride=1)  # [c-1]^3: any corner near
        cell = nn.functional.max_pool3d(cell, kernel_size=3, stride=1, padding=1)  # one cell of margin
        fine_cell = cell.repeat_interleave(stride, 2).repeat_interleave(stride, 3).repeat_interleave(stride, 4)
        vert = nn.functional.max_pool3d(nn.functional.pad(fine_cell, (1, 1, 1, 1, 1, 1)), kernel_size=2, stride=1)
        todo = torch.nonzero(vert.reshape(-1) > 0).squeeze(1)
        fine = fine.reshape(-1)
        evaluate(todo, fine)
        fine[coarse_flat] = coarse.reshape(-1)
        self.values.copy_(fine.view(1, 1, n, n, n))
        self.valid.fill_(True)
        return int(coarse_flat.numel() + todo.numel())

    def query(self, points: Tensor) -> Tensor:
        """Trilinear scene SDF at points ``[..., 3]`` -> ``[...]`` (clamped to the border outside the cube)."""
        shape = points.shape[:-1]
        g = (points.reshape(1, -1, 1, 1, 3) / self.radius).to(self.values.dtype)
        v = nn.functional.grid_sample(self.values, g, mode="bilinear", padding_mode="border", align_corners=True)
        return v.reshape(shape)

    @torch.no_grad()
    def trace(self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, max_steps: int = 512,
              step_scale: float = 0.9, max_step_voxels: float = 2.0, miss_margin: float | None = None,
              compact: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """First surface crossing of rays ``[R, 3]`` between ``near`` and ``far`` ``[R]``.

        Returns ``t [R]``, ``hit [R]`` (a crossing was found) and ``t_miss [R]``: where the ray first
        passed within ``miss_margin`` (default half a voxel) of a surface the grid does not close
        before its hit (a structure thinner than the grid resolves, or the edge of an object the
        ray grazes), -1 where it did not.

        Sphere tracing on the grid: each step advances by ``step_scale`` times the grid SDF, at
        least half a voxel and at most ``max_step_voxels`` voxels (a learned SDF is no exact
        distance bound, so long steps could jump over an object); a step that lands at or below
        zero is undone by linear interpolation between the last two samples. Rays where the grid
        SDF starts negative (a camera inside the surface) are given their first sample as the hit.

        ``compact`` (default: on the CPU) steps only the rays still marching, which asks the device
        how many there are at every step; otherwise every ray steps (finished ones stand still) and
        the device is asked whether any ray still marches once every 16 steps: the same result with
        a host synchronisation every 16 steps instead of every step (CUDA).
        """
        t = near.clone()
        s = self.query(origins + t[:, None] * dirs)
        hit = s <= 0
        t_miss = torch.full_like(t, -1.0)
        active = ~hit & (t < far)
        min_step, max_step = 0.5 * self.voxel, max_step_voxels * self.voxel
        margin = min_step if miss_margin is None else miss_margin
        if not (compact if compact is not None else not origins.is_cuda):
            return self._trace_masked(origins, dirs, t, s, hit, t_miss, active, far, max_steps, step_scale,
                                      min_step, max_step, margin)
        for _ in range(max_steps):
            idx = torch.nonzero(active).squeeze(1)
            if idx.numel() == 0:
                break
            t_a, s_a = t[idx], s[idx]
            t_next, s_new, crossed, grazing, going_on = self._step(origins[idx], dirs[idx], t_a, s_a, far[idx],
                                                                   step_scale, min_step, max_step, margin)
            t[idx] = t_next
            s[idx] = s_new
            hit[idx] = crossed
            t_miss[idx] = torch.where(grazing & (t_miss[idx] < 0), t_a, t_miss[idx])
            active[idx] = going_on
        return t, hit, t_miss

    def _step(self, origins, dirs, t, s, far, step_scale, min_step, max_step, margin):
        """One sphere-tracing step of rays at ``t`` with grid SDF ``s``: ``(t_next, s_new, crossed, grazing,
        going_on)``. A crossing is placed by linear interpolation; ``grazing``: the SDF came within
        ``margin`` and grows again without crossing (a near miss at ``t``)."""
        t_new = torch.minimum(t + torch.clamp(step_scale * s, min=min_step, max=max_step), far)
        s_new = self.query(origins + t_new[:, None] * dirs)
        crossed = s_new <= 0
        frac = s / (s - s_new).clamp_min(1e-12)
        t_next = torch.where(crossed, t + frac.clamp(0.0, 1.0) * (t_new - t), t_new)
        grazing = (s < margin) & (s_new > s) & ~crossed
        return t_next, s_new, crossed, grazing, ~crossed & (t_new < far)

    def _trace_masked(self, origins, dirs, t, s, hit, t_miss, active, far, max_steps, step_scale, min_step,
                      max_step, margin):
        """:meth:`trace` without compaction: the same steps for every ray, masked."""
        for i in range(max_steps):
            if i % 16 == 0 and not bool(active.any()):
                break
            t_next, s_new, crossed, grazing, going_on = self._step(origins, dirs, t, s, far, step_scale, min_step,
                                                                   max_step, margin)
            t_miss = torch.where(active & grazing & (t_miss < 0), t, t_miss)
            t = torch.where(active, t_next, t)
            s = torch.where(active, s_new, s)
            hit = hit | (active & crossed)
            active = active & going_on
        return t, hit, t_miss

    @torch.no_grad()
    def depth(self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor) -> Tensor:
        """Ray distance of the first grid surface crossing ``[R]``, 0 where there is none or where
        the ray grazed a surface before it (the convention of sensor depth: no reading)."""
        t, hit, t_miss = self.trace(origins, dirs, near, far)
        return torch.where(hit & (t_miss < 0), t, torch.zeros_like(t))


def band_samples(t_hit: Tensor, near: Tensor, half_width: float, n: int) -> Tensor:
    """``n`` evenly spaced distances ``[R, n]`` over ``[t_hit - half_width, t_hit + half_width]`` (not before ``near``)."""
    u = torch.linspace(-1.0, 1.0, n, device=t_hit.device, dtype=t_hit.dtype)
    start = torch.maximum(t_hit - half_width, near)
    return start[:, None] + (u[None] + 1.0) * half_width


def band_half_width(voxel: float, beta: float, voxels: float = 1.5, betas: float = 6.0) -> float:
    """Half width of the render band: the grid's error (``voxels`` voxels) or the density's spread
    (``betas`` times the Laplace scale), whichever is larger."""
    return max(voxels * voxel, betas * beta)


def surface_render(model, grid: SdfGrid, origins: Tensor, dirs: Tensor, n_samples: int, keys: tuple[str, ...],
                   near_far: Optional[tuple[Tensor, Tensor]] = None) -> tuple[dict[str, Tensor], Tensor]:
    """Render rays ``[R, 3]`` surface-first with ``model`` (a :class:`~sdfseg.core.model.SceneModel`).

    Each ray is rendered from ``n_samples`` samples in the band around its grid hit; a ray that
    grazed a surface before the hit gets a second band there (``2 n_samples``, the gap between
    the bands counted as empty). Rays without a grid hit, or without a crossing of the network's
    SDF in any of their bands, are rendered by the full volume renderer. Returns the requested
    ``keys`` (as ``model.render`` names them) and a bool ``[R]`` marking those fallback rays.
    """
    from ..model import BOUND_RADIUS
    from .samplers import near_far_sphere

    near, far = near_far if near_far is not None else near_far_sphere(origins, dirs, BOUND_RADIUS)
    beta = float(model.beta())
    t_hit, hit, t_miss = grid.trace(origins, dirs, near, far, miss_margin=max(0.5 * grid.voxel, 4.0 * beta))
    half = band_half_width(grid.voxel, beta)
    spacing = 2.0 * half / max(1, n_samples - 1)
    t = band_samples(t_hit, near, half, n_samples)
    res: dict[str, Tensor] = {}
    fallback = ~hit
    groups = [(torch.nonzero(hit & (t_miss < 0)).squeeze(1), None),
              (torch.nonzero(hit & (t_miss >= 0)).squeeze(1), t_miss)]
    for idx, t_first in groups:
        if idx.numel() == 0:
            continue
        ts = t[idx]
        if t_first is not None:
            ts = torch.cat([band_samples(t_first[idx], near[idx], half, n_samples), ts], dim=1).sort(dim=1).values
        out = model.render(origins[idx], dirs[idx], need_normals=False, create_graph=False, samples=ts,
                           max_delta=spacing)
        fallback[idx] = ~(out["sdf"].min(dim=-1).values <= 0).any(dim=-1)
        _scatter(res, out, keys, idx, origins.shape[0])
    idx = torch.nonzero(fallback).squeeze(1)
    if idx.numel():
        _scatter(res, model.render(origins[idx], dirs[idx], need_normals=False, create_graph=False), keys, idx,
                 origins.shape[0])
    return res, fallback


def _scatter(res: dict[str, Tensor], out: dict[str, Tensor], keys: tuple[str, ...], idx: Tensor, n: int) -> None:
    """Write rows ``idx`` of ``res[k]`` (``[n, ...]``, created on first use) from ``out[k]``."""
    for k in keys:
        v = out[k].detach()
        if k not in res:
            res[k] = v.new_zeros((n,) + v.shape[1:])
        res[k][idx] = v
