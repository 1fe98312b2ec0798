"""Unified-Lift's codebook terms (paper 001, eq. 1-8) on the rays of one frame.

Notation: ``F [R, D]`` rendered object features, ``codebook [L, D]`` object vectors, ``mask [R]`` the
index (0..J-1) of each ray's 2D mask in the frame. Similarity is the dot product (eq. 1).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F_
from scipy.optimize import linear_sum_assignment

from ...core.scatter import scatter_sum


def mask_centroids(features: torch.Tensor, mask: torch.Tensor, num_masks: int) -> torch.Tensor:
    """Mean feature ``[J, D]`` of each mask's rays."""
    counts = torch.bincount(mask, minlength=num_masks).clamp_min(1).to(features.dtype)
    return scatter_sum(features, mask, num_masks) / counts[:, None]


def area_aware_mapping(probs: torch.Tensor, mask: torch.Tensor, num_masks: int) -> torch.Tensor:
    """Eq. 5: the one-to-one map of the frame's masks to codes that maximises the UN-normalised sum of
    the association probabilities ``probs [R, L]`` over each mask's rays (a large mask outweighs a
    small one; eq. 3 would divide by the mask's area). Hungarian assignment (scipy's
    ``linear_sum_assignment``). Returns the code ``[J]`` of each mask (no gradient). Needs ``J <= L``."""
    sums = scatter_sum(probs.detach().double(), mask, num_masks).cpu().numpy()
    if sums.shape[0] > sums.shape[1]:
        raise ValueError(f"{sums.shape[0]} masks in one frame but only {sums.shape[1]} codes (codebook.size)")
    rows, cols = linear_sum_assignment(sums, maximize=True)
    codes = np.empty(num_masks, dtype=np.int64)
    codes[rows] = cols
    return torch.as_tensor(codes, device=mask.device)


def uncertainty(features: torch.Tensor, mask: torch.Tensor, num_masks: int) -> torch.Tensor:
    """Eq. 7: ``W_u = 1 - softmax_l(F_u . Fbar_l)[mask(u)]`` over the frame's mask centroids ``Fbar``:
    how little a ray's feature says it belongs to its own mask. ``[R]``, no gradient."""
    with torch.no_grad():
        c = mask_centroids(features, mask, num_masks)
        p = torch.softmax(features @ c.T, dim=-1)
        return 1.0 - p.gather(1, mask[:, None]).squeeze(1)


def contrastive_loss(features: torch.Tensor, mask: torch.Tensor, num_masks: int) -> torch.Tensor:
    """Eq. 1 (InfoNCE against the mask centroids): mean over rays of ``-log softmax_l(F_u . Fbar_l)[mask(u)]``."""
    c = mask_centroids(features, mask, num_masks)
    return F_.cross_entropy(features @ c.T, mask)


def association_terms(features: torch.Tensor, codebook: torch.Tensor, target: torch.Tensor, keep: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 and 6 over the rays ``keep``: cross-entropy of ``softmax(F_u . codebook)`` to the code
    ``target [R]``, and the L1 distance ``|| codebook[target] - F_u / ||F_u||_1 ||_1``, each averaged
    over the kept rays (0 when none is kept)."""
    if not bool(keep.any()):
        z = features.sum() * 0.0 + codebook.sum() * 0.0
        return z, z
    f, t = features[keep], target[keep]
    ce = F_.cross_entropy(f @ codebook.T, t)
    unit = f / f.abs().sum(dim=-1, keepdim=True).clamp_min(1e-8)
    concen = (codebook[t] - unit).abs().sum(dim=-1).mean()
    return ce, concen
