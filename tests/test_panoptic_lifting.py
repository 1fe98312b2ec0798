"""Panoptic Lifting reader: round trip on a tiny generated scene, normalisation, bad input."""

import json
import shutil

import numpy as np
import pytest

from sdfseg.data import ReadOptions, load_scene
from sdfseg.data.normalize import backproject_depth, normalize_scene
from sdfseg.data.synthetic import load_synthetic
from sdfseg.errors import SdfsegError
from sdfseg.io import read_label_png, save_label_png

from _helpers import tiny_scene


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_scene(tmp_path_factory.mktemp("pl") / "scene", seed=1)


def test_round_trip(tiny):
    s = load_scene(tiny)
    assert s.layout == "panoptic_lifting"
    assert s.rgb.shape == (10, 24, 32, 3) and s.rgb.dtype == np.uint8
    assert s.depth.shape == (10, 24, 32) and s.normals.shape == (10, 24, 32, 3)
    assert s.depth.dtype == np.float16 and s.normals.dtype == np.int8
    split = json.loads((tiny / "splits.json").read_text())
    assert [s.frame_names[i] for i in s.split["test"]] == sorted(split["test"])
    assert len(s.split["train"]) + len(s.split["test"]) == 10
    for i in (0, 7):
        name = s.frame_names[i]
        assert (s.gt.instance[i] == read_label_png(tiny / "rs_instance" / f"{name}.png")).all()
        assert (s.labels["m2f"].semantic[i] == read_label_png(tiny / "m2f_semantics" / f"{name}.png")).all()
        assert np.allclose(s.c2w[i], np.loadtxt(tiny / "pose" / f"{name}.txt"), atol=1e-6)
    assert s.classes.stuff_ids == (1, 2, 3) and 0 not in s.classes.thing_ids
    assert set(s.gt_hierarchy) == {"part", "object", "group"}
    assert "sim" in s.mask_dirs and s.meta["synthetic"].name == "synthetic.json"


def test_depth_and_pose_agree_with_gt_geometry(tiny):
    s = load_scene(tiny)
    syn = load_synthetic(tiny / "synthetic.json")
    pts = backproject_depth(s.depth[3], s.intrinsics[3], s.c2w[3], stride=3)
    # uint16 millimetres: points lie on the GT surface within a few millimetres
    assert np.abs(syn.scene_sdf(pts)).max() < 0.01


def test_resize_scales_intrinsics(tiny):
    s = load_scene(tiny)
    r = load_scene(tiny, options=ReadOptions(image_size=(12, 16)))
    assert r.rgb.shape[1:3] == (12, 16) and r.gt.instance.shape[1:] == (12, 16)
    assert np.allclose(r.intrinsics[0][:2], s.intrinsics[0][:2] / 2)


def test_normalisation_is_reversible_and_keeps_cameras_inside(tiny):
    s = load_scene(tiny)
    n = normalize_scene(s, radius=0.9)
    assert np.linalg.norm(n.c2w[:, :3, 3], axis=1).max() < 0.9
    back = n.normalization.to_world(n.c2w[:, :3, 3])
    assert np.allclose(back, s.c2w[:, :3, 3], atol=1e-5)
    pts = backproject_depth(n.depth[0], n.intrinsics[0], n.c2w[0])
    # float16 depth: each normalised depth is rounded again (relative 2^-11)
    assert np.allclose(n.normalization.to_world(pts), backproject_depth(s.depth[0], s.intrinsics[0], s.c2w[0]),
                       atol=1e-3 * float(s.depth[0].max()))
    # the room (depth points) is inside the unit sphere
    assert np.linalg.norm(pts, axis=1).max() < 1.0


def _copy(tiny, tmp_path):
    dst = tmp_path / "scene"
    shutil.copytree(tiny, dst)
    return dst


def test_bad_input_errors(tiny, tmp_path):
    with pytest.raises(SdfsegError, match="not found"):
        load_scene(tmp_path / "nope")
    d = _copy(tiny, tmp_path)
    name = sorted(p.stem for p in (d / "pose").iterdir())[2]
    pose = d / "pose" / f"{name}.txt"
    good = pose.read_text()
    pose.write_text("1 0 0 nan\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(SdfsegError, match=f"{name}.txt.*non-finite"):
        load_scene(d)
    pose.unlink()
    with pytest.raises(SdfsegError, match=f"{name}.txt: file not found"):
        load_scene(d)
    pose.write_text(good)
    lab = d / "rs_semantics" / f"{name}.png"
    save_label_png(lab, np.full((24, 32), 99, dtype=np.int32))
    with pytest.raises(SdfsegError, match="rs_semantics.*expected 0..12"):
        load_scene(d)
    save_label_png(lab, np.zeros((10, 10), dtype=np.int32))
    with pytest.raises(SdfsegError, match=f"{name}.png: map is 10x10, expected 24x32"):
        load_scene(d)
    (d / "splits.json").write_text(json.dumps({"train": [], "test": []}))
    with pytest.raises(SdfsegError, match="train split is empty"):
        load_scene(d)
