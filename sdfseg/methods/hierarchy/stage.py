"""Head-only stage: train the hierarchical feature head of a trained run on its frozen backbone.

OmniSeg3D trains its feature field after the geometry. Here the same happens on an sdfseg
run: the backbone (SDF channels, colour, semantic head) of ``SOURCE/checkpoints/last.pt``
is loaded and frozen, a fresh feature head is trained for ``features.head_iterations``
steps with the run's feature losses, and a new run directory gets the whole model. It
answers ``tools/query.py`` and ``tools/eval_hierarchy.py`` like a jointly trained run.

Uses: add a feature head to a finished ClusteringSDF run without retraining it, and
compare head losses (``features.loss.decay``, ``features.loss.kind``) on one geometry.
A head-only step does not backpropagate through the backbone, so it is several times
faster than a joint step. ``tools/train_features.py`` is the command line.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.tensorboard import SummaryWriter

from ...config import Config
from ...errors import SdfsegError
from ...io import atomic_path
from ...training.checkpoint import check_model, model_state, read_checkpoint
from ...training.rundir import RunLock, prepare_fresh_run, read_run_config
from ...training.trainer import Trainer, set_decayed_lr

FEATURE_PREFIX = "features."
"""State-dict prefix of the feature head inside :class:`sdfseg.core.model.SceneModel`."""

COPIED = ("channels.json", "ownership.npz")
"""Files of the source run that describe its (unchanged) backbone and travel to the new run."""


def load_backbone(trainer: Trainer, ckpt: Path) -> int:
    """Load every non-feature weight of ``ckpt`` (and the backbone's end-of-training schedule) into
    ``trainer.model``; returns the checkpoint's step."""
    state = read_checkpoint(ckpt, trainer.device, missing="no checkpoint (the source run has not trained yet)")
    check_model(state, trainer.k, trainer.model.hash_backend, ckpt)
    backbone = {n: v for n, v in model_state(state, trainer.cfg.train.iterations).items()
                if not n.startswith(FEATURE_PREFIX)}
    try:
        missing, unexpected = trainer.model.load_state_dict(backbone, strict=False)
    except RuntimeError as exc:
        raise SdfsegError(f"{ckpt}: backbone does not match the config ({str(exc).splitlines()[0]})") from None
    bad = [n for n in missing if not n.startswith(FEATURE_PREFIX)] + list(unexpected)
    if bad:
        raise SdfsegError(f"{ckpt}: backbone does not match the config (key '{bad[0]}')")
    return int(state["step"])


def train_feature_head(source: str | Path, out: str | Path, overrides: Optional[list[str]] = None,
                       progress: bool = True, overwrite: bool = False) -> dict[str, float]:
    """Train a fresh feature head on the frozen backbone of run ``source``; write run ``out``.

    The config is ``source``'s, with ``features.enabled=true``, ``run.dir=out`` and ``overrides``
    (``KEY=VALUE``, e.g. ``features.loss.decay=0``). ``out`` is locked while it is written, and a
    run already there is replaced only with ``overwrite``. Returns the last losses and the seconds taken.
    """
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise SdfsegError(f"{out}: the head-only stage writes a new run directory; give one other than the source")
    cfg = read_run_config(source, ["features.enabled=true"] + list(overrides or []) + [f"run.dir={out}"])
    f = cfg.features
    if not f.detach_geometry:
        raise SdfsegError("features.detach_geometry: must be true for a head-only stage (the backbone is frozen)")
    with RunLock(out, "tools/train_features.py"):
        prepare_fresh_run(out, overwrite, key="OUT")
        return _train_head(cfg, source, progress)


def _train_head(cfg: Config, source: Path, progress: bool) -> dict[str, float]:
    f, out = cfg.features, Path(cfg.run.dir)
    trainer = Trainer(cfg, progress=progress)
    model, features = trainer.model, trainer.addon("features")
    sup = features.sup
    step = load_backbone(trainer, source / "checkpoints" / "last.pt")
    for p in model.parameters():
        p.requires_grad_(False)
    head = [model.feature_parameters(), model.feature_grid_parameters()]
    for p in head[0] + head[1]:
        p.requires_grad_(True)
    groups = [{"params": ps, "lr": lr, "base_lr": lr} for ps, lr in zip(head, (f.lr, f.grid_lr)) if ps]
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)

    trainer.write_config()
    writer = SummaryWriter(str(out / "tb"))
    total = f.head_iterations
    done = [0]

    def head_step() -> dict[str, float]:
        set_decayed_lr(opt, done[0], total, cfg.train.lr_final_ratio)
        model.train()
        frame = sup.random_frame()
        losses = features.terms(model, sup.sample(frame), sup.hierarchy(frame))
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done[0] += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    t0 = time.time()
    try:
        stats = trainer.run_steps(0, total, head_step, "feature head", "features", writer, progress)
    finally:
        writer.close()
    trainer.step = step
    trainer.save_checkpoint()
    for name in COPIED:
        if (source / name).exists():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(source / name, tmp)
        else:
            (out / name).unlink(missing_ok=True)
    stats["seconds"] = time.time() - t0
    return stats
