"""Shared helpers for the layout readers: frame order and pairing, splits, resizing, validation,
label folders, confidences.

Every check raises :class:`~sdfseg.errors.SdfsegError` with one line naming the
offending file and what was expected (counts, shapes, finite poses, id ranges).
Resizing follows the scene conventions: RGB and confidences bilinear, depth,
normals and label maps nearest neighbour; intrinsics are rescaled per axis
(pixel-edge convention, so ``K' = diag(sx, sy, 1) K``).

Readers decode one frame at a time into preallocated arrays of the scene's compact
dtypes (:mod:`sdfseg.data.scene`): uint8 RGB, float16 depth (:func:`store_depth`), int8
normals, label maps through :class:`~sdfseg.data.scene.LabelMapBuilder`, uint8 confidences.
No float32 stack of all frames is built.

Confidence (``LabelSource.confidence``): 0 means "not supervised" (outside the room,
invalid pixels, frames a source does not cover); a value in (0, 1] is a weight. Stored
test-time-augmentation maps go through :func:`tta_confidence` (0 -> 0.1) first, the
zeros are set afterwards (:func:`unsupervise`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from ...errors import SdfsegError
from ...io import read_label_png, read_rgb8
from ..scene import (
    DEPTH_DTYPE, FLOAT16_MAX, NORMAL_DTYPE, RGB_DTYPE, ClassInfo, LabelMapBuilder, LabelSource, encode_confidence,
    encode_rgb, full_confidence,
)

INSTANCE_ONLY_CLASSES = ClassInfo(num_classes=3, thing_ids=(2,), stuff_ids=(1,),
                                  names=("void", "background", "object"))
"""Class set of instance-only scenes (REFERENCE 5.7): 0 void, 1 background (stuff), 2 object (thing)."""

PL_REDUCED_NAMES = ("void", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
                    "counter", "shelves", "curtain", "ceiling", "refrigerator", "television", "person",
                    "toilet", "sink", "lamp", "bag", "otherprop")
PL_REDUCED_CLASSES = ClassInfo(
    num_classes=22, thing_ids=(4, 5, 6, 14, 15, 16, 17, 18, 20),
    stuff_ids=tuple(c for c in range(1, 22) if c not in (4, 5, 6, 14, 15, 16, 17, 18, 20)),
    names=PL_REDUCED_NAMES)
"""Panoptic Lifting's reduced ScanNet class set (21 classes + void, REFERENCE 6)."""

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiply an OpenGL/Blender camera-to-world matrix by this to get OpenCV camera axes."""


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def frames_with_suffix(folder: Path, suffix: str, lexical: bool = False) -> dict[str, Path]:
    """Files ``folder/<name><suffix>`` as ``{name: path}``, naturally sorted by name (``2`` before ``10``),
    or with ``lexical`` in plain file-name order (``10`` before ``2``), as ``sorted(glob(...))`` orders them.
    """
    if not folder.is_dir():
        return {}
    found = {p.name[: -len(suffix)]: p for p in folder.iterdir()
             if p.is_file() and p.name.endswith(suffix) and len(p.name) > len(suffix)}
    order = sorted(found, key=lambda k: found[k].name) if lexical else sorted(found, key=natural_key)
    return {k: found[k] for k in order}


def pair_by_order(folder: Path, suffix: str, names: list[str], what: str) -> list[Path]:
    """One file per frame: the files ``folder/*<suffix>`` in plain file-name order, the i-th for frame i.

    This is how the MonoSDF-family references pair cues with images (``sorted(glob(...))`` then
    ``zip``), whatever the names. Refused, naming the file: a count that differs from the frames,
    and a file named after a frame that this order would give to another frame (unpadded names such
    as ``1`` / ``10``, whose files sort differently with another suffix): rename them zero-padded.
    """
    files = frames_with_suffix(folder, suffix, lexical=True)
    index = {n: i for i, n in enumerate(names)}
    if len(files) != len(names):
        missing = next((n for n in names if n not in files), None)
        where = folder / (missing + suffix) if missing is not None else folder
        raise SdfsegError(f"{where}: {'file not found' if missing is not None else 'too many files'} "
                          f"({what}: {len(files)} files '*{suffix}' for {len(names)} frames)")
    for i, (stem, f) in enumerate(files.items()):
        if index.get(stem, i) != i:
            raise SdfsegError(f"{f}: in sorted file-name order it pairs with frame '{names[i]}', not '{stem}' "
                              f"(the reference pairs {what} with the images by sorted order); name the files so "
                              "both orders agree, e.g. zero-padded frame names")
    return list(files.values())


def select_frames(n: int, max_frames: Optional[int]) -> np.ndarray:
    """int64 ``[M]`` indices of at most ``max_frames`` evenly spaced frames out of ``n``."""
    if max_frames is None or n <= max_frames:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, max_frames).round().astype(np.int64))


def remap_split(split: dict[str, np.ndarray], keep: np.ndarray, source: Path) -> dict[str, np.ndarray]:
    """Re-index a split over all frames to the kept frames ``keep`` (frames not kept are dropped)."""
    pos = {int(k): i for i, k in enumerate(keep)}
    out = {k: np.asarray(sorted(pos[int(i)] for i in v if int(i) in pos), dtype=np.int64) for k, v in split.items()}
    if out["train"].size == 0:
        raise SdfsegError(f"{source}: no training frames left after frame selection")
    return out


def holdout_split(n: int, every: int = 8) -> dict[str, np.ndarray]:
    """Default split: every ``every``-th frame (0, 8, 16, ...) is a test frame, the rest train."""
    idx = np.arange(n, dtype=np.int64)
    test = idx[idx % every == 0] if n > 1 else idx[:0]
    return {"train": np.setdiff1d(idx, test), "test": test}


def tail_split(n: int, test_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Split with the last ``test_fraction`` of the frames as test (Messy Rooms protocol)."""
    cut = int(n * (1.0 - test_fraction))
    idx = np.arange(n, dtype=np.int64)
    return {"train": idx[:cut], "test": idx[cut:]}


def read_split_json(file: Path, names: list[str], ints_are_names: bool = False) -> dict[str, np.ndarray]:
    """``{"train": [...], "test": [...]}`` with integer indices or frame names -> index arrays over ``names``.

    With ``ints_are_names`` (Panoptic Lifting) integers are frame names too (``12`` is frame
    ``"12"``, or ``"0012"`` when no frame is named ``"12"``), never indices.
    """
    try:
        d = json.loads(file.read_text())
        raw = {k: list(d[k]) for k in ("train", "test")}
    except FileNotFoundError:
        raise SdfsegError(f"{file}: file not found (expected {{\"train\": [...], \"test\": [...]}})") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SdfsegError(f"{file}: expected {{\"train\": [...], \"test\": [...]}} ({exc!r})") from None
    index = {n: i for i, n in enumerate(names)}
    numeric = {}
    for i, n in enumerate(names):
        if n.isdigit():
            numeric.setdefault(int(n), i)
    split = {}
    for k, items in raw.items():
        idx = []
        for it in items:
            if ints_are_names and str(it) not in index and str(it).isdigit() and int(str(it)) in numeric:
                idx.append(numeric[int(str(it))])
            elif isinstance(it, (int, np.integer)) and not isinstance(it, bool) and not ints_are_names:
                if not 0 <= int(it) < len(names):
                    raise SdfsegError(f"{file}: {k} index {it} out of range 0..{len(names) - 1}")
                idx.append(int(it))
            elif str(it) in index:
                idx.append(index[str(it)])
            else:
                raise SdfsegError(f"{file}: {k} frame '{it}' is not a frame of the scene")
        split[k] = np.asarray(sorted(set(idx)), dtype=np.int64)
    if split["train"].size == 0:
        raise SdfsegError(f"{file}: the train split is empty")
    return split


def resize_map(arr: np.ndarray, size: Optional[tuple[int, int]], nearest: bool) -> np.ndarray:
    """Resize ``[H, W]`` or ``[H, W, C]`` to ``size`` = (H, W); nearest keeps dtype, bilinear gives float32."""
    if size is None or tuple(arr.shape[:2]) == tuple(size):
        return arr
    h, w = size
    if nearest:
        ys = ((np.arange(h) + 0.5) * arr.shape[0] / h).astype(np.int64)
        xs = ((np.arange(w) + 0.5) * arr.shape[1] / w).astype(np.int64)
        return arr[ys[:, None], xs[None, :]]
    if arr.ndim == 3:
        return np.stack([resize_map(arr[..., c], size, False) for c in range(arr.shape[2])], axis=-1)
    im = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), mode="F").resize((w, h), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def resize_rgb(img: np.ndarray, size) -> np.ndarray:
    """uint8 ``[H, W, 3]`` resized (bilinear on the float colours, rounded back to uint8) to ``size``."""
    if size is None or tuple(img.shape[:2]) == tuple(size):
        return img
    return encode_rgb(resize_map(img.astype(np.float32) / np.float32(255.0), size, nearest=False))


def read_rgb_stack(files: list[Path], native_hw: tuple[int, int], size) -> np.ndarray:
    """Read RGB images (each must be ``native_hw``), resized to ``size``: uint8 ``[N, H, W, 3]``."""
    out = np.empty((len(files),) + tuple(size or native_hw) + (3,), dtype=RGB_DTYPE)
    for i, f in enumerate(files):
        img = read_rgb8(f)
        check_hw(img, native_hw, f)
        out[i] = resize_rgb(img, size)
    return out


def depth_stack(n: int, hw: tuple[int, int]) -> np.ndarray:
    """Zero depth ``[n, H, W]`` in the scene's storage dtype (float16)."""
    return np.zeros((n,) + tuple(hw), dtype=DEPTH_DTYPE)


def store_depth(out: np.ndarray, i: int, depth: np.ndarray, source: Path | str) -> None:
    """``out[i] = depth`` (float16); a depth beyond float16's range (65504) is refused naming ``source``
    (a wrong unit: such values are not metres)."""
    if depth.size and float(np.max(depth)) > FLOAT16_MAX:
        raise SdfsegError(f"{source}: depth up to {float(np.max(depth)):g} does not fit the scene's float16 depth "
                          f"(max {FLOAT16_MAX:g}); depth must be in metres (check the depth unit)")
    out[i] = depth


def normals_stack(n: int, hw: tuple[int, int]) -> np.ndarray:
    """Zero normals ``[n, H, W, 3]`` in the scene's storage dtype (int8, ``v / 127``)."""
    return np.zeros((n,) + tuple(hw) + (3,), dtype=NORMAL_DTYPE)


def scale_intrinsics(K: np.ndarray, native_hw: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics ``[3, 3]`` at ``native_hw`` -> at ``hw`` (pixel-edge convention)."""
    out = np.asarray(K, dtype=np.float64).copy()
    out[0] *= hw[1] / native_hw[1]
    out[1] *= hw[0] / native_hw[0]
    return out


def check_pose(c2w: np.ndarray, source: str) -> np.ndarray:
    """Validate a camera-to-world ``[4, 4]``: finite, rotation part orthonormal with det +1."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4):
        raise SdfsegError(f"{source}: expected a 4x4 camera pose, got shape {c2w.shape}")
    if not np.isfinite(c2w).all():
        raise SdfsegError(f"{source}: camera pose has non-finite values")
    rot = c2w[:3, :3]
    if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-3 or np.linalg.det(rot) < 0:
        raise SdfsegError(f"{source}: camera rotation is not a proper rotation (orthonormal, det +1)")
    return c2w


def check_intrinsics(K: np.ndarray, hw: tuple[int, int], source: str) -> np.ndarray:
    """Validate ``[3, 3]`` intrinsics: finite, positive focal lengths."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise SdfsegError(f"{source}: intrinsics must be a finite 3x3 matrix")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SdfsegError(f"{source}: focal lengths must be positive, got fx={K[0, 0]:g} fy={K[1, 1]:g}")
    return K


def check_count(got: int, expected: int, what: str, source: Path | str) -> None:
    if got != expected:
        raise SdfsegError(f"{source}: {got} {what}, expected {expected} (one per frame)")


def check_hw(arr: np.ndarray, hw: tuple[int, int], source: Path | str) -> None:
    if tuple(arr.shape[:2]) != tuple(hw):
        raise SdfsegError(f"{source}: map is {arr.shape[0]}x{arr.shape[1]}, expected {hw[0]}x{hw[1]} like the images")


def check_ids(arr: np.ndarray, lo: int, hi: Optional[int], source: Path | str, what: str = "ids") -> None:
    """All values of an integer map in ``[lo, hi]`` (``hi`` None = no upper bound)."""
    if arr.size == 0:
        return
    amin, amax = int(arr.min()), int(arr.max())
    if amin < lo or (hi is not None and amax > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise SdfsegError(f"{source}: {what} in [{amin}, {amax}], expected {rng}")


def load_npy(file: Path, what: str) -> np.ndarray:
    """``np.load`` of a ``.npy`` with a one-line error naming the file."""
    try:
        return np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise SdfsegError(f"{file}: file not found (expected {what})") from None
    except (ValueError, OSError) as exc:
        raise SdfsegError(f"{file}: cannot read {what} ({exc})") from None


def load_npz_key(file: Path, key: str, what: str) -> np.ndarray:
    try:
        with np.load(file, allow_pickle=False) as z:
            return z[key]
    except FileNotFoundError:
        raise SdfsegError(f"{file}: file not found (expected {what})") from None
    except KeyError:
        raise SdfsegError(f"{file}: missing key '{key}' (expected {what})") from None
    except (ValueError, OSError) as exc:
        raise SdfsegError(f"{file}: cannot read {what} ({exc})") from None


def as_int_map(arr: np.ndarray, source: Path | str) -> np.ndarray:
    """A label map ``[H, W]`` of integer values as int32 (float arrays must hold whole numbers)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise SdfsegError(f"{source}: expected a 2D label map, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise SdfsegError(f"{source}: label map must hold whole numbers")
    elif arr.dtype.kind not in "iub":
        raise SdfsegError(f"{source}: label map must be integer, got {arr.dtype}")
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
        raise SdfsegError(f"{source}: label ids do not fit in int32")
    return arr.astype(np.int32)


def read_normals_chw(file: Path, hw: tuple[int, int]) -> np.ndarray:
    """MonoSDF/Omnidata normals ``3 x H x W`` in [0, 1] -> float32 unit vectors ``[H, W, 3]`` (n = 2v - 1);
    readers store them with :func:`~sdfseg.data.scene.encode_normals`."""
    v = load_npy(file, "3 x H x W normals in [0, 1]").astype(np.float32)
    if v.ndim == 3 and v.shape[0] == 3 and v.shape[1:] == tuple(hw):
        v = np.moveaxis(v, 0, -1)
    elif not (v.ndim == 3 and v.shape == tuple(hw) + (3,)):
        raise SdfsegError(f"{file}: normals have shape {v.shape}, expected 3x{hw[0]}x{hw[1]}")
    if not np.isfinite(v).all():
        raise SdfsegError(f"{file}: normals have non-finite values")
    n = 2.0 * v - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, n / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def stack_label_pngs(files: Iterable[Path], hw: tuple[int, int], size) -> np.ndarray:
    """``[N, h, w]`` label maps (compact dtype, :func:`~sdfseg.data.scene.label_dtype`) from label PNGs that
    must all be ``hw`` (resized to ``size`` if given)."""
    files = list(files)
    out = LabelMapBuilder((len(files),) + tuple(size or hw))
    for i, f in enumerate(files):
        m = read_label_png(f)
        check_hw(m, hw, f)
        out[i] = resize_map(m, size, nearest=True)
    return out.array


def read_png_sources(path: Path, names: list[str], hw: tuple[int, int], size,
                     exclude: Iterable[str] = ()) -> dict[str, LabelSource]:
    """Label sources written by ``tools/segment2d.py``: ``<src>_instance/<frame>.png`` (+ ``<src>_semantics/``).

    A folder is a source when it holds a PNG for at least one frame. Frames it does not
    cover (``segment2d --frames train``) get id 0 and confidence 0 (no supervision);
    a fully covered source has ``confidence`` None.
    """
    out = {}
    skip = set(exclude)
    for d in sorted(path.glob("*_instance")):
        src = d.name[: -len("_instance")]
        have = [(d / f"{n}.png").exists() for n in names] if d.is_dir() and src not in skip else []
        if not any(have):
            continue
        shape = (len(names),) + tuple(size or hw)
        inst = LabelMapBuilder(shape)
        sem_dir = path / f"{src}_semantics"
        sem = LabelMapBuilder(shape) if sem_dir.is_dir() else None
        for i, n in enumerate(names):
            if have[i]:
                inst[i] = stack_label_pngs([d / f"{n}.png"], hw, size)[0]
                if sem is not None:
                    sem[i] = stack_label_pngs([sem_dir / f"{n}.png"], hw, size)[0]
        conf = None
        if not all(have):
            conf = np.broadcast_to(encode_confidence(np.asarray(have, np.float32))[:, None, None], shape).copy()
        out[src] = LabelSource(instance=inst.array, semantic=None if sem is None else sem.array, confidence=conf)
    return out


TTA_CONFIDENCE_FLOOR = 0.1
"""Weight of a pixel whose stored test-time-augmentation confidence is 0 (the ClusteringSDF reference's value)."""


def tta_confidence(raw: np.ndarray, source: Path | str) -> np.ndarray:
    """A stored test-time-augmentation confidence map ``[H, W]`` -> float32 weights in (0, 1].

    Panoptic Lifting's ``m2f_probabilities/*.npz`` ``confidence``, ClusteringSDF's
    ``m2f_confidence/*.npz`` and Messy Rooms' ``detic_probabilities`` store 0 where the
    augmented predictions disagree; that is a low confidence, raised to
    :data:`TTA_CONFIDENCE_FLOOR` as the ClusteringSDF reference does, because a weight of 0
    means "not supervised" in every layout. Readers set 0 (outside the room, invalid)
    afterwards. Values must be finite and in [0, 1].
    """
    c = np.asarray(raw, dtype=np.float32)
    if c.ndim == 3 and c.shape[-1] == 1:
        c = c[..., 0]
    if c.ndim != 2:
        raise SdfsegError(f"{source}: expected an [H, W] confidence map, got shape {c.shape}")
    if c.size and (not np.isfinite(c).all() or c.min() < 0 or c.max() > 1.001):
        raise SdfsegError(f"{source}: confidence must be finite values in [0, 1]")
    return np.where(c == 0, TTA_CONFIDENCE_FLOOR, np.minimum(c, 1.0)).astype(np.float32)


def read_room_masks(folder: Path, names: list[str], hw: tuple[int, int], size) -> Optional[np.ndarray]:
    """bool ``[N, h, w]``, True inside the room, from ``folder/<f>.jpg|png`` (non-zero = outside the room).

    Panoptic Lifting and Contrastive Lift call this folder ``invalid/``; a frame without a file is
    all inside. None when the folder is absent. Masks must be ``hw``; resized nearest to ``size``.
    """
    if not folder.is_dir():
        return None
    out = np.ones((len(names),) + tuple(size or hw), dtype=bool)
    for i, n in enumerate(names):
        f = next((p for p in (folder / f"{n}.jpg", folder / f"{n}.png") if p.exists()), None)
        if f is None:
            continue
        try:
            with Image.open(f) as im:
                outside = np.asarray(im.convert("L")) > 0
        except OSError as exc:
            raise SdfsegError(f"{f}: cannot read the room mask ({exc})") from None
        check_hw(outside, hw, f)
        out[i] = ~resize_map(outside, size, nearest=True)
    return out


def unsupervise(labels: Iterable[LabelSource], keep: np.ndarray) -> None:
    """Set confidence 0 ("not supervised") where bool ``keep`` ``[N, H, W]`` is False, in every source
    (a source without confidences gets them: 1, uint8 storage)."""
    for src in labels:
        if src.confidence is None:
            src.confidence = full_confidence(keep.shape)
        for i in range(keep.shape[0]):  # frame by frame: no [N, H, W] temporary
            src.confidence[i][~keep[i]] = 0


def mask_dirs(path: Path) -> dict[str, Path]:
    """Folders ``masks_<source>/`` of per-frame :class:`~sdfseg.data.masks.MaskSet` files."""
    return {d.name[len("masks_"):]: d for d in sorted(path.glob("masks_*")) if d.is_dir()}
