"""Reader for a plain folder of images with a nerfstudio / instant-ngp style ``transforms.json``.

``transforms.json``::

    {"fl_x": ..., "fl_y": ..., "cx": ..., "cy": ..., "w": ..., "h": ...,   # global, or per frame
     "camera_angle_x": ...,                                               # alternative to fl_x (NeRF)
     "frames": [{"file_path": "images/0001.png", "transform_matrix": [[...4x4...]],
                 "depth_file_path": "depth/0001.png"}, ...],                # depth optional
     "camera_model": "OPENCV",                                            # optional, a pinhole model
     "train_filenames": [...], "val_filenames"|"test_filenames": [...]}   # optional split

``transform_matrix`` is camera-to-world in OpenGL camera axes (x right, y up, looking
along -z); the reader flips the camera y and z axes to get OpenCV axes. Intrinsics use
the pixel-edge convention (as nerfstudio, which shoots rays through ``index + 0.5``);
if an image's size differs from the declared ``w`` x ``h`` the intrinsics are scaled
to it. Depth (16-bit PNG or ``.npy``) is multiplied by ``depth_unit_scale_factor``
(default 0.001, millimetres), as nerfstudio does for both; it is sensor depth
(``depth_kind`` "metric"). ``camera_model`` must be one nerfstudio treats as a
perspective camera (:data:`PINHOLE_MODELS`); fisheye, equirectangular and other models
are refused. Distortion coefficients are ignored (images must be undistorted). With
``train_filenames`` the test split is ``test_filenames``, else ``val_filenames`` (nerfstudio
evaluates on the val list); without a split in the file, every 8th frame is a test frame.
There are no labels: ``tools/segment2d.py`` writes ``<src>_instance/<frame>.png`` and
``masks_<src>/<frame>.npz`` beside the json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ...errors import SdfsegError
from ...io import read_label_png, read_rgb8
from ..scene import Scene
from . import common as C

NAME = "transforms_json"
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
"""``camera_model`` values nerfstudio maps to a perspective camera (the default when the key is absent)."""
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def detect(path: Path) -> bool:
    return (path / "transforms.json").is_file()


def _resolve_image(root: Path, rel: str, file: Path) -> Path:
    p = root / rel
    if p.is_file():
        return p
    for ext in _IMAGE_EXTS:  # NeRF-synthetic file paths omit the extension
        q = p.with_name(p.name + ext)
        if q.is_file():
            return q
    raise SdfsegError(f"{p}: file not found (listed as file_path in {file.name})")


def _intrinsics(meta: dict, frame: dict, img_hw: tuple[int, int], file: Path, i: int) -> np.ndarray:
    """Pixel intrinsics ``[3, 3]`` at the loaded image size from per-frame or global keys."""
    def get(key):
        return frame.get(key, meta.get(key))

    h_img, w_img = img_hw
    w = float(get("w") or w_img)
    h = float(get("h") or h_img)
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        angle = get("camera_angle_x")
        if angle is None:
            raise SdfsegError(f"{file}: frame {i} has no focal length (fl_x or camera_angle_x)")
        fx = 0.5 * w / math.tan(0.5 * float(angle))
    if fy is None:
        angle_y = get("camera_angle_y")
        fy = 0.5 * h / math.tan(0.5 * float(angle_y)) if angle_y is not None else fx
    cx, cy = get("cx"), get("cy")
    K = np.array([[float(fx), 0.0, float(cx) if cx is not None else w / 2.0],
                  [0.0, float(fy), float(cy) if cy is not None else h / 2.0],
                  [0.0, 0.0, 1.0]])
    return C.check_intrinsics(C.scale_intrinsics(K, (int(round(h)), int(round(w))), img_hw), img_hw,
                              f"{file}: frame {i}")


def _frame_names(paths: list[str]) -> list[str]:
    """Unique frame names: file stems, or the relative path with separators as '_' when stems clash."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(Path(p).with_suffix("")).strip("./").replace("/", "_") for p in paths]


def _split(meta: dict, paths: list[str], names: list[str], file: Path) -> dict[str, np.ndarray]:
    if "train_filenames" not in meta:
        return C.holdout_split(len(paths))
    index = {}
    for i, (p, n) in enumerate(zip(paths, names)):
        for key in (p, p.lstrip("./"), Path(p).name, n):
            index[key] = i
    test_key = next((k for k in ("test_filenames", "val_filenames") if k in meta), None)
    if test_key is None:
        raise SdfsegError(f"{file}: train_filenames without test_filenames or val_filenames (expected the frames "
                          "to evaluate on)")
    split = {}
    for k, key in (("train", "train_filenames"), ("test", test_key)):
        idx = []
        for it in meta[key]:
            s = str(it)
            hit = next((index[c] for c in (s, s.lstrip("./"), Path(s).name) if c in index), None)
            if hit is None:
                raise SdfsegError(f"{file}: {key} entry '{it}' is not a frame's file_path")
            idx.append(hit)
        split[k] = np.asarray(sorted(set(idx)), dtype=np.int64)
    if split["train"].size == 0:
        raise SdfsegError(f"{file}: train_filenames is empty")
    return split


def _read_depth(root: Path, frame: dict, meta: dict, img_hw, size, file: Path) -> np.ndarray:
    f = root / str(frame["depth_file_path"])
    scale = meta.get("depth_unit_scale_factor", 1e-3)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
        raise SdfsegError(f"{file}: depth_unit_scale_factor must be a positive number, got {scale!r}")
    if f.suffix == ".npy":
        d = C.load_npy(f, "an [H, W] depth map").astype(np.float32).squeeze() * np.float32(scale)
    else:
        d = read_label_png(f).astype(np.float32) * np.float32(scale)
    C.check_hw(d, img_hw, f)
    if not np.isfinite(d).all() or (d < 0).any():
        raise SdfsegError(f"{f}: depth must be finite and >= 0")
    if d.size and float(d.max()) > C.FLOAT16_MAX:
        raise SdfsegError(f"{f}: depth up to {float(d.max()):g} m does not fit the scene's float16 depth "
                          f"(max {C.FLOAT16_MAX:g}); check depth_unit_scale_factor in {file.name}")
    return C.resize_map(d, size, nearest=True)


def read(path: Path, options) -> Scene:
    path = Path(path)
    file = path / "transforms.json"
    try:
        meta = json.loads(file.read_text())
        frames = list(meta["frames"])
    except FileNotFoundError:
        raise SdfsegError(f"{file}: file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SdfsegError(f"{file}: expected a JSON object with a 'frames' list ({exc!r})") from None
    if not frames:
        raise SdfsegError(f"{file}: 'frames' is empty")
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise SdfsegError(f"{file}: frame {i} needs file_path and transform_matrix")
    for where, d in [("", meta)] + [(f"frame {i} ", fr) for i, fr in enumerate(frames)]:
        model = d.get("camera_model", "PINHOLE")
        if model not in PINHOLE_MODELS:
            raise SdfsegError(f"{file}: {where}camera_model '{model}' is not a pinhole camera (expected one of "
                              f"{', '.join(PINHOLE_MODELS)}; undistort or convert the images first)")
    frames.sort(key=lambda fr: C.natural_key(str(fr["file_path"])))
    paths = [str(fr["file_path"]) for fr in frames]
    all_names = _frame_names(paths)
    split = _split(meta, paths, all_names, file)
    with_depth = [("depth_file_path" in fr) for fr in frames]
    if any(with_depth) and not all(with_depth):
        C.check_count(sum(with_depth), len(frames), "frames with depth_file_path", file)

    keep = C.select_frames(len(frames), options.max_frames)
    size = tuple(options.image_size) if options.image_size else None
    poses, Ks = [], []
    rgb = depth = None
    hw0 = None
    for j, i in enumerate(keep):
        fr = frames[i]
        img_file = _resolve_image(path, paths[i], file)
        img = read_rgb8(img_file)
        img_hw = img.shape[:2]
        if hw0 is None:
            hw0 = img_hw
            rgb = np.empty((len(keep),) + tuple(size or hw0) + (3,), dtype=np.uint8)
            depth = C.depth_stack(len(keep), size or hw0) if with_depth[i] else None
        elif size is None:
            C.check_hw(img, hw0, img_file)
        try:
            gl = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise SdfsegError(f"{file}: frame {i} transform_matrix is not a numeric 4x4 matrix") from None
        if gl.shape == (3, 4):
            gl = np.vstack([gl, [0.0, 0.0, 0.0, 1.0]])
        poses.append(C.check_pose(gl, f"{file}: frame {i} ({paths[i]}) transform_matrix") @ C.OPENGL_TO_OPENCV)
        K = _intrinsics(meta, fr, img_hw, file, int(i))
        hw = size or img_hw
        Ks.append(C.scale_intrinsics(K, img_hw, hw))
        rgb[j] = C.resize_rgb(img, size)
        if depth is not None:
            depth[j] = _read_depth(path, fr, meta, img_hw, size, file)
    names = [all_names[i] for i in keep]
    labels = C.read_png_sources(path, names, hw0, size)
    return Scene(
        path=path, frame_names=names, rgb=rgb, c2w=np.stack(poses).astype(np.float32),
        intrinsics=np.stack(Ks).astype(np.float32), classes=C.INSTANCE_ONLY_CLASSES,
        split=C.remap_split(split, keep, file), depth=depth,
        depth_kind="metric", labels=labels, mask_dirs=C.mask_dirs(path),
    )
