"""Semantic mode (REFERENCE 2): one SDF channel per class, the clustering losses on the semantic labels plus
the semantic term that ties each label's cluster to its class's channel. Thing classes form one instance
per class."""

from __future__ import annotations

import torch

from ..data.rays import Batch
from .base import Method, register
from .clustering import losses as cl
from .common import mean_per_label, temperature


@register
class SemanticMethod(Method):
    name = "semantic"
    description = "ClusteringSDF in semantic mode: one SDF channel per class"
    view_mode = "semantic"

    def num_channels(self, scene) -> int:
        return scene.classes.num_classes

    def semantic_classes(self, scene) -> int:
        return 0

    def room_channels(self, k: int) -> int:
        return k

    def training_labels(self, scene, k):
        from ..training.labels import semantic_training_labels

        return semantic_training_labels(scene, self.cfg)

    def losses(self, model, out: dict, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        w = self.cfg.loss
        c = w.clustering
        O = out["opacity"]
        y = batch.label
        keep = (batch.view == 0) & (y > 0)
        om, ym = O[keep], y[keep]
        if ym.numel() == 0:
            return {}
        P = cl.cluster_probabilities(om, temperature(self.cfg, O.shape[1]))
        mu, labs, counts = cl.cluster_centres(P, ym)
        conf = mean_per_label(batch.confidence[keep], ym, labs)
        return {"diff": c * w.diff * cl.differentiation_loss(mu),
                "onehot": c * w.onehot * cl.onehot_loss(om, torch.ones_like(ym, dtype=torch.bool)),
                "reg": c * w.reg * cl.regularisation_loss(P, ym),
                "semantic": c * w.semantic * cl.semantic_loss(mu, labs, conf)}

    def channel_table(self, trainer):
        from .outputs import semantic_channel_table

        return semantic_channel_table(trainer.scene.classes)
