"""Reconstruction losses of the SDF backbone (MonoSDF / ObjectSDF++ style).

Pure functions returning 0-d tensors; loss weights are applied by the caller.
Empty selections (no valid pixel, no hit ray) give an exact 0 that still
belongs to the autograd graph of the prediction.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _masked_mean(values: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Mean of ``values [R, ...]`` over rows where ``mask [R]`` is True (0 if none)."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - mask.dim()))
    count = m.expand_as(values).sum()
    return (values * m).sum() / count.clamp_min(1.0)


def rgb_l1(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Mean absolute colour error over ``[R, 3]`` (optionally only rays in ``mask [R]``)."""
    return _masked_mean((pred - target).abs(), mask)


def eikonal(grad: Tensor, sdf: Optional[Tensor] = None) -> Tensor:
    """Eikonal loss ``mean (|grad| - 1)^2``.

    ``grad [P, K, 3]`` (all channels) or ``[P, 3]``. When ``sdf [P, K]`` is given the
    gradient of the min channel (the scene SDF) is included as one more term per
    point, as in ObjectSDF++ (mean over ``P * (K + 1)`` terms).
    """
    terms = (grad.norm(dim=-1) - 1.0) ** 2
    if sdf is not None:
        idx = sdf.argmin(dim=-1, keepdim=True)
        terms = torch.cat([terms, terms.gather(-1, idx)], dim=-1)
    return terms.mean()


def smoothness(grad: Tensor, grad_neighbour: Tensor, eps: float = 1e-5) -> Tensor:
    """Normal smoothness ``mean |n(x) - n(x + dx)|`` (UNISURF) from two gradient sets
    ``[P, 3]`` (or ``[P, K, 3]``), normalised with ``eps`` against zero gradients."""
    n1 = grad / (grad.norm(dim=-1, keepdim=True) + eps)
    n2 = grad_neighbour / (grad_neighbour.norm(dim=-1, keepdim=True) + eps)
    return (n1 - n2).norm(dim=-1).mean()


def depth_metric(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """L1 between rendered and sensor depth ``[R]`` on ``valid [R]`` rays (0 if none)."""
    return _masked_mean((pred - target).abs(), valid)


def scale_shift(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form least squares ``argmin_{s,t} sum_mask (s * pred + t - target)^2``.

    Works on ``[R]`` or batched ``[B, R]`` (one fit per row) -> ``scale, shift`` of
    shape ``[]`` or ``[B]``. Rows with a singular system (< 2 distinct valid
    predictions) get ``scale = 0, shift = 0``.
    """
    scale, shift, _ = _fit_scale_shift(pred, target, mask)
    return scale, shift


def _fit_scale_shift(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`scale_shift` plus a bool ``ok`` per row (system not singular)."""
    m = mask.to(pred.dtype)
    a00, a01, a11 = (m * pred * pred).sum(-1), (m * pred).sum(-1), m.sum(-1)
    b0, b1 = (m * pred * target).sum(-1), (m * target).sum(-1)
    det = a00 * a11 - a01 * a01
    ok = det.abs() > 1e-6 * (a00 * a11).abs().clamp_min(1e-30)
    safe = torch.where(ok, det, torch.ones_like(det))
    scale = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    shift = torch.where(ok, (a00 * b1 - a01 * b0) / safe, torch.zeros_like(det))
    return scale, shift, ok


def depth_scale_shift_invariant(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MonoSDF/MiDaS monocular depth loss: fit ``scale * pred + shift`` to ``target``
    in closed form (not detached), then ``sum_mask r^2 / (2 * |mask|)``.

    ``pred, target, mask``: ``[R]`` (one batch) or ``[B, R]`` (one fit per row);
    rows whose fit is singular are left out.
    """
    scale, shift, ok = _fit_scale_shift(pred, target, mask)
    aligned = scale[..., None] * pred + shift[..., None]
    m = mask.to(pred.dtype) * ok[..., None].to(pred.dtype)
    return ((aligned - target) ** 2 * m).sum() / (2.0 * m.sum()).clamp_min(1.0)


def world_to_camera_normals(normals: Tensor, c2w: Tensor) -> Tensor:
    """Rotate world-frame normals ``[R, 3]`` into the camera frame: ``R^T n``.

    ``c2w`` is ``[R, 4, 4]`` (per ray) or ``[1, 4, 4]`` / ``[4, 4]`` (one camera);
    only its rotation is used, so the camera axes are those of the poses
    (OpenCV in sdfseg scenes).
    """
    rot = c2w[..., :3, :3]
    if rot.dim() == 2:
        rot = rot[None]
    return torch.einsum("rji,rj->ri", rot.expand(normals.shape[0], 3, 3), normals)


def normal_loss(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Monocular normal losses ``(l1, cos)`` on ``[R, 3]`` normals in the same frame.

    Both are normalised first; ``l1 = mean sum_xyz |n - n_gt|``,
    ``cos = mean (1 - n . n_gt)``, over rays in ``mask [R]`` (rays that hit a
    surface) or all rays. Weights (0.05 each in the reference) are the caller's.
    """
    n = F.normalize(pred, dim=-1)
    g = F.normalize(target, dim=-1)
    l1 = _masked_mean((n - g).abs().sum(-1), mask)
    cos = _masked_mean(1.0 - (n * g).sum(-1), mask)
    return l1, cos


def surface_hit_mask(sdf_along_rays: Tensor) -> Tensor:
    """Rays whose scene SDF samples ``[R, S]`` change sign (the ray hits a surface) -> ``[R]`` bool."""
    return (sdf_along_rays > 0).any(dim=-1) & (sdf_along_rays < 0).any(dim=-1)


def truncated_sdf_loss(sdf: Tensor, t: Tensor, t_depth: Tensor, valid: Tensor, trunc: float) -> Tensor:
    """SDF supervision from sensor depth along rays (RGB-D neural SDF style).

    Args:
        sdf: ``[R, S]`` scene SDF at the ray samples. t: ``[R, S]`` sample distances.
        t_depth: ``[R]`` ray distance of the observed surface. valid: ``[R]`` rays with depth.
        trunc: half-width of the band around the surface.
    Within the band the SDF should equal the projective distance ``t_depth - t`` (L1);
    in front of the band (free space) it must be at least ``trunc`` (hinge). Rays without
    depth and samples behind the band are ignored. Returns the mean over counted samples.
    """
    diff = t_depth[:, None] - t
    v = valid[:, None].expand_as(t)
    band = v & (diff.abs() <= trunc)
    free = v & (diff > trunc)
    terms = torch.cat([(sdf - diff).abs()[band], torch.relu(trunc - sdf)[free]])
    return terms.mean() if terms.numel() else sdf.sum() * 0.0


def object_distinction_loss(sdf: Tensor) -> Tensor:
    """ObjectSDF++ regulariser on points ``sdf [P, K]``: mean over points of
    ``sum_{k != argmin} ReLU(-s_k - s_min.detach())`` (no point inside two objects)."""
    s_min, idx = sdf.min(dim=-1, keepdim=True)
    v = torch.relu(-sdf - s_min.detach())
    return (v.sum(dim=-1, keepdim=True) - v.gather(-1, idx)).mean()
