"""The ObjectSDF++ baselines (REFERENCE 1): each SDF channel is tied to one label id and trained with the
opacity loss on one-hot targets.

Instance mode: with GT labels (``train.oracle_labels``, the oracle row) the GT instance ids are the
channels; with noisy labels each frame's ids are numbered 1..n by size, as a 2D segmenter numbers them,
and used as channels, which is what lifting noisy labels directly gives. Semantic mode: channel c is
class c.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.label_maps import frame_ids
from ..data.rays import Batch
from ..errors import SdfsegError
from .base import Method, register
from .clustering import losses as cl


@register
class SupervisedMethod(Method):
    name = "supervised"
    description = "ObjectSDF++: channel k trained on label id k with the opacity loss"

    @property
    def semantic_mode(self) -> bool:
        return self.cfg.train.mode == "semantic"

    @property
    def view_mode(self) -> str:  # type: ignore[override]
        return "semantic" if self.semantic_mode else "instance"

    def num_channels(self, scene) -> int:
        return scene.classes.num_classes if self.semantic_mode else self.cfg.model.num_channels

    def semantic_classes(self, scene) -> int:
        return 0 if self.semantic_mode else scene.classes.num_classes

    def room_channels(self, k: int) -> int:
        return k if self.semantic_mode else 1

    def training_labels(self, scene, k):
        from ..training.labels import instance_training_labels, rank_frame_table, semantic_training_labels

        cfg = self.cfg
        if self.semantic_mode:
            return semantic_training_labels(scene, cfg)

        def table(frame):
            ids, new = (frame_ids(frame), None) if cfg.train.oracle_labels else rank_frame_table(frame)
            new = ids if new is None else new
            return ids, np.where(new >= k, 0, new)

        labels = instance_training_labels(scene, cfg, table)
        if cfg.train.oracle_labels:
            top = int(labels.labels.max())
            if top >= k:
                raise SdfsegError(f"model.num_channels={k} but GT instance ids go up to {top}")
        return labels

    def losses(self, model, out: dict, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        w = self.cfg.loss
        O = out["opacity"]
        main = batch.view == 0
        om, ym = O[main], batch.label[main]
        keep = ym > 0 if self.semantic_mode else ym >= 0
        onehot = F.one_hot(ym[keep].clamp(0, O.shape[1] - 1), O.shape[1]).float()
        return {"supervised": w.supervised * w.clustering * cl.supervised_opacity_loss(om[keep], onehot)}

    def channel_table(self, trainer):
        from .clustering.channels import assign_channel_classes
        from .outputs import semantic_channel_table

        if self.semantic_mode:
            return semantic_channel_table(trainer.scene.classes)
        return assign_channel_classes(trainer.model, trainer.sampler, trainer.scene.classes,
                                      chunk=self.cfg.render.chunk, seed=self.cfg.train.seed, merge_share=0.0)
