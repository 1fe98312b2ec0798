import math

import pytest
import torch

from sdfseg.core.fields.color import ColorField
from sdfseg.core.fields.density import LaplaceDensity, laplace_density
from sdfseg.core.fields.sdf import MultiChannelSDF, fibonacci_sphere, min_channel_grad, scene_sdf
from sdfseg.errors import SdfsegError

SMALL_GRID = dict(n_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32, backend="torch")


def make_sdf(k=4, hidden=64, **kw):
    torch.manual_seed(0)
    return MultiChannelSDF(k, hidden_dim=hidden, feature_dim=16, encoding=SMALL_GRID, **kw)


def random_points(n, r_min=0.0, r_max=0.95, seed=1):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    r = r_min + (r_max - r_min) * torch.rand(n, 1, generator=g)
    return d / d.norm(dim=-1, keepdim=True) * r


def test_geometric_init_room_and_small_objects():
    model = make_sdf(k=3, hidden=128)
    x = random_points(500, 0.15, 0.95)
    r = x.norm(dim=-1)
    with torch.no_grad():
        sdf, feat = model(x)
    assert sdf.shape == (500, 3) and feat.shape == (500, 16)
    assert (sdf[:, 0] - (0.9 - r)).abs().max() < 0.02  # inside-out room: positive inside
    assert (sdf[:, 1:] - (r[:, None] - 0.1)).abs().max() < 0.02  # small spheres: positive almost everywhere
    # the hash grid contributes nothing at init: zeroing the table changes nothing
    with torch.no_grad():
        model.grid.table.zero_()
        assert torch.allclose(model(x)[0], sdf, atol=1e-6)
    assert torch.equal(scene_sdf(sdf), sdf.min(-1).values)


def test_room_channels_all_start_as_the_room():
    # semantic mode: every channel is a class (walls included), so all start as the room sphere
    model = make_sdf(k=4, hidden=128, room_channels=4)
    x = random_points(300, 0.15, 0.95)
    with torch.no_grad():
        s = model.sdf(x)
    assert (s - (0.9 - x.norm(dim=-1))[:, None]).abs().max() < 0.02
    two = make_sdf(k=4, hidden=128, room_channels=2)
    with torch.no_grad():
        s = two.sdf(x)
    assert (s[:, 1] - (0.9 - x.norm(dim=-1))).abs().max() < 0.02
    assert (s[:, 2] - (x.norm(dim=-1) - 0.1)).abs().max() < 0.02


def test_init_not_inside_out_and_idr_mode():
    model = make_sdf(k=2, hidden=128, inside_out=False, sphere_radius=0.5)
    x = random_points(200, 0.2, 0.9)
    with torch.no_grad():
        s = model.sdf(x)
    assert (s[:, 0] - (x.norm(dim=-1) - 0.5)).abs().max() < 0.02
    idr = make_sdf(k=2, hidden=128, init_mode="idr")
    with torch.no_grad():
        s = idr.sdf(x)
    # plain IDR init is only right on average at this width
    assert (s[:, 0] - (0.9 - x.norm(dim=-1))).abs().mean() < 0.2
    with pytest.raises(SdfsegError):
        make_sdf(init_mode="zero")


def test_fibonacci_sphere_is_unit_and_balanced():
    u = fibonacci_sphere(256)
    assert torch.allclose(u.norm(dim=-1), torch.ones(256), atol=1e-6)
    assert u.mean(0).abs().max() < 0.01


def per_channel_autograd(model, x):
    x = x.clone().requires_grad_(True)
    sdf, _ = model(x)
    rows = [torch.autograd.grad(sdf[:, k].sum(), x, create_graph=True)[0] for k in range(sdf.shape[1])]
    return torch.stack(rows, dim=1)


def assert_gradients_agree(model, x):
    """All channels' gradients: the analytic mode against per-channel autograd, the replicated reverse
    pass (the tcnn grid's path) and central differences against the analytic mode."""
    _, _, g_a = model.sdf_and_grad(x, mode="analytic")
    assert torch.allclose(g_a, per_channel_autograd(model, x), atol=1e-4, rtol=1e-4)
    _, _, g_rep = model._grad_replicated(x, create_graph=True)
    assert torch.allclose(g_rep, g_a, atol=1e-4, rtol=1e-4)
    _, _, g_f = model.sdf_and_grad(x, mode="finite_difference", eps=1e-4)
    assert (g_f - g_a).abs().mean() < 2e-2 * g_a.abs().mean()


def randomise(model):
    """Turn the init sphere field into a random, non-trivial one (grid inputs used)."""
    with torch.no_grad():
        for grid in (model.grid, model.offset_grid):
            if grid is not None:
                grid.table.normal_(0, 0.5)
        for lin in list(model.layers) + list(model.offset_layers or []):
            v = lin.parametrizations.weight.original1
            v.add_(0.05 * torch.randn_like(v))
    return model


def test_analytic_gradients_match_per_channel_autograd_and_fd():
    model = randomise(make_sdf(k=5, weight_norm=True))
    x = random_points(64, 0.1, 0.9)
    sdf_a, feat_a, g_a = model.sdf_and_grad(x, mode="analytic")
    assert g_a.shape == (64, 5, 3)
    g_ref = per_channel_autograd(model, x)
    assert torch.allclose(g_a, g_ref, atol=1e-4, rtol=1e-4)
    sdf_f, feat_f, g_f = model.sdf_and_grad(x, mode="finite_difference", eps=1e-4)
    assert torch.allclose(sdf_f, sdf_a, atol=1e-6) and torch.allclose(feat_f, feat_a, atol=1e-6)
    # FD error: cell crossings of the grid and float32 rounding, small relative to |g|
    assert (g_f - g_a).abs().mean() < 2e-2 * g_a.abs().mean()
    _, _, g_rep = model._grad_replicated(x, create_graph=True)
    assert torch.allclose(g_rep, g_a, atol=1e-4, rtol=1e-4)
    with pytest.raises(SdfsegError):
        model.sdf_and_grad(x, mode="symbolic")


def test_eikonal_backward_through_analytic_gradient_matches_autograd():
    model = randomise(make_sdf(k=3))
    x = random_points(32, 0.1, 0.9)
    params = [p for p in model.parameters() if p.requires_grad]
    _, _, g = model.sdf_and_grad(x, create_graph=True)
    loss = ((g.norm(dim=-1) - 1) ** 2).mean()
    grads_a = torch.autograd.grad(loss, params, allow_unused=True)
    g_ref = per_channel_autograd(model, x)
    loss_ref = ((g_ref.norm(dim=-1) - 1) ** 2).mean()
    grads_r = torch.autograd.grad(loss_ref, params, allow_unused=True)
    assert loss.item() == pytest.approx(loss_ref.item(), rel=1e-5)
    for a, r in zip(grads_a, grads_r):
        if r is None:
            continue
        assert torch.allclose(a, r, atol=1e-5, rtol=1e-3)
    # hash table receives second-order gradient (table enters the MLP input)
    assert grads_a[0] is not None and grads_a[0].abs().sum() > 0
    _, _, g_nograd = model.sdf_and_grad(x, create_graph=False)
    assert not g_nograd.requires_grad


def test_min_channel_grad_picks_argmin_channel():
    sdf = torch.tensor([[0.3, -0.1, 0.2], [0.5, 0.6, 0.4]])
    grad = torch.arange(18.0).view(2, 3, 3)
    out = min_channel_grad(sdf, grad)
    assert out.tolist() == [[3.0, 4.0, 5.0], [15.0, 16.0, 17.0]]


def test_laplace_density_hand_values():
    dens = LaplaceDensity(beta_init=0.1, beta_min=1e-4)
    b = 0.1 + 1e-4
    assert dens.beta.item() == pytest.approx(b)
    s = torch.tensor([0.0, b, -b, 10.0])
    sigma = dens(s)
    assert sigma[0].item() == pytest.approx(0.5 / b)
    assert sigma[1].item() == pytest.approx(0.5 * math.exp(-1) / b, rel=1e-5)
    assert sigma[2].item() == pytest.approx((1 - 0.5 * math.exp(-1)) / b, rel=1e-5)
    assert sigma[3].item() < 1e-30
    assert torch.allclose(dens(s[None, :, None].expand(2, 4, 3))[1, :, 2], sigma)
    assert laplace_density(torch.tensor([0.0]), 0.5).item() == pytest.approx(1.0)
    dens(s).sum().backward()
    assert dens.beta_param.grad is not None


def test_color_field_shapes_and_range():
    torch.manual_seed(0)
    head = ColorField(feature_dim=16, hidden_dim=32, n_layers=2, n_dir_frequencies=4)
    p = 10
    rgb = head(torch.randn(p, 3), torch.randn(p, 3), torch.randn(p, 3), torch.randn(p, 16))
    assert rgb.shape == (p, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert head.layers[0].in_features == 3 + 27 + 3 + 16


@pytest.mark.parametrize("use_grid", [True, False])
def test_plain_linear_layers_and_no_grid(use_grid):
    torch.manual_seed(0)
    model = MultiChannelSDF(3, hidden_dim=32, feature_dim=8, encoding=SMALL_GRID, weight_norm=False, use_grid=use_grid)
    with torch.no_grad():
        for lin in model.layers:
            lin.weight.add_(0.1 * torch.randn_like(lin.weight))
    x = random_points(16, 0.1, 0.9)
    _, _, g = model.sdf_and_grad(x)
    assert torch.allclose(g, per_channel_autograd(model, x), atol=1e-5)
    assert model.layers[0].in_features == 39 + (8 if use_grid else 0)
    with torch.no_grad():  # analytic normals need no autograd at all
        _, _, g_ng = model.sdf_and_grad(x)
    assert torch.allclose(g_ng, g)


def test_scene_offsets_channels_hand_worked():
    # raw outputs (g, a_1, a_2, a_3): channel k = g + a_k - min_j a_j, so min over channels = g
    model = make_sdf(k=3, scene_offsets=True)
    raw = torch.tensor([[0.2, 0.5, 0.1, 0.3], [-0.4, 0.0, 0.0, 2.0]])
    sdf, _ = model._channels(raw)
    assert torch.allclose(sdf, torch.tensor([[0.6, 0.2, 0.4], [-0.4, -0.4, 1.6]]))
    assert torch.allclose(scene_sdf(sdf), raw[:, 0])


@pytest.mark.parametrize("offset_levels", [0, 3])  # offsets from the trunk / from a network of their own
def test_scene_offsets_init_scene_is_the_room_and_grads_match_autograd(offset_levels):
    model = make_sdf(k=4, hidden=128, scene_offsets=True, offset_grid_levels=offset_levels,
                     offset_grid_max_resolution=16)
    x = random_points(300, 0.15, 0.85)
    r = x.norm(dim=-1)
    with torch.no_grad():
        sdf, feat = model(x)
        raw, _ = model._raw(x)
    assert sdf.shape == (300, 4) and feat.shape == (300, 16) and raw.shape == (300, 5)
    assert (raw[:, 0] - (0.9 - r)).abs().max() < 0.02  # the scene starts as the room
    assert (raw[:, 1] - (0.9 - r)).abs().max() < 0.02  # offset 0 as the room channel ...
    assert (raw[:, 2:] - (r - 0.1)[:, None]).abs().max() < 0.02  # ... the others as small spheres
    assert torch.equal(scene_sdf(sdf), raw[:, 0])
    # offsets start as the plain channels would: the room channel owns |x| > 0.5, an object one |x| < 0.5
    owner = sdf.argmin(dim=-1)
    assert bool(((owner == 0) == (r > 0.5))[(r - 0.5).abs() > 0.02].all())
    model = randomise(model)
    assert_gradients_agree(model, random_points(64, 0.1, 0.9))


@pytest.mark.parametrize("mode", ["analytic", "replicated", "finite_difference"])
def test_scene_offsets_detach_rivals_keeps_values_and_cuts_the_scene_row(mode):
    model = randomise(make_sdf(k=3, scene_offsets=True))
    x = random_points(48, 0.1, 0.9)
    ref_sdf, _, ref_g = model.sdf_and_grad(x, mode="finite_difference" if mode == "finite_difference" else "analytic",
                                           eps=1e-4)
    if mode == "replicated":
        sdf, _, g = model._grad_replicated(x, True, detach_rivals=True)
    else:
        sdf, _, g = model.sdf_and_grad(x, mode=mode, eps=1e-4, detach_rivals=True)
    assert torch.allclose(sdf, ref_sdf) and torch.allclose(g, ref_g, atol=1e-5)  # same values
    rival = torch.ones_like(sdf, dtype=torch.bool)
    rival[torch.arange(48), sdf.argmin(dim=-1)] = False
    loss = sdf[rival].sum() + ((g.norm(dim=-1) - 1) ** 2)[rival].sum()
    weight = model.layers[-1].parametrizations.weight.original1
    model.zero_grad()
    loss.backward()
    assert weight.grad[0].abs().max() == 0  # the scene row g: no gradient from rival channels
    assert weight.grad[1:4].abs().max() > 0  # the offsets get it
    # the owner's terms do reach the scene row
    model.zero_grad()
    sdf, _, g = model.sdf_and_grad(x, mode="analytic", detach_rivals=True)
    (sdf[~rival].sum() + g.norm(dim=-1)[~rival].sum()).backward()
    assert weight.grad[0].abs().max() > 0


def test_scene_offsets_ownership_softmax_cannot_move_the_scene():
    # the ownership softmax is shift-invariant in g: its loss gives the scene row no gradient
    model = randomise(make_sdf(k=3, scene_offsets=True))
    x = random_points(48, 0.1, 0.9)
    sdf, _ = model(x)
    own = torch.softmax(-sdf / 0.01, dim=-1)
    weight = model.layers[-1].parametrizations.weight.original1
    (own[:, 1] - 1.0).abs().sum().backward()
    assert weight.grad[0].abs().max() < 1e-4 * weight.grad[1:4].abs().max()
    assert weight.grad[1:4].abs().max() > 0


def test_offsets_detach_trunk_same_values_and_no_trunk_gradient():
    torch.manual_seed(0)
    shared = randomise(make_sdf(k=3, scene_offsets=True))
    torch.manual_seed(0)
    cut = randomise(make_sdf(k=3, scene_offsets=True, offsets_detach_trunk=True))
    x = random_points(40, 0.1, 0.9)
    s1, f1, g1 = shared.sdf_and_grad(x)
    s2, f2, g2 = cut.sdf_and_grad(x)
    assert torch.allclose(s1, s2) and torch.allclose(f1, f2) and torch.allclose(g1, g2, atol=1e-6)
    # a loss on the offsets alone (g removed exactly): only the output layer's offset rows learn
    (s2 - s2.min(dim=-1, keepdim=True).values).sum().backward()
    assert cut.grid.table.grad is None or cut.grid.table.grad.abs().max() == 0
    for lin in cut.layers[:-1]:
        grad = lin.parametrizations.weight.original1.grad
        assert grad is None or grad.abs().max() == 0
    assert cut.layers[-1].parametrizations.weight.original1.grad[1:4].abs().max() > 0
    # the reverse pass of the tcnn grid cannot give the detached offsets' gradient in x: an error, not zeros
    with pytest.raises(SdfsegError, match="offsets_detach_trunk"):
        cut._grad_replicated(x, create_graph=True)
    _, _, g_fd = cut.sdf_and_grad(x, mode="finite_difference", eps=1e-4)
    assert (g_fd - g2).abs().mean() < 2e-2 * g2.abs().mean()


def test_offset_network_has_its_own_grid_and_no_trunk_gradient():
    model = make_sdf(k=4, hidden=128, scene_offsets=True, offset_grid_levels=3, offset_grid_max_resolution=16)
    assert model.layers[-1].out_features == 1 + 16 and model.offset_layers[-1].out_features == 4
    assert model.offset_grid.n_levels == 3 and len(model.grid_parameters()) == 2
    model = randomise(model)
    x = random_points(64, 0.1, 0.9)
    # a loss on who owns what (g removed exactly) and on the rivals' eikonal: nothing reaches the trunk or its grid
    model.zero_grad()
    sdf, _ = model(x)
    _, _, g = model.sdf_and_grad(x, mode="analytic", detach_rivals=True)
    rival = torch.ones_like(sdf, dtype=torch.bool)
    rival[torch.arange(64), sdf.argmin(dim=-1)] = False
    ((sdf - sdf.min(dim=-1, keepdim=True).values).sum() + ((g.norm(dim=-1) - 1) ** 2)[rival].sum()).backward()
    trunk = [model.grid.table] + [lin.parametrizations.weight.original1 for lin in model.layers]
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in trunk)
    assert model.offset_grid.table.grad.abs().max() > 0
    assert all(lin.parametrizations.weight.original1.grad.abs().max() > 0 for lin in model.offset_layers)


def test_offset_network_needs_scene_offsets_and_not_detach_trunk():
    with pytest.raises(SdfsegError, match="needs scene_offsets"):
        make_sdf(k=3, offset_grid_levels=2)
    with pytest.raises(SdfsegError, match="choose one"):
        make_sdf(k=3, scene_offsets=True, offsets_detach_trunk=True, offset_grid_levels=2)
