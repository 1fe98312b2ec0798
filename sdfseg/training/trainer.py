"""The training loop: data preparation, optimiser groups, schedule, checkpoints, logging.

``Trainer(cfg).fit()`` trains; ``tools/train.py`` adds the end-of-run rendering,
evaluation and mesh export (see :mod:`sdfseg.training.pipeline`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import Config, dump_yaml
from ..core.fields.encodings import resolve_backend
from ..core.model import SceneModel, uses_sample_grid
from ..data import ReadOptions, load_scene
from ..data.normalize import normalize_scene
from ..data.rays import RaySampler
from ..data.scene import Scene
from ..errors import SdfsegError
from ..io import atomic_path, write_text_atomic
from ..methods import Addon, Method, create_addons, create_method
from ..progress import Progress
from .checkpoint import CHECKPOINT_FORMAT, all_finite, check_method, check_model, load_model_weights, read_checkpoint
from .labels import TrainingLabels
from .objective import Objective, semantic_class_weights


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SdfsegError(f"config key 'train.device': '{name}' requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SdfsegError(f"config key 'train.device': expected auto, cpu or cuda[:index], got '{name}'") from None


def use_deterministic_kernels(device: torch.device, on: bool) -> bool:
    """For a run on CUDA with ``train.deterministic``, switch torch to its deterministic kernels (warn-only, so
    an op without one still runs) and fix cuBLAS's workspace (``CUBLAS_WORKSPACE_CONFIG``, which must be set
    before cuBLAS starts: the trainer calls this before it builds the model). Scatter-adds, ``index_add_``,
    cumulative sums and gather backward otherwise use float atomics on CUDA, whose order, and so whose last
    bits, vary from run to run. Freshly allocated memory is not filled with NaN (torch's debugging aid,
    which costs time). Does nothing on other devices or when ``on`` is false; returns whether it switched."""
    if device.type != "cuda" or not on:
        return False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    return True


def resolve_config(cfg: Config, device: torch.device) -> Config:
    """Record in ``cfg`` what ``auto`` settings resolve to for a model on ``device``: the hash-grid
    backend (``tcnn`` only on CUDA with tinycudann), so the run's config.yaml says which one its
    weights are laid out for. Returns ``cfg``."""
    cfg.model.encoding.backend = resolve_backend(cfg.model.encoding.backend, device)
    return cfg


def load_training_scene(cfg: Config) -> Scene:
    """Read (generating the synthetic demo scene first if configured) and normalise the scene."""
    path = Path(cfg.data.path)
    s = cfg.data.synthetic
    if not path.exists() and cfg.data.generate_synthetic:
        if path.resolve() != Path(s.path).resolve():
            raise SdfsegError(f"data.path: scene folder '{path}' not found (the synthetic demo scene is generated "
                              f"only at data.synthetic.path '{s.path}', not at another missing folder)")
        from ..data.synthetic import generate_scene

        print(f"generating synthetic scene at {path} ({s.objects} objects, {s.views} views, {s.height}x{s.width})")
        generate_scene(path, objects=s.objects, views=s.views, height=s.height, width=s.width, seed=s.seed)
    if not path.exists():
        hint = f" {cfg.data.missing_hint}" if cfg.data.missing_hint else ""
        raise SdfsegError(f"data.path: scene folder '{path}' not found.{hint}")
    # the scene read here is only ever used normalised: its depth is rescaled in place (no second copy)
    return normalize_scene(load_scene(path, cfg.data.layout, read_options(cfg)), radius=cfg.data.sphere_radius,
                           in_place=True)


def uses_scene_normals(cfg: Config) -> bool:
    """Whether training reads the scene's normal maps (the normal losses; nothing else uses them)."""
    return cfg.loss.normal_l1 > 0 or cfg.loss.normal_cos > 0


def read_options(cfg: Config) -> ReadOptions:
    """How training reads a scene: ``data.image_size``, ``data.max_frames``, ``data.crop``; normal maps kept
    only for the normal losses (:func:`uses_scene_normals`; read and checked either way); GT label maps of
    the test frames only (what evaluation uses) unless the GT labels are the training labels
    (``train.oracle_labels``)."""
    return ReadOptions(image_size=tuple(cfg.data.image_size) if cfg.data.image_size else None,
                       max_frames=cfg.data.max_frames, crop=cfg.data.crop, normals=uses_scene_normals(cfg),
                       gt_frames="all" if cfg.train.oracle_labels else "test")


def num_channels_for(cfg: Config, scene: Scene) -> int:
    """K SDF channels of the config's method on ``scene`` (semantic mode: one per class)."""
    return create_method(cfg, scene.classes).num_channels(scene)


def build_model(cfg: Config, method: Method, scene: Scene, k: int) -> SceneModel:
    """The backbone with the method's channels, semantic head and heads (on the CPU)."""
    return SceneModel(cfg, k, method.semantic_classes(scene), sample_grid=uses_sample_grid(cfg, scene),
                      room_channels=method.room_channels(k), heads=method.heads(scene), num_frames=scene.num_frames,
                      train_frames=[int(i) for i in scene.split["train"]])


def semantic_pixel_counts(semantic, scene: Scene) -> np.ndarray:
    """Labelled pixels per class ``[num_classes]`` of the training frames' semantic maps (class 0, void or
    unsupervised, counted as 0)."""
    n = scene.classes.num_classes
    counts = np.zeros(n, dtype=np.int64)
    for i in scene.split["train"]:
        counts += np.bincount(np.asarray(semantic.frame(int(i))).ravel().astype(np.int64), minlength=n)[:n]
    counts[0] = 0
    return counts


def set_decayed_lr(optimizer: torch.optim.Optimizer, step: int, total: int, final_ratio: float) -> None:
    """Exponential decay: every group's ``base_lr`` times ``final_ratio ** (step / total)`` (capped at 1)."""
    factor = final_ratio ** min(1.0, step / max(1, total))
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor


class Trainer:
    """Owns the scene, labels, model, optimiser and run directory of one training run."""

    def __init__(self, cfg: Config, scene: Optional[Scene] = None, progress: bool = True):
        self.cfg = cfg
        self.device = pick_device(cfg.train.device)
        use_deterministic_kernels(self.device, cfg.train.deterministic)
        resolve_config(cfg, self.device)
        torch.manual_seed(cfg.train.seed)
        self.scene = scene if scene is not None else load_training_scene(cfg)
        self.method = create_method(cfg, self.scene.classes)
        """The lifting method (:mod:`sdfseg.methods`) this run trains."""
        self.k = self.method.num_channels(self.scene)
        self.labels: TrainingLabels = self.method.training_labels(self.scene, self.k)
        self.sampler = RaySampler(self.scene, self.labels.labels, self.labels.semantic, self.labels.confidence,
                                  self.device, cfg.train.keyframe_ratio, cfg.train.replace_prob, cfg.train.seed,
                                  depth_rays=cfg.train.depth_rays if self.scene.depth_kind == "sparse" else 0,
                                  edge_rays=cfg.train.edge_rays, depth_edge_rays=cfg.train.depth_edge_rays)
        self.model = build_model(cfg, self.method, self.scene, self.k).to(self.device)
        sem_weights = None
        if self.model.semantic is not None and cfg.loss.semantic_balance > 0:
            sem_weights = semantic_class_weights(semantic_pixel_counts(self.labels.semantic, self.scene),
                                                 cfg.loss.semantic_balance).to(self.device)
        self.objective = Objective(cfg, self.scene.depth_kind, self.scene.classes, sem_weights, self.method)
        self.addons: list[Addon] = create_addons(cfg, self.scene, self.sampler, progress)
        """Heads trained beside the method (:func:`sdfseg.methods.create_addons`)."""
        t = cfg.train
        groups = [
            {"params": self.model.grid_parameters(), "lr": t.grid_lr, "base_lr": t.grid_lr},
            {"params": self.model.other_parameters(), "lr": t.lr, "base_lr": t.lr},
            {"params": list(self.model.density.parameters()), "lr": t.beta_lr or t.lr, "base_lr": t.beta_lr or t.lr},
        ]
        extra = [g for a in self.addons for g in a.param_groups(self.model)] + self.method.param_groups(self.model)
        groups += [dict(g, base_lr=g["lr"]) for g in extra]
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
        self.step = 0
        self.skipped_steps = 0
        """Steps skipped so far because their loss or gradient was not finite."""
        self._bad_run: list[tuple[int, list[str]]] = []  # the current streak of skipped steps: (step, terms)
        self.run_dir = Path(cfg.run.dir)

    def addon(self, name: str) -> Optional[Addon]:
        """The add-on head called ``name`` (e.g. ``features``), or None."""
        return next((a for a in self.addons if a.name == name), None)

    @property
    def feature_sup(self):
        """The hierarchical feature head's supervision (patch hierarchies per frame), or None."""
        a = self.addon("features")
        return None if a is None else a.sup

    # ---- schedule / checkpoints ---------------------------------------------------------------
    def _set_schedule(self) -> None:
        """Learning rates and the model's annealed quantities for the step about to be trained."""
        set_decayed_lr(self.optimizer, self.step, self.cfg.train.iterations, self.cfg.train.lr_final_ratio)
        self.model.update_step(self.step, self.cfg.train.iterations)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def check_weights(self) -> None:
        """A one-line error when a weight is not finite (training diverged): nothing is written from it."""
        if not all_finite(self.model.parameters()):
            raise SdfsegError(f"training diverged: the model has non-finite weights at step {self.step}; nothing "
                              f"was written from it (the last checkpoint, if any, is from before); lower train.lr / "
                              "train.grid_lr or check the input data")

    def save_checkpoint(self) -> None:
        """Write ``checkpoints/last.pt`` atomically (never from non-finite weights, see :meth:`check_weights`)."""
        self.check_weights()
        state = {"format": CHECKPOINT_FORMAT, "step": self.step, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "num_channels": self.k,
                 "hash_backend": self.model.hash_backend, "skipped_steps": self.skipped_steps,
                 "method_name": self.method.name,
                 "sampler_rng": self.sampler.rng.bit_generator.state,
                 "sampler_epoch": [int(f) for f in self.sampler._epoch], "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        method_state = self.method.state_dict()
        if method_state:
            state["method"] = method_state
        for addon in self.addons:
            state.update(addon.state_dict())
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, path: Optional[Path] = None) -> None:
        """Restore weights, optimiser, schedule and random streams: training continues exactly as the
        uninterrupted run would, and a finished run renders exactly what it rendered at its end."""
        path = Path(path or self.checkpoint_path)
        state = read_checkpoint(path, self.device, missing="no checkpoint to resume from")
        check_method(state, self.method.name, path)
        check_model(state, self.k, self.model.hash_backend, path)
        load_model_weights(self.model, state, self.cfg.train.iterations, path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.sampler.rng.bit_generator.state = state["sampler_rng"]
            self.sampler._epoch = [int(f) for f in state["sampler_epoch"]]
            torch.set_rng_state(state["torch_rng"].cpu())
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise SdfsegError(f"{path}: checkpoint does not match this config ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        if "method" in state:
            self.method.load_state_dict(state["method"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        for addon in self.addons:
            addon.load_state_dict(state)
        self.step = int(state["step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))

    # ---- training --------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimiser step; returns the scalar losses (weighted), PSNR and the gradient norm.

        A step whose loss or gradient is not finite is skipped (no update; see ``train.max_bad_steps``).
        The check costs no extra host sync: the losses, PSNR and the finiteness travel to the host in
        one transfer, the one every step already made for its statistics.
        """
        cfg = self.cfg
        self._set_schedule()
        self.model.train()
        use_extra = self.method.extra_views()
        batch = self.sampler.sample(cfg.train.rays - cfg.train.label_rays, cfg.train.label_rays,
                                    cfg.train.extra_views if use_extra else 0, cfg.train.extra_rays)
        depth_t = None
        if cfg.sampler.use_depth and batch.depth is not None and self.scene.depth_kind == "metric":
            depth_t = batch.depth * batch.ray_scale
        out = self.model.render(batch.origins, batch.dirs, depth_t,
                                need_normals=self.objective.needs_normals(batch), frame=batch.frame)
        losses = self.objective(self.model, out, batch, self.step)
        for addon in self.addons:
            losses.update(addon.losses(self.model, batch, self.step))
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        with torch.no_grad():
            main = batch.view == 0
            mse = ((out["rgb"][main] - batch.rgb[main]) ** 2).mean()
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            gnorm = torch.nn.utils.get_total_norm(grads) if grads else mse.new_zeros(())
            values = torch.stack([v.detach().float() for v in losses.values()] + [total.detach(), mse, gnorm])
        values = values.tolist()  # the step's one host sync
        stats = dict(zip(list(losses) + ["total", "mse", "grad_norm"], values))
        if all(math.isfinite(v) for v in values):
            self.optimizer.step()
            self._bad_run.clear()
        else:
            self._skip_step([k for k in losses if not math.isfinite(stats[k])])
        self.step += 1
        mse = stats.pop("mse")
        stats["psnr"] = -10.0 * math.log10(max(mse, 1e-10)) if math.isfinite(mse) else float("nan")
        return stats

    def _skip_step(self, terms: list[str]) -> None:
        """Count a skipped step; stop with a one-line error after ``train.max_bad_steps`` in a row."""
        self.skipped_steps += 1
        self._bad_run.append((self.step, terms))
        what = f"non-finite loss ({', '.join(terms)})" if terms else "non-finite gradient"
        if self.skipped_steps <= 20:
            print(f"step {self.step}: {what}, step skipped (no update)", flush=True)
        if len(self._bad_run) > self.cfg.train.max_bad_steps:
            first, first_terms = self._bad_run[0]
            first_what = (f"a non-finite loss term ({', '.join(first_terms)})" if first_terms
                          else "a non-finite gradient (all loss terms finite)")
            raise SdfsegError(f"training diverged: from step {first} on, {len(self._bad_run)} steps in a row had "
                              f"{first_what}; stopped at step {self.step} (train.max_bad_steps="
                              f"{self.cfg.train.max_bad_steps}); no checkpoint or metrics were written from "
                              "them; lower train.lr / train.grid_lr or check the input data")

    def write_config(self) -> None:
        """The resolved config as ``RUN/config.yaml`` (atomic)."""
        write_text_atomic(self.run_dir / "config.yaml", dump_yaml(self.cfg))

    def run_steps(self, done: int, total: int, step: Callable[[], dict], label: str, tag: str, writer,
                  progress: bool = True, bar_fields: Optional[Callable[[dict], dict]] = None,
                  on_log: Optional[Callable[[int, dict], None]] = None,
                  after: Optional[Callable[[int], None]] = None) -> dict[str, float]:
        """The training loop of every stage: ``step()`` (one optimiser step, returns its scalar stats) until
        ``total`` steps are done (``done`` already), with a progress bar (``label``), and every
        ``train.log_every`` steps and at the end the stats in TensorBoard under ``tag/`` (``bar_fields``:
        what the bar shows of them; ``on_log(step, stats)``: more logging); ``after(step)`` runs after
        every step (checkpoints). Returns the last step's stats."""
        log_every = self.cfg.train.log_every
        stats: dict[str, float] = {}
        with Progress(total, label, progress, initial=done) as bar:
            while done < total:
                stats = step()
                done += 1
                if done % log_every != 0 and done != total:
                    bar.update(1)
                else:
                    bar.update(1, **(bar_fields(stats) if bar_fields else stats))
                    if on_log is not None:
                        on_log(done, stats)
                    for k, v in stats.items():
                        writer.add_scalar(f"{tag}/{k}", v, done)
                if after is not None:
                    after(done)
        return stats

    def fit(self, resume: bool = False, progress: bool = True) -> dict[str, float]:
        """Train until ``train.iterations``; checkpoints every ``train.checkpoint_every`` and at the end.

        With ``resume`` the checkpoint is loaded (and checked) before anything is written.
        ``progress``: a bar on a terminal; otherwise, and with ``progress=False``, a plain status
        line every 30 s (:class:`sdfseg.progress.Progress`).
        """
        from torch.utils.tensorboard import SummaryWriter

        if resume:
            self.load_checkpoint()
            print(f"resumed from {self.checkpoint_path} at step {self.step}")
        self.write_config()
        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step)
        t = self.cfg.train

        def on_log(step: int, stats: dict) -> None:
            self.check_weights()
            writer.add_scalar("train/beta", float(self.model.beta().detach()), step)
            writer.add_scalar("train/skipped_steps", self.skipped_steps, step)

        def after(step: int) -> None:
            if step % t.checkpoint_every == 0 and step < t.iterations:
                self.save_checkpoint()

        t0 = time.time()
        try:
            stats = self.run_steps(self.step, t.iterations, self.train_step, "train", "train", writer, progress,
                                   lambda s: dict(loss=s["total"], psnr=s["psnr"],
                                                  **({"skipped": self.skipped_steps} if self.skipped_steps else {})),
                                   on_log, after)
        finally:
            writer.close()
        self.save_checkpoint()
        stats["seconds"] = time.time() - t0
        return stats
