"""Rendering speed and agreement: the surface-first renderer against the full volume renderer.

:func:`compare_renderers` re-renders a finished run's test views with both renderers (the run's own
channel table and ownership vote), times each, evaluates both against the GT maps and reports how
many pixels get the same instance / semantic id. :func:`time_view` times one view of a model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..core.model import SceneModel
from ..methods.outputs import render_view, write_test_views
from .benchmark import sync_device


def _sync(model: SceneModel) -> None:
    sync_device(next(model.parameters()).device)


def set_renderer(model: SceneModel, renderer: str, grid_resolution: int, surface_samples: int) -> float:
    """Switch ``model`` to ``renderer`` (``surface`` | ``volume``); returns the seconds the grid took."""
    _sync(model)
    t0 = time.perf_counter()
    model.use_renderer(renderer, grid_resolution, surface_samples)
    _sync(model)
    return time.perf_counter() - t0 if renderer == "surface" else 0.0


def time_view(model: SceneModel, c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int], chunk: int, table,
              method, stuff_ids: tuple[int, ...], repeats: int = 1) -> dict:
    """Seconds per view and rays/s of rendering one view (the median of ``repeats`` after one warm-up)."""
    stats: dict = {}
    render_view(model, c2w, K, hw, chunk, table, method, stuff_ids)
    times = []
    for _ in range(repeats):
        _sync(model)
        t0 = time.perf_counter()
        render_view(model, c2w, K, hw, chunk, table, method, stuff_ids, stats=stats)
        _sync(model)
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    return {"seconds_per_view": sec, "rays_per_second": hw[0] * hw[1] / sec,
            "fallback_share": stats.get("fallback_rays", 0) / max(1, stats.get("rays", 1))}


def compare_renderers(run_dir: Path, out_dir: Path, renderers: tuple[str, ...] = ("volume", "surface"),
                      progress: bool = False, overrides: list[str] | None = None) -> dict:
    """Render a finished run's test views with each renderer into ``out_dir/<renderer>/`` and compare.

    Returns per renderer: seconds, rays/s, share of fallback rays, the metrics of the test views
    (``pq`` = PQ^scene, ``miou``, ``ea`` = edge accuracy); and the share of pixels whose instance / semantic ids agree
    between the first two renderers. ``overrides``: ``key=value`` config changes (``render.*``).
    """
    from ..eval.report import evaluate_prediction_dir
    from ..io import read_label_png
    from ..training.pipeline import load_channel_table, load_ownership, load_run, use_ownership

    trainer = load_run(run_dir, overrides)
    cfg, scene, model = trainer.cfg, trainer.scene, trainer.model
    table = load_channel_table(run_dir)
    use_ownership(trainer, table, load_ownership(run_dir))
    test = scene.split["test"]
    res: dict = {"run": str(run_dir), "views": int(len(test)), "hw": list(scene.hw),
                 "device": str(next(model.parameters()).device), "torch_threads": torch.get_num_threads()}
    for r in renderers:
        grid_s = set_renderer(model, r, cfg.render.grid_resolution, cfg.render.surface_samples)
        stats: dict = {}
        _sync(model)
        t0 = time.perf_counter()
        write_test_views(model, scene, out_dir / r, table, trainer.method, cfg.render.chunk, frames=test,
                         progress=progress, stats=stats)
        _sync(model)
        sec = time.perf_counter() - t0
        rays = len(test) * scene.hw[0] * scene.hw[1]
        metrics = evaluate_prediction_dir(scene, out_dir / r) if scene.gt is not None else {}
        res[r] = {"seconds": sec, "grid_seconds": grid_s, "rays_per_second": rays / sec,
                  "rays_per_second_with_grid": rays / (sec + grid_s),
                  "fallback_share": stats.get("fallback_rays", 0) / max(1, stats.get("rays", 1)),
                  "metrics": {k: metrics[k] for k in ("pq", "miou", "ea") if k in metrics}}
    if len(renderers) >= 2:
        a, b = renderers[:2]
        agree = {}
        for kind in ("instance", "semantic"):
            same = total = 0
            for i in test:
                name = scene.frame_names[int(i)]
                x = read_label_png(out_dir / a / kind / f"{name}.png")
                y = read_label_png(out_dir / b / kind / f"{name}.png")
                same += int((x == y).sum())
                total += x.size
            agree[kind] = same / max(total, 1)
        res["agreement"] = agree
    return res
