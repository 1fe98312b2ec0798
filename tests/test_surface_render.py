"""The surface-first renderer: the scene-SDF grid, its tracer, and renders against the full volume renderer."""

import math

import pytest
import torch
from _helpers import DEVICE, TINY, demo_config

from sdfseg.core.model import SceneModel
from sdfseg.core.render.samplers import near_far_sphere
from sdfseg.core.render.surface import SdfGrid, band_samples, surface_render


def sphere_and_box(p: torch.Tensor) -> torch.Tensor:
    """Union of a sphere (r 0.5 at the origin) and a box (half size 0.1 at (0.3, 0.2, 0.1))."""
    box = (p - torch.tensor([0.3, 0.2, 0.1], device=p.device)).abs().max(dim=-1).values - 0.1
    return torch.minimum(p.norm(dim=-1) - 0.5, box)


def dense_values(fn, n: int) -> torch.Tensor:
    axis = torch.linspace(-1.0, 1.0, n)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    return fn(torch.stack([x, y, z], dim=-1).reshape(-1, 3)).view(n, n, n)


def test_coarse_to_fine_grid_equals_dense_near_surfaces_with_fewer_evaluations():
    g = SdfGrid(65, 1.0)
    used = g.update(sphere_and_box)
    ref = dense_values(sphere_and_box, 65)
    near = ref.abs() < 0.15
    assert torch.equal(g.values[0, 0][near], ref[near])  # the network's own values where surfaces are
    assert torch.equal(g.values[0, 0] > 0, ref > 0)  # no surface appears or vanishes elsewhere
    assert used < 0.8 * 65 ** 3
    dense = SdfGrid(64, 1.0)  # (64 - 1) is no multiple of 4: every vertex
    assert dense.update(sphere_and_box) == 64 ** 3
    assert torch.allclose(dense.values[0, 0], dense_values(sphere_and_box, 64))
    assert bool(g.valid) and not bool(SdfGrid(9, 1.0).valid)


def test_query_is_trilinear_at_vertices_and_between():
    g = SdfGrid(5, 1.0)
    g.update(lambda p: p[:, 0] * 2.0 + p[:, 1] - 0.5 * p[:, 2])  # linear: trilinear interpolation is exact
    pts = torch.tensor([[0.5, -0.5, 0.0], [0.13, 0.71, -0.44], [1.0, 1.0, 1.0]])
    assert torch.allclose(g.query(pts), pts[:, 0] * 2.0 + pts[:, 1] - 0.5 * pts[:, 2], atol=1e-6)


def test_trace_finds_the_first_crossing_from_inside_and_outside():
    g = SdfGrid(65, 1.0)
    g.update(sphere_and_box)
    # from outside towards the sphere along -x: hit at x = 0.5, i.e. t = 0.9 - 0.5 = 0.4
    o = torch.tensor([[0.9, -0.3, -0.3], [0.0, 0.0, 0.0]])
    d = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near, far = near_far_sphere(o, d, 1.0, min_near=0.0)
    t, hit, t_miss = g.trace(o, d, near, far)
    x_hit = math.sqrt(0.25 - 0.18)
    assert bool(hit[0]) and abs(float(t[0]) - (0.9 - x_hit)) < 0.2 * g.voxel
    assert bool(hit[1]) and float(t[1]) == 0.0  # starts inside: its first sample
    assert (t_miss < 0).all()


def test_masked_trace_gives_the_compacting_trace_bit_for_bit():
    g = SdfGrid(33, 1.0)
    g.update(sphere_and_box)
    gen = torch.Generator().manual_seed(4)
    d = torch.nn.functional.normalize(torch.randn(500, 3, generator=gen), dim=-1)
    o = 0.9 * torch.nn.functional.normalize(torch.randn(500, 3, generator=gen), dim=-1)
    near, far = near_far_sphere(o, d, 1.0, min_near=0.0)
    a = g.trace(o, d, near, far, compact=True, miss_margin=0.05)
    b = g.trace(o, d, near, far, compact=False, miss_margin=0.05)
    assert a[1].any() and (a[2] >= 0).any()  # hits and near misses both occur
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_trace_marks_a_ray_grazing_a_thin_plate_the_grid_does_not_close():
    plate = lambda p: (p[:, 0] - 0.2).abs() - 0.004  # 8 mm thick at x = 0.2: never negative at a vertex
    g = SdfGrid(33, 1.0)  # voxel 6.25 cm
    g.update(plate)
    assert (g.values > 0).all()
    o, d = torch.tensor([[-0.5, 0.01, 0.02]]), torch.tensor([[1.0, 0.0, 0.0]])
    near, far = near_far_sphere(o, d, 1.0, min_near=0.0)
    t, hit, t_miss = g.trace(o, d, near, far, miss_margin=0.5 * g.voxel)
    assert not bool(hit[0])
    assert abs(float(t_miss[0]) - 0.7) < 2.0 * g.voxel  # the plate, 0.7 along the ray


def test_band_samples_are_even_and_start_after_near():
    t = band_samples(torch.tensor([1.0, 0.05]), torch.tensor([0.1, 0.1]), 0.2, 5)
    assert torch.allclose(t[0], torch.tensor([0.8, 0.9, 1.0, 1.1, 1.2]))
    assert torch.allclose(t[1], torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))


def _model(tmp_path) -> SceneModel:
    torch.manual_seed(0)
    cfg = demo_config(TINY, tmp_path / "scene", tmp_path / "run", "model.beta_final=null", "model.beta_init=0.01",
                      "sampler.n_coarse=128", "sampler.n_importance=64")  # an accurate reference render
    return SceneModel(cfg, num_channels=5).to(DEVICE).eval()


def _rays(n: int = 256):
    g = torch.Generator().manual_seed(1)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    o = 0.5 * torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return o.to(DEVICE), d.to(DEVICE)


def test_surface_render_agrees_with_the_volume_renderer(tmp_path):
    model = _model(tmp_path)  # geometric init: a small sphere (objects) inside a large one (the room)
    o, d = _rays()
    keys = ("rgb", "depth", "opacity", "acc")
    with torch.no_grad():
        full = model.render(o, d, need_normals=False, create_graph=False)
        model.build_surface_grid(33)
        fast, fallback = surface_render(model, model.surface_grid, o, d, 8, keys)
    assert fallback.float().mean() < 0.05
    err = (full["depth"] - fast["depth"]).abs()
    assert err.median() < 0.005 and (err < 0.02).float().mean() > 0.95  # apart from a few silhouette rays
    assert (full["rgb"] - fast["rgb"]).abs().mean() < 0.01
    assert (fast["acc"] > 0.99).all()
    assert (full["opacity"].argmax(-1) == fast["opacity"].argmax(-1)).float().mean() > 0.95


def test_a_grid_without_surfaces_falls_back_to_the_volume_renderer_exactly(tmp_path):
    model = _model(tmp_path)
    o, d = _rays(64)
    stale = SdfGrid(9, 1.0).to(DEVICE)
    stale.values.fill_(10.0)  # no surface anywhere: every ray must take the full renderer
    with torch.no_grad():
        full = model.render(o, d, need_normals=False, create_graph=False)
        fast, fallback = surface_render(model, stale, o, d, 8, ("depth", "opacity"))
    assert fallback.all()
    assert torch.equal(fast["depth"], full["depth"]) and torch.equal(fast["opacity"], full["opacity"])


@pytest.mark.parametrize("renderer", ["surface", "volume"])
def test_render_config_keys_are_checked(tmp_path, renderer):
    from sdfseg.errors import SdfsegError

    cfg = demo_config(TINY, tmp_path / "s", tmp_path / "r", f"render.renderer={renderer}")
    assert cfg.render.renderer == renderer
    with pytest.raises(SdfsegError, match="render.renderer"):
        demo_config(TINY, tmp_path / "s", tmp_path / "r", "render.renderer=raymarch")
    with pytest.raises(SdfsegError, match="render.grid_resolution"):
        demo_config(TINY, tmp_path / "s", tmp_path / "r", "render.grid_resolution=8")
