"""Open a trained run for inference: its config, normalised scene, method and model, nothing else.

No training labels, ray sampler or mask hierarchies are built, so opening a run costs reading the scene's
images and the checkpoint. The tools that only render or query a finished run use this
(:mod:`sdfseg.methods.hierarchy.run`, ``tools/prompt.py``); ``sdfseg.training.pipeline.load_run`` rebuilds the whole
trainer for what needs it (resuming, redoing the end of a run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .config import Config
from .core.model import SceneModel
from .data import load_scene
from .data.normalize import normalize_scene
from .data.scene import Scene
from .errors import SdfsegError
from .methods import Method, create_method
from .training.checkpoint import check_method, check_model, load_model_weights, read_checkpoint
from .training.rundir import read_run_config
from .training.trainer import build_model, load_training_scene, pick_device, read_options, resolve_config


@dataclass
class OpenRun:
    """A trained run: its folder, config, normalised scene, method and model (eval mode) on ``device``."""

    run_dir: Path
    cfg: Config
    scene: Scene
    model: SceneModel
    device: torch.device
    method: Method


def open_run(run_dir: str | Path, device: Optional[str] = None, gt_frames: Optional[str] = None) -> OpenRun:
    """Rebuild scene, method and model of ``run_dir`` from its config.yaml and last checkpoint.

    ``gt_frames``: which frames' GT maps to read (``test`` as training does, ``all``: also the training
    frames', e.g. to score a prompt on the frame it was clicked in)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    cfg.run.dir = str(run_dir)
    ckpt = run_dir / "checkpoints" / "last.pt"
    dev = pick_device(device or cfg.train.device)
    resolve_config(cfg, dev)
    state = read_checkpoint(ckpt, dev, missing="no checkpoint (the run has not trained yet)")
    if gt_frames is None:
        scene = load_training_scene(cfg)
    else:
        opts = read_options(cfg)
        opts.gt_frames = gt_frames
        if not Path(cfg.data.path).exists():
            raise SdfsegError(f"data.path: scene folder '{cfg.data.path}' of run {run_dir} not found")
        scene = normalize_scene(load_scene(Path(cfg.data.path), cfg.data.layout, opts),
                                radius=cfg.data.sphere_radius, in_place=True)
    method = create_method(cfg, scene.classes)
    check_method(state, method.name, ckpt)
    model = build_model(cfg, method, scene, int(state["num_channels"])).to(dev)
    check_model(state, None, model.hash_backend, ckpt)
    load_model_weights(model, state, cfg.train.iterations, ckpt, what=str(run_dir / "config.yaml"))
    model.eval()
    return OpenRun(run_dir, cfg, scene, model, dev, method)
