"""Reader for Messy Rooms (Contrastive Lift's Kubric scenes, instance-only).

Folder contents::

    color/<f>.png                   RGB(A) renders, frames ordered numerically
    metadata.json                   Kubric metadata: ``camera`` with ``positions`` [N, 3] and
                                    ``quaternions`` [N, 4] (w, x, y, z), or ``matrix_world`` [N, 4, 4];
                                    ``K`` (normalised 3x3) or ``focal_length`` + ``sensor_width`` (mm)
    semantic/<f>.npy, instance/<f>.npy            GT: semantic 0 = background, 1 = object; instance 0 = none
    detic_semantic/<f>.npy, detic_instance/<f>.npy  Detic predictions (the noisy source)
    detic_probabilities/<f>.npy     optional [H, W] confidence of the predictions: 0 -> 0.1
                                    (test-time-augmentation map), background (detic semantic 0) -> 1
    depth/<f>.png                   optional uint16 millimetres of Kubric's depth, the distance from the
                                    camera centre along the ray: converted to z-depth
    invalid/<f>.jpg|png             optional; non-zero = outside the room: confidence 0 in every source

Kubric cameras are Blender cameras (looking along -z, y up); poses are converted to
OpenCV axes by flipping the camera y and z axes. Kubric's normalised intrinsics have
negative entries ([[fx, 0, -1/2], [0, -fy, -1/2], [0, 0, -1]], pixel-edge convention);
their magnitudes times the image size give K. Classes are instance-only: semantic
ids are shifted by one (0 void, 1 background = stuff, 2 object = thing). The last 20%
of the frames are the test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import SdfsegError
from ...io import read_label_png, read_rgb
from ..scene import LabelMapBuilder, LabelSource, Scene, encode_confidence
from . import common as C
from .geometry import ray_distance_to_z

NAME = "messy_rooms"


def detect(path: Path) -> bool:
    return ((path / "metadata.json").is_file() and (path / "color").is_dir()
            and ((path / "instance").is_dir() or (path / "semantic").is_dir() or any(path.glob("detic_*"))))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) ``[4]`` -> rotation ``[3, 3]``."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _blender_poses(cam: dict, file: Path, n: int) -> np.ndarray:
    """Camera-to-world ``[n, 4, 4]`` in Blender camera axes from a Kubric ``camera`` dict."""
    try:
        if "positions" in cam and "quaternions" in cam:
            pos = np.asarray(cam["positions"], dtype=np.float64)
            quat = np.asarray(cam["quaternions"], dtype=np.float64)
            if pos.ndim != 2 or pos.shape[1] != 3 or quat.shape != (pos.shape[0], 4):
                raise SdfsegError(f"{file}: camera.positions must be [N, 3] and camera.quaternions [N, 4], "
                                  f"got {pos.shape} and {quat.shape}")
            C.check_count(len(pos), n, "camera positions", file)
            if not (np.isfinite(pos).all() and np.isfinite(quat).all()) or (np.linalg.norm(quat, axis=1) < 1e-8).any():
                raise SdfsegError(f"{file}: camera positions/quaternions have non-finite or zero values")
            out = np.tile(np.eye(4), (n, 1, 1))
            for i in range(n):
                out[i, :3, :3] = quaternion_to_matrix(quat[i])
                out[i, :3, 3] = pos[i]
            return out
        if "matrix_world" in cam:
            mats = np.asarray(cam["matrix_world"], dtype=np.float64)
            if mats.ndim != 3 or mats.shape[1:] != (4, 4):
                raise SdfsegError(f"{file}: camera.matrix_world must be [N, 4, 4], got {mats.shape}")
            C.check_count(len(mats), n, "camera matrices", file)
            return mats
    except (TypeError, ValueError) as exc:
        raise SdfsegError(f"{file}: cannot parse the camera poses ({exc})") from None
    raise SdfsegError(f"{file}: camera needs positions + quaternions or matrix_world")


def _intrinsics(cam: dict, hw: tuple[int, int], file: Path) -> np.ndarray:
    """Pixel intrinsics ``[3, 3]`` for an ``hw`` image from Kubric's camera record."""
    h, w = hw
    if "K" in cam:
        Kn = np.abs(np.asarray(cam["K"], dtype=np.float64))
        if Kn.shape != (3, 3) or not np.isfinite(Kn).all():
            raise SdfsegError(f"{file}: camera.K must be a finite 3x3 matrix")
        K = np.array([[Kn[0, 0] * w, 0.0, Kn[0, 2] * w], [0.0, Kn[1, 1] * h, Kn[1, 2] * h], [0.0, 0.0, 1.0]])
    elif "focal_length" in cam and "sensor_width" in cam:
        f = float(cam["focal_length"]) / float(cam["sensor_width"]) * w  # square pixels
        K = np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])
    else:
        raise SdfsegError(f"{file}: camera needs K or focal_length + sensor_width")
    return C.check_intrinsics(K, hw, f"{file}: camera")


def _read_npy_map(f: Path, hw, hi: int | None) -> np.ndarray:
    """An integer label map ``f`` (``.npy``) at the native ``hw``, ids in ``0..hi``."""
    m = C.as_int_map(C.load_npy(f, "an [H, W] label map"), f)
    C.check_hw(m, hw, f)
    C.check_ids(m, 0, hi, f, "ids")
    return m


def _read_source(path: Path, prefix: str, names, hw, size) -> LabelSource | None:
    """``<prefix>semantic`` / ``<prefix>instance`` npy folders (prefix "" = GT, "detic_" = predictions with
    ``detic_probabilities``), resized to ``size``, frame by frame into compact arrays.

    An instance-only folder makes every instance an object. Detic confidences (``<f>.npy``): zeros are
    raised to 0.1 (:func:`~sdfseg.data.formats.common.tta_confidence`); then, as Contrastive Lift does,
    the background's confidence is forced to 1.
    """
    sem_dir, inst_dir = path / f"{prefix}semantic", path / f"{prefix}instance"
    conf_dir = path / f"{prefix}probabilities"
    if not sem_dir.is_dir() and not inst_dir.is_dir():
        return None
    shape = (len(names),) + tuple(size or hw)
    sem = np.zeros(shape, dtype=np.uint8)  # stored ids 0..1 shifted to 1..2
    inst = LabelMapBuilder(shape) if inst_dir.is_dir() else None
    conf = np.zeros(shape, dtype=np.uint8) if prefix and conf_dir.is_dir() else None
    for i, n in enumerate(names):
        s_i = _read_npy_map(sem_dir / f"{n}.npy", hw, 1) if sem_dir.is_dir() else None
        m_i = _read_npy_map(inst_dir / f"{n}.npy", hw, None) if inst is not None else None
        if s_i is None:  # instance-only folder: any instance is an object
            s_i = (m_i > 0).astype(np.int32)
        if conf is not None:
            f = conf_dir / f"{n}.npy"
            c = C.tta_confidence(C.load_npy(f, "an [H, W] confidence map"), f)
            C.check_hw(c, hw, f)
            conf[i] = encode_confidence(C.resize_map(np.where(s_i == 0, 1.0, c).astype(np.float32), size, False))
        sem[i] = C.resize_map(s_i, size, True) + 1
        if inst is not None:
            inst[i] = C.resize_map(m_i, size, True)
    return LabelSource(instance=None if inst is None else inst.array, semantic=sem, confidence=conf)


def _read_depth(folder: Path, names: list[str], hw, size, K: np.ndarray) -> np.ndarray:
    """float16 ``[N, h, w]`` z-depth from uint16 millimetre PNGs of Kubric's distance from the camera centre."""
    out = C.depth_stack(len(names), size or hw)
    for i, n in enumerate(names):
        f = folder / f"{n}.png"
        mm = read_label_png(f)
        C.check_hw(mm, hw, f)
        C.check_ids(mm, 0, None, f, "depth values (uint16 millimetres)")
        z = ray_distance_to_z(mm.astype(np.float32) / 1000.0, K)
        C.store_depth(out, i, C.resize_map(z, size, nearest=True), f)
    return out


def read(path: Path, options) -> Scene:
    path = Path(path)
    colors = C.frames_with_suffix(path / "color", ".png")
    if not colors:
        raise SdfsegError(f"{path / 'color'}: no images found (expected color/<frame>.png)")
    all_names = list(colors)
    meta_file = path / "metadata.json"
    try:
        cam = json.loads(meta_file.read_text())["camera"]
    except FileNotFoundError:
        raise SdfsegError(f"{meta_file}: file not found (expected Kubric metadata with a 'camera' record)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SdfsegError(f"{meta_file}: expected Kubric metadata with a 'camera' record ({exc!r})") from None
    native_hw = read_rgb(colors[all_names[0]]).shape[:2]
    c2w_all = _blender_poses(cam, meta_file, len(all_names)) @ C.OPENGL_TO_OPENCV
    for i, m in enumerate(c2w_all):
        C.check_pose(m, f"{meta_file}: camera frame {i}")
    K = _intrinsics(cam, native_hw, meta_file)

    keep = C.select_frames(len(all_names), options.max_frames)
    names = [all_names[i] for i in keep]
    size = tuple(options.image_size) if options.image_size else None
    hw = size or native_hw
    rgb = C.read_rgb_stack([colors[n] for n in names], native_hw, size)

    depth = _read_depth(path / "depth", names, native_hw, size, K) if (path / "depth").is_dir() else None

    labels = {}
    detic = _read_source(path, "detic_", names, native_hw, size)
    if detic is not None:
        labels[options.label_source] = detic
    for src, ls in C.read_png_sources(path, names, native_hw, size, exclude=("detic",)).items():
        labels[src] = ls
    room = C.read_room_masks(path / "invalid", names, native_hw, size)
    if room is not None:  # outside the room: not supervised, in every source
        C.unsupervise(labels.values(), room)
    gt = _read_source(path, "", names, native_hw, size)

    Ks = np.repeat(C.scale_intrinsics(K, native_hw, hw)[None], len(names), axis=0)
    return Scene(
        path=path, frame_names=names, rgb=rgb, c2w=c2w_all[keep].astype(np.float32),
        intrinsics=Ks.astype(np.float32), classes=C.INSTANCE_ONLY_CLASSES,
        split=C.remap_split(C.tail_split(len(all_names)), keep, meta_file),
        depth=depth, depth_kind="metric", labels=labels, gt=gt, mask_dirs=C.mask_dirs(path),
    )
