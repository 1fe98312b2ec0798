"""Chunked rendering of views and point fields without a training graph: the one place that renders
rays in chunks (:func:`render_rays_chunked`; camera rays come from :func:`sdfseg.data.rays.view_rays`),
evaluates a point field in chunks (:func:`eval_points`) and takes surface normals (:func:`surface_normals`)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..model import SceneModel
from .surface import surface_render


def render_rays_chunked(model: SceneModel, origins: torch.Tensor, dirs: torch.Tensor, chunk: int,
                        keys: tuple[str, ...], need_normals: bool = False,
                        stats: dict | None = None, depth_t: torch.Tensor | None = None,
                        render: Callable[..., dict] | None = None) -> dict[str, torch.Tensor]:
    """Render ``R`` rays in chunks without building a training graph; returns ``keys`` concatenated.

    The one chunked renderer of views. By default surface-first (:func:`.surface.surface_render`)
    when the model has a :attr:`~.model.SceneModel.surface_grid` and no normals are asked for, else the
    full volume renderer. ``render(o, d, depth_t) -> dict`` replaces both (e.g. the feature head's
    ``model.render_features``), with ``depth_t [R]`` (ray distance of sensor depth) passed per chunk.
    ``stats`` (a dict) accumulates ``rays`` and ``fallback_rays`` (surface-first rays that needed the full
    renderer)."""
    model.eval()
    parts: dict[str, list] = {k: [] for k in keys}
    surface = render is None and model.surface_grid is not None and not need_normals
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i:i + chunk], dirs[i:i + chunk]
        if render is not None:
            with torch.no_grad():
                out = render(o, d, None if depth_t is None else depth_t[i:i + chunk])
        elif surface:
            with torch.no_grad():
                out, fallback = surface_render(model, model.surface_grid, o, d, model.surface_samples, keys)
            if stats is not None:
                stats["fallback_rays"] = stats.get("fallback_rays", 0) + int(fallback.sum())
        else:
            with torch.set_grad_enabled(need_normals or model.cfg.model.color_use_normal):
                out = model.render(o, d, need_normals=need_normals, create_graph=False)
        if stats is not None:
            stats["rays"] = stats.get("rays", 0) + o.shape[0]
        for k in keys:
            parts[k].append(out[k].detach())
    return {k: torch.cat(v) for k, v in parts.items()}


def eval_points(fn: Callable[[torch.Tensor], torch.Tensor], points: np.ndarray, chunk: int, device: torch.device,
                width: int) -> np.ndarray:
    """``fn`` (a point field ``[P, 3] -> [P, width]``) at normalised points ``[N, 3]`` in chunks on
    ``device`` -> float32 ``[N, width]``."""
    out = [fn(torch.as_tensor(points[i:i + chunk], dtype=torch.float32, device=device)).cpu()
           for i in range(0, len(points), chunk)]
    return torch.cat(out).numpy().astype(np.float32, copy=False) if out else np.zeros((0, width), np.float32)


def surface_normals(model: SceneModel, points: torch.Tensor, chunk: int) -> torch.Tensor:
    """Unit normals ``[P, 3]`` (world) of the scene SDF at ``points`` ``[P, 3]`` (e.g. rendered-depth points).

    One gradient evaluation per pixel instead of per sample: much cheaper than compositing normals.
    """
    out = []
    for i in range(0, points.shape[0], chunk):
        x = points[i:i + chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            s = model.sdf(x)[0].min(dim=-1).values
            (g,) = torch.autograd.grad(s.sum(), x)
        out.append(torch.nn.functional.normalize(g, dim=-1))
    return torch.cat(out)
