"""Reader for a COLMAP capture: a sparse model and its images, e.g. a phone video run through COLMAP.

Layout (what ``colmap image_undistorter`` writes)::

    SCENE/images/<name>               the (undistorted) images, names as in images.txt / images.bin
    SCENE/sparse/0/cameras.{bin,txt}  (or SCENE/sparse/cameras.*)
    SCENE/sparse/0/images.{bin,txt}
    SCENE/sparse/0/points3D.{bin,txt}

The model is parsed by this module (COLMAP's documented text and binary formats; no pycolmap, a
compiled package with its own COLMAP build, for three small files). Binary files are preferred when
both are present. Only undistorted pinhole cameras are taken (``PINHOLE``, ``SIMPLE_PINHOLE``); any
other model is refused with a line telling the user to run COLMAP's ``image_undistorter`` first.

Poses: COLMAP stores world-to-camera ``R(q), t`` in OpenCV camera axes; ``c2w = [R^T | -R^T t]``.
Pixel coordinates: COLMAP's image coordinates put the centre of the top-left pixel at (0.5, 0.5), as
sdfseg's rays do (:mod:`sdfseg.data.scene`), so ``K`` is used as stored (scaled when the images are
smaller or larger than the model's cameras, e.g. a downscaled ``images/`` folder).

Sparse depth (DS-NeRF): every 3D point is projected into the images of its track; the pixel it lands
in gets the point's camera z (the nearest point wins), every other pixel 0 = no depth. Points with a
mean reprojection error above ``MAX_POINT_ERROR`` pixels or fewer than ``MIN_TRACK`` observations are
left out. ``depth_kind`` is ``"sparse"``: the depth losses and priors apply where a point landed, and
rays are sampled around the model's own surface (not around depth) everywhere. The scene's extent for
normalisation comes from the cameras and these points.

There are no labels and no class set: the scene is instance-only (background and object,
:data:`~.common.INSTANCE_ONLY_CLASSES`); ``tools/segment2d.py`` writes ``<src>_instance/<frame>.png``
and ``masks_<src>/<frame>.npz`` into the scene folder. Split: ``splits.json`` beside ``images/`` when
present (``{"train": [names], "test": [names]}``, names without extension), else every 8th frame (sorted
by name) is a test frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...errors import SdfsegError
from ...io import read_rgb8
from ..scene import Scene
from . import common as C

NAME = "colmap"
PINHOLE = ("SIMPLE_PINHOLE", "PINHOLE")
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
          5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
          9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16)}
"""COLMAP's camera model ids: name and number of parameters."""
MAX_POINT_ERROR = 2.0
"""Points whose mean reprojection error (pixels) is larger give no depth."""
MIN_TRACK = 2
"""Points seen in fewer images give no depth."""


@dataclass
class Camera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class Image:
    id: int
    qvec: np.ndarray  # w, x, y, z (world-to-camera rotation)
    tvec: np.ndarray
    camera_id: int
    name: str


@dataclass
class Model:
    cameras: dict[int, Camera]
    images: dict[int, Image]
    xyz: np.ndarray  # [P, 3]
    error: np.ndarray  # [P]
    tracks: list[np.ndarray] = field(default_factory=list)  # per point: image ids of its observations
    source: Path = Path(".")


def model_dir(path: Path) -> Path | None:
    """The folder holding the sparse model: ``sparse/0`` or ``sparse``."""
    for d in (path / "sparse" / "0", path / "sparse"):
        if any((d / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return d
    return None


def detect(path: Path) -> bool:
    return model_dir(path) is not None and (path / "images").is_dir()


# ---- text files -----------------------------------------------------------------------------------
def _lines(f: Path) -> list[str]:
    return [ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _fail(f: Path, what: str, e: Exception | str) -> SdfsegError:
    return SdfsegError(f"{f}: not a COLMAP {what} file ({e})")


def read_cameras_txt(f: Path) -> dict[int, Camera]:
    out = {}
    try:
        for ln in _lines(f):
            p = ln.split()
            out[int(p[0])] = Camera(int(p[0]), p[1], int(p[2]), int(p[3]), np.array([float(x) for x in p[4:]]))
    except (ValueError, IndexError) as e:
        raise _fail(f, "cameras", e) from None
    return out


def read_images_txt(f: Path) -> dict[int, Image]:
    out = {}
    # two lines per image; the second (its 2D points) may be empty, so blank lines count here
    raw = [ln.strip() for ln in f.read_text().splitlines() if not ln.lstrip().startswith("#")]
    while raw and not raw[-1]:
        raw.pop()
    try:
        for i in range(0, len(raw), 2):
            p = raw[i].split()
            if not p:
                continue
            img = Image(int(p[0]), np.array([float(x) for x in p[1:5]]), np.array([float(x) for x in p[5:8]]),
                        int(p[8]), " ".join(p[9:]))
            if not img.name:
                raise ValueError(f"image {p[0]} has no name")
            out[img.id] = img
    except (ValueError, IndexError) as e:
        raise _fail(f, "images", e) from None
    return out


def read_points_txt(f: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    xyz, err, tracks = [], [], []
    try:
        for ln in _lines(f):
            p = ln.split()
            xyz.append([float(x) for x in p[1:4]])
            err.append(float(p[7]))
            tracks.append(np.array([int(x) for x in p[8::2]], dtype=np.int64))
    except (ValueError, IndexError) as e:
        raise _fail(f, "points3D", e) from None
    return np.array(xyz, dtype=np.float64).reshape(-1, 3), np.array(err, dtype=np.float64), tracks


# ---- binary files ---------------------------------------------------------------------------------
def _read(fh: BinaryIO, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("file ends early")
    return struct.unpack("<" + fmt, data)


def read_cameras_bin(f: Path) -> dict[int, Camera]:
    out = {}
    try:
        with open(f, "rb") as fh:
            (n,) = _read(fh, "Q")
            for _ in range(n):
                cid, mid, w, h = _read(fh, "iiQQ")
                if mid not in MODELS:
                    raise ValueError(f"camera {cid} has unknown model id {mid}")
                name, k = MODELS[mid]
                out[cid] = Camera(cid, name, int(w), int(h), np.array(_read(fh, "d" * k)))
    except (ValueError, struct.error) as e:
        raise _fail(f, "cameras", e) from None
    return out


def read_images_bin(f: Path) -> dict[int, Image]:
    out = {}
    try:
        with open(f, "rb") as fh:
            (n,) = _read(fh, "Q")
            for _ in range(n):
                iid, qw, qx, qy, qz, tx, ty, tz, cid = _read(fh, "idddddddi")
                name = b""
                while (c := fh.read(1)) not in (b"\x00", b""):
                    name += c
                (npts,) = _read(fh, "Q")
                fh.seek(24 * npts, 1)  # x, y (double) and the 3D point id (int64) of each 2D point
                out[iid] = Image(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name.decode("utf-8"))
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise _fail(f, "images", e) from None
    return out


def read_points_bin(f: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    xyz, err, tracks = [], [], []
    try:
        with open(f, "rb") as fh:
            (n,) = _read(fh, "Q")
            for _ in range(n):
                vals = _read(fh, "QdddBBBdQ")
                xyz.append(vals[1:4])
                err.append(vals[7])
                t = np.frombuffer(fh.read(8 * vals[8]), dtype="<i4")
                if len(t) != 2 * vals[8]:
                    raise ValueError("file ends early")
                tracks.append(t[0::2].astype(np.int64))
    except (ValueError, struct.error) as e:
        raise _fail(f, "points3D", e) from None
    return np.array(xyz, dtype=np.float64).reshape(-1, 3), np.array(err, dtype=np.float64), tracks


def read_model(path: Path) -> Model:
    """The sparse model under ``path`` (a scene folder, or the model folder itself); ``.bin`` preferred."""
    d = model_dir(path) or path
    files = {}
    for stem in ("cameras", "images", "points3D"):
        f = next((d / f"{stem}.{ext}" for ext in ("bin", "txt") if (d / f"{stem}.{ext}").is_file()), None)
        if f is None:
            raise SdfsegError(f"{d}: no {stem}.bin or {stem}.txt (expected a COLMAP sparse model)")
        files[stem] = f
    binary = {k: f.suffix == ".bin" for k, f in files.items()}
    cams = (read_cameras_bin if binary["cameras"] else read_cameras_txt)(files["cameras"])
    imgs = (read_images_bin if binary["images"] else read_images_txt)(files["images"])
    xyz, err, tracks = (read_points_bin if binary["points3D"] else read_points_txt)(files["points3D"])
    for c in cams.values():
        if c.model not in PINHOLE:
            raise SdfsegError(f"{files['cameras']}: camera {c.id} has model {c.model}, expected an undistorted "
                              "PINHOLE or SIMPLE_PINHOLE camera (run COLMAP's image_undistorter and use its output)")
    for im in imgs.values():
        if im.camera_id not in cams:
            raise SdfsegError(f"{files['images']}: image {im.id} ({im.name}) uses camera {im.camera_id}, "
                              f"which {files['cameras'].name} does not define")
    return Model(cams, imgs, xyz, err, tracks, d)


# ---- geometry -------------------------------------------------------------------------------------
def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``(w, x, y, z)`` (normalised first)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def camera_to_world(im: Image) -> np.ndarray:
    """``c2w [4, 4]`` (OpenCV axes) of an image: the inverse of COLMAP's world-to-camera ``R, t``."""
    R = qvec_to_rotmat(im.qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ im.tvec
    return c2w


def intrinsics(cam: Camera) -> np.ndarray:
    if cam.model == "SIMPLE_PINHOLE":
        f, cx, cy = cam.params[:3]
        fx = fy = f
    else:
        fx, fy, cx, cy = cam.params[:4]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def project_points(points: np.ndarray, c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The points of ``points [P, 3]`` (world) that land in the image ``hw`` in front of the camera: their
    indices, pixel columns ``u`` and rows ``v`` (pixel centres at +0.5) and camera z."""
    cam = (np.asarray(points, np.float64).reshape(-1, 3) - c2w[:3, 3]) @ c2w[:3, :3]  # R^T (x - c)
    z = cam[:, 2]
    front = np.flatnonzero(z > 1e-6)
    uv = (cam[front] / z[front, None]) @ np.asarray(K, np.float64).T
    u, v = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    inside = (u >= 0) & (u < hw[1]) & (v >= 0) & (v < hw[0])
    idx = front[inside]
    return idx, u[inside], v[inside], z[idx]


def sparse_depth(points: np.ndarray, c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """float32 ``[H, W]``: the camera z of each of ``points [P, 3]`` (world) in the pixel it projects to
    (the nearest point where several land), 0 elsewhere and behind the camera."""
    out = np.zeros(tuple(hw), dtype=np.float32)
    _, u, v, z = project_points(points, c2w, K, hw)
    order = np.argsort(-z)  # far first, so the nearest point is written last
    out[v[order], u[order]] = z[order]
    return out


def points_by_image(model: Model) -> dict[int, np.ndarray]:
    """Indices of the points each image observes (its track entries), after the error and track-length
    filters (:data:`MAX_POINT_ERROR`, :data:`MIN_TRACK`)."""
    if not len(model.xyz):
        return {}
    lengths = np.array([len(t) for t in model.tracks])
    good = (model.error <= MAX_POINT_ERROR) & (lengths >= MIN_TRACK)
    point = np.repeat(np.arange(len(model.xyz)), lengths)
    image = np.concatenate(model.tracks) if len(model.tracks) else np.zeros(0, dtype=np.int64)
    keep = good[point]
    point, image = point[keep], image[keep]
    order = np.argsort(image, kind="stable")
    point, image = point[order], image[order]
    ids, start = np.unique(image, return_index=True)
    return {int(i): np.unique(p) for i, p in zip(ids, np.split(point, start[1:]))}


def read(path: Path, options) -> Scene:
    path = Path(path)
    model = read_model(path)
    if not model.images:
        raise SdfsegError(f"{model.source}: the model has no registered images")
    images = sorted(model.images.values(), key=lambda im: C.natural_key(im.name))
    names = [str(Path(im.name).with_suffix("")).replace("/", "_") for im in images]
    by_image = points_by_image(model)
    keep = C.select_frames(len(images), options.max_frames)
    size = tuple(options.image_size) if options.image_size else None
    rgb = depth = None
    hw0 = None
    poses, Ks = [], []
    for j, i in enumerate(keep):
        im = images[i]
        f = path / "images" / im.name
        if not f.is_file():
            raise SdfsegError(f"{f}: file not found (image {im.id} of {model.source})")
        img = read_rgb8(f)
        img_hw = img.shape[:2]
        if hw0 is None:
            hw0 = img_hw
            hw = size or hw0
            rgb = np.empty((len(keep),) + tuple(hw) + (3,), dtype=np.uint8)
            depth = C.depth_stack(len(keep), hw)
        elif size is None:
            C.check_hw(img, hw0, f)
        cam = model.cameras[im.camera_id]
        K = C.scale_intrinsics(intrinsics(cam), (cam.height, cam.width), img_hw)
        K = C.check_intrinsics(C.scale_intrinsics(K, img_hw, size or img_hw), size or img_hw,
                               f"{model.source}: camera {cam.id}")
        c2w = C.check_pose(camera_to_world(im), f"{model.source}: image {im.id} ({im.name})")
        pts = model.xyz[by_image.get(im.id, np.zeros(0, dtype=np.int64))]
        C.store_depth(depth, j, sparse_depth(pts, c2w, K, size or img_hw), f)
        rgb[j] = C.resize_rgb(img, size)
        poses.append(c2w)
        Ks.append(K)
    split_file = path / "splits.json"
    split = C.read_split_json(split_file, names) if split_file.is_file() else C.holdout_split(len(images))
    names = [names[i] for i in keep]
    labels = C.read_png_sources(path, names, hw0, size)
    return Scene(path=path, frame_names=names, rgb=rgb, c2w=np.stack(poses).astype(np.float32),
                 intrinsics=np.stack(Ks).astype(np.float32), classes=C.INSTANCE_ONLY_CLASSES,
                 split=C.remap_split(split, keep, model.source), depth=depth,
                 depth_kind="sparse", labels=labels, mask_dirs=C.mask_dirs(path))
