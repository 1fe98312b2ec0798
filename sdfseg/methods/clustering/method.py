"""ClusteringSDF (REFERENCE 2): SDF channels as free clusters of the per-frame instance masks.

Each frame's instance ids are remapped to random integers at load (nothing ties an id to a channel);
the clustering losses (differentiation, one-hot, regularisation, foreground/background) make each 2D
mask's rays agree on one channel and different masks on different ones, and the cross-view term ties
the clusters of the main view to those of extra views of the same batch. After training, channels get
classes by a vote of the noisy semantic labels they own, fragments of one object are merged, and a
multi-view vote of the 2D masks decides which channel owns each piece of surface.
"""

from __future__ import annotations

from typing import Optional

import torch

from ...data.rays import Batch
from ..base import Method, register
from ..common import label_semantics, remapped_instance_labels, temperature
from . import losses as cl


@register
class ClusteringMethod(Method):
    name = "clustering"
    description = "ClusteringSDF: SDF channels as free clusters of the per-frame instance masks"
    free_channels = True

    # ---- training -------------------------------------------------------------------------------------
    def training_labels(self, scene, k):
        from ...training.labels import instance_training_labels

        if not self.cfg.train.remap_ids:
            return instance_training_labels(scene, self.cfg, None)
        return remapped_instance_labels(scene, self.cfg)

    def extra_views(self) -> bool:
        return self.cfg.loss.cross_view > 0

    def segmentation_start(self) -> int:
        return self.cfg.train.segmentation_start

    def losses(self, model, out: dict, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        w = self.cfg.loss
        c = w.clustering
        O = out["opacity"]
        main = batch.view == 0
        y = batch.label
        seg = main & (y >= 0)  # label -1: not supervised (outside the room, uncovered frames)
        om, ym = O[seg], y[seg]
        losses: dict[str, torch.Tensor] = {}
        if ym.numel() == 0:
            return losses
        cw = self.ray_weights(batch.confidence[seg])
        P = cl.cluster_probabilities(om, temperature(self.cfg, O.shape[1]))
        mu, labs, counts = cl.cluster_centres(P, ym, cw)
        losses["diff"] = c * w.diff * cl.differentiation_loss(mu)
        losses["onehot"] = c * w.onehot * cl.onehot_loss(om, ym != 0, cw)
        losses["reg"] = c * w.reg * cl.regularisation_loss(P, ym)
        bg, fg = cl.fg_bg_loss(om, ym, weight=cw)
        losses["fgbg"] = c * (w.bg * bg + w.fg * fg)
        if w.fgbg_sdf > 0:
            bg, fg = cl.fg_bg_sdf_loss(out["sdf"][seg], out["weights"][seg], ym, w.fgbg_margin)
            losses["fgbg_sdf"] = c * w.fgbg_sdf * (w.bg * bg + w.fg * fg)
        if w.cross_view > 0 and (batch.view > 0).any():
            losses["cross_view"] = c * w.cross_view * self.cross_view(O, batch, seg, mu, labs)
        return losses

    def ray_weights(self, confidence: torch.Tensor) -> Optional[torch.Tensor]:
        """Weights of labelled rays in the clustering terms: the labels' confidence (low at mask edges and on
        wrong segments, at least 0.05) with ``loss.cluster_confidence``, else None (equal weights)."""
        return confidence.clamp_min(0.05) if self.cfg.loss.cluster_confidence else None

    def cross_view(self, O: torch.Tensor, batch: Batch, seg: torch.Tensor, mu: torch.Tensor, labs: torch.Tensor
                   ) -> torch.Tensor:
        """Eq. 9 between the main view's clusters (rays ``seg``) and each extra view's clusters (thing labels only)."""
        nsem = self.classes.num_classes
        T = temperature(self.cfg, O.shape[1])
        sem_main = label_semantics(batch.label[seg], batch.semantic[seg], labs, nsem)
        terms = []
        for v in torch.unique(batch.view[batch.view > 0]):
            sel = batch.view == v
            yv = batch.label[sel]
            fg = yv > 0
            if not fg.any():
                continue
            mu_v, labs_v, _ = cl.cluster_centres(cl.cluster_probabilities(O[sel][fg], T), yv[fg],
                                                 self.ray_weights(batch.confidence[sel][fg]))
            sem_v = label_semantics(yv[fg], batch.semantic[sel][fg], labs_v, nsem)
            keep = labs != 0
            terms.append(cl.cross_view_loss(mu[keep], sem_main[keep], mu_v, sem_v))
        return torch.stack(terms).mean() if terms else O.sum() * 0.0

    # ---- the end of a run ----------------------------------------------------------------------------
    def channel_table(self, trainer):
        from .channels import assign_channel_classes

        cfg = self.cfg
        return assign_channel_classes(trainer.model, trainer.sampler, trainer.scene.classes, chunk=cfg.render.chunk,
                                      seed=cfg.train.seed, merge_share=cfg.render.merge_share,
                                      mask_share=cfg.render.object_mask_share,
                                      merge_same_class=cfg.render.merge_same_class)

    def ownership(self, trainer, table):
        """The multi-view ownership vote (``render.vote_grid`` > 0; else None), then the split step
        (``render.split_grid`` > 0), the table with the objects left without surface made background, and
        the join step (``render.join_fit`` > 0: two instances of a class that together are one's size)."""
        from ...core.ownership import follow_ownership
        from .channels import drop_vanished_objects, ownership_vote

        r = self.cfg.render
        if r.vote_grid <= 0:
            return None, table
        grid = ownership_vote(trainer.model, trainer.sampler, table, r.vote_rays, r.vote_grid, chunk=r.chunk,
                              seed=self.cfg.train.seed, object_share=r.vote_object_share, kernel=r.vote_kernel,
                              use_confidence=r.vote_confidence, min_island=r.vote_min_island,
                              max_gap=float("inf") if r.vote_max_gap is None else r.vote_max_gap)
        grid.refine = r.vote_refine
        follow_ownership(trainer.model, table.instance, grid)
        if r.split_grid > 0:
            from .split import class_depth_tolerance, split_objects

            table, grid, cut = split_objects(trainer.model, trainer.sampler, table, grid, r.split_grid, r.vote_rays,
                                             chunk=r.chunk, seed=self.cfg.train.seed, link=r.split_link,
                                             thing_ids=self.classes.thing_ids, bisect=r.split_bisect,
                                             min_share=r.split_min_share, max_valley=r.split_valley,
                                             valley_link=r.split_valley_link, join_touching=r.split_join_touching,
                                             by_class=r.split_class, class_min_share=r.split_class_min_share,
                                             class_depth=class_depth_tolerance(r.split_class_depth, trainer.scene))
            for c in cut:
                print(f"split step: object {c.instance} -> {c.groups} ({'/'.join(map(str, c.rays))} rays, "
                      f"largest mask link between them {c.max_link:.2f})")
            follow_ownership(trainer.model, table.instance, grid)
        table = drop_vanished_objects(trainer.model, trainer.sampler, table, chunk=r.chunk, seed=self.cfg.train.seed)
        if r.join_fit > 0:
            from .join import join_objects

            follow_ownership(trainer.model, table.instance, grid)
            table, grid, joins = join_objects(trainer.model, trainer.sampler, table, grid, r.join_fit, r.vote_rays,
                                              chunk=r.chunk, seed=self.cfg.train.seed)
            for gone, keep in sorted(joins.items()):
                print(f"join step: object {gone} joins object {keep} (together the size of one "
                      f"{self.classes.name(int(table.classes[keep]))})")
        return grid, table
