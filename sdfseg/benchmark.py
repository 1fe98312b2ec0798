"""Training speed and memory measurement for a config (CPU or CUDA).

Reports training iterations per second, rays per second, peak memory, and a per-term
breakdown on one fixed batch: the render forward pass, and for every loss term the time
of its own forward computation plus its backward pass through the shared graph.
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager

import torch

from .config import Config
from .train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _timer(device: torch.device, out: dict, key: str):
    _sync(device)
    t0 = time.perf_counter()
    yield
    _sync(device)
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


def benchmark(cfg: Config, iterations: int = 50, warmup: int = 5) -> dict:
    """Run ``warmup`` + ``iterations`` training steps and the per-term breakdown; return the figures."""
    trainer = Trainer(cfg)
    dev = trainer.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        trainer.train_step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(iterations):
        trainer.train_step()
    _sync(dev)
    dt = time.perf_counter() - t0
    rays = cfg.train.rays + (cfg.train.extra_views * cfg.train.extra_rays
                             if cfg.train.free_channels else 0)
    return {
        "device": str(dev), "torch_threads": torch.get_num_threads(), "num_channels": trainer.k,
        "hash_backend": getattr(trainer.model.sdf.grid, "backend", "none"),
        "iterations": iterations, "seconds": dt, "iterations_per_second": iterations / dt,
        "rays_per_iteration": rays, "rays_per_second": rays * iterations / dt,
        "peak_memory_mb": peak_memory_mb(dev), "per_term_seconds": term_breakdown(trainer),
    }
