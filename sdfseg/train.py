"""The training loop: data preparation, optimiser groups, schedule, checkpoints, logging.

``Trainer(cfg).fit()`` trains; ``tools/train.py`` adds the end-of-run rendering,
evaluation and mesh export (see :mod:`sdfseg.pipeline`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from .config import Config, dump_yaml
from .data import ReadOptions, load_scene
from .data.normalize import normalize_scene
from .data.rays import RaySampler
from .data.scene import Scene
from .errors import SdfsegError
from .io import atomic_path, write_text_atomic
from .labels import TrainingLabels, training_labels
from .model import SceneModel
from .objective import Objective


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SdfsegError(f"config key 'train.device': '{name}' requested but CUDA is not available")
    return torch.device(name)


def load_training_scene(cfg: Config) -> Scene:
    """Read (generating the synthetic demo scene first if configured) and normalise the scene."""
    path = Path(cfg.data.path)
    if not path.exists() and cfg.data.generate_synthetic:
        from .data.synthetic import generate_scene

        s = cfg.data.synthetic
        print(f"generating synthetic scene at {path} ({s.objects} objects, {s.views} views, {s.height}x{s.width})")
        generate_scene(path, objects=s.objects, views=s.views, height=s.height, width=s.width, seed=s.seed)
    if not path.exists():
        hint = f" {cfg.data.missing_hint}" if cfg.data.missing_hint else ""
        raise SdfsegError(f"data.path: scene folder '{path}' not found.{hint}")
    opts = ReadOptions(image_size=tuple(cfg.data.image_size) if cfg.data.image_size else None,
                       max_frames=cfg.data.max_frames)
    return normalize_scene(load_scene(path, cfg.data.layout, opts), radius=cfg.data.sphere_radius)


def num_channels_for(cfg: Config, scene: Scene) -> int:
    """K: semantic mode uses one channel per class; instance mode ``model.num_channels``."""
    return scene.classes.num_classes if cfg.train.mode == "semantic" else cfg.model.num_channels


def set_decayed_lr(optimizer: torch.optim.Optimizer, step: int, total: int, final_ratio: float) -> None:
    """Exponential decay: every group's ``base_lr`` times ``final_ratio ** (step / total)`` (capped at 1)."""
    factor = final_ratio ** min(1.0, step / max(1, total))
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor


class Trainer:
    """Owns the scene, labels, model, optimiser and run directory of one training run."""

    def __init__(self, cfg: Config, scene: Optional[Scene] = None):
        self.cfg = cfg
        self.device = pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        self.scene = scene if scene is not None else load_training_scene(cfg)
        self.k = num_channels_for(cfg, self.scene)
        self.labels: TrainingLabels = training_labels(self.scene, cfg, self.k)
        if cfg.train.mode == "instance" and cfg.train.method == "supervised" and cfg.train.oracle_labels:
            top = int(self.labels.labels.max())
            if top >= self.k:
                raise SdfsegError(f"model.num_channels={self.k} but GT instance ids go up to {top}")
        self.sampler = RaySampler(self.scene, self.labels.labels, self.labels.semantic, self.labels.confidence,
                                  self.device, cfg.train.keyframe_ratio, cfg.train.replace_prob, cfg.train.seed)
        n_sem = self.scene.classes.num_classes if cfg.train.mode == "instance" else 0
        self.model = SceneModel(cfg, self.k, n_sem).to(self.device)
        self.objective = Objective(cfg, self.scene.depth_kind, self.scene.classes)
        self.feature_sup = None
        if cfg.features.enabled:
            from .hierarchy_head import FeatureSupervision

            self.feature_sup = FeatureSupervision(self.scene, cfg.features, self.sampler, cfg.train.seed)
        t = cfg.train
        groups = [
            {"params": self.model.grid_parameters(), "lr": t.grid_lr, "base_lr": t.grid_lr},
            {"params": self.model.other_parameters(), "lr": t.lr, "base_lr": t.lr},
            {"params": list(self.model.density.parameters()), "lr": t.beta_lr or t.lr, "base_lr": t.beta_lr or t.lr},
        ]
        if self.model.features is not None:
            f = cfg.features
            groups.append({"params": self.model.feature_parameters(), "lr": f.lr, "base_lr": f.lr})
            if self.model.feature_grid_parameters():
                groups.append({"params": self.model.feature_grid_parameters(), "lr": f.grid_lr, "base_lr": f.grid_lr})
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
        self.step = 0
        self.run_dir = Path(cfg.run.dir)

    # ---- schedule / checkpoints ---------------------------------------------------------------
    def _set_lr(self) -> None:
        set_decayed_lr(self.optimizer, self.step, self.cfg.train.iterations, self.cfg.train.lr_final_ratio)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save_checkpoint(self) -> None:
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "sampler_rng": self.sampler.rng.bit_generator.state, "sampler_epoch": list(self.sampler._epoch),
                 "torch_rng": torch.get_rng_state(), "num_channels": self.k}
        if self.feature_sup is not None:
            state["feature_rng"] = self.feature_sup.rng.bit_generator.state
            state["feature_loss_rng"] = self.objective.feature_loss.rng.bit_generator.state
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, path: Optional[Path] = None) -> None:
        path = Path(path or self.checkpoint_path)
        if not path.exists():
            raise SdfsegError(f"{path}: no checkpoint to resume from")
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, EOFError, OSError) as exc:
            raise SdfsegError(f"{path}: checkpoint does not match this config ({str(exc).splitlines()[0]})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.rng.bit_generator.state = state["sampler_rng"]
        self.sampler._epoch = list(state["sampler_epoch"])
        torch.set_rng_state(state["torch_rng"])
        if self.feature_sup is not None and "feature_rng" in state:
            self.feature_sup.rng.bit_generator.state = state["feature_rng"]
            self.objective.feature_loss.rng.bit_generator.state = state["feature_loss_rng"]
        self.step = int(state["step"])

    # ---- training --------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimiser step; returns the scalar losses (weighted) and PSNR."""
        cfg = self.cfg
        self._set_lr()
        self.model.progress = self.step / max(1, cfg.train.iterations)
        self.model.train()
        use_extra = cfg.train.free_channels and cfg.loss.cross_view > 0
        batch = self.sampler.sample(cfg.train.rays - cfg.train.label_rays, cfg.train.label_rays,
                                    cfg.train.extra_views if use_extra else 0, cfg.train.extra_rays)
        depth_t = None
        if cfg.sampler.use_depth and batch.depth is not None and self.scene.depth_kind == "metric":
            depth_t = batch.depth * batch.ray_scale
        out = self.model.render(batch.origins, batch.dirs, depth_t,
                                need_normals=self.objective.needs_normals(batch))
        losses = self.objective(self.model, out, batch, self.step)
        if self.feature_sup is not None and self.step >= cfg.features.start:
            fbatch = self.feature_sup.sample(int(batch.frame[0]))
            fh = self.feature_sup.hierarchy(int(fbatch.frame[0]))
            losses.update(self.objective.feature_terms(self.model, fbatch, fh))
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            main = batch.view == 0
            mse = ((out["rgb"][main] - batch.rgb[main]) ** 2).mean().item()
        stats = {k: float(v.detach()) for k, v in losses.items()}
        stats["total"] = float(total.detach())
        stats["psnr"] = -10.0 * math.log10(max(mse, 1e-10))
        return stats

    def fit(self, resume: bool = False, progress: bool = True) -> dict[str, float]:
        """Train until ``train.iterations``; checkpoints every ``train.checkpoint_every`` and at the end."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.run_dir / "config.yaml", dump_yaml(self.cfg))
        if resume:
            self.load_checkpoint()
            print(f"resumed from {self.checkpoint_path} at step {self.step}")
        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step)
        total = self.cfg.train.iterations
        bar = tqdm(total=total, initial=self.step, disable=not progress, dynamic_ncols=True, desc="train")
        stats: dict[str, float] = {}
        t0 = time.time()
        try:
            while self.step < total:
                stats = self.train_step()
                bar.update(1)
                if self.step % self.cfg.train.log_every == 0 or self.step == total:
                    bar.set_postfix(loss=f"{stats['total']:.3f}", psnr=f"{stats['psnr']:.2f}")
                    for k, v in stats.items():
                        writer.add_scalar(f"train/{k}", v, self.step)
                    writer.add_scalar("train/beta", float(self.model.beta().detach()), self.step)
                if self.step % self.cfg.train.checkpoint_every == 0 and self.step < total:
                    self.save_checkpoint()
        finally:
            bar.close()
            writer.close()
        self.save_checkpoint()
        stats["seconds"] = time.time() - t0
        return stats
