"""Pieces the channel-based methods share: the cluster temperature and per-label statistics of a batch."""

from __future__ import annotations

import torch

from ..core.scatter import scatter_sum
from .clustering import losses as cl


def majority(values: torch.Tensor, groups: torch.Tensor, num_groups: int, num_values: int) -> torch.Tensor:
    """Most frequent value per group. values, groups ``[R]`` (groups in 0..G-1) -> ``[G]``."""
    hist = torch.zeros(num_groups * num_values, device=values.device)
    hist.index_add_(0, groups * num_values + values.clamp(0, num_values - 1), torch.ones_like(values, dtype=hist.dtype))
    return hist.view(num_groups, num_values).argmax(dim=1)


def label_semantics(y: torch.Tensor, sem: torch.Tensor, labs: torch.Tensor, nsem: int) -> torch.Tensor:
    """Majority semantic class ``[N]`` of each label in ``labs`` (rays ``y``, ``sem`` ``[R]``)."""
    idx = torch.searchsorted(labs, y)
    return majority(sem, idx, labs.numel(), nsem)


def mean_per_label(values: torch.Tensor, y: torch.Tensor, labs: torch.Tensor) -> torch.Tensor:
    idx = torch.searchsorted(labs, y)
    s = scatter_sum(values, idx, labs.numel())
    n = torch.zeros(labs.numel(), device=values.device).index_add_(0, idx, torch.ones_like(values))
    return s / n.clamp_min(1)


def remapped_instance_labels(scene, cfg):
    """The label source's instance ids with each frame's ids remapped to random distinct integers (seed
    ``train.seed + 17``; REFERENCE 2): per-frame ids that mean nothing across frames."""
    import numpy as np

    from ..data.rays import remap_frame_table
    from ..training.labels import instance_training_labels

    rng = np.random.default_rng(cfg.train.seed + 17)
    return instance_training_labels(scene, cfg, lambda frame: remap_frame_table(frame, rng))


def temperature(cfg, num_channels: int) -> float:
    return cl.cluster_temperature(num_channels, cfg.loss.cluster_temperature)
