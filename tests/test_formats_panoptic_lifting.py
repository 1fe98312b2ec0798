"""Panoptic Lifting layout read with the reference loader's conventions (REFERENCE 6 and 8).

A hand-written fixture with unpadded frame names: K in the pixel-index convention (rays
through integer pixels), integer frame names in ``splits.json``, an ``invalid/`` room mask
(JPEG, as the reference reads it), TTA confidences with zeros, and ScanNet-style depth of
another size with its own ``intrinsic_depth.txt``.
"""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from sdfseg.data import ReadOptions, load_scene
from sdfseg.data.scene import LabelSource, decode_confidence
from sdfseg.data.synthetic.cameras import look_at
from sdfseg.errors import SdfsegError
from sdfseg.io import save_label_png

from _helpers import scene_pixel

H, W = 24, 32
NAMES = ["0", "2", "10", "12"]  # numeric order; lexical order would be 0, 10, 12, 2
K_IDX = np.array([[28.0, 0.0, 15.2], [0.0, 27.0, 11.7], [0.0, 0.0, 1.0]])  # rays through integer pixels
POINT = np.array([0.3, 2.2, 1.1])


def camera(i: int) -> np.ndarray:
    return look_at(np.array([-1.0 + 0.5 * i, -1.0, 1.2 + 0.1 * i]), np.array([0.2, 2.0, 1.0]))


def write_matrix(file, m) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(file, m)


def write_pl(root, names=NAMES):
    """Write the fixture; frame ``names[i]`` has camera(i). Returns the reference's pixel of POINT per frame."""
    intended = []
    for i, n in enumerate(names):
        (root / "color").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 10 * i, dtype=np.uint8)).save(root / "color" / f"{n}.jpg")
        write_matrix(root / "pose" / f"{n}.txt", camera(i))
        save_label_png(root / "depth" / f"{n}.png", np.full((H, W), 1000 + i, dtype=np.int32))
        sem = np.full((H, W), 1, dtype=np.int32)
        sem[4:12, 4:12] = 2
        inst = (sem == 2).astype(np.int32) * (i + 1)
        for folder, arr in (("m2f_semantics", sem), ("m2f_instance", inst), ("rs_semantics", sem),
                            ("rs_instance", inst), ("sam_instance", inst)):
            save_label_png(root / folder / f"{n}.png", arr)
        conf = np.full((H, W), 0.8, dtype=np.float16)
        conf[:, :4] = 0  # the augmented predictions disagree there
        (root / "m2f_probabilities").mkdir(exist_ok=True)
        np.savez(root / "m2f_probabilities" / f"{n}.npz", confidence=conf,
                 probability=np.zeros((H, W, 3), dtype=np.float16))
        x = K_IDX @ (np.linalg.inv(camera(i)) @ np.append(POINT, 1.0))[:3]
        intended.append(x[:2] / x[2])  # Panoptic Lifting: the ray through integer pixel (u, v) hits it
    K4 = np.eye(4)
    K4[:3, :3] = K_IDX
    write_matrix(root / "intrinsic" / "intrinsic_color.txt", K4)
    (root / "splits.json").write_text(json.dumps({"train": [int(n) for n in names[:2]] + [names[3]],
                                                  "test": [int(names[2])]}))
    with open(root / "segmentation_data.pkl", "wb") as fh:
        pickle.dump({"num_semantic_classes": 3, "fg_classes": [2], "bg_classes": [0, 1]}, fh)
    return intended


@pytest.fixture
def pl_dir(tmp_path):
    write_pl(tmp_path)
    return tmp_path


def test_rays_are_the_reference_rays(tmp_path):
    intended = write_pl(tmp_path)
    scene = load_scene(tmp_path, "panoptic_lifting")
    for i in range(4):
        np.testing.assert_allclose(scene_pixel(scene, i, POINT), intended[i], atol=1e-3)
    np.testing.assert_allclose(scene.intrinsics[0], [[28, 0, 15.7], [0, 27, 12.2], [0, 0, 1]], atol=1e-5)


def test_frames_numeric_order_and_integer_split_names(pl_dir):
    scene = load_scene(pl_dir, "panoptic_lifting")
    assert scene.frame_names == ["0", "2", "10", "12"]
    np.testing.assert_array_equal(scene.split["train"], [0, 1, 3])
    np.testing.assert_array_equal(scene.split["test"], [2])
    assert scene.depth[2, 0, 0] == pytest.approx(1.002)  # frame "10" keeps its own depth and pose
    np.testing.assert_allclose(scene.c2w[2], camera(2), atol=1e-6)


def test_max_frames_reindexes_the_split(pl_dir):
    scene = load_scene(pl_dir, "panoptic_lifting", ReadOptions(max_frames=2))
    assert scene.frame_names == ["0", "12"]
    np.testing.assert_array_equal(scene.split["train"], [0, 1])
    assert scene.split["test"].size == 0


def test_tta_confidence_room_mask_and_invalid_labels(pl_dir):
    outside = np.zeros((H, W), dtype=np.uint8)
    outside[:, 20:] = 255  # the right part of frame "2" looks out of a window
    (pl_dir / "invalid").mkdir()
    Image.fromarray(outside).save(pl_dir / "invalid" / "2.jpg", quality=95)
    bad = np.zeros((H, W), dtype=np.int32)
    bad[4:8, 4:8] = 1
    save_label_png(pl_dir / "m2f_invalid" / "10.png", bad)
    scene = load_scene(pl_dir, "panoptic_lifting")
    m2f, sam = scene.labels["m2f"], scene.labels["sam"]
    assert m2f.confidence.dtype == np.uint8 and sam.confidence.dtype == np.uint8  # v / 240
    m2f = LabelSource(m2f.instance, m2f.semantic, decode_confidence(m2f.confidence))
    sam = LabelSource(sam.instance, sam.semantic, decode_confidence(sam.confidence))
    assert m2f.confidence[0, 5, 1] == np.float32(0.1)  # stored 0 = low confidence, still supervised
    assert m2f.confidence[0, 5, 10] == pytest.approx(0.8, abs=1e-3)
    assert m2f.confidence[1, 5, 28] == 0.0 and sam.confidence[1, 5, 28] == 0.0  # outside the room: every source
    assert m2f.confidence[1, 5, 10] == pytest.approx(0.8, abs=1e-3) and sam.confidence[1, 5, 10] == 1.0
    assert m2f.confidence[2, 5, 5] == 0.0 and m2f.semantic[2, 5, 5] == 0 and m2f.instance[2, 5, 5] == 0
    assert m2f.semantic[2, 9, 9] == 2 and m2f.confidence[2, 9, 9] > 0
    assert scene.gt.semantic[1, 5, 28] == 1  # GT is untouched


def test_scannet_depth_resampled_through_intrinsic_depth(pl_dir):
    hd, wd = 12, 20  # another size, aspect and field of view than colour
    K_depth = np.array([[16.0, 0.0, 9.3], [0.0, 15.0, 5.6], [0.0, 0.0, 1.0]])  # pixel-index convention
    code = (1 + np.arange(hd * wd)).reshape(hd, wd)
    for n in NAMES:
        save_label_png(pl_dir / "depth" / f"{n}.png", code)
    K4 = np.eye(4)
    K4[:3, :3] = K_depth
    write_matrix(pl_dir / "intrinsic" / "intrinsic_depth.txt", K4)
    scene = load_scene(pl_dir, "panoptic_lifting")
    small = load_scene(pl_dir, "panoptic_lifting", ReadOptions(image_size=(12, 16)))
    for got, step in ((scene.depth[1], 1), (small.depth[1], 2)):
        # the reference's pixel index (u, v) of each loaded pixel centre, at the colour resolution
        v, u = np.mgrid[0:H // step, 0:W // step] * step + (step - 1) / 2
        p = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K_IDX).T @ K_depth.T
        x, y = np.rint(p[..., 0] / p[..., 2]).astype(int), np.rint(p[..., 1] / p[..., 2]).astype(int)
        inside = (x >= 0) & (x < wd) & (y >= 0) & (y < hd)
        assert inside.any() and not inside.all()
        expected = np.where(inside, code[y.clip(0, hd - 1), x.clip(0, wd - 1)] / 1000.0, 0.0)
        np.testing.assert_allclose(got, expected, rtol=2 ** -11)  # float16 depth


def save_rgba_ids(file, ids) -> None:
    """Int32 ids packed into RGBA bytes (how 32-bit label PNGs are stored), negative ones included."""
    Image.fromarray(np.ascontiguousarray(ids).view(np.uint8).reshape(ids.shape + (4,)), mode="RGBA").save(file)


def _non_rigid(d):
    write_matrix(d / "pose" / "10.txt", np.diag([2.0, 1.0, 1.0, 1.0]))


def _bad_normals(d):
    for i, n in enumerate(NAMES):
        nm = np.zeros((H, W, 3), dtype=np.float32)
        nm[..., 2] = -1
        if n == "12":
            nm[3, 3, 0] = np.nan
        (d / "normal").mkdir(exist_ok=True)
        np.save(d / "normal" / f"{n}.npy", nm)


def _normal_size(d):
    _bad_normals(d)
    np.save(d / "normal" / "12.npy", np.ones((H // 2, W // 2, 3), dtype=np.float32))


@pytest.mark.parametrize("spoil, message", [
    (_non_rigid, r"pose/10\.txt: camera rotation is not a proper rotation"),
    (_bad_normals, r"normal/12\.npy: normals have non-finite values"),
    (_normal_size, r"normal/12\.npy: map is 12x16, expected 24x32"),
    (lambda d: save_rgba_ids(d / "m2f_instance" / "2.png", np.full((H, W), -3, dtype="<i4")),
     r"m2f_instance/2\.png: instance ids in \[-3, -3\], expected >= 0"),
    (lambda d: save_label_png(d / "depth" / "2.png", np.ones((12, 16), dtype=np.int32)),
     r"depth/2\.png: depth is 12x16, expected 24x32 like color/ \(or add intrinsic/intrinsic_depth\.txt"),
    (lambda d: save_label_png(d / "rs_instance" / "0.png", np.ones((12, 16), dtype=np.int32)),
     r"rs_instance/0\.png: map is 12x16, expected 24x32"),
    (lambda d: (d / "splits.json").write_text(json.dumps({"train": [0, 7], "test": []})),
     r"splits\.json: train frame '7' is not a frame of the scene"),
])
def test_load_time_checks(pl_dir, spoil, message):
    spoil(pl_dir)
    for size in (None, (12, 16)):  # resizing on load must not hide a map of another size
        with pytest.raises(SdfsegError, match=message):
            load_scene(pl_dir, "panoptic_lifting", ReadOptions(image_size=size))
