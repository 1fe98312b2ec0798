"""The hierarchical feature head (OmniSeg3D, ultrametric feature fields; REFERENCE 3) as an add-on to any
method: per step, the rays of one frame's mask-hierarchy patches are rendered through the feature head and
scored by the contrastive or ultrametric loss (:mod:`sdfseg.methods.hierarchy.supervision`)."""

from __future__ import annotations

import torch

from ...data.rays import Batch
from ..base import Addon


class HierarchicalFeatures(Addon):
    name = "features"

    def __init__(self, cfg, scene, sampler, progress: bool = True):
        from .supervision import FeatureLoss, FeatureSupervision

        self.cfg = cfg
        self.depth_kind = scene.depth_kind
        self.loss = FeatureLoss(cfg.features, cfg.train.seed)
        self.sup = FeatureSupervision(scene, cfg.features, sampler, cfg.train.seed, progress=progress)

    def param_groups(self, model) -> list[dict]:
        f = self.cfg.features
        groups = [{"params": model.feature_parameters(), "lr": f.lr}]
        if model.feature_grid_parameters():
            groups.append({"params": model.feature_grid_parameters(), "lr": f.grid_lr})
        return groups

    def terms(self, model, batch: Batch, fh) -> dict[str, torch.Tensor]:
        """Render the feature rays ``batch`` (one frame, patch ids set) and score them against its hierarchy."""
        from .supervision import feature_depth_t

        depth_t = feature_depth_t(batch, self.cfg.sampler.use_depth, self.depth_kind)
        out = model.render_features(batch.origins, batch.dirs, depth_t)
        return self.loss(out["features"], batch, fh)

    def losses(self, model, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        if step < self.cfg.features.start:
            return {}
        fbatch = self.sup.sample(int(batch.frame[0]))
        return self.terms(model, fbatch, self.sup.hierarchy(int(fbatch.frame[0])))

    def state_dict(self) -> dict:
        return {"feature_rng": self.sup.rng.bit_generator.state, "feature_loss_rng": self.loss.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if "feature_rng" in state:
            self.sup.rng.bit_generator.state = state["feature_rng"]
            self.loss.rng.bit_generator.state = state["feature_loss_rng"]
