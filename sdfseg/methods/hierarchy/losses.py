"""Losses of the hierarchical feature head: OmniSeg3D contrastive and ultrametric variants.

Rendered features ``f`` [R, D] of R rays of ONE image are supervised with that image's
multi-granular masks, represented by patch ids and a patch correlation matrix
(:mod:`sdfseg.data.hierarchy`) or by pixel pairs from the mask inclusion tree.

OmniSeg3D (eqs. 3-6). Clusters = rays sharing a patch; prototype ``mu_k`` = mean
feature of cluster k; temperature ``phi_k = sum ||f - mu_k|| / (n_k log(n_k + 10))``,
scaled by 10, clipped to [0.1, 1] and detached (the reference implementation's
choice). ``L(r, s) = -log softmax_k(f_r . mu_k / phi_k)[s]``. For the anchor patch a of
ray r, level d (0-based) holds the batch patches whose correlation with a equals the
d-th largest distinct non-zero value of ``C[a, :]`` (level 0 contains a itself). The
ordering constraint replaces ``L(r, s)`` at level d by ``max(L(r, s), Lmax(r, d-1))``
where ``Lmax`` is the running maximum of these ordered losses over the finer levels,
so every loss at a coarser level is at least the largest loss at the finer level.
``L_H = sum_r sum_d lambda^d sum_{s in S_d} Lord(r, s) / (N * L)`` with N rays and L
levels (eq. 4, lambda = 0.5). Vectorised over rays, patches and levels.

Ultrametric feature fields. Pair distance = ``1 - cos(f_i, f_j)`` (so the click score
``(cos + 1) / 2`` of :mod:`sdfseg.methods.hierarchy.query` is ``1 - d / 2``). The ultrametric distance of
a pair is the largest edge on the minimax path of a kNN graph over the sampled pixels
(k = 10 in image space), i.e. the merge height in the binary partition tree obtained by
Kruskal's algorithm on the minimum spanning tree; gradients reach the features through
the distance of that one edge. Loss per matched (positive, negative) pair: the two-way
cross-entropy ``-log(e^{-d_p/tau} / (e^{-d_p/tau} + e^{-d_n/tau})) = softplus((d_p - d_n)/tau)``
with tau = 0.1, on ultrametric distances plus 1.0 x on direct (Euclidean-space) distances.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

from ...core.scatter import scatter_sum

OMNISEG_WEIGHT = 5e-4
"""Paper weight of the hierarchical contrastive loss."""
NORM_WEIGHT = 5e2
"""Paper weight of the norm loss."""


def norm_loss(features: torch.Tensor) -> torch.Tensor:
    """Mean ``(||f|| - 1)^2`` over rays; ``features`` [R, D] -> scalar."""
    return ((features.norm(dim=-1) - 1.0) ** 2).mean()


# ---------------------------------------------------------------- OmniSeg3D contrastive


class HierarchicalTerms(NamedTuple):
    """Outputs of :func:`hierarchical_contrastive_terms` (N = rays used, L = levels)."""

    loss: torch.Tensor
    """Scalar eq. 4."""
    level_loss: torch.Tensor
    """[N, L] per-ray sum (or mean) over the patches of each level of the ordered losses, before decay."""
    level_min: torch.Tensor
    """[N, L] smallest ordered loss of each level (+inf where the anchor has no such level)."""
    level_max: torch.Tensor
    """[N, L] largest ordered loss of each level (-inf where the anchor has no such level)."""
    rays: torch.Tensor
    """int64 [N] index of each used ray in the input batch."""


def _clusters(features: torch.Tensor, patch_ids: torch.Tensor, min_rays: int):
    """Keep covered rays of clusters with >= min_rays rays; (f [N, D], ids [K], u [N], counts [K], rays [N])."""
    rays = torch.nonzero(patch_ids >= 0).squeeze(1)
    _, inv, counts = torch.unique(patch_ids[rays], return_inverse=True, return_counts=True)
    rays = rays[counts[inv] >= min_rays]
    ids, u, counts = torch.unique(patch_ids[rays], return_inverse=True, return_counts=True)
    return features[rays], ids, u, counts, rays


def cluster_prototypes(f: torch.Tensor, u: torch.Tensor, counts: torch.Tensor, phi_scale: float = 10.0,
                       phi_clip: tuple[float, float] = (0.1, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes [K, D] (mean feature) and detached temperatures [K] of clusters ``u`` [N] in 0..K-1."""
    k = counts.shape[0]
    n = counts.to(f.dtype)
    mu = scatter_sum(f, u, k) / n[:, None]
    spread = scatter_sum((f - mu[u]).norm(dim=1), u, k)
    phi = spread / (n * torch.log(n + 10.0))
    return mu, (phi * phi_scale).clamp(phi_clip[0], phi_clip[1]).detach()


def level_index(corr: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`sdfseg.data.hierarchy.level_matrix`: [K, K] counts -> int64 [K, K] levels (-1 = none)."""
    order = torch.argsort(-corr, dim=1, stable=True)
    ranked = corr.gather(1, order)
    new = torch.ones_like(ranked, dtype=torch.int64)
    new[:, 1:] = (ranked[:, 1:] != ranked[:, :-1]).to(torch.int64)
    level = torch.empty_like(new).scatter_(1, order, new.cumsum(dim=1) - 1)
    return level.masked_fill(corr == 0, -1)


def _as_long(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=device).long()


def _sub_correlation(corr, ids: torch.Tensor) -> torch.Tensor:
    """``corr[ids][:, ids]`` as int64 on ids' device, indexing on the host for arrays (no full copy)."""
    if torch.is_tensor(corr):
        return corr.to(ids.device)[ids][:, ids].long()
    sel = ids.cpu().numpy()
    return torch.as_tensor(np.asarray(corr)[np.ix_(sel, sel)], device=ids.device).long()


def hierarchical_contrastive_terms(features: torch.Tensor, patch_ids, corr, decay: float = 0.5,
                                   min_rays: int = 2, level_reduction: str = "sum", phi_scale: float = 10.0,
                                   phi_clip: tuple[float, float] = (0.1, 1.0)) -> HierarchicalTerms:
    """OmniSeg3D hierarchical contrastive loss with its per-level terms (module docstring).

    Args:
        features: [R, D] rendered features of one image's rays.
        patch_ids: int [R] patch id per ray (-1 = covered by no mask, ignored).
        corr: [Np, Np] correlation counts indexed by those patch ids (tensor or array;
            e.g. the compact matrix of :func:`sdfseg.data.hierarchy.batch_correlation`).
            A patch in no mask (zero diagonal) has no levels and only serves as a negative.
        decay: per-level weight lambda (weight lambda^d at 0-based level d).
        min_rays: clusters with fewer rays are ignored (their prototypes are noise).
        level_reduction: "sum" over the patches of a level (eq. 4) or "mean" (reference code).
    """
    if level_reduction not in ("sum", "mean"):
        raise ValueError(f"level_reduction must be 'sum' or 'mean', got {level_reduction!r}")
    dev = features.device
    f, ids, u, counts, rays = _clusters(features, _as_long(patch_ids, dev), min_rays)
    n = f.shape[0]
    empty = features.new_zeros((n, 0))
    if n == 0:
        return HierarchicalTerms(features.sum() * 0.0, empty, empty, empty, rays)
    mu, phi = cluster_prototypes(f, u, counts, phi_scale, phi_clip)
    nll = -F.log_softmax((f @ mu.T) / phi[None, :], dim=1)                      # [N, K]
    levels = level_index(_sub_correlation(corr, ids))[u]                       # [N, K]
    r_e, k_e = torch.nonzero(levels >= 0, as_tuple=True)
    if r_e.numel() == 0:
        return HierarchicalTerms(features.sum() * 0.0, empty, empty, empty, rays)
    d_e = levels[r_e, k_e]
    num_levels = int(d_e.max()) + 1
    slot = r_e * num_levels + d_e
    nll_e = nll[r_e, k_e]
    raw_max = nll.new_full((n * num_levels,), -math.inf).scatter_reduce(0, slot, nll_e, "amax", include_self=False)
    running = torch.cummax(raw_max.view(n, num_levels), dim=1).values
    finer = torch.cat([nll.new_zeros(n, 1), running[:, :-1]], dim=1).clamp_min(0.0)
    ordered = torch.maximum(nll_e, finer[r_e, d_e])
    level_loss = scatter_sum(ordered, slot, n * num_levels).view(n, num_levels)
    if level_reduction == "mean":
        per_level = torch.bincount(slot, minlength=n * num_levels).view(n, num_levels)
        level_loss = level_loss / per_level.clamp_min(1).to(level_loss.dtype)
    weights = decay ** torch.arange(num_levels, device=dev, dtype=f.dtype)
    loss = (level_loss * weights).sum() / (n * num_levels)
    with torch.no_grad():
        lo = nll.new_full((n * num_levels,), math.inf).scatter_reduce(0, slot, ordered, "amin", include_self=True)
        hi = nll.new_full((n * num_levels,), -math.inf).scatter_reduce(0, slot, ordered, "amax", include_self=True)
    return HierarchicalTerms(loss, level_loss, lo.view(n, num_levels), hi.view(n, num_levels), rays)


def hierarchical_contrastive_loss(features: torch.Tensor, patch_ids, corr, decay: float = 0.5,
                                  min_rays: int = 2, level_reduction: str = "sum") -> torch.Tensor:
    """Scalar OmniSeg3D eq. 4; see :func:`hierarchical_contrastive_terms`."""
    return hierarchical_contrastive_terms(features, patch_ids, corr, decay, min_rays, level_reduction).loss


def contrastive_cluster_loss(features: torch.Tensor, patch_ids, min_rays: int = 2) -> torch.Tensor:
    """OmniSeg3D eq. 3 (no hierarchy): ``-(1/K) sum_r log softmax_k(f_r . mu_k / phi_k)[own patch]``."""
    f, ids, u, counts, _ = _clusters(features, _as_long(patch_ids, features.device), min_rays)
    if f.shape[0] == 0:
        return features.sum() * 0.0
    mu, phi = cluster_prototypes(f, u, counts)
    logp = F.log_softmax((f @ mu.T) / phi[None, :], dim=1)
    return -logp.gather(1, u[:, None]).sum() / ids.shape[0]


# ---------------------------------------------------------------- ultrametric variant


def knn_edges(positions: np.ndarray, k: int = 10) -> np.ndarray:
    """Undirected kNN graph: positions [R, p] -> unique edges int64 [E, 2] with ``i < j``."""
    positions = np.asarray(positions, dtype=np.float64)
    r = positions.shape[0]
    kk = min(k, r - 1)
    if kk <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    _, nbr = cKDTree(positions).query(positions, k=kk + 1)
    src = np.repeat(np.arange(r), kk)
    dst = nbr[:, 1:].reshape(-1)
    a, b = np.minimum(src, dst), np.maximum(src, dst)
    keep = a != b
    key = np.unique(a[keep] * r + b[keep])
    return np.stack([key // r, key % r], axis=1).astype(np.int64)


def _kruskal_tree(num_nodes: int, edges: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary partition tree by Kruskal on ``edges`` [E, 2] (a spanning forest).

    Returns (parent int64 [T]: node ``num_nodes + t`` is the t-th merge, roots point to
    themselves; merge_edge int64 [T - num_nodes]: edge index of each merge).
    """
    order = np.argsort(weights, kind="stable")
    uf = np.arange(num_nodes)
    cluster = np.arange(num_nodes)
    parent = np.arange(num_nodes + len(order), dtype=np.int64)
    merge_edge = []

    def find(x: int) -> int:
        while uf[x] != x:
            uf[x] = uf[uf[x]]
            x = uf[x]
        return x

    for e in order:
        ra, rb = find(int(edges[e, 0])), find(int(edges[e, 1]))
        if ra == rb:
            continue
        node = num_nodes + len(merge_edge)
        parent[cluster[ra]] = node
        parent[cluster[rb]] = node
        uf[rb] = ra
        cluster[ra] = node
        merge_edge.append(e)
    total = num_nodes + len(merge_edge)
    return parent[:total], np.asarray(merge_edge, dtype=np.int64)


def _lca(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Lowest common ancestors in a forest (vectorised binary lifting); -1 for different trees."""
    t = parent.shape[0]
    levels = max(1, int(np.ceil(np.log2(max(t, 2)))) + 1)
    anc = [parent]
    for _ in range(levels - 1):
        anc.append(anc[-1][anc[-1]])
    depth = (parent != np.arange(t)).astype(np.int64)
    up = parent.copy()
    for _ in range(levels):
        depth, up = depth + depth[up], up[up]
    u, v = u.copy(), v.copy()
    swap = depth[u] < depth[v]
    u[swap], v[swap] = v[swap], u[swap].copy()
    diff = depth[u] - depth[v]
    for b in range(levels):
        bit = ((diff >> b) & 1).astype(bool)
        u[bit] = anc[b][u[bit]]
    for b in reversed(range(levels)):
        move = anc[b][u] != anc[b][v]
        u[move], v[move] = anc[b][u[move]], anc[b][v[move]]
    lca = np.where(u == v, u, parent[u])
    return np.where(up[u] == up[v], lca, -1)


def minimax_edges(num_nodes: int, edges: np.ndarray, weights: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Index of the minimax edge (largest edge of the minimax path) for each node pair.

    ``edges`` int [E, 2], ``weights`` float [E], ``pairs`` int [P, 2] -> int64 [P] edge
    index; -1 when the two nodes coincide or are not connected. Uses
    scipy's minimum spanning tree, then Kruskal merge heights on it.
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if edges.shape[0] == 0 or pairs.shape[0] == 0:
        return np.full(pairs.shape[0], -1, dtype=np.int64)
    # one undirected edge per node pair (the lightest duplicate); weights shifted > 0
    # because the sparse MST treats zero entries as missing edges
    a, b = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
    key = a * num_nodes + b
    order = np.lexsort((weights, key))
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = key[order][1:] != key[order][:-1]
    uniq = order[keep & (a[order] != b[order])]
    shifted = weights[uniq] - weights.min() + 1.0
    graph = coo_matrix((shifted, (a[uniq], b[uniq])), shape=(num_nodes, num_nodes)).tocsr()
    mst = minimum_spanning_tree(graph).tocoo()
    mkey = np.minimum(mst.row, mst.col).astype(np.int64) * num_nodes + np.maximum(mst.row, mst.col)
    first = uniq[np.searchsorted(key[uniq], mkey)]
    parent, merge = _kruskal_tree(num_nodes, edges[first], weights[first])
    lca = _lca(parent, pairs[:, 0], pairs[:, 1])
    out = np.full(pairs.shape[0], -1, dtype=np.int64)
    inner = lca >= num_nodes
    out[inner] = first[merge[lca[inner] - num_nodes]]
    return out


def feature_distance(features: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between the features [R, D] of each pair [P, 2] -> [P]."""
    fn = F.normalize(features, dim=-1)
    return 1.0 - (fn[pairs[:, 0]] * fn[pairs[:, 1]]).sum(-1)


def ultrametric_distances(features: torch.Tensor, positions: np.ndarray, pairs, k: int = 10
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable ultrametric (minimax) distances on a kNN graph of the rays.

    ``features`` [R, D], ``positions`` [R, p] (pixel coordinates for the kNN graph),
    ``pairs`` int [P, 2] -> (distance [P], valid bool [P]); coinciding nodes have
    distance 0, pairs in different graph components are invalid.
    """
    pairs_t = _as_long(pairs, features.device).reshape(-1, 2)
    edges = knn_edges(positions, k)
    edges_t = torch.as_tensor(edges, device=features.device)
    w = feature_distance(features, edges_t)
    idx = minimax_edges(features.shape[0], edges, w.detach().cpu().numpy(), pairs_t.cpu().numpy())
    idx_t = torch.as_tensor(idx, device=features.device)
    same = pairs_t[:, 0] == pairs_t[:, 1]
    dist = w.new_zeros(idx_t.shape)
    found = idx_t >= 0
    if bool(found.any()):
        dist = torch.where(found, w[idx_t.clamp_min(0)], dist)
    return dist, found | same


class UltrametricLoss(NamedTuple):
    total: torch.Tensor
    ultrametric: torch.Tensor
    euclidean: torch.Tensor


def pair_contrastive(d_pos: torch.Tensor, d_neg: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Per matched pair ``-log softmax([-d_pos, -d_neg] / tau)[0]`` = ``softplus((d_pos - d_neg) / tau)``."""
    return F.softplus((d_pos - d_neg) / tau)


def ultrametric_contrastive_loss(features: torch.Tensor, positions: np.ndarray, pos_pairs, neg_pairs,
                                 tau: float = 0.1, k: int = 10, euclidean_weight: float = 1.0) -> UltrametricLoss:
    """Ultrametric + ``euclidean_weight`` x Euclidean contrastive loss on matched pairs.

    ``features`` [R, D]; ``positions`` [R, 2] pixel coordinates; ``pos_pairs`` and
    ``neg_pairs`` int [P, 2] (row i is one matched pair, e.g. from
    :func:`sdfseg.data.hierarchy.sample_hierarchical_pairs`).
    """
    pos = _as_long(pos_pairs, features.device).reshape(-1, 2)
    neg = _as_long(neg_pairs, features.device).reshape(-1, 2)
    if pos.shape[0] != neg.shape[0]:
        raise ValueError(f"pos_pairs ({pos.shape[0]}) and neg_pairs ({neg.shape[0]}) must match row by row")
    zero = features.sum() * 0.0
    if pos.shape[0] == 0:
        return UltrametricLoss(zero, zero, zero)
    d, valid = ultrametric_distances(features, positions, torch.cat([pos, neg]), k)
    p = pos.shape[0]
    ok = valid[:p] & valid[p:]
    ultra = pair_contrastive(d[:p][ok], d[p:][ok], tau).mean() if bool(ok.any()) else zero
    euclid = pair_contrastive(feature_distance(features, pos), feature_distance(features, neg), tau).mean()
    return UltrametricLoss(ultra + euclidean_weight * euclid, ultra, euclid)
