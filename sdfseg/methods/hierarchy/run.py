"""A trained run's hierarchical feature head: load it, render feature maps of any view.

Used by ``tools/query.py`` and ``tools/eval_hierarchy.py``. Loading rebuilds only the
scene and the model from ``RUN_DIR/config.yaml`` and ``RUN_DIR/checkpoints/last.pt``
(no training labels, ray sampler or mask hierarchies), so it is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...core.model import SceneModel
from ...core.render.views import eval_points, render_rays_chunked
from ...data.rays import view_rays
from ...data.scene import Scene
from ...errors import SdfsegError
from ...runs import OpenRun, open_run
from ...training.rundir import read_run_config

FeatureRun = OpenRun
"""A run with a feature head (:class:`sdfseg.runs.OpenRun`)."""


def load_feature_run(run_dir: str | Path, device: Optional[str] = None) -> FeatureRun:
    """Open ``run_dir`` (:func:`sdfseg.runs.open_run`); a one-line error when it has no trained feature head."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if not cfg.features.enabled:
        raise SdfsegError(f"{run_dir / 'config.yaml'}: features.enabled is false (this run has no hierarchical "
                          f"feature head; train with features.enabled=true, e.g. confs/demo_hierarchy.yaml)")
    return open_run(run_dir, device)


def frame_index(scene: Scene, name: str, option: str = "--frame") -> int:
    """Index of the frame called ``name``; a one-line error (naming ``option``) lists a few valid names."""
    try:
        return scene.frame_names.index(str(name))
    except ValueError:
        some = ", ".join(scene.frame_names[:3] + (["..."] if scene.num_frames > 3 else []))
        raise SdfsegError(f"{option} '{name}': no such frame in {scene.path} (frames: {some})") from None


def read_pose(path: str | Path, scene: Scene) -> np.ndarray:
    """A camera-to-world 4x4 text file in world units (OpenCV axes) -> float32 normalised c2w ``[4, 4]``."""
    path = Path(path)
    try:
        c2w = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise SdfsegError(f"{path}: cannot read a 4x4 pose ({' '.join(str(exc).split())})") from None
    if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
        raise SdfsegError(f"{path}: expected a finite 4x4 camera-to-world matrix, got shape {c2w.shape}")
    out = c2w.copy()
    out[:3, 3] = scene.normalization.to_normalized(c2w[:3, 3])
    return out.astype(np.float32)


def _view_rays_depth(c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int], device: torch.device,
                     depth: Optional[np.ndarray]) -> tuple[torch.Tensor, ...]:
    """:func:`view_rays` plus the ray distance ``[H*W]`` of a z-depth map ``[H, W]`` (None without one)."""
    o, d, scale = view_rays(c2w, K, hw, device)
    depth_t = None
    if depth is not None:
        depth_t = torch.as_tensor(np.asarray(depth, dtype=np.float32).reshape(-1), device=device) * scale
    return o, d, scale, depth_t


@torch.no_grad()
def render_feature_view(model: SceneModel, c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int], chunk: int,
                        with_rgb: bool = False, depth: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """Render one view: ``features`` float32 ``[H, W, D]``, ``depth`` (z, normalised units) ``[H, W]``,
    ``acc`` ``[H, W]`` and, with ``with_rgb``, ``rgb`` ``[H, W, 3]``.

    ``depth`` (sensor z-depth ``[H, W]`` in normalised units, 0 = invalid) switches the feature
    rays to the depth-guided samples used in training; without it the SDF sampler places them.
    """
    model.eval()
    dev = next(model.parameters()).device
    h, w = hw
    o, d, scale, depth_t = _view_rays_depth(c2w, K, hw, dev, depth)
    res = {k: v.cpu().numpy() for k, v in render_rays_chunked(model, o, d, chunk, ("features", "depth", "acc"),
                                                              depth_t=depth_t, render=model.render_features).items()}
    out = {"features": res["features"].reshape(h, w, -1).astype(np.float32),
           "depth": (res["depth"] / scale.cpu().numpy()).reshape(h, w).astype(np.float32),
           "acc": res["acc"].reshape(h, w).astype(np.float32)}
    if with_rgb:
        rgb = render_rays_chunked(model, o, d, chunk, ("rgb",))["rgb"]
        out["rgb"] = rgb.cpu().numpy().reshape(h, w, 3)
    return out


@torch.no_grad()
def point_features(model: SceneModel, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Feature head at normalised points ``[P, 3]`` -> float32 ``[P, D]``."""
    return eval_points(model.point_features, points, chunk, next(model.parameters()).device, model.features.dim)


def pca_image(features: np.ndarray) -> np.ndarray:
    """Visualise a feature map ``[H, W, D]`` as RGB ``[H, W, 3]`` in [0, 1] (top 3 principal components)."""
    h, w, d = features.shape
    f = features.reshape(-1, d).astype(np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-8)
    f = f - f.mean(axis=0)
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    proj = f @ vt[:3].T
    if proj.shape[1] < 3:
        proj = np.pad(proj, ((0, 0), (0, 3 - proj.shape[1])))
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    return np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1).reshape(h, w, 3).astype(np.float32)


def frame_depth(run: FeatureRun, i: int) -> Optional[np.ndarray]:
    """Sensor depth ``[H, W]`` of frame ``i`` when the run trains with depth-guided samples, else None.

    Frames of the dataset are rendered like the training rays (``sampler.use_depth`` with
    metric depth); novel poses have no depth and use the SDF sampler.
    """
    s = run.scene
    if run.cfg.sampler.use_depth and s.depth is not None and s.depth_kind == "metric":
        return s.depth_float(i)
    return None


def render_frame(run: FeatureRun, i: int, with_rgb: bool = False) -> dict[str, np.ndarray]:
    """:func:`render_feature_view` of dataset frame ``i`` (depth-guided when the run trains that way)."""
    s = run.scene
    return render_feature_view(run.model, s.c2w[i], s.intrinsics[i], s.hw, run.cfg.render.chunk, with_rgb,
                               depth=frame_depth(run, i))


@torch.no_grad()
def render_frame_field(run: FeatureRun, i: int, field) -> np.ndarray:
    """:meth:`SceneModel.render_point_field` of dataset frame ``i`` (rays as in :func:`render_frame`) -> ``[H, W, C]``."""
    s = run.scene
    o, d, _, depth_t = _view_rays_depth(s.c2w[i], s.intrinsics[i], s.hw, run.device, frame_depth(run, i))
    out = render_rays_chunked(run.model, o, d, run.cfg.render.chunk, ("field",), depth_t=depth_t,
                              render=lambda o, d, t: {"field": run.model.render_point_field(o, d, field, t)})
    return out["field"].cpu().numpy().reshape(*s.hw, -1).astype(np.float32)
