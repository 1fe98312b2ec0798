"""OmniSeg3D hierarchical contrastive loss and the ultrametric contrastive loss."""

import math

import numpy as np
import pytest
import torch

from sdfseg.methods.hierarchy.losses import (
    contrastive_cluster_loss, hierarchical_contrastive_loss, hierarchical_contrastive_terms, knn_edges, minimax_edges,
    norm_loss, ultrametric_contrastive_loss, ultrametric_distances,
)

A = math.log1p(math.exp(-10.0))     # -log softmax([10, 0])[0]: own prototype at temperature 0.1
B = math.log1p(math.exp(10.0))      # -log softmax([10, 0])[1]


def two_patch_features():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    return f, np.array([0, 0, 1, 1])


def test_single_level_exact():
    f, p = two_patch_features()
    # tight clusters: phi = clip(0 * 10, 0.1, 1) = 0.1; each ray: -log(e^10 / (e^10 + 1))
    loss = hierarchical_contrastive_loss(f, p, np.eye(2, dtype=np.int64))
    assert loss.item() == pytest.approx(A, rel=1e-9)
    assert contrastive_cluster_loss(f, p).item() == pytest.approx(4 * A / 2, rel=1e-9)


def test_two_levels_exact():
    f, p = two_patch_features()
    corr = np.array([[2, 1], [1, 1]])   # anchor 0: level 0 {0}, level 1 {1}; anchor 1: level 0 {0, 1}
    terms = hierarchical_contrastive_terms(f, p, corr)
    # rays of patch 0: A + 0.5 * max(B, A); rays of patch 1: (A + B) at level 0; / (N=4 * L=2)
    assert terms.loss.item() == pytest.approx((2 * (A + 0.5 * B) + 2 * (A + B)) / 8, rel=1e-9)
    np.testing.assert_allclose(terms.level_loss.detach().numpy(), [[A, B], [A, B], [A + B, 0], [A + B, 0]])
    mean = hierarchical_contrastive_terms(f, p, corr, level_reduction="mean").loss
    assert mean.item() == pytest.approx((2 * (A + 0.5 * B) + 2 * (A + B) / 2) / 8, rel=1e-9)
    terms.loss.backward()
    assert torch.isfinite(f.grad).all()


def hierarchical_scene(rng, noise):
    """Two objects x two parts x two sub-patches; masks at object and part level (+ patch level)."""
    patches = np.repeat(np.arange(8), 12)
    centers = np.zeros((8, 6))
    for q in range(8):
        centers[q, q // 4] = 3.0            # object direction
        centers[q, 2 + q // 2] = 1.5        # part direction
        centers[q, 2 + q % 2] += 0.5 * ((q % 2) * 2 - 1)
    feats = centers[patches] + noise * rng.standard_normal((patches.size, 6))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    # membership of patch q in masks: 2 objects, 4 parts, 8 patches
    member = np.zeros((14, 8), dtype=np.int64)
    for q in range(8):
        member[q // 4, q] = member[2 + q // 2, q] = member[6 + q, q] = 1
    return torch.tensor(feats, requires_grad=True), patches, member.T @ member


def brute_force_terms(f, p, corr, decay=0.5):
    """Loop reference of eq. 4 (ordered losses, running max, sum over level patches)."""
    ids = np.unique(p)
    fx = f.detach().numpy()
    mu = np.stack([fx[p == i].mean(0) for i in ids])
    phi = []
    for k, i in enumerate(ids):
        n = (p == i).sum()
        phi.append(np.clip(10 * np.linalg.norm(fx[p == i] - mu[k], axis=1).sum() / (n * np.log(n + 10)), 0.1, 1))
    logits = fx @ mu.T / np.array(phi)[None]
    nll = -(logits - np.log(np.exp(logits).sum(1, keepdims=True)))
    total, levels_used = 0.0, 0
    for r in range(len(p)):
        row = corr[p[r]][ids]
        values = sorted(set(row[row > 0].tolist()), reverse=True)
        levels_used = max(levels_used, len(values))
        prev = 0.0
        for d, v in enumerate(values):
            ordered = [max(nll[r, k], prev) for k in np.flatnonzero(row == v)]
            total += decay ** d * sum(ordered)
            prev = max(ordered)
    return total / (len(p) * levels_used)


def test_matches_loop_reference_and_ordering_holds():
    f, p, corr = hierarchical_scene(np.random.default_rng(0), noise=0.8)
    terms = hierarchical_contrastive_terms(f, p, corr)
    assert terms.loss.item() == pytest.approx(brute_force_terms(f, p, corr), rel=1e-9)
    lo, hi = terms.level_min.numpy(), terms.level_max.numpy()
    both = np.isfinite(lo[:, 1:]) & np.isfinite(hi[:, :-1])
    assert both.sum() > 0 and terms.level_loss.shape[1] == 3
    # every ordered loss at a coarser level >= the largest at the finer level
    assert np.all(lo[:, 1:][both] >= hi[:, :-1][both])


def test_separated_clusters_beat_mixed():
    rng = np.random.default_rng(1)
    f_good, p, corr = hierarchical_scene(rng, noise=0.05)
    f_mixed = torch.tensor(rng.standard_normal(f_good.shape), requires_grad=True)
    shuffled = torch.tensor(f_good.detach().numpy()[rng.permutation(len(p))])
    good = hierarchical_contrastive_loss(f_good, p, corr).item()
    assert good < hierarchical_contrastive_loss(f_mixed, p, corr).item()
    assert good < hierarchical_contrastive_loss(shuffled, p, corr).item()


def test_ignored_and_small_clusters():
    f, p = two_patch_features()
    p = np.array([0, 0, 1, -1])       # ray 3 uncovered; patch 1 then has one ray < min_rays
    terms = hierarchical_contrastive_terms(f, p, np.eye(2, dtype=np.int64), min_rays=2)
    np.testing.assert_array_equal(terms.rays.numpy(), [0, 1])
    assert terms.loss.item() == pytest.approx(0.0, abs=1e-12)    # a single cluster: softmax over one prototype


def test_norm_loss():
    assert norm_loss(torch.tensor([[3.0, 4.0], [0.0, 1.0]])).item() == pytest.approx(8.0)


# ---------------------------------------------------------------- ultrametric

EDGES = np.array([[0, 1], [1, 2], [0, 2], [2, 3], [3, 4], [1, 4], [4, 5], [3, 5], [2, 5]])
WEIGHTS = np.array([0.3, 0.9, 0.5, 0.2, 0.7, 0.8, 0.1, 0.6, 0.95])


def brute_minimax(n, edges, w, u, v):
    adj = {i: [] for i in range(n)}
    for e, (a, b) in enumerate(edges):
        adj[a].append((b, e))
        adj[b].append((a, e))
    best = math.inf

    def walk(x, seen, worst):
        nonlocal best
        if x == v:
            best = min(best, worst)
            return
        for y, e in adj[x]:
            if y not in seen:
                walk(y, seen | {y}, max(worst, w[e]))

    walk(u, {u}, -math.inf)
    return best


def test_minimax_edges_equal_brute_force_paths():
    pairs = np.array([(i, j) for i in range(6) for j in range(6) if i != j])
    idx = minimax_edges(6, EDGES, WEIGHTS, pairs)
    for (u, v), e in zip(pairs, idx):
        assert WEIGHTS[e] == brute_minimax(6, EDGES, WEIGHTS, u, v)
    # e.g. 0 -> 5: 0-2 (0.5), 2-3 (0.2), 3-5 (0.6) has max 0.6
    assert WEIGHTS[minimax_edges(6, EDGES, WEIGHTS, np.array([[0, 5]]))[0]] == 0.6
    # disconnected graph and identical nodes -> -1
    two = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(minimax_edges(4, two, [0.1, 0.2], np.array([[0, 1], [0, 3], [2, 2]])), [0, -1, -1])


def path_setup():
    """Six rays on a line with growing gaps: the 1-NN graph is the path 0-1-2-3-4-5."""
    pos = np.array([[0.0, 0], [1, 0], [3, 0], [6, 0], [10, 0], [15, 0]])
    ang = np.radians([0, 10, 20, 80, 90, 100])     # the 2-3 edge (60 degrees) is the largest
    f = torch.tensor(np.stack([np.cos(ang), np.sin(ang)], 1), requires_grad=True)
    return pos, f, ang


def test_ultrametric_distance_and_gradient_path():
    pos, f, ang = path_setup()
    np.testing.assert_array_equal(knn_edges(pos, k=1), [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    d, valid = ultrametric_distances(f, pos, np.array([[0, 5], [0, 1], [3, 5], [4, 4]]), k=1)
    expected = [1 - math.cos(math.radians(60)), 1 - math.cos(math.radians(10)), 1 - math.cos(math.radians(10)), 0]
    np.testing.assert_allclose(d.detach().numpy(), expected, atol=1e-12)
    assert valid.all()
    d[0].backward()
    nonzero = np.flatnonzero(f.grad.abs().sum(1).numpy() > 0)
    np.testing.assert_array_equal(nonzero, [2, 3])     # only the minimax edge's endpoints get gradient


def test_ultrametric_loss_exact_and_ordering():
    pos, f, ang = path_setup()
    pos_pairs, neg_pairs = np.array([[0, 1]]), np.array([[0, 5]])
    out = ultrametric_contrastive_loss(f, pos, pos_pairs, neg_pairs, tau=0.1, k=1)
    d_p, d_n_ultra, d_n_direct = 1 - math.cos(ang[1]), 1 - math.cos(math.radians(60)), 1 - math.cos(ang[5])
    softplus = lambda x: math.log1p(math.exp(x))
    assert out.ultrametric.item() == pytest.approx(softplus((d_p - d_n_ultra) / 0.1), rel=1e-9)
    assert out.euclidean.item() == pytest.approx(softplus((d_p - d_n_direct) / 0.1), rel=1e-9)
    assert out.total.item() == pytest.approx(out.ultrametric.item() + out.euclidean.item(), rel=1e-12)
    swapped = ultrametric_contrastive_loss(f, pos, neg_pairs, pos_pairs, tau=0.1, k=1)
    assert swapped.total.item() > out.total.item()
    out.total.backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


# ---------------------------------------------------------------- feature head wiring


def test_feature_field_renders_and_keeps_geometry_detached():
    from sdfseg.core.fields.features import FeatureField, frequency_encoding

    torch.manual_seed(0)
    x = torch.tensor([[0.25, 0.0, 0.5]])
    enc = frequency_encoding(x, 2)
    np.testing.assert_allclose(enc[0, 3:9].numpy(), np.sin(np.pi * np.array([0.25, 0, 0.5, 0.5, 0, 1.0])), atol=1e-6)
    head = FeatureField(in_dim=8, dim=4, hidden=16, layers=2, num_freqs=2)
    geo = torch.randn(5, 3, 8, requires_grad=True)              # [R, S, in_dim]
    xs = torch.rand(5, 3, 3)
    weights = torch.softmax(torch.randn(5, 3), dim=1)           # backbone rendering weights [R, S]
    rendered = (weights[..., None] * head(geo, xs)).sum(1)      # [R, D]
    assert rendered.shape == (5, 4)
    loss = hierarchical_contrastive_loss(rendered, np.array([0, 0, 1, 1, 1]), np.eye(2, dtype=np.int64)) \
        + norm_loss(rendered)
    loss.backward()
    assert geo.grad is None                                     # geometry detached by default
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    attached = FeatureField(in_dim=8, dim=4, detach_geometry=False)
    attached(geo).sum().backward()
    assert geo.grad is not None
    with pytest.raises(ValueError):
        head(geo)                                               # positions needed with num_freqs > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_losses_on_cuda_match_cpu():
    f, p, corr = hierarchical_scene(np.random.default_rng(0), noise=0.8)
    cpu = hierarchical_contrastive_loss(f, p, corr).item()
    gpu = hierarchical_contrastive_loss(f.detach().cuda().requires_grad_(), p, corr).item()
    assert gpu == pytest.approx(cpu, rel=1e-6)
    pos, fl, _ = path_setup()
    out = ultrametric_contrastive_loss(fl.detach().cuda().requires_grad_(), pos, [[0, 1]], [[0, 5]], k=1)
    ref = ultrametric_contrastive_loss(fl, pos, [[0, 1]], [[0, 5]], k=1)
    assert out.total.item() == pytest.approx(ref.total.item(), rel=1e-6)
