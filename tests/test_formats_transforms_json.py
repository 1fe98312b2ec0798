"""transforms.json layout: OpenGL camera-to-world poses projected the nerfstudio way."""

import json

import numpy as np
import pytest
from PIL import Image

from sdfseg.data import ReadOptions, detect_layout, load_scene
from sdfseg.errors import SdfsegError
from sdfseg.io import save_label_png

from _helpers import gl_look_at, scene_pixel

H, W = 48, 64           # stored images
DECL_H, DECL_W = 96, 128  # resolution declared in the json (images were downscaled by 2)
POINT = np.array([0.3, 1.2, -0.4])


def opengl_c2w(eye, target) -> np.ndarray:
    """OpenGL camera (looks along -z, y up) at ``eye`` looking at ``target``, world y up."""
    return gl_look_at(eye, target, up=(0.0, 1.0, 0.0))


def nerfstudio_pixel(c2w_gl, fx, fy, cx, cy, X) -> np.ndarray:
    """Pixel index of X: nerfstudio rays go through (i + 0.5) with direction ((x-cx)/fx, -(y-cy)/fy, -1)."""
    p = (np.linalg.inv(c2w_gl) @ np.append(X, 1.0))[:3]
    x = cx + fx * p[0] / -p[2]
    y = cy - fy * p[1] / -p[2]
    return np.array([x, y]) - 0.5


MATS = [opengl_c2w(np.array([2.0, 1.5, 2.5]), np.array([0.0, 1.0, 0.0])),
        opengl_c2w(np.array([-2.5, 2.0, 1.0]), np.array([0.5, 1.0, -0.5])),
        opengl_c2w(np.array([0.0, 1.0, 3.0]), np.array([0.0, 1.0, 0.0]))]
INTR = [dict(), dict(fl_x=150.0, fl_y=140.0, cx=60.0, cy=50.0), dict()]
GLOBAL = dict(fl_x=120.0, fl_y=110.0, cx=66.0, cy=46.0, w=DECL_W, h=DECL_H)


def write_fixture(root, extra=None, depth_shape=(H, W)):
    (root / "images").mkdir()
    frames, intended = [], []
    for i, (m, intr) in enumerate(zip(MATS, INTR)):
        Image.fromarray(np.full((H, W, 3), 30 * i, dtype=np.uint8)).save(root / "images" / f"frame_{i:03d}.png")
        save_label_png(root / "depth" / f"frame_{i:03d}.png", np.full(depth_shape, 1500 + i, dtype=np.int32))
        frames.append({"file_path": f"images/frame_{i:03d}.png", "transform_matrix": m.tolist(),
                       "depth_file_path": f"depth/frame_{i:03d}.png", **intr})
        k = {**GLOBAL, **intr}
        intended.append(nerfstudio_pixel(m, k["fl_x"], k["fl_y"], k["cx"], k["cy"], POINT))
    meta = {**GLOBAL, "camera_model": "OPENCV", "frames": frames[::-1], **(extra or {})}
    (root / "transforms.json").write_text(json.dumps(meta))
    return intended


@pytest.fixture
def scene_dir(tmp_path):
    write_fixture(tmp_path)
    return tmp_path


def test_poses_project_like_nerfstudio(tmp_path):
    intended = write_fixture(tmp_path)
    assert detect_layout(tmp_path) == "transforms_json"
    scene = load_scene(tmp_path)
    assert scene.frame_names == ["frame_000", "frame_001", "frame_002"]
    for i in range(3):
        # intended pixels are at the declared 128x96 resolution; the images are 64x48
        np.testing.assert_allclose(scene_pixel(scene, i, POINT), (intended[i] + 0.5) / 2 - 0.5, atol=1e-3)
    np.testing.assert_allclose(scene.intrinsics[1], [[75, 0, 30], [0, 70, 25], [0, 0, 1]], atol=1e-4)


def test_depth_split_and_no_labels(scene_dir):
    scene = load_scene(scene_dir, "transforms_json")
    assert scene.depth_kind == "metric" and scene.depth[2, 0, 0] == pytest.approx(1.502)
    np.testing.assert_array_equal(scene.split["test"], [0])
    np.testing.assert_array_equal(scene.split["train"], [1, 2])
    assert scene.labels == {} and scene.gt is None and scene.classes.num_classes == 3


def test_split_from_json_and_resize(tmp_path):
    intended = write_fixture(tmp_path, extra={"train_filenames": ["images/frame_000.png", "images/frame_002.png"],
                                              "test_filenames": ["images/frame_001.png"]})
    scene = load_scene(tmp_path, options=ReadOptions(image_size=(24, 32)))
    np.testing.assert_array_equal(scene.split["train"], [0, 2])
    np.testing.assert_array_equal(scene.split["test"], [1])
    np.testing.assert_allclose(scene_pixel(scene, 2, POINT), (intended[2] + 0.5) / 4 - 0.5, atol=1e-3)


def test_generic_label_source_is_read(scene_dir):
    for i in range(3):
        lab = np.zeros((H, W), dtype=np.int32)
        lab[:, W // 2:] = 70000 + i  # 32-bit ids
        save_label_png(scene_dir / "sam_instance" / f"frame_{i:03d}.png", lab)
    scene = load_scene(scene_dir)
    assert scene.labels["sam"].instance.dtype == np.int32 and scene.labels["sam"].instance[2, 0, -1] == 70002


def test_error_missing_image(scene_dir):
    (scene_dir / "images" / "frame_001.png").unlink()
    with pytest.raises(SdfsegError, match=r"frame_001\.png: file not found \(listed as file_path in transforms\.json\)"):
        load_scene(scene_dir)


def test_error_non_finite_pose(scene_dir):
    meta = json.loads((scene_dir / "transforms.json").read_text())
    meta["frames"][0]["transform_matrix"][1][3] = float("inf")
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SdfsegError, match=r"transforms\.json: frame 2 \(images/frame_002\.png\) transform_matrix: "
                                          r"camera pose has non-finite values"):
        load_scene(scene_dir)


def test_error_depth_shape(tmp_path):
    write_fixture(tmp_path, depth_shape=(H, W + 4))
    with pytest.raises(SdfsegError, match=r"frame_000\.png: map is 48x68, expected 48x64"):
        load_scene(tmp_path)


def test_error_count_mismatch_depth(scene_dir):
    meta = json.loads((scene_dir / "transforms.json").read_text())
    del meta["frames"][1]["depth_file_path"]
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SdfsegError, match=r"transforms\.json: 2 frames with depth_file_path, expected 3"):
        load_scene(scene_dir)


def test_error_unknown_layout(scene_dir):
    with pytest.raises(SdfsegError, match=r"data\.layout: unknown layout 'polycam'"):
        load_scene(scene_dir, "polycam")


def test_npy_depth_is_scaled_like_nerfstudio(scene_dir):
    meta = json.loads((scene_dir / "transforms.json").read_text())
    for i, fr in enumerate(meta["frames"]):
        np.save(scene_dir / "depth" / f"f{i}.npy", np.full((H, W), 1500.0 + i, dtype=np.float32))
        fr["depth_file_path"] = f"depth/f{i}.npy"
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    # frames[::-1] in the file: frame_002 is listed first and gets f0.npy
    np.testing.assert_allclose(load_scene(scene_dir).depth[:, 0, 0], [1.502, 1.501, 1.500], rtol=2 ** -11)
    (scene_dir / "transforms.json").write_text(json.dumps({**meta, "depth_unit_scale_factor": 0.01}))
    np.testing.assert_allclose(load_scene(scene_dir).depth[:, 0, 0], [15.02, 15.01, 15.0], rtol=2 ** -11)


def test_val_filenames_are_the_test_split(tmp_path):
    write_fixture(tmp_path, extra={"train_filenames": ["images/frame_000.png", "images/frame_002.png"],
                                   "val_filenames": ["images/frame_001.png"]})
    scene = load_scene(tmp_path)
    np.testing.assert_array_equal(scene.split["train"], [0, 2])
    np.testing.assert_array_equal(scene.split["test"], [1])


def test_error_train_filenames_without_test(tmp_path):
    write_fixture(tmp_path, extra={"train_filenames": ["images/frame_000.png"]})
    with pytest.raises(SdfsegError, match=r"transforms\.json: train_filenames without test_filenames or val_filenames"):
        load_scene(tmp_path)


@pytest.mark.parametrize("where", ["global", "frame"])
def test_error_fisheye_camera(tmp_path, where):
    write_fixture(tmp_path)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    (meta if where == "global" else meta["frames"][1])["camera_model"] = "OPENCV_FISHEYE"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SdfsegError, match=r"transforms\.json: (frame 1 )?camera_model 'OPENCV_FISHEYE' is not a "
                                          r"pinhole camera \(expected one of SIMPLE_PINHOLE, PINHOLE"):
        load_scene(tmp_path)
