"""The training objective: the backbone's reconstruction terms and semantic head, then the segmentation
terms of the run's method (:mod:`sdfseg.methods`).

``Objective(cfg, ...)(model, out, batch, step)`` returns ``{name: weighted loss}``; the
weights are the config's (REFERENCE 1-2). The loss maths lives in
:mod:`sdfseg.core.losses` and in each method's own losses; this module only selects rays and combines terms.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..config import Config
from ..core import losses as recon
from ..core.fields.sdf import min_channel_grad
from ..data.rays import Batch
from ..data.scene import METRIC_DEPTH, ClassInfo
from ..methods import Method, create_method


def random_sphere_points(n: int, radius: float, device: torch.device, generator=None) -> torch.Tensor:
    """``[n, 3]`` points uniform in the ball of ``radius``."""
    d = torch.randn(n, 3, device=device, generator=generator)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    r = torch.rand(n, 1, device=device, generator=generator) ** (1.0 / 3.0)
    return d * r * radius


def semantic_class_weights(counts, balance: float) -> Optional[torch.Tensor]:
    """Cross-entropy weights of the semantic head's classes from their labelled pixel counts ``[C]``:
    ``f_c ** -balance`` for a class with fraction ``f_c`` of the pixels (0 for an absent class), scaled so
    that the pixel-weighted mean weight is 1. None when ``balance`` is 0 (unweighted)."""
    if balance == 0:
        return None
    counts = torch.as_tensor(counts, dtype=torch.float64)
    f = counts / counts.sum().clamp_min(1)
    w = torch.where(f > 0, f.clamp_min(1e-12) ** -balance, torch.zeros_like(f))
    return (w / (f * w).sum().clamp_min(1e-12)).float()


class Objective:
    def __init__(self, cfg: Config, depth_kind: str, classes: ClassInfo,
                 semantic_weights: Optional[torch.Tensor] = None, method: Optional[Method] = None):
        self.cfg = cfg
        self.method = create_method(cfg, classes) if method is None else method
        """The run's lifting method (:mod:`sdfseg.methods`): its terms follow the backbone's."""
        self.w = cfg.loss
        self.semantic_weights = semantic_weights
        """Class weights of the semantic head's cross-entropy (:func:`semantic_class_weights`) on the training
        device, or None."""
        self.depth_kind = depth_kind
        self.classes = classes
        # the geometry warm-up only delays methods whose channels are free (ClusteringSDF); channels tied
        # to fixed ids (semantic mode, the supervised baselines) get their losses from step 0
        self.segmentation_start = self.method.segmentation_start()

    def needs_normals(self, batch: Batch) -> bool:
        return self.cfg.model.color_use_normal or (batch.normal is not None and
                                                   (self.w.normal_l1 > 0 or self.w.normal_cos > 0))

    def __call__(self, model, out: dict, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        w = self.w
        losses["rgb"] = w.rgb * recon.rgb_l1(out["rgb"], batch.rgb)
        self._geometry(model, out, batch, step, losses)
        if batch.depth is not None and w.depth > 0:
            valid = batch.depth > 0
            z = out["depth"] / batch.ray_scale
            if self.depth_kind in METRIC_DEPTH:
                losses["depth"] = w.depth * recon.depth_metric(z, batch.depth, valid)
            else:
                losses["depth"] = w.depth * recon.depth_scale_shift_invariant(z, batch.depth, valid)
        if batch.depth is not None and self.depth_kind in METRIC_DEPTH and (w.opacity > 0 or w.surface_sdf > 0
                                                                        or w.sdf_band > 0):
            self._sensor_depth(model, out, batch, losses)
        if batch.normal is not None and "normal" in out and (w.normal_l1 > 0 or w.normal_cos > 0):
            n_cam = recon.world_to_camera_normals(out["normal"], batch.c2w)
            hit = out["acc"].detach() > 0.5
            l1, cos = recon.normal_loss(n_cam, batch.normal, hit)
            losses["normal"] = w.normal_l1 * l1 + w.normal_cos * cos
        if step >= self.segmentation_start:
            self._segmentation(out, batch, losses, model, step)
        return losses

    # ---- sensor-depth priors (metric depth only) --------------------------------------------------
    def _sensor_depth(self, model, out: dict, batch: Batch, losses: dict) -> None:
        """Rays with sensor depth end on a surface: opacity 1 (``|1 - acc|``) and a zero scene SDF at
        the observed surface point (``|s_min(o + t_d d)|``)."""
        w = self.w
        valid = batch.depth > 0
        if not valid.any():
            return
        if w.opacity > 0:
            losses["opacity"] = w.opacity * (1.0 - out["acc"][valid]).abs().mean()
        if w.surface_sdf > 0:
            t_d = batch.depth[valid] * batch.ray_scale[valid]
            x = batch.origins[valid] + t_d[:, None] * batch.dirs[valid]
            losses["surface_sdf"] = w.surface_sdf * model.sdf(x)[0].min(dim=-1).values.abs().mean()
        if w.sdf_band > 0:
            losses["sdf_band"] = w.sdf_band * recon.truncated_sdf_loss(
                out["sdf"].min(dim=-1).values, out["t"], batch.depth * batch.ray_scale, valid, w.sdf_trunc)

    # ---- geometry regularisers ------------------------------------------------------------------
    def _geometry(self, model, out: dict, batch: Batch, step: int, losses: dict) -> None:
        cfg, w = self.cfg, self.w
        n = cfg.train.eikonal_points
        dev = batch.origins.device
        surf = out["points"].detach().reshape(-1, 3)
        pick = torch.randint(0, surf.shape[0], (n,), device=dev)
        pts = torch.cat([random_sphere_points(n, 1.0, dev), surf[pick]])
        sdf, _, grad = model.sdf.sdf_and_grad(pts, mode=cfg.model.gradient, eps=cfg.model.fd_eps, create_graph=True,
                                              detach_rivals=True)
        losses["eikonal"] = w.eikonal * recon.eikonal(grad, sdf)
        if model.sdf.scene_offsets:  # the scene SDF is one output, not K regularised channels: its own full term
            losses["eikonal"] = losses["eikonal"] + w.eikonal * recon.eikonal(min_channel_grad(sdf, grad))
        if w.smooth > 0:
            near = surf[pick[: max(1, n // 4)]]
            g0 = _scene_grad(model, near)
            g1 = _scene_grad(model, near + 0.005 * torch.randn_like(near))
            losses["smooth"] = w.smooth * recon.smoothness(g0, g1)
        start = cfg.train.distinction_start * cfg.train.iterations
        if w.distinction > 0 and step >= start and sdf.shape[1] > 1:
            losses["distinction"] = w.distinction * recon.object_distinction_loss(sdf)

    # ---- segmentation --------------------------------------------------------------------------
    def _segmentation(self, out: dict, batch: Batch, losses: dict, model=None, step: int = 0) -> None:
        """The semantic head's cross-entropy, then the method's segmentation terms."""
        w = self.w
        if "semantic" in out and w.semantic_head > 0:
            sem = batch.semantic
            ok = sem > 0
            if ok.any():
                ce = F.cross_entropy(out["semantic"][ok], sem[ok], reduction="none")
                if self.semantic_weights is not None:
                    ce = ce * self.semantic_weights[sem[ok]]
                losses["semantic_head"] = w.semantic_head * (ce * batch.confidence[ok]).mean()
        losses.update(self.method.losses(model, out, batch, step))


def _scene_grad(model, x: torch.Tensor) -> torch.Tensor:
    """Gradient ``[P, 3]`` of the scene SDF (min over channels), differentiable."""
    x = x.detach().requires_grad_(True)
    s = model.sdf(x)[0].min(dim=-1).values
    return torch.autograd.grad(s, x, torch.ones_like(s), create_graph=True)[0]
