import math

import pytest
import torch

from sdfseg.core.fields.density import laplace_density
from sdfseg.core.render import samplers as S
from sdfseg.core.render import volume as V

CENTRE, RADIUS, ROOM = torch.tensor([0.5, 0.0, 0.0]), 0.2, 0.9


def scene_sdf(p):
    """Inside-out room sphere (radius 0.9) with one object sphere (radius 0.2 at x = 0.5)."""
    return torch.minimum(ROOM - p.norm(dim=-1), (p - CENTRE).norm(dim=-1) - RADIUS)


def test_near_far_sphere_hand_values():
    o = torch.tensor([[0.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near, far = S.near_far_sphere(o, d, radius=1.0, min_near=0.05)
    assert near.tolist() == pytest.approx([0.05, 1.0, 0.05])
    assert far.tolist() == pytest.approx([1.0, 3.0, 0.05])  # the third ray misses: far == near


def test_stratified_and_sample_pdf():
    near, far = torch.tensor([0.0]), torch.tensor([4.0])
    assert S.stratified_samples(near, far, 4, perturb=False)[0].tolist() == [0.5, 1.5, 2.5, 3.5]
    torch.manual_seed(0)
    t = S.stratified_samples(near, far, 4, perturb=True)[0]
    assert all(i <= v < i + 1 for i, v in enumerate(t.tolist()))
    bins = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    out = S.sample_pdf(bins, torch.tensor([[0.0, 1.0, 0.0]]), 4, perturb=False)[0]
    assert out.tolist() == pytest.approx([1.125, 1.375, 1.625, 1.875], abs=1e-3)
    # zero weights: the floor makes the pdf uniform
    flat = S.sample_pdf(bins, torch.zeros(1, 3), 3, perturb=False)[0]
    assert flat.tolist() == pytest.approx([0.5, 1.5, 2.5], abs=1e-4)


def test_logistic_weights_crossing_and_thin_gap():
    t = torch.tensor([[0.0, 0.25, 0.75, 1.0]])
    sdf = torch.tensor([[0.5, 0.25, -0.25, -0.5]])
    w = S.logistic_interval_weights(t, sdf, 100.0)[0]
    assert w[1].item() == pytest.approx(1.0, abs=1e-6) and w[0].item() < 1e-6
    # both ends outside but the gap is too long to exclude a surface (Lipschitz bound < 0)
    w2 = S.logistic_interval_weights(torch.tensor([[0.0, 0.1]]), torch.tensor([[0.01, 0.01]]), 100.0)[0]
    s1, s_lo = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(4.0))  # sigmoid(1), sigmoid(-4)
    assert w2.item() == pytest.approx((s1 - s_lo) / (s1 + 1e-6), rel=1e-5)


def test_distance_bound_and_error_bound_hand_values():
    t = torch.tensor([[0.0, 5.0], [0.0, 3.0], [0.0, 3.0], [0.0, 1.0]])
    sdf = torch.tensor([[3.0, 4.0], [1.0, 5.0], [1.0, 1.0], [2.0, -2.5]])
    dstar = S.interval_distance_bound(t, sdf)[:, 0]
    # right triangle 3-4-5: height 12/5; obtuse: nearer end; gap not covered: 0; sign change: 0
    assert dstar.tolist() == pytest.approx([2.4, 1.0, 0.0, 0.0])
    # no density, d* = 0: bound = exp(sum delta^2 / (4 beta^2)) - 1
    tt = torch.tensor([[0.0, 1.0, 2.0]])
    bound = S.opacity_error_bound(tt, torch.full((1, 3), 100.0), torch.zeros(1, 2), torch.tensor([1.0]))
    assert bound.item() == pytest.approx(math.exp(0.5) - 1.0, rel=1e-6)
    # the initial beta+ of the sampler makes that bound exactly eps on uniform samples
    n, span, eps = 5, 2.0, 0.1
    beta_plus = math.sqrt(span**2 / (4 * (n - 1) * math.log1p(eps)))
    tt = torch.linspace(0, span, n)[None]
    b = S.opacity_error_bound(tt, torch.full((1, n), 1e3), torch.zeros(1, n - 1), torch.tensor([beta_plus]))
    assert b.item() == pytest.approx(eps, rel=1e-5)


def rays_towards_object_and_wall():
    o = torch.zeros(2, 3)
    d = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    near, far = S.near_far_sphere(o, d, 1.0)
    return o, d, near, far, torch.tensor([0.3, 0.9])  # true hits: object front, room wall


def rendered_depth(o, d, t, beta):
    sdf = scene_sdf(V.points_along_rays(o, d, t).reshape(-1, 3)).reshape(t.shape)
    w = V.render_weights(laplace_density(sdf, beta), V.deltas(t))
    return V.render_depth(w, t)


@pytest.mark.parametrize(
    "sampler, n_out",
    [
        (S.HierarchicalSDFSampler(16, 16, 4, perturb=False), 32),
        (S.ErrorBoundedSampler(n_uniform=32, n_importance=24, n_extra=8, n_add=16, perturb=False), 32),
    ],
)
def test_samplers_find_the_surface(sampler, n_out):
    o, d, near, far, true_t = rays_towards_object_and_wall()
    beta = 0.002
    t = sampler.sample(o, d, near, far, scene_sdf, beta=beta)
    assert t.shape == (2, n_out)
    assert (t[:, 1:] >= t[:, :-1]).all() and (t >= near[:, None] - 1e-6).all() and (t <= far[:, None] + 1e-6).all()
    # samples cluster at the surface: within 2 cm there are many, uniform would give ~1
    close = ((t - true_t[:, None]).abs() < 0.02).sum(dim=1)
    assert (close >= 6).all()
    depth = rendered_depth(o, d, t, beta)
    assert (depth - true_t).abs().max() < 5e-3
    uniform = S.stratified_samples(near, far, n_out, perturb=False)
    assert (rendered_depth(o, d, uniform, beta) - true_t).abs().max() > (depth - true_t).abs().max()


def test_sampler_evaluation_counts():
    o, d, near, far, _ = rays_towards_object_and_wall()
    hier = S.HierarchicalSDFSampler(16, 16, 4, perturb=False)
    hier.sample(o, d, near, far, scene_sdf)
    assert hier.last_evaluations_per_ray == 16 + 12
    eb = S.ErrorBoundedSampler(n_uniform=32, n_importance=24, n_extra=8, n_add=16, max_rounds=3, perturb=False)
    eb.sample(o, d, near, far, scene_sdf, beta=1.0)  # smooth density: converged at once
    assert eb.last_evaluations_per_ray == 32
    eb.sample(o, d, near, far, scene_sdf, beta=1e-3)
    assert 32 < eb.last_evaluations_per_ray <= 32 + 3 * 16
    with pytest.raises(ValueError):
        eb.sample(o, d, near, far, scene_sdf)  # no beta and no density module


def test_depth_guided_samples():
    near, far = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 2.0])
    depth, valid = torch.tensor([0.5, 0.5]), torch.tensor([True, False])
    t = S.depth_guided_samples(near, far, depth, valid, n_uniform=4, n_near=8, std=0.01, perturb=False)
    assert t.shape == (2, 12) and (t[:, 1:] >= t[:, :-1]).all()
    close = (t[0] - 0.5).abs() < 0.03
    assert close.sum().item() == 8  # all guided samples within 3 std
    expect_uniform = S.stratified_samples(near[1:], far[1:], 12, perturb=False)[0]
    assert torch.allclose(t[1], expect_uniform)
    # quantiles are symmetric around the depth
    assert t[0][close].mean().item() == pytest.approx(0.5, abs=1e-6)


def test_carve_samples_hand_values():
    # rays: a floater at 0.4 in front of depth 1.0; a surface at 0.9 (within the margin of the depth);
    # no sensor depth; no surface found at all
    near = torch.zeros(4)
    depth = torch.tensor([1.0, 1.0, 0.0, 1.0])
    first = torch.tensor([0.4, 0.9, 0.4, -1.0])
    t = S.carve_samples(near, depth, first, 4, spread=0.1, margin=0.2, perturb=False)
    expect = torch.tensor([[0.325, 0.375, 0.425, 0.475],   # 0.4 +- 0.1, evenly
                           [0.1, 0.3, 0.5, 0.7],           # stratified over [0, 1.0 - 0.2]
                           [0.025, 0.075, 0.125, 0.175],   # no depth: [near, near + 2 spread]
                           [0.1, 0.3, 0.5, 0.7]])
    assert torch.allclose(t, expect, atol=1e-6)
    # a floater just in front of the margin: its band [0.65, 0.85] is cut at depth - margin = 0.8
    t = S.carve_samples(near[:1], depth[:1], torch.tensor([0.75]), 2, spread=0.1, margin=0.2, perturb=False)
    assert torch.allclose(t, torch.tensor([[0.6875, 0.7625]]), atol=1e-6)
    jitter = S.carve_samples(near, depth, first, 4, spread=0.1, margin=0.2, perturb=True)
    assert (jitter[0] >= 0.3).all() and (jitter[0] <= 0.5).all() and (jitter[1] <= 0.8).all()


def test_depth_rays_get_carve_samples_at_a_floater(tmp_path):
    # the model's own grid has an object sphere at x = 0.5 (radius 0.2); the sensor says the ray along +x
    # sees the room wall at 0.9: the sphere is a floater, and the ray gets samples around x = 0.3
    from _helpers import DEVICE, TINY, demo_config
    from sdfseg.core.model import SceneModel

    cfg = demo_config(TINY, tmp_path / "scene", tmp_path / "run", "sampler.carve_samples=4",
                      "sampler.grid_resolution=65")
    model = SceneModel(cfg, 5, sample_grid=True).to(DEVICE).eval()
    model.sample_grid.update(scene_sdf)
    o = torch.zeros(2, 3, device=DEVICE)
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=DEVICE)
    t, _ = model.sample(o, d, torch.tensor([0.9, 0.9], device=DEVICE))
    n = cfg.sampler.n_depth_uniform + cfg.sampler.n_depth_near
    assert t.shape == (2, n + 4)
    spread = max(cfg.sampler.depth_std, 0.5 * model.sample_grid.voxel)
    near_floater = ((t - 0.3).abs() <= spread + 1e-6).sum(dim=1)
    assert int(near_floater[0]) >= 4  # the four carve samples (and maybe a uniform one)
    # the ray along +y meets no floater: its carve samples are spread over [near, 0.9 - 2 depth_std]
    assert int(((t[1] > 0.0) & (t[1] < 0.9 - 2 * cfg.sampler.depth_std)).sum()) >= 4
    model.cfg.sampler.carve_samples = 0
    assert model.sample(o, d, torch.tensor([0.9, 0.9], device=DEVICE))[0].shape == (2, n)
