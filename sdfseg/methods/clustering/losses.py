"""ClusteringSDF segmentation losses (paper eqs. 4-9) and ObjectSDF++ object losses.

Notation (REFERENCE section 2): ``O [R, K]`` rendered object opacities,
``P = softmax(O)`` over channels, ``y [R]`` one frame's 2D label per ray
(arbitrary integers; ids carry no meaning across views), ``mu [N, K]`` the
cluster centre (mean of ``P``) of each of the ``N`` labels in the batch.
Pure functions returning 0-d tensors; the caller applies the loss weights.
Empty selections give an exact 0 that stays connected to the graph.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.scatter import scatter_sum
from ...errors import SdfsegError


def _zero(like: Tensor) -> Tensor:
    """A 0-d zero attached to ``like``'s graph."""
    return like.sum() * 0.0


def _group_mean(values: Tensor, inverse: Tensor, n_groups: int, weight: Optional[Tensor] = None
                ) -> tuple[Tensor, Tensor]:
    """Mean of ``values [R, C]`` per group id ``inverse [R]`` -> ``([G, C], counts [G])`` (deterministic scatter);
    with ``weight [R]`` the weighted mean (counts stay ray counts)."""
    counts = torch.bincount(inverse, minlength=n_groups)
    if weight is None:
        sums = scatter_sum(values, inverse, n_groups)
        return sums / counts.clamp_min(1)[:, None].to(values.dtype), counts
    sums = scatter_sum(values * weight[:, None], inverse, n_groups)
    wsum = scatter_sum(weight[:, None], inverse, n_groups)
    return sums / wsum.clamp_min(1e-12), counts


def _mean(x: Tensor, weight: Optional[Tensor]) -> Tensor:
    """Mean of ``x [R]``, weighted by ``weight [R]`` when given."""
    return x.mean() if weight is None else (x * weight).sum() / weight.sum().clamp_min(1e-12)


def cluster_temperature(num_channels: int, temperature: Optional[float] = 1.0) -> float:
    """Temperature of ``P = softmax(O / T)``: ``temperature`` as given, or for ``None`` the one that makes a
    one-hot ``O`` over ``num_channels`` channels give the ``P`` it gives at 10 channels
    (``1 / T = max(1, 1 + ln((K - 1) / 9))``)."""
    if temperature is not None:
        if not temperature > 0:
            raise SdfsegError(f"loss.cluster_temperature: expected a positive number or null, got {temperature}")
        return float(temperature)
    return 1.0 / max(1.0, 1.0 + math.log(max(num_channels - 1, 1) / 9.0))


def cluster_probabilities(O: Tensor, temperature: float = 1.0) -> Tensor:
    """``P = softmax(O / T)`` over channels (REFERENCE 2 with ``T = 1``)."""
    return torch.softmax(O / temperature if temperature != 1.0 else O, dim=-1)


def cluster_centres(P: Tensor, y: Tensor, weight: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Cluster centre of every label: ``P [R, K], y [R] -> (mu [N, K], labels [N], counts [N])``.

    ``labels`` are the sorted unique values of ``y``; ``mu[n]`` is the mean of ``P``
    over the rays labelled ``labels[n]`` (weighted by ``weight [R]`` when given). One scatter
    (index_add), no loop over labels.
    """
    labels, inverse = torch.unique(y, sorted=True, return_inverse=True)
    mu, counts = _group_mean(P, inverse, labels.numel(), weight)
    return mu, labels, counts


def cluster_centres_per_view(P: Tensor, y: Tensor, view: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Centres of every (view, label) pair, for rays pooled from several views.

    ``P [R, K], y [R], view [R]`` -> ``(mu [M, K], labels [M], counts [M])``;
    ``labels`` holds the label of each pair (the view index is dropped).
    """
    pairs, inverse = torch.unique(torch.stack([view.long(), y.long()], dim=1), dim=0, return_inverse=True)
    mu, counts = _group_mean(P, inverse, pairs.shape[0])
    return mu, pairs[:, 1].to(y.dtype), counts


def cluster_confidence(conf: Tensor, y: Tensor, zero_value: float = 0.1) -> Tensor:
    """Mean per-pixel confidence of each label ``conf [R], y [R] -> [N]`` (order of
    :func:`cluster_centres`); zero confidences count as ``zero_value`` first."""
    c = torch.where(conf == 0, torch.full_like(conf, zero_value), conf)
    labels, inverse = torch.unique(y, sorted=True, return_inverse=True)
    return _group_mean(c[:, None], inverse, labels.numel())[0][:, 0]


def pairwise_distance_sum(mu: Tensor) -> Tensor:
    """``sum_{i<j} ||mu_i - mu_j||_2`` over the rows of ``mu [N, K]`` (0-d)."""
    i, j = torch.triu_indices(mu.shape[0], mu.shape[0], offset=1, device=mu.device)
    return torch.linalg.vector_norm(mu[i] - mu[j], dim=-1).sum()


def differentiation_loss(mu: Tensor) -> Tensor:
    """Eq. 4: ``-(1 / (N (N - 1))) * sum_{i<j} ||mu_i - mu_j||_2``; 0 when ``N < 2``.

    Normalisation exactly as written in the paper (and its code): the sum runs
    over unordered pairs but is divided by ``N (N - 1)``, i.e. it is half the mean
    pairwise distance; two centres on two simplex vertices give ``-sqrt(2) / 2``.
    """
    n = mu.shape[0]
    if n < 2:
        return _zero(mu)
    return -pairwise_distance_sum(mu) / (n * (n - 1))


def onehot_loss(O: Tensor, fg_mask: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """Eq. 5 as in the reference code: MSE between the raw opacities ``O [R, K]`` and
    ``onehot(argmax softmax(O))`` averaged over the ``K`` channels of the foreground
    rays ``fg_mask [R]`` (rays weighted by ``weight [R]`` when given); 0 without foreground rays."""
    o = O[fg_mask]
    if o.shape[0] == 0:
        return _zero(O)
    target = F.one_hot(o.argmax(dim=-1), num_classes=O.shape[1]).to(o.dtype)
    if weight is None:
        return F.mse_loss(o, target)
    return _mean(((o - target) ** 2).mean(dim=-1), weight[fg_mask])


def regularisation_loss(P: Tensor, y: Tensor, bg_label: Optional[int] = 0) -> Tensor:
    """Eq. 6 / appendix A.2.2: mean over labels ``l != bg_label`` of the mean, over the
    rays of ``l``, of ``Var(p) = (1/K) sum_k (p_k - 1/K)^2`` (variance of the softmax
    vector across channels; 0 for a uniform ``p``). ``bg_label=None`` keeps all labels.
    (The reference code uses the unbiased variance, a factor ``K / (K - 1)``.)
    """
    var = P.var(dim=-1, correction=0)  # [R]
    labels, inverse = torch.unique(y, sorted=True, return_inverse=True)
    per_label, _ = _group_mean(var[:, None], inverse, labels.numel())
    keep = torch.ones_like(labels, dtype=torch.bool) if bg_label is None else labels != bg_label
    if not bool(keep.any()):
        return _zero(P)
    return per_label[keep, 0].mean()


def fg_bg_loss(O: Tensor, y: Tensor, bg_label: int = 0, weight: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Eq. 7 terms ``(bg, fg)``: ``mean |O_0 - 1|`` over background rays (``y == bg_label``)
    and ``mean |O_0|`` over the other rays (each 0 when empty; means weighted by ``weight [R]`` when
    given). Weights 0.2 / 0.1 are the caller's."""
    bg = y == bg_label
    o0 = O[:, 0]
    wb, wf = (None, None) if weight is None else (weight[bg], weight[~bg])
    bg_term = _mean((o0[bg] - 1.0).abs(), wb) if bool(bg.any()) else _zero(O)
    fg_term = _mean(o0[~bg].abs(), wf) if bool((~bg).any()) else _zero(O)
    return bg_term, fg_term


def fg_bg_sdf_loss(sdf: Tensor, w: Tensor, y: Tensor, margin: float, bg_label: int = 0) -> tuple[Tensor, Tensor]:
    """Eq. 7 in SDF space, terms ``(bg, fg)``: on background rays the background channel must be the
    closest surface by ``margin`` (``relu(s_0 - min_{k>0} s_k + margin)``), on the other rays some
    object channel must (``relu(min_{k>0} s_k - s_0 + margin)``); per sample, weighted by the render
    weights ``w [R, S]`` (detached), summed along each ray, mean over rays (0 when empty).

    ``sdf [R, S, K]``. Unlike ``|O_0 - 1|`` through a cold ownership softmax, the hinge never saturates:
    an object the background channel has absorbed still pulls the nearest object channel onto it.
    """
    gap = sdf[..., 1:].min(dim=-1).values - sdf[..., 0]  # > 0: the background channel is closer
    w = w.detach()
    bg = y == bg_label
    bg_term = (w[bg] * F.relu(margin - gap[bg])).sum(-1).mean() if bool(bg.any()) else _zero(sdf)
    fg_term = (w[~bg] * F.relu(gap[~bg] + margin)).sum(-1).mean() if bool((~bg).any()) else _zero(sdf)
    return bg_term, fg_term


def semantic_loss(mu: Tensor, labels: Tensor, conf: Optional[Tensor] = None, ignore_label: int = 0) -> Tensor:
    """Eq. 8: mean over labels ``l != ignore_label`` of ``conf_l * ||mu_l - onehot(l)||_2``.

    ``mu [N, K]`` centres of semantic labels ``labels [N]`` (class id = channel),
    ``conf [N]`` per-label confidence (1 when None). Raises if a class id >= K.
    """
    k = mu.shape[1]
    if labels.numel() and int(labels.max()) >= k:
        raise SdfsegError(
            f"semantic labels go up to {int(labels.max())} but the model has {k} channels; "
            "set model.num_channels to at least the number of semantic classes"
        )
    keep = labels != ignore_label
    if not bool(keep.any()):
        return _zero(mu)
    target = F.one_hot(labels[keep].long(), num_classes=k).to(mu.dtype)
    dist = torch.linalg.vector_norm(mu[keep] - target, dim=-1)
    if conf is not None:
        dist = dist * conf[keep]
    return dist.mean()


def cross_view_loss(mu_a: Tensor, sem_a: Tensor, mu_b: Tensor, sem_b: Tensor, reduction: str = "sum") -> Tensor:
    """Eq. 9: ``exp(-sum ||mu_a_i - mu_b_j||_2)`` over centre pairs with DIFFERENT semantic labels.

    ``mu_a [Na, K]``/``sem_a [Na]``: centres of the current view's semantic labels;
    ``mu_b [Nb, K]``/``sem_b [Nb]``: those of the extra views, pooled (the paper's
    sum over views). The paper does not normalise the sum (``reduction="sum"``);
    ``"mean"`` uses the mean pair distance instead. 1 when no pair qualifies.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError("reduction must be 'sum' or 'mean'")
    dist = torch.linalg.vector_norm(mu_a[:, None, :] - mu_b[None, :, :], dim=-1)  # [Na, Nb]
    differ = (sem_a[:, None] != sem_b[None, :]).to(dist.dtype)
    total = (dist * differ).sum()
    if reduction == "mean":
        total = total / differ.sum().clamp_min(1.0)
    return torch.exp(-total)


def supervised_opacity_loss(O: Tensor, target: Tensor, kind: str = "bce") -> Tensor:
    """ObjectSDF++ oracle loss between ``O [R, K]`` and GT one-hot opacities.

    ``target`` is ``[R, K]`` (one-hot / soft) or integer channel ids ``[R]``.
    ``kind="bce"``: binary cross-entropy with ``O`` clamped to ``[1e-4, 1 - 1e-4]``;
    ``"l1"``: mean ``|O - target|`` (paper eq. 2). Both average over ``R * K``.
    """
    if target.dim() == 1:
        target = F.one_hot(target.long(), num_classes=O.shape[1])
    target = target.to(O.dtype)
    if kind == "bce":
        return F.binary_cross_entropy(O.clamp(1e-4, 1.0 - 1e-4), target)
    if kind == "l1":
        return (O - target).abs().mean()
    raise SdfsegError(f"supervised opacity loss kind: expected 'bce' or 'l1', got '{kind}'")
