"""Messy Rooms layout: Kubric cameras (Blender axes, normalised K) projected the way Kubric does."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from sdfseg.data import detect_layout, load_scene
from sdfseg.data.formats.messy_rooms import quaternion_to_matrix
from sdfseg.data.scene import LabelSource, decode_confidence
from sdfseg.errors import SdfsegError
from sdfseg.io import save_label_png

from _helpers import gl_look_at, scene_pixel

H, W = 48, 64  # Kubric: sensor_height = sensor_width * H / W
FOCAL, SENSOR = 35.0, 32.0
POINT = np.array([0.7, -0.4, 0.9])
N = 5


def blender_c2w(eye, target) -> np.ndarray:
    """Blender camera (looks along -z, y up) at ``eye`` looking at ``target``, world z up."""
    return gl_look_at(eye, target, up=(0.0, 0.0, 1.0))


def kubric_pixel(matrix_world, X) -> np.ndarray:
    """Kubric's Camera.project_point (normalised [0, 1] coords, pixel edges) -> pixel index."""
    Kn = np.array([[FOCAL / SENSOR, 0, -0.5], [0, -FOCAL / (SENSOR * H / W), -0.5], [0, 0, -1]])
    p = Kn @ (np.linalg.inv(matrix_world) @ np.append(X, 1.0))[:3]
    return np.array([p[0] / p[2] * W, p[1] / p[2] * H]) - 0.5


EYES = [np.array([3.0 * np.cos(a), 3.0 * np.sin(a), 1.5 + 0.1 * k]) for k, a in enumerate(np.linspace(0, 2, N))]


def write_fixture(root, with_k=True, sem_value=1, n_cams=N):
    mats = [blender_c2w(e, np.array([0.5, -0.2, 0.8])) for e in EYES]
    quats = [np.roll(Rotation.from_matrix(m[:3, :3]).as_quat(), 1) for m in mats]  # (x,y,z,w) -> (w,x,y,z)
    cam = {"focal_length": FOCAL, "sensor_width": SENSOR,
           "positions": [m[:3, 3].tolist() for m in mats][:n_cams], "quaternions": [q.tolist() for q in quats][:n_cams]}
    if with_k:
        cam["K"] = [[FOCAL / SENSOR, 0, -0.5], [0, -FOCAL / (SENSOR * H / W), -0.5], [0, 0, -1]]
    (root / "metadata.json").write_text(json.dumps({"metadata": {"num_frames": N}, "camera": cam}))
    for d in ("color", "semantic", "instance", "detic_semantic", "detic_instance", "detic_probabilities"):
        (root / d).mkdir(exist_ok=True)
    for i in range(N):
        rgba = np.full((H, W, 4), 255, dtype=np.uint8)
        rgba[..., 0] = 20 * i
        Image.fromarray(rgba).save(root / "color" / f"{i}.png")
        inst = np.zeros((H, W), dtype=np.int64)
        inst[10:20, 10:20] = 300 + i  # ids above 255 must survive
        np.save(root / "instance" / f"{i}.npy", inst)
        np.save(root / "semantic" / f"{i}.npy", (inst > 0).astype(np.uint8) * sem_value)
        np.save(root / "detic_instance" / f"{i}.npy", (inst > 0).astype(np.int32) * (i + 1))
        np.save(root / "detic_semantic" / f"{i}.npy", (inst > 0).astype(np.int32))
        np.save(root / "detic_probabilities" / f"{i}.npy", np.full((H, W), 0.9, dtype=np.float32))
    return [kubric_pixel(m, POINT) for m in mats]


@pytest.fixture
def scene_dir(tmp_path):
    write_fixture(tmp_path)
    return tmp_path


def test_quaternion_matches_scipy():
    q = np.array([0.3, -0.5, 0.2, 0.78])
    R = Rotation.from_quat(np.roll(q, -1)).as_matrix()
    np.testing.assert_allclose(quaternion_to_matrix(q), R, atol=1e-12)


@pytest.mark.parametrize("with_k", [True, False])
def test_poses_project_like_kubric(tmp_path, with_k):
    intended = write_fixture(tmp_path, with_k=with_k)
    assert detect_layout(tmp_path) == "messy_rooms"
    scene = load_scene(tmp_path)
    assert scene.frame_names == ["0", "1", "2", "3", "4"]
    for i in (0, 3):
        assert np.abs(intended[i] - [W / 2, H / 2]).max() > 3  # the point is off-centre
        np.testing.assert_allclose(scene_pixel(scene, i, POINT), intended[i], atol=1e-3)
    f = FOCAL / SENSOR * W  # square pixels: fy = f / sensor_height * H = f / sensor_width * W
    np.testing.assert_allclose(scene.intrinsics[0], [[f, 0, 32], [0, f, 24], [0, 0, 1]], atol=1e-4)


def test_labels_classes_split(scene_dir):
    scene = load_scene(scene_dir)
    np.testing.assert_array_equal(scene.split["train"], [0, 1, 2, 3])
    np.testing.assert_array_equal(scene.split["test"], [4])
    assert scene.classes.num_classes == 3 and scene.classes.thing_ids == (2,) and scene.classes.stuff_ids == (1,)
    gt, det = scene.gt, scene.labels["m2f"]
    assert gt.instance.dtype == np.int16 and gt.instance[4, 15, 15] == 304  # the smallest type holding the ids
    assert gt.semantic.dtype == det.semantic.dtype == det.instance.dtype == np.uint8
    assert gt.semantic[4, 15, 15] == 2 and gt.semantic[4, 0, 0] == 1
    assert det.instance[2, 15, 15] == 3 and det.semantic[2, 15, 15] == 2
    assert decode_confidence(det.confidence)[0, 15, 15] == np.float32(0.9)
    assert scene.depth is None and scene.rgb[1, 0, 0, 0] == 20 and scene.rgb_float(1)[0, 0, 0] == np.float32(20 / 255)


def test_error_count_mismatch(tmp_path):
    write_fixture(tmp_path, n_cams=4)
    with pytest.raises(SdfsegError, match=r"metadata\.json: 4 camera positions, expected 5"):
        load_scene(tmp_path)


def test_error_bad_semantic_id(tmp_path):
    write_fixture(tmp_path, sem_value=2)
    with pytest.raises(SdfsegError, match=r"semantic/0\.npy: ids in \[0, 2\], expected 0\.\.1"):
        load_scene(tmp_path, "messy_rooms")


def test_error_non_finite_and_missing(scene_dir):
    meta = json.loads((scene_dir / "metadata.json").read_text())
    meta["camera"]["positions"][2][0] = float("nan")
    (scene_dir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(SdfsegError, match=r"metadata\.json: camera positions/quaternions have non-finite"):
        load_scene(scene_dir, "messy_rooms")
    (scene_dir / "metadata.json").unlink()
    with pytest.raises(SdfsegError, match=r"metadata\.json: file not found"):
        load_scene(scene_dir, "messy_rooms")


def test_error_shape_mismatch(scene_dir):
    np.save(scene_dir / "detic_instance" / "3.npy", np.zeros((H, W - 2), dtype=np.int32))
    with pytest.raises(SdfsegError, match=r"detic_instance/3\.npy: map is 48x62, expected 48x64"):
        load_scene(scene_dir, "messy_rooms")


def test_confidence_like_contrastive_lift(scene_dir):
    conf = np.full((H, W), 0.9, dtype=np.float32)
    conf[12:16, 12:16] = 0.0  # the augmented predictions disagree on part of the object
    conf[30:, 40:] = 0.0      # ... and on background pixels
    np.save(scene_dir / "detic_probabilities" / "1.npy", conf)
    outside = np.zeros((H, W), dtype=np.uint8)
    outside[:, 48:] = 255
    (scene_dir / "invalid").mkdir()
    Image.fromarray(outside).save(scene_dir / "invalid" / "1.jpg", quality=95)
    sam = np.zeros((H, W), dtype=np.int32)
    sam[10:20, 10:20] = 4
    for i in range(N):
        save_label_png(scene_dir / "sam_instance" / f"{i}.png", sam)
    scene = load_scene(scene_dir)
    det, other = scene.labels["m2f"], scene.labels["sam"]
    det = LabelSource(det.instance, det.semantic, decode_confidence(det.confidence))
    other = LabelSource(other.instance, other.semantic, decode_confidence(other.confidence))
    assert det.confidence[1, 13, 13] == pytest.approx(0.1)  # a stored 0 is a low confidence
    assert det.confidence[1, 18, 18] == pytest.approx(0.9)
    assert det.confidence[1, 35, 20] == 1.0 and det.confidence[1, 35, 42] == 1.0  # background forced to 1
    assert det.confidence[1, 5, 60] == 0.0 and other.confidence[1, 5, 60] == 0.0  # outside the room
    assert other.confidence[1, 5, 30] == 1.0 and det.confidence[2, 5, 60] == 1.0
    assert scene.gt.instance[1, 15, 15] == 301  # GT untouched


def test_kubric_depth_is_ray_distance(scene_dir):
    K = np.array([[FOCAL / SENSOR * W, 0, W / 2], [0, FOCAL / SENSOR * W, H / 2], [0, 0, 1]])
    v, u = np.mgrid[0:H, 0:W] + 0.5
    ray = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    z = 2.0 + 0.01 * u  # a slanted plane in camera coordinates
    for i in range(N):  # Kubric stores the distance from the camera centre, not z
        save_label_png(scene_dir / "depth" / f"{i}.png", np.rint(z * np.linalg.norm(ray, axis=-1) * 1000).astype(int))
    scene = load_scene(scene_dir)
    assert scene.depth_kind == "metric"
    np.testing.assert_allclose(scene.depth[0], z, rtol=2 ** -11, atol=1e-3)  # float16 depth
