"""Unified-Lift on the SDF backbone (``train.method: codebook``; paper 001, REFERENCE 4).

The backbone is one scene SDF (a single channel: objects are not SDF channels here). A head gives every
point an object feature ``f(x)`` (D = ``codebook.dim``), rendered with the backbone's (detached) weights
into ``F_u``; a learnable codebook holds L = ``codebook.size`` object vectors, and ``P_u =
softmax_l(F_u . code_l)`` says which object a pixel shows. Each step, on the main frame's rays:

* the area-aware ID mapping assigns each 2D mask of the frame one code (Hungarian assignment on the
  un-normalised sums of ``P_u`` over the mask, eq. 5);
* cross-entropy to the matched code (eq. 4) and the concentration term (eq. 6) train codebook and
  feature, on the rays the noisy-label filter keeps (uncertainty ``W_u <= codebook.filter_tau``, eq. 7-8,
  after ``codebook.filter_start`` of training);
* the InfoNCE term against the masks' centroids (eq. 1) shapes the feature.

Inference is the argmax over the codebook, no clustering. Codes get classes by the same vote of the
noisy semantic labels as ClusteringSDF's channels. Meshes: each object code's part of the scene solid.
The scene SDF is sampled on a grid (``codebook.mesh_resolution``), the voxels near the surface are labelled
with their code, and every other voxel takes the code of the nearest labelled voxel (inside a sofa, the
sofa). Object k's mesh is then the zero level set of the scene SDF cut to k's voxels: watertight, and
the surfaces of two codes meet where their labels meet. The SDF channels cannot be given to the codes:
256 channels would cost 256 times the SDF's output layer at every sample, and the codes are only
known once the head has learnt them.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ...core.fields.feature_head import FeatureHead
from ...data.rays import Batch
from ...errors import SdfsegError
from ..base import Method, register
from ..common import remapped_instance_labels
from . import losses as cb

HEAD = "codes"
"""Name of the head (``SceneModel.heads``) and of its rendered output."""


class CodebookHead(nn.Module):
    """The per-point object feature and the codebook ``[L, D]``."""

    def __init__(self, geo_dim: int, c, backend: str = "auto") -> None:
        super().__init__()
        self.field = FeatureHead(geo_dim, dim=c.dim, hidden=c.hidden, layers=c.layers, num_freqs=c.num_freqs,
                                 detach_geometry=c.detach_geometry, grid_levels=c.grid_levels,
                                 log2_hashmap_size=c.grid_log2_hashmap_size, max_resolution=c.grid_max_resolution,
                                 backend=backend)
        self.codebook = nn.Parameter(torch.randn(c.size, c.dim) * 0.1)

    def forward(self, geo_feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.field(geo_feat, x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Association logits ``[R, L]`` (dot product with every code)."""
        return features @ self.codebook.T


@register
class CodebookMethod(Method):
    name = "codebook"
    description = "Unified-Lift: an object feature field and a learnt codebook of objects"
    render_keys = (HEAD,)

    def __init__(self, cfg, classes=None):
        super().__init__(cfg, classes)
        self.head: Optional[CodebookHead] = None

    # ---- the backbone ------------------------------------------------------------------------------
    def num_channels(self, scene) -> int:
        return 1

    def heads(self, scene) -> dict[str, nn.Module]:
        # built from its own seed, leaving the global random stream (and so the backbone) as other methods have it
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(self.cfg.train.seed + 2)
            self.head = CodebookHead(self.cfg.model.feature_dim, self.cfg.codebook, self.cfg.model.encoding.backend)
        return {HEAD: self.head}

    def _head(self, model) -> CodebookHead:
        return model.heads[HEAD]

    def param_groups(self, model) -> list[dict]:
        c, head = self.cfg.codebook, self._head(model)
        groups = [{"params": head.field.mlp_parameters() + [head.codebook], "lr": c.lr}]
        if head.field.grid_parameters():
            groups.append({"params": head.field.grid_parameters(), "lr": c.grid_lr})
        return groups

    # ---- training ------------------------------------------------------------------------------------
    def training_labels(self, scene, k):
        return remapped_instance_labels(scene, self.cfg)

    def segmentation_start(self) -> int:
        return self.cfg.train.segmentation_start

    def losses(self, model, out: dict, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        c = self.cfg.codebook
        head = self._head(model)
        sel = (batch.view == 0) & (batch.label >= 0)
        if not bool(sel.any()):
            return {}
        feats = out[HEAD][sel]
        labs, mask = torch.unique(batch.label[sel], return_inverse=True)
        j = labs.numel()
        if j > head.codebook.shape[0]:
            raise SdfsegError(f"codebook.size: a training frame has {j} masks, more than the {head.codebook.shape[0]} "
                              "codes; raise codebook.size")
        target = cb.area_aware_mapping(torch.softmax(head.logits(feats), dim=-1), mask, j)[mask]
        keep = torch.ones_like(mask, dtype=torch.bool)
        if c.filter_tau < 1 and step >= c.filter_start * self.cfg.train.iterations and j > 1:
            keep = cb.uncertainty(feats, mask, j) <= c.filter_tau
        ce, concen = cb.association_terms(feats, head.codebook, target, keep)
        losses = {"code_ce": c.class_weight * ce, "code_concentration": c.concentration * concen}
        if c.contrastive > 0 and j > 1:
            losses["code_contrastive"] = c.contrastive * cb.contrastive_loss(feats, mask, j)
        return losses

    # ---- the end of a run ------------------------------------------------------------------------------
    def num_slots(self, model) -> int:
        return self.cfg.codebook.size

    def owner(self, out: dict) -> torch.Tensor:
        return self.head.logits(out[HEAD]).argmax(dim=-1)

    def channel_table(self, trainer):
        from ..clustering.channels import assign_channel_classes

        return assign_channel_classes(trainer.model, trainer.sampler, trainer.scene.classes,
                                      chunk=self.cfg.render.chunk, seed=self.cfg.train.seed, owner=self.owner,
                                      keys=self.render_keys, num_slots=self.num_slots(trainer.model),
                                      background_slot=None)

    @torch.no_grad()
    def code_grid(self, model, resolution: int, chunk: int = 65536, deep_code: int = 0) -> tuple[torch.Tensor, float]:
        """Code ``[n, n, n]`` (indexed z, y, x) of every vertex of a grid over the bounding cube: near the
        surface the head's own argmax, elsewhere the nearest of those, deep inside the solid ``deep_code``
        (:func:`~sdfseg.export.mesh.label_solid`). Returns it with the cube's radius."""
        from ...core.model import BOUND_RADIUS
        from ...export.mesh import label_solid

        head = self._head(model)
        dev = next(model.parameters()).device
        return label_solid(model.scene_sdf, lambda p: head.logits(head(model.sdf(p)[1], p)).argmax(dim=-1),
                           resolution, BOUND_RADIUS, dev, chunk, deep_label=deep_code), BOUND_RADIUS

    def mesh_sdf(self, trainer, table):
        """Columns ``[P, L]`` whose owned regions are each code's part of the scene solid
        (:func:`~sdfseg.export.mesh.cut_solid` of :meth:`code_grid`; the solid deep under floors and behind
        walls goes to a background code)."""
        from ...export.mesh import cut_solid

        model = trainer.model
        bg = np.flatnonzero(~table.is_object)
        deep = int(bg[np.argmax(table.votes[bg])]) if bg.size and table.votes.size else 0  # the room's code
        label, radius = self.code_grid(model, self.cfg.codebook.mesh_resolution, deep_code=deep)
        return cut_solid(lambda p: model.channel_sdf(p)[0].min(dim=-1).values, label, radius, self.num_slots(model))
