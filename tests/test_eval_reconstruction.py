"""Test-view reconstruction figures (sdfseg.eval.reconstruction): PSNR and depth error, by hand."""

import numpy as np
import pytest
from _helpers import tiny_scene
from PIL import Image

from sdfseg.data import load_scene
from sdfseg.data.normalize import normalize_scene
from sdfseg.errors import SdfsegError
from sdfseg.eval.reconstruction import depth_errors, psnr, view_reconstruction


def test_psnr_and_depth_errors_by_hand():
    gt = np.zeros((2, 2, 3))
    pred = gt.copy()
    pred[0, 0] = 0.2  # MSE = 0.04 * 3 / 12 = 0.01 -> 20 dB
    assert psnr(pred, gt) == pytest.approx(20.0)
    assert psnr(gt, gt) == float("inf")
    gt_d = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]])  # one pixel without depth
    pred_d = np.array([[1.01, 2.1, 9.0], [3.0, 4.5, 5.03]])  # errors .01 .1 (skip) 0 .5 .03
    e = depth_errors(pred_d, gt_d)
    assert e["depth_pixels"] == 5 and e["depth_median_m"] == pytest.approx(0.03)
    assert e["depth_over_5cm"] == pytest.approx(2 / 5) and e["depth_over_20cm"] == pytest.approx(1 / 5)
    assert depth_errors(pred_d, np.zeros_like(gt_d))["depth_median_m"] is None


def test_view_reconstruction_of_a_written_folder(tmp_path):
    """The scene's own images and depth written as a prediction give inf PSNR and zero error, in metres on a
    normalised scene too; a view with a 10 cm offset everywhere is off by more than 5 cm on every pixel."""
    scene = normalize_scene(load_scene(tiny_scene(tmp_path / "s"), "auto"), radius=0.9)
    frames = np.asarray(scene.split["test"])
    pred = tmp_path / "pred"
    (pred / "rgb").mkdir(parents=True)
    (pred / "depth").mkdir()
    for off, name in ((0.0, "exact"), (0.1, "off")):
        for i in frames:
            f = scene.frame_names[int(i)]
            Image.fromarray(scene.rgb[int(i)]).save(pred / "rgb" / f"{f}.png")
            world = scene.depth_float(int(i)) * scene.normalization.scale
            mm = np.where(world > 0, world + off, 0) * 1000.0
            Image.fromarray(np.round(mm).astype(np.uint16)).save(pred / "depth" / f"{f}.png")
        r = view_reconstruction(scene, pred, frames)
        assert r["frames"] == len(frames) and r["psnr"] == float("inf")
        if name == "exact":
            assert r["depth_median_m"] <= 0.0006 and r["depth_over_5cm"] == 0.0
        else:
            assert r["depth_median_m"] == pytest.approx(0.1, abs=6e-4) and r["depth_over_5cm"] == 1.0
            assert r["depth_over_20cm"] == 0.0
    assert view_reconstruction(scene, tmp_path, frames) is None  # no rgb/ folder: label maps only
    Image.fromarray(np.zeros((3, 3), np.uint16)).save(pred / "depth" / f"{scene.frame_names[int(frames[0])]}.png")
    with pytest.raises(SdfsegError, match="size 3x3"):
        view_reconstruction(scene, pred, frames)


def test_mesh_matching_keeps_every_valid_pair():
    from sdfseg.eval.meshes import match_pairs

    # Chamfer costs of two GT objects (rows) against two predicted meshes (cols), from a demo run: only
    # GT 1 - pred 0 (0.16) is under the 0.25 m limit. A plain lowest-total assignment picks (0, 0) + (1, 1)
    # (3.54 + 0.83 = 4.37 < 4.28 + 0.16 = 4.44) and loses it.
    cost = np.array([[3.54, 4.28], [0.16, 0.83]])
    assert match_pairs(cost, 0.25) == [(1, 0)]
    # as many pairs as possible first, then the lowest total: (0, 1) + (1, 0) = 0.4 against (0, 0) alone
    assert sorted(match_pairs(np.array([[0.1, 0.2], [0.2, 0.9]]), 0.25)) == [(0, 1), (1, 0)]
    assert match_pairs(np.array([[0.1, 0.2], [0.3, 0.9]]), 0.25) == [(0, 0)]
    assert match_pairs(np.zeros((0, 3)), 0.25) == []
