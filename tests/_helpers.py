"""Shared test helpers: the tiny training config and camera / projection geometry written
independently of the readers under test.

``SDFSEG_TEST_DEVICE`` (default ``cpu``) is the device the tests train and render on:
``SDFSEG_TEST_DEVICE=cuda python -m pytest -q tests`` runs the suite on a GPU.
"""

import os
from pathlib import Path

import numpy as np
import torch

from sdfseg.config import Config, load_config
from sdfseg.data.synthetic import generate_scene

ROOT = Path(__file__).resolve().parents[1]

DEVICE = torch.device(os.environ.get("SDFSEG_TEST_DEVICE", "cpu"))
"""Device of the tests' models (``train.device`` of :data:`TINY`)."""

TINY = [f"train.device={DEVICE}", "model.num_channels=5", "model.hidden_dim=16", "model.feature_dim=8", "model.color_hidden_dim=16",
        "model.encoding.n_levels=4", "model.encoding.log2_hashmap_size=12", "model.encoding.max_resolution=64",
        "sampler.n_coarse=8", "sampler.n_importance=4", "sampler.n_depth_uniform=4", "sampler.n_depth_near=4",
        "train.rays=64", "train.label_rays=32", "train.eikonal_points=32", "train.extra_views=2",
        "train.extra_rays=8", "render.grid_resolution=33"]
"""Overrides that shrink confs/demo.yaml to a model that trains a step in well under a second (on DEVICE)."""

HEAD = ["features.enabled=true", "features.rays=64", "features.grid_levels=2", "features.grid_log2_hashmap_size=10",
        "features.grid_max_resolution=32", "features.hidden=16", "features.num_freqs=2"]
"""A tiny hierarchical feature head."""


def tiny_scene(path: Path, seed: int = 2) -> Path:
    """Generate the tests' tiny synthetic scene (3 objects, 10 views at 24x32) at ``path``."""
    generate_scene(path, objects=3, views=10, height=24, width=32, seed=seed, progress=False)
    return path


def demo_config(overrides: list[str], scene_dir: Path, run_dir: Path, *extra: str) -> Config:
    """confs/demo.yaml with ``overrides`` (e.g. TINY), the scene and run folders, then ``extra``."""
    return load_config(ROOT / "confs" / "demo.yaml",
                       [*overrides, f"data.path={scene_dir}", f"run.dir={run_dir}", *extra])


def gl_look_at(eye, target, up) -> np.ndarray:
    """OpenGL / Blender camera-to-world (looks along -z, y up) at ``eye`` looking at ``target``."""
    back = np.asarray(eye, float) - target
    back /= np.linalg.norm(back)
    right = np.cross(np.asarray(up, float), back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, :3] = np.stack([right, np.cross(back, right), back], 1)
    m[:3, 3] = eye
    return m


def scene_pixel(scene, i, X) -> np.ndarray:
    """Pixel index (u, v) of world point X in frame i according to the Scene conventions."""
    xn = scene.normalization.to_normalized(X)
    pc = np.linalg.inv(scene.c2w[i].astype(np.float64)) @ np.append(xn, 1.0)
    uv = scene.intrinsics[i].astype(np.float64) @ pc[:3]
    return uv[:2] / uv[2] - 0.5
