"""Training speed and memory measurement for a config (CPU or CUDA).

Reports training iterations per second, rays per second, peak memory, and a per-term
breakdown on one fixed batch: the render forward pass, and for every loss term the time
of its own forward computation plus its backward pass through the shared graph.
:func:`mask_hierarchy_memory` measures the peak memory of turning one image's
multi-granular masks into the feature head's patch hierarchy.
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager

import numpy as np
import torch

from ..config import Config
from ..training.trainer import Trainer


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _timer(device: torch.device, out: dict, key: str):
    sync_device(device)
    t0 = time.perf_counter()
    yield
    sync_device(device)
    out[key] = out.get(key, 0.0) + time.perf_counter() - t0


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (CPU) or peak allocated CUDA memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def term_breakdown(trainer: Trainer, repeats: int = 3) -> dict[str, float]:
    """Seconds per call: render forward, and forward + backward of each loss term (mean of ``repeats``)."""
    cfg, dev = trainer.cfg, trainer.device
    times: dict[str, float] = {}
    for _ in range(repeats):
        batch = trainer.sampler.sample(cfg.train.rays - cfg.train.label_rays, cfg.train.label_rays,
                                       cfg.train.extra_views, cfg.train.extra_rays)
        depth_t = batch.depth * batch.ray_scale if (cfg.sampler.use_depth and batch.depth is not None
                                                    and trainer.scene.depth_kind == "metric") else None
        with _timer(dev, times, "render_forward"):
            out = trainer.model.render(batch.origins, batch.dirs, depth_t,
                                       need_normals=trainer.objective.needs_normals(batch))
        with _timer(dev, times, "losses_forward_all"):
            losses = trainer.objective(trainer.model, out, batch, trainer.step)
        names = list(losses)
        for i, name in enumerate(names):
            trainer.optimizer.zero_grad(set_to_none=True)
            with _timer(dev, times, f"backward/{name}"):
                losses[name].backward(retain_graph=i < len(names) - 1)
    trainer.optimizer.zero_grad(set_to_none=True)
    return {k: v / repeats for k, v in times.items()}


def benchmark(cfg: Config, iterations: int = 50, warmup: int = 5, render_view: bool = False) -> dict:
    """Run ``warmup`` + ``iterations`` training steps and the per-term breakdown; return the figures.

    ``render_view``: also time rendering the first test view with ``render.renderer`` (the model is
    only partly trained: the speed, not the picture, is the point)."""
    trainer = Trainer(cfg)
    dev = trainer.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        trainer.train_step()
    sync_device(dev)
    t0 = time.perf_counter()
    for _ in range(iterations):
        trainer.train_step()
    sync_device(dev)
    dt = time.perf_counter() - t0
    rays = cfg.train.rays + (cfg.train.extra_views * cfg.train.extra_rays if trainer.method.extra_views() else 0)
    res = {
        "device": str(dev), "torch_threads": torch.get_num_threads(), "num_channels": trainer.k,
        "hash_backend": getattr(trainer.model.sdf.grid, "backend", "none"),
        "iterations": iterations, "seconds": dt, "iterations_per_second": iterations / dt,
        "rays_per_iteration": rays, "rays_per_second": rays * iterations / dt,
        "peak_memory_mb": peak_memory_mb(dev), "per_term_seconds": term_breakdown(trainer),
    }
    if render_view:
        res["render"] = time_test_view(trainer)
        res["render_rays_per_second"] = res["render"]["rays_per_second"]
    return res


def time_test_view(trainer: Trainer) -> dict:
    """Seconds and rays/s of rendering the first test view (``render.renderer``) of a trainer's model."""
    from ..methods.outputs import ChannelTable
    from .render_bench import set_renderer, time_view

    cfg, scene, model = trainer.cfg, trainer.scene, trainer.model
    grid_s = set_renderer(model, cfg.render.renderer, cfg.render.grid_resolution, cfg.render.surface_samples)
    i = int(scene.split["test"][0]) if len(scene.split["test"]) else 0
    k = trainer.method.num_slots(model)
    table = ChannelTable(is_object=np.arange(k) > 0, classes=np.ones(k, dtype=np.int64))  # ids do not change the time
    r = time_view(model, scene.c2w[i], scene.intrinsics[i], scene.hw, cfg.render.chunk, table, trainer.method,
                  scene.classes.stuff_ids)
    model.set_surface_grid(None)
    return {"renderer": cfg.render.renderer, "grid_seconds": grid_s, "hw": list(scene.hw), **r}


# ---------------------------------------------------------------- mask hierarchy memory


def synthetic_sam_masks(num_masks: int, height: int, width: int, seed: int = 0):
    """SAM-like overlapping masks, yielded one at a time (bool ``[H, W]``): nested ellipses and boxes.

    Sizes are log-uniform between 0.05% and 40% of the image, so small parts, objects and
    large regions overlap as in SAM's "everything" output. Never holds more than one mask.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[0:height, 0:width]
    for _ in range(num_masks):
        frac = np.exp(rng.uniform(np.log(5e-4), np.log(0.4)))
        aspect = np.exp(rng.uniform(-0.7, 0.7))
        ry = np.sqrt(frac * height * width / np.pi / aspect) * aspect
        rx = frac * height * width / np.pi / ry
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        if rng.random() < 0.5:
            yield ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            yield (np.abs(yy - cy) <= ry * 0.89) & (np.abs(xx - cx) <= rx * 0.89)


def mask_hierarchy_memory(num_masks: int = 1000, height: int = 968, width: int = 1296, seed: int = 0,
                          ultrametric: bool = True) -> dict:
    """Peak memory of building one frame's training hierarchy from ``num_masks`` masks of ``H x W``.

    The masks are packed into a :class:`~sdfseg.data.masks.MaskSet` one at a time; then
    :func:`sdfseg.methods.hierarchy.supervision.frame_hierarchy` (patch map, sparse incidence, pixel order
    and, with ``ultrametric``, the inclusion tree) runs under :mod:`tracemalloc`, which counts
    numpy's allocations. Returns bytes and seconds, with the dense ``[M, H, W]`` bool size
    for comparison.
    """
    import tracemalloc

    from ..data.masks import MaskSet
    from ..methods.hierarchy.supervision import frame_hierarchy

    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        masks = MaskSet.from_masks(synthetic_sam_masks(num_masks, height, width, seed), height, width)
        pack_seconds = time.perf_counter() - t0
        _, pack_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        t0 = time.perf_counter()
        fh = frame_hierarchy(masks, ultrametric=ultrametric, seed=seed)
        build_seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"num_masks": len(masks), "height": height, "width": width, "patches": fh.hier.num_patches,
            "maskset_bytes": masks.nbytes(), "pack_peak_bytes": int(pack_peak),
            "build_peak_bytes": int(peak - base), "hierarchy_bytes": fh.nbytes(),
            "dense_bytes": int(len(masks)) * height * width, "pack_seconds": pack_seconds,
            "build_seconds": build_seconds}
