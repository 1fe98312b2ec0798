import math

import pytest
import torch

from sdfseg.core.render import volume as V

LN2, LN4 = math.log(2.0), math.log(4.0)


def two_sample_ray():
    t = torch.tensor([[1.0, 2.0]])
    sigma = torch.tensor([[LN2, LN4]])
    return t, sigma


def test_deltas_last_interval():
    t, _ = two_sample_ray()
    assert V.deltas(t).tolist() == [[1.0, 1e10]]
    assert V.deltas(t, far=torch.tensor([3.0])).tolist() == [[1.0, 1.0]]
    assert V.deltas(t, far=2.5).tolist() == [[1.0, 0.5]]
    assert V.deltas(t, last_delta=7.0).tolist() == [[1.0, 7.0]]


def test_two_sample_ray_infinite_last_interval():
    t, sigma = two_sample_ray()
    d = V.deltas(t)
    # alpha_0 = 1 - exp(-ln 2) = 1/2, T_1 = 1/2, alpha_1 = 1 (infinite interval)
    assert V.alpha(sigma, d)[0].tolist() == pytest.approx([0.5, 1.0])
    assert V.transmittance(sigma, d)[0].tolist() == pytest.approx([1.0, 0.5])
    w = V.render_weights(sigma, d)
    assert w[0].tolist() == pytest.approx([0.5, 0.5])
    assert V.render_depth(w, t).item() == pytest.approx(1.5)
    values = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, 4.0]]])
    assert V.composite(w, values)[0].tolist() == pytest.approx([0.5, 0.5, 3.0])


def test_two_sample_ray_bounded_by_far():
    t, sigma = two_sample_ray()
    d = V.deltas(t, far=torch.tensor([3.0]))
    w = V.render_weights(sigma, d)
    # alpha_1 = 1 - exp(-ln 4) = 3/4 -> w_1 = 1/2 * 3/4
    assert w[0].tolist() == pytest.approx([0.5, 0.375])
    assert V.render_depth(w, t).item() == pytest.approx(0.5 + 0.75)
    assert V.render_depth(w, t, normalize=True).item() == pytest.approx(1.25 / 0.875)


def test_three_sample_transmittance_is_exclusive():
    sigma = torch.tensor([[1.0, 2.0, 3.0]])
    d = torch.tensor([[0.5, 0.25, 1.0]])
    trans = V.transmittance(sigma, d)
    assert trans[0].tolist() == pytest.approx([1.0, math.exp(-0.5), math.exp(-1.0)])
    w = V.render_weights(sigma, d)
    assert w.sum().item() == pytest.approx(1.0 - math.exp(-4.0), rel=1e-6)


def test_object_opacity_two_sample_ray():
    _, sigma_min = two_sample_ray()
    d = torch.tensor([[1.0, 1.0]])
    # channel 0 dense at sample 0 only, channel 1 at sample 1 only, channel 2 everywhere (= scene)
    sigma_k = torch.tensor([[[LN2, 0.0, LN2], [0.0, LN4, LN4]]])
    O = V.object_opacity(sigma_min, sigma_k, d)
    assert O.shape == (1, 3)
    # O_0 = T_0 * 1/2 = 0.5; O_1 = T_1 * 3/4 = 0.375; O_2 = 0.5 + 0.5 * 0.75 = 0.875
    assert O[0].tolist() == pytest.approx([0.5, 0.375, 0.875])
    # occlusion: object 1 behind a fully opaque sample is invisible
    sigma_min_opaque = torch.tensor([[1e6, LN4]])
    O2 = V.object_opacity(sigma_min_opaque, sigma_k, d)
    assert O2[0, 1].item() == pytest.approx(0.0, abs=1e-12)


def test_points_along_rays_and_gradients_flow():
    o = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    dvec = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    t = torch.tensor([[0.5, 1.0], [2.0, 3.0]])
    pts = V.points_along_rays(o, dvec, t)
    assert pts.shape == (2, 2, 3)
    assert pts[1, 1].tolist() == [1.0, 1.0, -2.0]
    sigma = torch.tensor([[1.0, 2.0], [0.5, 0.1]], requires_grad=True)
    V.render_depth(V.render_weights(sigma, V.deltas(t)), t).sum().backward()
    assert torch.isfinite(sigma.grad).all()
