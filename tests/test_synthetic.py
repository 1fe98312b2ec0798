"""Synthetic scene generator: analytic SDFs, layout, cameras, rendering, on-disk layout, determinism."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfseg.data import load_scene
from sdfseg.data.formats.geometry import index_to_edge
from sdfseg.data.masks import MaskSet
from sdfseg.data.synthetic import generate_scene, load_synthetic, random_scene
from sdfseg.data.synthetic.cameras import intrinsics, trajectory_poses
from sdfseg.data.synthetic.primitives import (
    Part, sdf_box, sdf_capsule, sdf_cylinder, sdf_round_box, sdf_sphere, sdf_torus, yaw_matrix,
)
from sdfseg.data.synthetic.writer import HFOV_DEG
from sdfseg.errors import SdfsegError
from sdfseg.io import read_label_png

REPO = Path(__file__).resolve().parents[1]
TINY = dict(objects=3, views=8, height=24, width=32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_scene(tmp_path_factory.mktemp("synth") / "scene", seed=3, progress=False, **TINY)


def _frame(root: Path, name: str) -> dict:
    return {"depth": np.asarray(Image.open(root / "depth" / f"{name}.png"), dtype=np.float64) / 1000.0,
            "inst": read_label_png(root / "rs_instance" / f"{name}.png"),
            "c2w": np.loadtxt(root / "pose" / f"{name}.txt")}


def test_primitive_sdfs_hand_values():
    p = np.array([[2.0, 0, 0], [0, 0, 0], [2, 2, 0]])
    np.testing.assert_allclose(sdf_box(p, [1, 1, 1]), [1.0, -1.0, np.sqrt(2)])
    np.testing.assert_allclose(sdf_round_box(p, [1, 1, 1], 0.2), [1.0, -1.0, np.hypot(1.2, 1.2) - 0.2])
    q = np.array([[0.0, 0, 3], [2, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(sdf_cylinder(q, 1.0, 1.0), [2.0, 1.0, -1.0])
    np.testing.assert_allclose(sdf_sphere(q, 1.0), [2.0, 1.0, -1.0])
    np.testing.assert_allclose(sdf_torus(np.array([[2.0, 0, 0], [0, 0, 0], [2, 0, 1]]), 2.0, 0.5), [-0.5, 1.5, 0.5])
    np.testing.assert_allclose(sdf_capsule(np.array([[0.0, 0, 3], [1, 0, 0], [0, 0, 1]]), 0.5, 1.0), [1.5, 0.5, -0.5])
    # a 2 x 1 x 1 (half) box turned by 90 degrees about z and moved to x = 1
    part = Part(1, "b", "box", {"half": np.array([2.0, 1.0, 1.0])}, [1.0, 0, 0], yaw_matrix(np.pi / 2))
    np.testing.assert_allclose(part.sdf(np.array([[1.0, 1.5, 0], [3.0, 0, 0]])), [-0.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(part.aabb(), [[0, -2, -1], [2, 2, 1]], atol=1e-12)


def test_scene_description_roundtrip_and_sdf_columns(tmp_path):
    scene = random_scene(4, seed=1)
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(scene.to_dict()))
    loaded = load_synthetic(path)
    pts = np.random.default_rng(0).uniform([-3, -2.5, 0], [3, 2.5, 3], size=(2000, 3))
    cols = loaded.object_sdf(pts)
    assert cols.shape == (2000, 5)
    np.testing.assert_allclose(cols, scene.object_sdf(pts), atol=1e-12)
    np.testing.assert_allclose(loaded.part_sdf(pts), scene.part_sdf(pts), atol=1e-12)
    np.testing.assert_allclose(loaded.scene_sdf(pts), cols.min(axis=1), atol=1e-12)
    # room column: positive inside, distance to the nearest of walls/floor/ceiling (room 6 x 5 x 3 m)
    np.testing.assert_allclose(loaded.object_sdf(np.array([[0.0, 0, 1.5], [2.5, 0, 1.0], [0, 0, -0.5]]))[:, 0],
                               [1.5, 0.5, -0.5])
    # the part columns refine the object columns
    tables = loaded.part_tables()
    part_cols = loaded.part_sdf(pts)
    for o in loaded.objects:
        ids = [p.id for p in o.parts]
        np.testing.assert_allclose(part_cols[:, ids].min(axis=1), cols[:, o.id])
        assert set(tables["object"][ids]) == {o.id} and set(tables["group"][ids]) == {o.group}
    with pytest.raises(SdfsegError, match="file not found"):
        load_synthetic(tmp_path / "missing")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_objects_stand_on_floor_do_not_intersect_and_some_touch(seed):
    scene = random_scene(6, seed)
    rng = np.random.default_rng(seed)
    for o in scene.objects:
        box = o.aabb()
        assert abs(box[0, 2]) < 1e-9, f"object {o.id} does not stand on the floor"
        assert np.all(box[0, :2] > -scene.room.half[:2]) and np.all(box[1, :2] < scene.room.half[:2])
    # two objects can only overlap or touch where their bounding boxes (grown by 1 cm) intersect
    touching = 0
    for a in scene.objects:
        for b in scene.objects:
            lo = np.maximum(a.aabb()[0], b.aabb()[0]) - 0.01
            hi = np.minimum(a.aabb()[1], b.aabb()[1]) + 0.01
            if a.id >= b.id or np.any(lo >= hi):
                continue
            q = rng.uniform(lo, hi, size=(20_000, 3))
            sa, sb = a.sdf(q), b.sdf(q)
            assert not np.any((sa < -1e-3) & (sb < -1e-3)), f"objects {a.id} and {b.id} overlap"
            # touching: both surfaces within 5 mm of one point
            touching += a.group == b.group and np.maximum(sa, sb).min() < 0.005
    assert touching >= 1
    assert scene.num_groups < len(scene.objects)  # some group holds several objects


def test_cameras_inside_room_clear_of_objects():
    scene = random_scene(6, seed=0)
    poses = trajectory_poses(scene.meta["trajectory"], 60)
    centres = poses[:, :3, 3]
    assert np.all(np.abs(centres[:, :2]) < scene.room.half[:2] - 0.3)
    assert np.all((centres[:, 2] >= 1.2 - 1e-9) & (centres[:, 2] <= 1.8 + 1e-9))
    assert scene.scene_sdf(centres).min() > 0.3
    rot = poses[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0)
    assert np.all(rot[:, 2, 1] < 0)  # image y axis (down) points down in the world (z up)


def test_files_splits_and_metadata(tiny):
    names = [f"{i:04d}" for i in range(8)]
    assert json.loads((tiny / "splits.json").read_text()) == {
        "train": ["0000", "0001", "0003", "0004", "0005", "0006"], "test": ["0002", "0007"]}
    seg = pickle.loads((tiny / "segmentation_data.pkl").read_bytes())
    assert seg["num_semantic_classes"] == 13 and seg["bg_classes"] == [1, 2, 3]
    assert seg["fg_classes"] == list(range(4, 13)) and seg["class_names"][:4] == ["void", "wall", "floor", "ceiling"]
    K = np.loadtxt(tiny / "intrinsic" / "intrinsic_color.txt")
    f = 16.0 / np.tan(np.deg2rad(37.5))
    # Panoptic Lifting's pixel-index convention: the principal point of the 32x24 image is (15.5, 11.5)
    np.testing.assert_allclose(K, [[f, 0, 15.5, 0], [0, f, 11.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-8)
    for sub in ("color", "depth", "pose", "rs_semantics", "rs_instance", "m2f_semantics", "m2f_instance",
                "m2f_probabilities", "gt_part", "gt_group", "normal", "masks_sim"):
        assert sorted(p.stem for p in (tiny / sub).iterdir()) == names, sub
    with Image.open(tiny / "rs_instance" / "0001.png") as im:
        assert im.mode.startswith("I;16") and im.size == (32, 24)
    with np.load(tiny / "m2f_probabilities" / "0001.npz") as z:
        assert z["confidence"].dtype == np.float16 and z["confidence"].shape == (24, 32)
        assert z["probability"].dtype == np.float16 and z["probability"].shape == (24, 32, 13)
        np.testing.assert_allclose(z["probability"].astype(np.float32).sum(-1), 1.0, atol=1e-2)
    assert len(MaskSet.load(tiny / "masks_sim" / "0001.npz")) > 0
    assert not list(tiny.parent.glob(".scene.*")), "staging folder left behind"


def test_reader_gives_back_the_renderer_intrinsics(tiny):
    # written in Panoptic Lifting's pixel-index convention, read back into ours: the rays are the renderer's
    np.testing.assert_array_equal(load_scene(tiny).intrinsics[0], intrinsics(24, 32, HFOV_DEG).astype(np.float32))


def test_label_maps_follow_the_hierarchy(tiny):
    scene = load_synthetic(tiny)
    tables = scene.part_tables()
    for name in ("0000", "0001", "0004"):
        part = read_label_png(tiny / "gt_part" / f"{name}.png")
        sem = read_label_png(tiny / "rs_semantics" / f"{name}.png")
        np.testing.assert_array_equal(tables["object"][part], read_label_png(tiny / "rs_instance" / f"{name}.png"))
        np.testing.assert_array_equal(tables["group"][part], read_label_png(tiny / "gt_group" / f"{name}.png"))
        np.testing.assert_array_equal(sem[part > 0], tables["semantic"][part[part > 0]])
        assert set(np.unique(sem[part == 0])) <= {1, 2, 3}


def test_depth_lies_on_the_surface_and_reprojects_to_the_same_instance(tiny):
    scene = load_synthetic(tiny)
    K = index_to_edge(np.loadtxt(tiny / "intrinsic" / "intrinsic_color.txt")[:3, :3])
    frames = [_frame(tiny, f"{i:04d}") for i in range(8)]
    checked = 0
    for a, fa in enumerate(frames):
        v, u = np.nonzero(fa["depth"] > 0)
        assert v.size == 24 * 32  # the closed room: every ray hits something
        cam = fa["depth"][v, u, None] * (np.stack([u + 0.5, v + 0.5, np.ones_like(u)], -1) @ np.linalg.inv(K).T)
        world = cam @ fa["c2w"][:3, :3].T + fa["c2w"][:3, 3]
        assert np.abs(scene.scene_sdf(world)).max() < 0.01
        for b, fb in enumerate(frames):
            if a == b:
                continue
            xb = (world - fb["c2w"][:3, 3]) @ fb["c2w"][:3, :3]
            z = xb[:, 2]
            uv = (xb @ K.T)[:, :2] / np.maximum(z, 1e-9)[:, None]
            ub, vb = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
            ok = (z > 0.1) & (ub >= 1) & (ub < 31) & (vb >= 1) & (vb < 23)
            ok[ok] &= np.abs(fb["depth"][vb[ok], ub[ok]] - z[ok]) < 0.03 * z[ok]  # visible in B
            for i in np.flatnonzero(ok):
                nb = fb["inst"][vb[i] - 1:vb[i] + 2, ub[i] - 1:ub[i] + 2]
                if np.all(nb == nb[1, 1]) and nb[1, 1] > 0:
                    assert nb[1, 1] == fa["inst"][v[i], u[i]]
                    checked += 1
    assert checked > 100


def test_normals_are_unit_face_the_camera_and_match_the_floor(tiny):
    K = index_to_edge(np.loadtxt(tiny / "intrinsic" / "intrinsic_color.txt")[:3, :3])
    v, u = np.mgrid[0:24, 0:32]
    rays = np.stack([u + 0.5, v + 0.5, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    floors = 0
    for name in ("0000", "0003", "0006"):
        n = np.load(tiny / "normal" / f"{name}.npy").astype(np.float64)
        c2w = np.loadtxt(tiny / "pose" / f"{name}.txt")
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=2e-3)
        assert np.all(np.sum(n * rays, axis=-1) < 0)
        floor = read_label_png(tiny / "rs_semantics" / f"{name}.png") == 2
        # the floor's world normal +z seen from the camera: R^T [0, 0, 1]
        np.testing.assert_allclose(n[floor], np.broadcast_to(c2w[2, :3], n[floor].shape), atol=2e-3)
        floors += floor.sum()
    assert floors > 100


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path, tiny):
    again = generate_scene(tmp_path / "again", seed=3, progress=False, **TINY)
    files = sorted(p.relative_to(tiny) for p in tiny.rglob("*") if p.is_file())
    assert sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()) == files
    assert len(files) == 8 * 12 + 4
    for rel in files:
        assert (tiny / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = generate_scene(tmp_path / "other", seed=4, progress=False, **TINY)
    rgb = [np.asarray(Image.open(r / "color" / "0001.png")) for r in (tiny, other)]
    assert np.abs(rgb[0].astype(int) - rgb[1].astype(int)).mean() > 5


def test_refuses_non_empty_output_unless_forced(tmp_path):
    out = tmp_path / "scene"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = dict(objects=1, views=1, height=8, width=8, progress=False)
    with pytest.raises(SdfsegError, match="not empty"):
        generate_scene(out, **args)
    assert (out / "keep.txt").exists()
    generate_scene(out, force=True, **args)
    assert not (out / "keep.txt").exists() and (out / "color" / "0000.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    import sdfseg.data.synthetic.writer as writer

    calls = []
    real = writer.write_frame

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "write_frame", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_scene(tmp_path / "scene", objects=1, views=3, height=8, width=8, progress=False)
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_cli_reports_unknown_noise_key(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic.py"), str(tmp_path / "s"),
                          "--noise", "bogus=1"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert res.stderr.startswith("error: --noise bogus: unknown key")
    assert not (tmp_path / "s").exists()
