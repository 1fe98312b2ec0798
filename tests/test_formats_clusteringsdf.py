"""ClusteringSDF layout: a three-view fixture (MonoSDF cameras, m2f labels, splits_new.json)."""

import json

import numpy as np
import pytest
from PIL import Image

from sdfseg.data import ReadOptions, detect_layout, load_scene
from sdfseg.data.scene import decode_confidence
from sdfseg.errors import SdfsegError
from sdfseg.data.synthetic.cameras import look_at
from sdfseg.io import save_label_png

from _helpers import scene_pixel

H, W = 24, 32
K_INT = np.array([[30.0, 0.0, 15.5], [0.0, 30.0, 11.5], [0.0, 0.0, 1.0]])
SCALE_MAT = np.array([[3.0, 0, 0, -1.0], [0, 3.0, 0, 2.0], [0, 0, 3.0, 0.5], [0, 0, 0, 1]])
POINT = np.array([0.4, 2.9, 1.1])


CAMS = [look_at(np.array([-2.0, 0.0, 1.5]), np.array([0.0, 2.0, 1.0])),
        look_at(np.array([2.0, 0.5, 1.8]), np.array([0.0, 2.5, 1.0])),
        look_at(np.array([0.0, -1.0, 1.0]), np.array([0.5, 2.0, 1.0])),
        look_at(np.array([1.0, -0.5, 1.2]), np.array([0.0, 2.0, 1.2]))]
PADDED = ["0000", "0001", "0002"]


def write_fixture(root, sem_max=5, names=PADDED):
    """Frame ``names[i]`` gets ``world_mat_i`` (the i-th image in file-name order), depth 0.1 (i + 1),
    instance id 3 + i and confidence 0.25 (i + 1). Returns the reference's pixel of POINT per frame."""
    cams, intended = {}, []
    for d in ("color", "depth", "normal", "m2f_confidence"):
        (root / d).mkdir(exist_ok=True)
    for i, (c2w, name) in enumerate(zip(CAMS, names)):
        P = K_INT @ np.linalg.inv(c2w)[:3]
        cams[f"world_mat_{i}"] = np.vstack([P, [0, 0, 0, 1]])
        cams[f"scale_mat_{i}"] = SCALE_MAT
        x = P @ np.append(POINT, 1.0)
        intended.append(x[:2] / x[2])
        Image.fromarray(np.full((H, W, 3), 60 * i, dtype=np.uint8)).save(root / "color" / f"{name}.png")
        np.save(root / "depth" / f"{name}_depth.npy", np.full((H, W), 0.1 * (i + 1), dtype=np.float32))
        np.save(root / "normal" / f"{name}_normal.npy", np.full((3, H, W), 0.5, dtype=np.float32) + [[[0.5]], [[0]], [[0]]])
        inst = np.zeros((H, W), dtype=np.int32)
        inst[5:10, 5:10] = 3 + i
        sem = np.full((H, W), 1, dtype=np.int32)
        sem[5:10, 5:10] = sem_max
        save_label_png(root / "m2f_instance" / f"{name}.png", inst)
        save_label_png(root / "m2f_semantics" / f"{name}.png", sem)
        np.savez(root / "m2f_confidence" / f"{name}.npz", confidence=np.full((H, W), 0.25 * (i + 1), dtype=np.float32))
    np.savez(root / "cameras.npz", **cams)
    (root / "splits_new.json").write_text(json.dumps({"train": [0, 2], "test": [1]}))
    return intended


@pytest.fixture
def scene_dir(tmp_path):
    write_fixture(tmp_path)
    return tmp_path


def test_poses_project_like_reference(tmp_path):
    intended = write_fixture(tmp_path)
    assert detect_layout(tmp_path) == "clusteringsdf"
    scene = load_scene(tmp_path)
    assert scene.frame_names == ["0000", "0001", "0002"]
    for i in (0, 1, 2):
        np.testing.assert_allclose(scene_pixel(scene, i, POINT), intended[i], atol=1e-3)
    assert scene.normalization.scale == 3.0


def test_labels_cues_split(scene_dir):
    scene = load_scene(scene_dir, "clusteringsdf", ReadOptions(label_source="noisy"))
    src = scene.label_source("noisy")
    assert src.instance.dtype == np.uint8 and src.instance[2, 6, 6] == 5 and src.instance[2, 0, 0] == 0
    assert src.semantic[0, 6, 6] == 5 and src.semantic[0, 0, 0] == 1
    np.testing.assert_array_equal(decode_confidence(src.confidence[:, 0, 0]), np.float32([0.25, 0.5, 0.75]))
    assert scene.depth_kind == "mono" and scene.depth[2, 3, 3] == pytest.approx(0.3, rel=2 ** -11)
    np.testing.assert_allclose(scene.normals_float(1)[0, 0], [1.0, 0.0, 0.0])  # v = (1, .5, .5) -> n = (1, 0, 0)
    np.testing.assert_array_equal(scene.split["train"], [0, 2])
    np.testing.assert_array_equal(scene.split["test"], [1])
    assert scene.classes.num_classes == 22 and 5 in scene.classes.thing_ids and scene.gt is None


def test_max_frames_and_resize(scene_dir):
    intended = write_fixture(scene_dir)
    scene = load_scene(scene_dir, "clusteringsdf", ReadOptions(image_size=(48, 64), max_frames=2))
    assert scene.frame_names == ["0000", "0002"] and scene.rgb.shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(scene.split["train"], [0, 1])
    assert scene.split["test"].size == 0
    np.testing.assert_allclose(scene_pixel(scene, 1, POINT), (intended[2] + 0.5) * 2 - 0.5, atol=1e-3)
    assert scene.labels["m2f"].instance[1, 12, 12] == 5  # nearest-neighbour upsampling of the 5:10 box


def test_files_paired_by_order_when_names_differ(scene_dir):
    for i in range(3):
        (scene_dir / "depth" / f"{i:04d}_depth.npy").rename(scene_dir / "depth" / f"view{i}_depth.npy")
    scene = load_scene(scene_dir, "clusteringsdf")
    np.testing.assert_allclose(scene.depth[:, 0, 0], [0.1, 0.2, 0.3], rtol=2 ** -11)
    (scene_dir / "depth" / "view2_depth.npy").rename(scene_dir / "depth" / "0002_depth.npy")
    with pytest.raises(SdfsegError, match=r"depth/0002_depth\.npy: in sorted file-name order it pairs with "
                                          r"frame '0000', not '0002'"):
        load_scene(scene_dir, "clusteringsdf")


def test_error_bad_semantic_id(tmp_path):
    write_fixture(tmp_path, sem_max=30)
    with pytest.raises(SdfsegError, match=r"m2f_semantics: semantic ids in \[1, 30\], expected 0\.\.21"):
        load_scene(tmp_path, "clusteringsdf")


def test_error_count_mismatch(scene_dir):
    (scene_dir / "depth" / "0002_depth.npy").unlink()
    with pytest.raises(SdfsegError, match=r"0002_depth\.npy: file not found \(depth maps: 2 files"):
        load_scene(scene_dir, "clusteringsdf")


def test_error_split_index(scene_dir):
    (scene_dir / "splits_new.json").write_text(json.dumps({"train": [0, 5], "test": [1]}))
    with pytest.raises(SdfsegError, match=r"splits_new\.json: train index 5 out of range 0\.\.2"):
        load_scene(scene_dir, "clusteringsdf")


def test_error_non_finite_pose(scene_dir):
    cams = dict(np.load(scene_dir / "cameras.npz"))
    cams["scale_mat_2"][1, 3] = np.inf
    np.savez(scene_dir / "cameras.npz", **cams)
    with pytest.raises(SdfsegError, match=r"cameras\.npz: scale_mat_2 must be a finite 4x4 matrix"):
        load_scene(scene_dir, "clusteringsdf")


def test_error_confidence_shape(scene_dir):
    np.savez(scene_dir / "m2f_confidence" / "0001.npz", confidence=np.ones((H + 1, W), dtype=np.float32))
    with pytest.raises(SdfsegError, match=r"0001\.npz: map is 25x32, expected 24x32"):
        load_scene(scene_dir, "clusteringsdf")


def test_unpadded_names_pair_like_the_reference(tmp_path):
    names = ["0", "10", "12", "2"]  # sorted(glob("color/*.png")) order: world_mat_1 is frame "10"
    intended = write_fixture(tmp_path, names=names)
    (tmp_path / "splits_new.json").write_text(json.dumps({"train": [0, 1, 3], "test": [2]}))
    scene = load_scene(tmp_path, "clusteringsdf")
    assert scene.frame_names == names
    for i in range(4):
        np.testing.assert_allclose(scene_pixel(scene, i, POINT), intended[i], atol=1e-3)
    np.testing.assert_allclose(scene.depth[:, 0, 0], [0.1, 0.2, 0.3, 0.4], rtol=2 ** -11)
    np.testing.assert_array_equal(scene.labels["m2f"].instance[:, 6, 6], [3, 4, 5, 6])
    assert [scene.frame_names[i] for i in scene.split["test"]] == ["12"]


def test_order_that_disagrees_with_names_is_refused(tmp_path):
    # color/1.png sorts before color/10.png, but depth/10_depth.npy before depth/1_depth.npy
    write_fixture(tmp_path, names=["1", "10"])
    (tmp_path / "splits_new.json").write_text(json.dumps({"train": [0], "test": [1]}))
    with pytest.raises(SdfsegError, match=r"depth/10_depth\.npy: in sorted file-name order it pairs with frame '1'"):
        load_scene(tmp_path, "clusteringsdf")


def test_zero_confidence_is_low_not_unsupervised(scene_dir):
    np.savez(scene_dir / "m2f_confidence" / "0001.npz", confidence=np.zeros((H, W), dtype=np.float32))
    conf = load_scene(scene_dir, "clusteringsdf").labels["m2f"].confidence
    np.testing.assert_array_equal(decode_confidence(conf[:, 0, 0]), np.float32([0.25, 0.1, 0.75]))  # 0 -> 0.1


def test_detected_despite_panoptic_lifting_folders(scene_dir, capsys):
    # converted from Panoptic Lifting data, the folder keeps pose/ and intrinsic/
    for i, n in enumerate(PADDED):
        (scene_dir / "pose").mkdir(exist_ok=True)
        np.savetxt(scene_dir / "pose" / f"{n}.txt", CAMS[i])
    (scene_dir / "intrinsic").mkdir()
    np.savetxt(scene_dir / "intrinsic" / "intrinsic_color.txt", np.eye(4))
    assert detect_layout(scene_dir) == "clusteringsdf"
    scene = load_scene(scene_dir)
    assert scene.layout == "clusteringsdf" and scene.depth_kind == "mono"
    assert capsys.readouterr().out.splitlines() == ["layout: clusteringsdf (auto-detected)"]
