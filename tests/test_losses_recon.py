import math

import pytest
import torch

from sdfseg.core import losses as L


def test_rgb_l1_with_and_without_mask():
    pred = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    assert L.rgb_l1(pred, target).item() == pytest.approx(0.25)
    assert L.rgb_l1(pred, target, torch.tensor([True, False])).item() == pytest.approx(0.5)
    assert L.rgb_l1(pred, target, torch.tensor([False, False])).item() == 0.0


def test_eikonal_all_channels_and_min_channel():
    grad = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])  # norms 5 and 1
    assert L.eikonal(grad).item() == pytest.approx(8.0)
    # the min channel (channel 0 here) is counted once more: (16 + 0 + 16) / 3
    assert L.eikonal(grad, torch.tensor([[-1.0, 2.0]])).item() == pytest.approx(32.0 / 3.0)
    assert L.eikonal(torch.tensor([[0.0, 2.0, 0.0]])).item() == pytest.approx(1.0)


def test_smoothness():
    g1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    g2 = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    assert L.smoothness(g1, g2).item() == pytest.approx(math.sqrt(2.0) / 2.0, rel=1e-4)


def test_depth_metric():
    pred, target = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.5, 2.0, 0.0])
    assert L.depth_metric(pred, target, torch.tensor([True, True, False])).item() == pytest.approx(0.25)


def test_scale_shift_closed_form_hand_values():
    pred, target = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 2.0, 1.0])
    mask = torch.ones(3, dtype=torch.bool)
    scale, shift = L.scale_shift(pred, target, mask)
    assert scale.item() == pytest.approx(0.5) and shift.item() == pytest.approx(0.5)
    # residuals (0.5, -1, 0.5): sum of squares 1.5, divided by 2 * 3
    assert L.depth_scale_shift_invariant(pred, target, mask).item() == pytest.approx(0.25)
    exact = 2.0 * pred + 1.0
    assert L.depth_scale_shift_invariant(pred, exact, mask).item() == pytest.approx(0.0, abs=1e-10)


def test_scale_shift_mask_batch_and_degenerate():
    pred = torch.tensor([[0.0, 1.0, 2.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
    target = torch.tensor([[0.0, 2.0, 1.0, -50.0], [3.0, 1.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    scale, shift = L.scale_shift(pred, target, mask)
    assert scale.tolist() == pytest.approx([0.5, 0.0]) and shift.tolist() == pytest.approx([0.5, 0.0])
    # the constant (singular) second row is left out: same value as the first row alone
    p = pred.clone().requires_grad_(True)
    loss = L.depth_scale_shift_invariant(p, target, mask)
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad[1].abs().sum() == 0


def test_world_to_camera_normals():
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # cam x -> world y
    n_world = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    expect = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
    assert L.world_to_camera_normals(n_world, c2w[None]).tolist() == expect
    assert L.world_to_camera_normals(n_world, c2w).tolist() == expect
    per_ray = torch.stack([c2w, torch.eye(4)])
    assert L.world_to_camera_normals(n_world, per_ray).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]


def test_normal_loss_and_hit_mask():
    pred = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    target = torch.tensor([[0.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    l1, cos = L.normal_loss(pred, target)
    assert l1.item() == pytest.approx(1.0) and cos.item() == pytest.approx(0.5)
    l1, cos = L.normal_loss(pred, target, torch.tensor([True, False]))
    assert l1.item() == pytest.approx(2.0) and cos.item() == pytest.approx(1.0)
    sdf = torch.tensor([[0.5, 0.1, -0.2], [0.5, 0.3, 0.1], [-0.1, -0.2, -0.3]])
    assert L.surface_hit_mask(sdf).tolist() == [True, False, False]


def test_truncated_sdf_loss_hand_computed():
    from sdfseg.core.losses import truncated_sdf_loss

    t = torch.tensor([[0.1, 0.48, 0.52, 0.9]])
    # surface at t = 0.5, band 0.05: samples 0.48 (target +0.02), 0.52 (target -0.02) in the band;
    # 0.1 is free space (needs sdf >= 0.05); 0.9 is behind the band (ignored)
    sdf = torch.tensor([[0.01, 0.05, -0.02, 3.0]])
    got = truncated_sdf_loss(sdf, t, torch.tensor([0.5]), torch.tensor([True]), 0.05)
    expect = (abs(0.05 - 0.02) + abs(-0.02 + 0.02) + (0.05 - 0.01)) / 3
    assert torch.allclose(got, torch.tensor(expect), atol=1e-6)
    none = truncated_sdf_loss(sdf, t, torch.tensor([0.5]), torch.tensor([False]), 0.05)
    assert none.item() == 0.0
