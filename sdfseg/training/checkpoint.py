"""Reading and checking checkpoints (``RUN/checkpoints/last.pt``): one reader for every tool.

A checkpoint is a dict written by :meth:`sdfseg.training.trainer.Trainer.save_checkpoint`::

    format        CHECKPOINT_FORMAT (absent in checkpoints written before formats were numbered: 1)
    step          optimiser steps taken
    model         the model's state dict, with its training schedule (``_extra_state``)
    optimizer     the optimiser's state dict
    num_channels  K SDF channels
    hash_backend  the hash grid the weights are laid out for (torch | tcnn | none)
    skipped_steps steps skipped because of a non-finite loss or gradient
    method_name   the lifting method (:mod:`sdfseg.methods`) that trained it (format 3)
    method        the method's own state (:meth:`sdfseg.methods.Method.state_dict`), when it has one
    sampler_rng, sampler_epoch, torch_rng, cuda_rng (CUDA runs), feature_rng, feature_loss_rng:
                  random streams, so a resumed run continues exactly as an uninterrupted one

It is read with ``torch.load(weights_only=True)``: only tensors and plain containers, so a
file from elsewhere cannot run code, and anything that is not such a checkpoint (random
bytes, a truncated file, another program's pickle) is a one-line error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import SdfsegError

CHECKPOINT_FORMAT = 3
"""2: the model's training schedule is in its state dict; the hash-grid backend is recorded.
3: the lifting method's name (``method_name``) and its own state (``method``, when it has one) are
recorded. Formats 1 and 2 load as they are: their runs were trained by the method their config names."""

EXTRA_STATE = "_extra_state"
"""State-dict key of :meth:`sdfseg.core.model.SceneModel.get_extra_state` (the training schedule)."""

_NUMPY_SCALARS = [getattr(np, "_core", getattr(np, "core", None)).multiarray.scalar, np.dtype,
                  type(np.dtype(np.int64))]
"""Numpy integers in the sampler's epoch list of format-1 checkpoints."""


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu", missing: str = "no checkpoint") -> dict:
    """The checkpoint at ``path`` as a dict (tensors on ``device``); one-line errors for a missing,
    unreadable or foreign file (``missing`` says what a missing file means to the caller)."""
    path = Path(path)
    if not path.is_file():
        raise SdfsegError(f"{path}: {missing}")
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALARS):
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler hits, the file is not a checkpoint
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise SdfsegError(f"{path}: not a readable sdfseg checkpoint ({type(exc).__name__}: {first})") from None
    keys = ("step", "model", "num_channels")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise SdfsegError(f"{path}: not an sdfseg checkpoint (expected a dict with {', '.join(keys)})")
    fmt = int(state.get("format", 1))
    if fmt > CHECKPOINT_FORMAT:
        raise SdfsegError(f"{path}: checkpoint format {fmt} is newer than this sdfseg reads ({CHECKPOINT_FORMAT}); "
                          "update sdfseg")
    return state


def model_state(state: dict, iterations: int) -> dict:
    """The checkpoint's model state dict, upgraded to :data:`CHECKPOINT_FORMAT`.

    Format 1 did not store the training schedule; an uninterrupted run ends with the progress of
    its last step, ``(step - 1) / iterations``, which is what the model gets.
    """
    sd = dict(state["model"])
    if EXTRA_STATE not in sd:
        step = int(state["step"])
        sd[EXTRA_STATE] = {"progress": max(0, step - 1) / max(1, iterations)}
    return sd


def check_model(state: dict, num_channels: Optional[int], backend: str, path: str | Path) -> None:
    """Refuse (one line) a checkpoint with another number of SDF channels (unless ``num_channels`` is
    None) or whose hash-grid weights are laid out for another backend."""
    k = int(state["num_channels"])
    if num_channels is not None and k != num_channels:
        raise SdfsegError(f"{path}: checkpoint has {k} SDF channels, the config gives {num_channels} "
                          "(model.num_channels)")
    saved: Optional[str] = state.get("hash_backend")
    if saved is not None and saved != backend:
        raise SdfsegError(f"{path}: the hash grid was trained with the '{saved}' backend, this model uses '{backend}' "
                          f"(model.encoding.backend); the two store their tables differently, so load the run "
                          f"where the '{saved}' backend is available")


def check_method(state: dict, name: str, path: str | Path) -> None:
    """Refuse (one line) a checkpoint trained by another method than ``name``."""
    saved = state.get("method_name")
    if saved is not None and saved != name:
        raise SdfsegError(f"{path}: checkpoint was trained with train.method '{saved}', the config gives '{name}'")


def load_model_weights(model: torch.nn.Module, state: dict, iterations: int, path: str | Path,
                       what: str = "this config") -> None:
    """Load the checkpoint ``state`` into ``model`` (strict); a mismatch is a one-line error."""
    try:
        model.load_state_dict(model_state(state, iterations))
    except (RuntimeError, KeyError) as exc:
        detail = " ".join(" ".join(str(exc).split("\n")[:2]).split())[:300]
        raise SdfsegError(f"{path}: checkpoint does not match {what} ({detail})") from None


def all_finite(tensors) -> bool:
    """True when every tensor of ``tensors`` is finite (one host sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True
