"""Reconstruction quality of a run's rendered test views: colour PSNR and depth error against the scene.

The segmentation metrics say which pixel belongs to what; these say whether the geometry and appearance
under them are right. A method whose losses move surfaces shows it here first: objects grown beyond
their silhouettes render depth in front of the true surface (docs/quality.md).

* **PSNR**: per frame ``-10 log10(MSE)`` of the rendered ``rgb/<frame>.png`` against the scene's image,
  both in [0, 1]; the mean over the test frames.
* **Depth**: the rendered ``depth/<frame>.png`` (uint16 millimetres, world units) against the scene's
  metric depth, on the pixels where the scene has depth; the median absolute error in metres and the
  shares of pixels off by more than 5 cm and 20 cm, all pixels of all test frames pooled. Scenes without
  metric depth (monocular cues, SfM points) get no depth figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..data.scene import Scene
from ..errors import SdfsegError
from ..io import read_label_png, read_rgb

DEPTH_THRESHOLDS_M = (0.05, 0.20)


def _sized(arr: np.ndarray, path: Path, hw: tuple[int, int]) -> np.ndarray:
    """``arr`` read from ``path``, checked to be the scene's size."""
    if arr.shape[:2] != hw:
        raise SdfsegError(f"{path}: size {arr.shape[1]}x{arr.shape[0]}, expected the scene's {hw[1]}x{hw[0]}")
    return arr


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (inf when identical)."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2))
    return float("inf") if mse == 0 else -10.0 * float(np.log10(mse))


def depth_errors(pred_m: np.ndarray, gt_m: np.ndarray) -> dict:
    """Absolute depth errors (metres) on the pixels with GT depth (``gt_m > 0``), pooled:
    ``{"depth_median_m", "depth_over_5cm", "depth_over_20cm", "depth_pixels"}`` (None without pixels)."""
    ok = gt_m > 0
    err = np.abs(np.asarray(pred_m, np.float64)[ok] - np.asarray(gt_m, np.float64)[ok])
    if err.size == 0:
        return {"depth_median_m": None, "depth_over_5cm": None, "depth_over_20cm": None, "depth_pixels": 0}
    return {"depth_median_m": float(np.median(err)), "depth_over_5cm": float(np.mean(err > DEPTH_THRESHOLDS_M[0])),
            "depth_over_20cm": float(np.mean(err > DEPTH_THRESHOLDS_M[1])), "depth_pixels": int(err.size)}


def view_reconstruction(scene: Scene, pred_dir: str | Path, frames: np.ndarray) -> Optional[dict]:
    """PSNR and depth error of ``pred_dir/{rgb,depth}/<frame>.png`` over ``frames`` (indices into ``scene``).

    None when ``pred_dir`` has no ``rgb/`` folder (label maps only, e.g. another method's predictions).
    """
    pred_dir = Path(pred_dir)
    if not (pred_dir / "rgb").is_dir():
        return None
    hw = scene.hw
    metric = scene.depth is not None and scene.depth_kind == "metric" and (pred_dir / "depth").is_dir()
    psnrs, pred_d, gt_d = [], [], []
    for i in frames:
        name = scene.frame_names[int(i)]
        f = pred_dir / "rgb" / f"{name}.png"
        rgb = _sized(read_rgb(f), f, hw)
        psnrs.append(psnr(rgb, scene.rgb_float(int(i))))
        if metric:
            f = pred_dir / "depth" / f"{name}.png"
            pred_d.append(_sized(read_label_png(f), f, hw).astype(np.float64) / 1000.0)  # uint16 millimetres
            gt_d.append(scene.depth_float(int(i)).astype(np.float64) * scene.normalization.scale)
    out: dict = {"psnr": float(np.mean(psnrs)) if psnrs else None, "frames": len(psnrs)}
    if metric and pred_d:
        out.update(depth_errors(np.stack(pred_d), np.stack(gt_d)))
    return out
