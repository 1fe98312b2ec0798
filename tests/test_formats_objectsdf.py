"""ObjectSDF++ / MonoSDF layout: a two-view fixture written with MonoSDF's own conventions."""

import numpy as np
import pytest
from PIL import Image

from sdfseg.data import ReadOptions, detect_layout, load_scene
from sdfseg.data.formats.objectsdf import decompose_projection
from sdfseg.errors import SdfsegError
from sdfseg.data.synthetic.cameras import look_at
from sdfseg.io import save_label_png

from _helpers import scene_pixel

H, W = 48, 64
K_INT = np.array([[50.0, 0.0, 30.0], [0.0, 55.0, 22.0], [0.0, 0.0, 1.0]])  # integer-pixel convention
SCALE_MAT = np.array([[2.0, 0, 0, 0.5], [0, 2.0, 0, -0.3], [0, 0, 2.0, 1.0], [0, 0, 0, 1]])
POINT = np.array([1.7, 0.6, 1.9])  # world point seen by both cameras


CAMS = [look_at(np.array([-1.0, -1.5, 2.0]), np.array([1.5, 1.0, 1.5])),
        look_at(np.array([3.5, -1.0, 2.5]), np.array([1.0, 1.0, 1.5]))]
NORMAL = np.array([0.2, -0.4, -0.8]) / np.linalg.norm([0.2, -0.4, -0.8])


def write_fixture(root, segs_values=(0, 7, 9)):
    """Two frames; world_mat_0 stored 3x4 with scale -2.5, world_mat_1 4x4. Returns intended pixels."""
    cams, intended = {}, []
    for i, c2w in enumerate(CAMS):
        P = np.eye(4)
        P[:3] = K_INT @ np.linalg.inv(c2w)[:3]
        world_mat = -2.5 * P[:3] if i == 0 else P
        cams[f"world_mat_{i}"] = world_mat
        cams[f"scale_mat_{i}"] = SCALE_MAT
        x = P[:3] @ np.append(POINT, 1.0)
        intended.append(x[:2] / x[2])
        img = np.full((H, W, 3), 40 * (i + 1), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i:06d}_rgb.png")
        np.save(root / f"{i:06d}_depth.npy", np.full((H, W), 0.5 + i, dtype=np.float32))
        v = np.broadcast_to(((NORMAL + 1) / 2)[:, None, None], (3, H, W)).astype(np.float32)
        np.save(root / f"{i:06d}_normal.npy", v)
        mask = np.ones((H, W), dtype=np.float32)
        mask[:, :8] = 0
        np.save(root / f"{i:06d}_mask.npy", mask)
        seg = np.full((H, W), segs_values[0], dtype=np.int32)
        seg[10:20, 10:30] = segs_values[1]
        seg[30:40, 40:60] = segs_values[2]
        save_label_png(root / "segs" / f"{i:06d}_segs.png", seg)
    np.savez(root / "cameras.npz", **cams)
    (root / "instance_mapping.txt").write_text("0,0,0\n7,3,12\n9,5,15\n")
    return intended


@pytest.fixture
def scene_dir(tmp_path):
    write_fixture(tmp_path)
    return tmp_path


def test_decompose_projection_recovers_k_and_pose():
    c2w = CAMS[1]
    P = -3.0 * (K_INT @ np.linalg.inv(c2w)[:3])
    K, pose = decompose_projection(P)
    np.testing.assert_allclose(K, K_INT, atol=1e-9)
    np.testing.assert_allclose(pose, c2w, atol=1e-9)


def test_poses_project_like_monosdf(tmp_path):
    intended = write_fixture(tmp_path)
    assert detect_layout(tmp_path) == "objectsdf"
    scene = load_scene(tmp_path)
    assert scene.layout == "objectsdf" and scene.frame_names == ["000000", "000001"]
    np.testing.assert_allclose(scene.normalization.center, [0.5, -0.3, 1.0])
    assert scene.normalization.scale == 2.0
    for i in range(2):
        np.testing.assert_allclose(scene_pixel(scene, i, POINT), intended[i], atol=1e-3)
    # our pixel-edge convention: MonoSDF's cx = 30 becomes 30.5
    np.testing.assert_allclose(scene.intrinsics[0], [[50, 0, 30.5], [0, 55, 22.5], [0, 0, 1]], atol=1e-4)


def test_cues_labels_and_classes(scene_dir):
    scene = load_scene(scene_dir, "objectsdf")
    assert scene.depth_kind == "mono"
    assert scene.depth[1, 5, 5] == 0.0 and scene.depth[1, 5, 20] == pytest.approx(1.5)  # *_mask.npy zeroes depth
    assert scene.normals.dtype == np.int8 and scene.depth.dtype == np.float16
    np.testing.assert_allclose(scene.normals_float(0)[3, 3], NORMAL, atol=1 / 127)  # int8 normals
    inst = scene.gt.instance
    assert inst.dtype == np.uint8 and inst[0, 15, 15] == 1 and inst[0, 35, 50] == 2 and inst[0, 0, 0] == 0
    assert scene.gt.semantic[0, 15, 15] == 2 and scene.gt.semantic[0, 0, 0] == 1
    np.testing.assert_array_equal(scene.labels["m2f"].instance, inst)
    assert scene.meta["instance_semantics"] == {0: 0, 1: 3, 2: 5}
    assert scene.classes.thing_ids == (2,) and scene.classes.stuff_ids == (1,)
    np.testing.assert_array_equal(scene.split["test"], [0])
    np.testing.assert_array_equal(scene.split["train"], [1])


def test_resize_rescales_intrinsics(scene_dir):
    intended = write_fixture(scene_dir)
    scene = load_scene(scene_dir, "objectsdf", ReadOptions(image_size=(24, 32)))
    assert scene.rgb.shape == (2, 24, 32, 3) and scene.gt.instance.shape == (2, 24, 32)
    # pixel-edge coordinates halve: index_small = (index + 0.5) / 2 - 0.5
    for i in range(2):
        np.testing.assert_allclose(scene_pixel(scene, i, POINT), (intended[i] + 0.5) / 2 - 0.5, atol=1e-3)


def test_error_missing_cameras(scene_dir):
    (scene_dir / "cameras.npz").unlink()
    with pytest.raises(SdfsegError, match=r"cameras\.npz: file not found"):
        load_scene(scene_dir, "objectsdf")


def test_error_count_mismatch(scene_dir):
    cams = dict(np.load(scene_dir / "cameras.npz"))
    del cams["world_mat_1"], cams["scale_mat_1"]
    np.savez(scene_dir / "cameras.npz", **cams)
    with pytest.raises(SdfsegError, match=r"cameras\.npz: 1 world_mat_<i> entries, expected 2"):
        load_scene(scene_dir, "objectsdf")


def test_error_non_finite_pose(scene_dir):
    cams = dict(np.load(scene_dir / "cameras.npz"))
    cams["world_mat_1"][0, 3] = np.nan
    np.savez(scene_dir / "cameras.npz", **cams)
    with pytest.raises(SdfsegError, match=r"cameras\.npz: world_mat_1 has non-finite values"):
        load_scene(scene_dir, "objectsdf")


def test_error_shape_mismatch(scene_dir):
    np.save(scene_dir / "000001_depth.npy", np.ones((H, W + 1), dtype=np.float32))
    with pytest.raises(SdfsegError, match=r"000001_depth\.npy: map is 48x65, expected 48x64"):
        load_scene(scene_dir, "objectsdf")


def test_error_bad_id(scene_dir):
    write_fixture(scene_dir, segs_values=(0, 7, 11))
    with pytest.raises(SdfsegError, match=r"000000_segs\.png: segment ids \[11\] are not in instance_mapping\.txt"):
        load_scene(scene_dir, "objectsdf")


# MonoSDF's own preparations keep the K of the original images (facts from its scene_dataset.py):
# (center_crop_type, original W x H, a K of the original images in the pixel-index convention, stored H x W)
CROPS = [
    ("center_crop_for_dtu", (1600, 1200), [[2892.33, 0, 823.2], [0, 2883.18, 619.07], [0, 0, 1]], (384, 384)),
    ("center_crop_for_tnt", (960, 540), [[581.8, 0, 490.1], [0, 581.8, 264.7], [0, 0, 1]], (384, 384)),
    ("center_crop_for_replica", (1200, 680), [[600.0, 0, 599.5], [0, 600.0, 339.5], [0, 0, 1]], (384, 384)),
    ("padded_for_dtu", (1600, 1200), [[2892.33, 0, 823.2], [0, 2883.18, 619.07], [0, 0, 1]], (384, 512)),
]


def write_cropped(root, K_orig, hw):
    """One frame stored at ``hw`` whose world_mat holds the original images' K (as MonoSDF ships them)."""
    c2w = CAMS[0]
    P = np.eye(4)
    P[:3] = np.asarray(K_orig) @ np.linalg.inv(c2w)[:3]
    Image.fromarray(np.zeros(hw + (3,), dtype=np.uint8)).save(root / "000000_rgb.png")
    np.savez(root / "cameras.npz", world_mat_0=P, scale_mat_0=np.eye(4))
    return c2w


@pytest.mark.parametrize("crop, orig, K_orig, hw", CROPS)
def test_crop_follows_monosdf(tmp_path, crop, orig, K_orig, hw):
    c2w = write_cropped(tmp_path, K_orig, hw)
    scene = load_scene(tmp_path, "objectsdf", ReadOptions(crop=crop))
    # MonoSDF: cx -= (W - H) / 2 (not for padded_for_dtu), then the first two rows times 384 / H
    K = np.array(K_orig, dtype=np.float64)
    if crop != "padded_for_dtu":
        K[0, 2] -= (orig[0] - orig[1]) / 2
    K[:2] *= 384 / orig[1]
    x = K @ (np.linalg.inv(c2w) @ np.append(POINT, 1.0))[:3]
    np.testing.assert_allclose(scene_pixel(scene, 0, POINT), x[:2] / x[2], atol=1e-3)  # MonoSDF's ray
    np.testing.assert_allclose(scene.intrinsics[0][0, 0], K[0, 0], rtol=1e-6)
    if crop == "center_crop_for_dtu":
        assert scene.intrinsics[0][0, 0] == pytest.approx(925.55, abs=0.01)  # not 896.3 as the old guess


@pytest.mark.parametrize("crop, orig, K_orig, hw", CROPS)
def test_crop_is_never_guessed(tmp_path, crop, orig, K_orig, hw):
    write_cropped(tmp_path, K_orig, hw)
    with pytest.raises(SdfsegError, match=r"cameras\.npz: world_mat_0 principal point .* lies outside the .* image, "
                                          r"so the images were cropped: set data\.crop to MonoSDF's center_crop_type"):
        load_scene(tmp_path, "objectsdf")


def test_crop_that_does_not_fit_is_refused(scene_dir):
    with pytest.raises(SdfsegError, match=r"cameras\.npz: data\.crop=center_crop_for_replica resizes to 384x384 "
                                          r"images \(MonoSDF's preprocessing\), but the images are 64x48"):
        load_scene(scene_dir, "objectsdf", ReadOptions(crop="center_crop_for_replica"))
    with pytest.raises(SdfsegError, match=r"data\.crop: unknown crop 'replica' \(expected one of auto, no_crop, "):
        load_scene(scene_dir, "objectsdf", ReadOptions(crop="replica"))


def test_unpadded_names_pair_like_monosdf(tmp_path):
    write_fixture(tmp_path)
    for i, name in enumerate(("10", "9")):  # sorted(glob("*_rgb.png")): 10_rgb.png, then 9_rgb.png
        for suffix in ("_rgb.png", "_depth.npy", "_normal.npy", "_mask.npy"):
            (tmp_path / f"{i:06d}{suffix}").rename(tmp_path / f"{name}{suffix}")
        (tmp_path / "segs" / f"{i:06d}_segs.png").rename(tmp_path / "segs" / f"{name}_segs.png")
    scene = load_scene(tmp_path, "objectsdf")
    assert scene.frame_names == ["10", "9"]
    centre = scene.normalization.to_world(scene.c2w[0, :3, 3])
    np.testing.assert_allclose(centre, CAMS[0][:3, 3], atol=1e-5)  # world_mat_0 is frame "10"
    assert scene.depth[0, 5, 20] == pytest.approx(0.5) and scene.rgb[0, 0, 0, 0] == 40
