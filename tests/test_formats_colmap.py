"""COLMAP captures (sdfseg.data.formats.colmap): a hand-made text model (2 cameras, 3 images, a few points)
whose rays and sparse depth are worked out by hand, the same model in binary, refused camera models, the
sparse-depth rays of the sampler and the inward-capture warning."""

import math
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from sdfseg.data import ReadOptions, load_scene
from sdfseg.data.formats import colmap
from sdfseg.data.normalize import inward_capture, normalize_scene
from sdfseg.data.rays import RaySampler, view_rays
from sdfseg.errors import SdfsegError

S = math.sqrt(0.5)
CAMERAS = [(1, "PINHOLE", 100, 80, [50.0, 60.0, 50.0, 40.0]), (2, "SIMPLE_PINHOLE", 100, 80, [40.0, 50.0, 40.0])]
# image 1: at the origin, looking along +z; image 2: world-to-camera rotation of +90 degrees about y, t = (0, 0, 2),
# so its centre is -R^T t = (2, 0, 0) and it looks along -x; image 3 (camera 2): identity rotation, t = (0, 0, 1)
IMAGES = [(1, [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 1, "a.png"), (2, [S, 0.0, S, 0.0], [0.0, 0.0, 2.0], 1, "b.png"),
          (3, [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0], 2, "c.png")]
# id, xyz, error, track (image ids)
POINTS = [(1, [0.05, 0.06, 5.0], 0.5, [1, 3]),   # image 1: (50.5, 40.72) -> pixel (50, 40), z 5;
                                                  # image 3: camera (0.05, 0.06, 6) -> (50.33, 40.4), z 6
          (2, [0.5, 0.26, 0.015], 0.8, [2, 3]),  # image 2: camera R x + t = (0.015, 0.26, 1.5) -> (50.5, 50.4),
                                                  # z 1.5; image 3: (0.5, 0.26, 1.015) -> (69.7, 50.25), z 1.015
          (3, [0.0, 0.1, 3.0], 5.0, [1, 2]),   # reprojection error 5 px: an outlier, no depth
          (4, [0.1, 0.1, 4.0], 0.3, [1])]      # seen once: no depth
EXPECTED_DEPTH = {0: {(40, 50): 5.0}, 1: {(50, 50): 1.5}, 2: {(40, 50): 6.0, (50, 69): 1.015}}  # (v, u): z


def write_text_model(root, cameras=CAMERAS):
    d = root / "sparse" / "0"
    d.mkdir(parents=True)
    (d / "cameras.txt").write_text("# Camera list\n" + "".join(
        f"{i} {m} {w} {h} {' '.join(map(str, p))}\n" for i, m, w, h, p in cameras))
    (d / "images.txt").write_text("# Image list with two lines of data per image\n" + "".join(
        f"{i} {' '.join(map(str, q))} {' '.join(map(str, t))} {c} {n}\n\n" for i, q, t, c, n in IMAGES))
    (d / "points3D.txt").write_text("".join(
        f"{i} {' '.join(map(str, x))} 128 128 128 {e} {' '.join(f'{im} 0' for im in tr)}\n" for i, x, e, tr in POINTS))
    return d


def write_binary_model(root):
    d = root / "sparse" / "0"
    d.mkdir(parents=True)
    ids = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1}
    with open(d / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(CAMERAS)))
        for i, m, w, h, p in CAMERAS:
            f.write(struct.pack("<iiQQ", i, ids[m], w, h) + struct.pack(f"<{len(p)}d", *p))
    with open(d / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(IMAGES)))
        for i, q, t, c, n in IMAGES:
            f.write(struct.pack("<i4d3di", i, *q, *t, c) + n.encode() + b"\x00")
            f.write(struct.pack("<Q", 1) + struct.pack("<ddq", 10.0, 20.0, -1))  # one 2D point, no 3D point
    with open(d / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(POINTS)))
        for i, x, e, tr in POINTS:
            f.write(struct.pack("<Q3d3BdQ", i, *x, 128, 128, 128, e, len(tr)))
            for im in tr:
                f.write(struct.pack("<ii", im, 0))
    return d


def write_images(root, names=("a.png", "b.png", "c.png"), hw=(80, 100)):
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, hw + (3,), dtype=np.uint8)).save(root / "images" / n)


@pytest.fixture
def text_scene(tmp_path):
    write_text_model(tmp_path)
    write_images(tmp_path)
    return tmp_path


def test_text_model_poses_rays_and_sparse_depth(text_scene, capsys):
    scene = load_scene(text_scene)
    assert "layout: colmap (auto-detected)" in capsys.readouterr().out
    assert scene.frame_names == ["a", "b", "c"] and scene.depth_kind == "sparse"
    assert np.allclose(scene.c2w[0], np.eye(4))
    assert np.allclose(scene.c2w[1][:3, 3], [2.0, 0.0, 0.0], atol=1e-6)
    assert np.allclose(scene.c2w[2][:3, 3], [0.0, 0.0, -1.0])
    assert np.allclose(scene.intrinsics[0], [[50, 0, 50], [0, 60, 40], [0, 0, 1]])
    assert np.allclose(scene.intrinsics[2], [[40, 0, 50], [0, 40, 40], [0, 0, 1]])
    # pixel (u 10, v 20) of image a: through its centre (10.5, 20.5): ((10.5 - 50) / 50, (20.5 - 40) / 60, 1)
    o, d, _ = view_rays(scene.c2w[0], scene.intrinsics[0], scene.hw, "cpu", u=np.array([10]), v=np.array([20]))
    expect = np.array([-0.79, -0.325, 1.0])
    assert np.allclose(o.numpy()[0], 0.0) and np.allclose(d.numpy()[0], expect / np.linalg.norm(expect), atol=1e-6)
    # pixel (49, 39) of image b: camera direction (-0.01, -0.5 / 60, 1), in the world R^T of it = (-1, -1/120, -0.01)
    o, d, _ = view_rays(scene.c2w[1], scene.intrinsics[1], scene.hw, "cpu", u=np.array([49]), v=np.array([39]))
    expect = np.array([-1.0, -1.0 / 120.0, -0.01])
    assert np.allclose(o.numpy()[0], [2.0, 0.0, 0.0], atol=1e-6)
    assert np.allclose(d.numpy()[0], expect / np.linalg.norm(expect), atol=1e-6)
    # sparse depth: each kept point in the pixel it projects to, with its camera z; nothing else
    for i, px in EXPECTED_DEPTH.items():
        depth = scene.depth[i].astype(np.float32)
        got = {(int(v), int(u)): float(depth[v, u]) for v, u in zip(*np.nonzero(depth))}
        assert set(got) == set(px) and all(got[k] == pytest.approx(z, rel=1e-3) for k, z in px.items())
    assert scene.classes.num_classes == 3 and scene.labels == {}  # instance-only; labels come from segment2d


def test_binary_model_reads_the_same(text_scene, tmp_path):
    b = tmp_path / "bin"
    write_binary_model(b)
    write_images(b)
    t, s = load_scene(text_scene, "colmap"), load_scene(b, "colmap")
    for key in ("c2w", "intrinsics", "depth"):
        assert np.array_equal(getattr(t, key), getattr(s, key)), key
    assert s.frame_names == t.frame_names


def test_resized_images_scale_the_cameras_and_keep_every_point(text_scene):
    scene = load_scene(text_scene, "colmap", ReadOptions(image_size=(40, 50)))
    assert np.allclose(scene.intrinsics[0], [[25, 0, 25], [0, 30, 20], [0, 0, 1]])
    assert float(scene.depth[0][20, 25]) == 5.0 and int((scene.depth[2] > 0).sum()) == 2


@pytest.mark.parametrize("model", ["OPENCV", "SIMPLE_RADIAL"])
def test_distorted_cameras_are_refused(tmp_path, model):
    cams = [(1, model, 100, 80, [50.0, 60.0, 50.0, 40.0, 0.1, 0.0, 0.0, 0.0][:4 if model == "SIMPLE_RADIAL" else 8]),
            CAMERAS[1]]
    write_text_model(tmp_path, cams)
    write_images(tmp_path)
    with pytest.raises(SdfsegError, match=f"camera 1 has model {model}.*image_undistorter"):
        load_scene(tmp_path, "colmap")


def test_missing_image_and_broken_file_are_one_line_errors(text_scene):
    (text_scene / "images" / "b.png").unlink()
    with pytest.raises(SdfsegError, match=r"b\.png: file not found \(image 2 of"):
        load_scene(text_scene, "colmap")
    write_images(text_scene)
    (text_scene / "sparse" / "0" / "cameras.txt").write_text("1 PINHOLE 100 eighty 50 60 50 40\n")
    with pytest.raises(SdfsegError, match=r"cameras\.txt: not a COLMAP cameras file"):
        load_scene(text_scene, "colmap")


def _ring_scene(root, wall_points: bool):
    """8 cameras on a ring of radius 3 looking at the origin; points near the origin (and, for a room,
    walls at radius 6 behind the cameras)."""
    d = root / "sparse" / "0"
    d.mkdir(parents=True)
    (d / "cameras.txt").write_text("1 PINHOLE 100 80 60 60 50 40\n")
    lines, names = [], []
    for k in range(8):
        a = 2 * math.pi * k / 8
        c = np.array([3 * math.cos(a), 3 * math.sin(a), 0.0])
        z = -c / 3.0
        x = np.cross([0.0, 0.0, 1.0], z)
        y = np.cross(z, x)
        R = np.stack([x, y, z])  # world-to-camera rows
        w = math.sqrt(max(1e-12, 1 + np.trace(R))) / 2
        q = [w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)]
        t = -R @ c
        lines.append(f"{k + 1} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 f{k}.png\n\n")
        names.append(f"f{k}.png")
    (d / "images.txt").write_text("".join(lines))
    rng = np.random.default_rng(1)
    pts = list(rng.uniform(-0.4, 0.4, (200, 3)))
    if wall_points:
        a = rng.uniform(0, 2 * math.pi, 400)
        pts += list(np.c_[6 * np.cos(a), 6 * np.sin(a), rng.uniform(-0.5, 0.5, 400)])
    track = " ".join(f"{k + 1} 0" for k in range(8))
    (d / "points3D.txt").write_text("".join(f"{i + 1} {p[0]} {p[1]} {p[2]} 0 0 0 0.5 {track}\n" for i, p in enumerate(pts)))
    write_images(root, names)
    return normalize_scene(load_scene(root, "colmap"))


def test_inward_capture_warning(tmp_path):
    assert "look inward at an object" in inward_capture(_ring_scene(tmp_path / "object", wall_points=False))
    assert inward_capture(_ring_scene(tmp_path / "room", wall_points=True)) is None


def test_sparse_depth_rays(text_scene):
    scene = normalize_scene(load_scene(text_scene, "colmap"))
    labels = np.zeros((3, 80, 100), dtype=np.int32)
    s = RaySampler(scene, labels, labels, None, torch.device("cpu"), seed=0, depth_rays=6)
    b = s.sample(10, 0)
    assert b.depth.shape[0] == 16 and int((b.depth[10:] > 0).sum()) == 6  # the 6 extra rays have depth
    s0 = RaySampler(scene, labels, labels, None, torch.device("cpu"), seed=0)
    assert s0.sample(10, 0).depth.shape[0] == 10


def test_umeyama_recovers_a_similarity():
    from sdfseg.apps.colmap_capture import umeyama

    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 0.5])
    s, R2, t = umeyama(src, dst)
    assert s == pytest.approx(2.5) and np.allclose(R2, R) and np.allclose(t, [1.0, -2.0, 0.5])


def test_collapse_classes_to_object_and_background():
    from sdfseg.apps.colmap_capture import collapse_classes

    sem = np.array([[0, 1, 5, 5]])
    inst = np.array([[0, 0, 3, 0]])
    thing = np.zeros(6, dtype=bool)
    thing[5] = True
    assert collapse_classes(sem, inst, thing).tolist() == [[0, 1, 2, 1]]  # a thing pixel without instance: background


def test_a_synthetic_capture_reads_back(tmp_path):
    """tools/colmap_capture.py make: the COLMAP capture's cameras are the scene's up to the similarity it
    records (plus the pose noise), its sparse depth agrees with the sensor depth where a point landed, and the
    sensor twin reads as transforms.json with the same split."""
    from _helpers import tiny_scene

    from sdfseg.apps.colmap_capture import umeyama, write_capture

    src = tiny_scene(tmp_path / "scene")
    info = write_capture(src, tmp_path / "cap", seed=3, points_per_frame=60)
    scene = load_scene(src)
    cap = load_scene(tmp_path / "cap" / "colmap", "colmap")
    sen = load_scene(tmp_path / "cap" / "sensor", "transforms_json")
    assert cap.frame_names == scene.frame_names == sen.frame_names
    for s in (cap, sen):
        assert [list(map(int, s.split[k])) for k in ("train", "test")] == [list(map(int, scene.split[k]))
                                                                             for k in ("train", "test")]
    s, R, t = umeyama(scene.c2w[:, :3, 3].astype(np.float64), cap.c2w[:, :3, 3].astype(np.float64))
    assert s == pytest.approx(info["scale"], rel=0.02) and np.allclose(R, info["rotation"], atol=0.02)
    assert np.allclose(sen.c2w, scene.c2w, atol=1e-5)
    # sparse depth = sensor depth x scale (noise: points 0.3% and poses 0.2% of the scene's size; outliers)
    d_cap, d_gt = cap.depth.astype(np.float32), scene.depth.astype(np.float32) * info["scale"]
    has = (d_cap > 0) & (d_gt > 0)
    assert has.sum() > 100
    rel = np.abs(d_cap[has] - d_gt[has]) / d_gt[has]
    assert np.median(rel) < 0.02


def test_capture_trains_end_to_end(tmp_path, capsys):
    """The README's walk-through on a tiny synthetic capture: classical labels (tools/segment2d.py), a run of
    confs/colmap.yaml with the appearance code (sparse depth, instance-only), test maps and meshes."""
    import json

    from _helpers import ROOT, TINY, tiny_scene

    from sdfseg.apps.colmap_capture import write_capture
    from sdfseg.cli import segment2d, train

    write_capture(tiny_scene(tmp_path / "scene"), tmp_path / "cap", points_per_frame=60)
    cap = tmp_path / "cap" / "colmap"
    assert segment2d.main([str(cap), "--method", "classical"]) == 0
    run = tmp_path / "run"
    sets = [s for s in TINY if not s.startswith("model.num_channels")] + [
        f"data.path={cap}", "data.label_source=classical", f"run.dir={run}", "train.iterations=3",
        "model.appearance_dim=4", "render.mesh_resolution=24", "train.depth_rays=16"]
    assert train.main([str(ROOT / "confs" / "colmap.yaml"), "--set", *sets, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "layout: colmap" in out and "scene has no GT maps" in out
    channels = json.loads((run / "channels.json").read_text())["channels"]
    assert {c["class"] for c in channels} <= {0, 1, 2}  # instance-only: background and object
    test = json.loads((cap / "splits.json").read_text())["test"]
    assert all((run / "test" / "instance" / f"{n}.png").is_file() for n in test)
    assert (run / "meshes" / "objects.json").is_file()
