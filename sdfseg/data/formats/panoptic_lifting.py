"""Reader for the Panoptic Lifting layout (ScanNet / Replica / Hypersim preparations, synthetic scenes).

Folder contents (REFERENCE 6)::

    color/<f>.jpg|png              RGB; frames ordered numerically (2 before 10), as the reference does
    depth/<f>.png                  optional, uint16 millimetres (0 = invalid), z-depth
    pose/<f>.txt                   4x4 camera-to-world, OpenCV axes
    intrinsic/intrinsic_color.txt  4x4 (top-left 3x3 = K at the colour resolution, pixel-index convention)
    intrinsic/intrinsic_depth.txt  optional K of depth maps of another size (ScanNet: 480 x 640 beside 968 x 1296)
    rs_semantics/, rs_instance/    optional GT maps (instance 0 = stuff)
    m2f_semantics/, m2f_instance/  noisy 2D labels (ids not consistent across frames)
    m2f_probabilities/<f>.npz      optional, ``confidence`` [H, W] (test-time-augmentation agreement)
    m2f_invalid/<f>.png            optional, non-zero = m2f label invalid (void, confidence 0)
    invalid/<f>.jpg|png            optional room mask, non-zero = outside the room (confidence 0, every source)
    splits.json                    {"train": [...], "test": [...]} frame names (integers are names too)
    segmentation_data.pkl          num_semantic_classes, fg_classes, bg_classes[, class_names]

Panoptic Lifting casts rays through integer pixel indices, so 0.5 is added to the
principal point (our pixel-edge convention). Depth maps of another size than the
images are resampled through ``intrinsic_depth.txt`` (each colour pixel through
``K_color^-1`` then ``K_depth``, nearest neighbour, 0 outside); without that file they
are refused. Extra label sources written by ``tools/segment2d.py`` live beside them as
``<source>_instance/``, ``<source>_semantics/``; multi-granular mask sets as
``masks_<source>/<f>.npz``. Synthetic scenes add ``normal/<f>.npy`` (camera-frame
normals ``[H, W, 3]``), ``gt_part/``, ``gt_group/`` (hierarchy GT) and ``synthetic.json``; the room
scenes (``sdfseg.data.rooms``) add ``gt_meshes/object_<id>.ply`` (GT object meshes, world units).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ...errors import SdfsegError
from ...io import read_label_png, read_rgb
from ..scene import (
    ClassInfo, FrameSubset, LabelMapBuilder, LabelSource, Scene, encode_confidence, encode_normals, full_confidence,
)
from . import common as C
from .geometry import depth_pixel_index, index_to_edge, resample_depth

NAME = "panoptic_lifting"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def detect(path: Path) -> bool:
    return (path / "pose").is_dir() and (path / "color").is_dir() and (path / "intrinsic").is_dir()


def _color_files(folder: Path) -> dict[str, Path]:
    """``{frame: image}`` in natural order (the reference sorts numeric names as integers)."""
    found = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _IMAGE_EXTS} if folder.is_dir() else {}
    return {k: found[k] for k in sorted(found, key=C.natural_key)}


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=np.float64)
    except FileNotFoundError:
        raise SdfsegError(f"{path}: file not found (expected a {shape[0]}x{shape[1]} matrix)") from None
    except ValueError as exc:
        raise SdfsegError(f"{path}: cannot parse a matrix ({exc})") from None
    if m.shape != shape:
        raise SdfsegError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise SdfsegError(f"{path}: matrix has non-finite values")
    return m


def _read_intrinsics(file: Path, hw: tuple[int, int], what: str) -> np.ndarray:
    """K ``[3, 3]`` (edge convention) from a 4x4 ``intrinsic_*.txt``; the principal point must lie in ``hw``."""
    K = C.check_intrinsics(index_to_edge(_read_matrix(file, (4, 4))[:3, :3]), hw, str(file))
    if not (0 < K[0, 2] < hw[1] and 0 < K[1, 2] < hw[0]):
        raise SdfsegError(f"{file}: principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) lies outside the "
                          f"{hw[1]}x{hw[0]} {what}")
    return K


def _read_classes(path: Path) -> ClassInfo:
    f = path / "segmentation_data.pkl"
    try:
        with open(f, "rb") as fh:
            d = pickle.load(fh)
        n = int(d["num_semantic_classes"])
        # Panoptic Lifting lists void (0) among bg_classes; void is never a class here
        things = tuple(sorted(int(c) for c in d["fg_classes"] if int(c) != 0))
        stuff = tuple(sorted(int(c) for c in d["bg_classes"] if int(c) != 0))
    except FileNotFoundError:
        raise SdfsegError(f"{f}: file not found (expected num_semantic_classes, fg_classes, bg_classes)") from None
    except (KeyError, TypeError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise SdfsegError(f"{f}: expected a dict with num_semantic_classes, fg_classes, bg_classes ({exc!r})") from None
    bad = [c for c in things + stuff if not 0 < c < n]
    if bad or set(things) & set(stuff):
        raise SdfsegError(f"{f}: fg/bg classes must be disjoint ids in 1..{n - 1}, got fg={list(things)} bg={list(stuff)}")
    names = tuple(str(x) for x in d.get("class_names", ())) if isinstance(d, dict) else ()
    return ClassInfo(num_classes=n, thing_ids=things, stuff_ids=stuff, names=names)


def _read_labels(path: Path, folder: str, names, hw, size, hi: int | None = None,
                 frames: np.ndarray | None = None) -> np.ndarray | FrameSubset | None:
    """``[N, h, w]`` (compact ints) from ``folder/<f>.png`` (each ``hw``, ids >= 0, semantic ids <= ``hi``);
    None if absent. With ``frames`` (sorted frame indices) every file is read and checked but only those
    frames' maps are kept (:class:`~sdfseg.data.scene.FrameSubset`)."""
    d = path / folder
    if not d.is_dir():
        return None
    slot = None if frames is None else {int(f): k for k, f in enumerate(frames)}
    out = LabelMapBuilder((len(names) if slot is None else len(slot),) + tuple(size or hw))
    for i, f in enumerate(d / f"{n}.png" for n in names):
        m = read_label_png(f)
        C.check_hw(m, hw, f)
        if hi is not None and m.size and (m.min() < 0 or m.max() > hi):
            raise SdfsegError(f"{f}: semantic ids in [{m.min()}, {m.max()}], expected 0..{hi} "
                              "(num_semantic_classes in segmentation_data.pkl)")
        C.check_ids(m, 0, None, f, "instance ids")
        if slot is None:
            out[i] = C.resize_map(m, size, nearest=True)
        elif i in slot:
            out[slot[i]] = C.resize_map(m, size, nearest=True)
    return out.array if slot is None else FrameSubset(len(names), frames, out.array)


def _read_m2f(path: Path, names, hw, size, classes: ClassInfo) -> LabelSource | None:
    """The noisy Mask2Former source: labels, test-time-augmentation confidence, ``m2f_invalid`` pixels."""
    sem = _read_labels(path, "m2f_semantics", names, hw, size, classes.num_classes - 1)
    inst = _read_labels(path, "m2f_instance", names, hw, size)
    if sem is None and inst is None:
        return None
    src = LabelSource(instance=inst, semantic=sem)
    prob_dir = path / "m2f_probabilities"
    if prob_dir.is_dir():
        src.confidence = full_confidence((len(names),) + tuple(size or hw))
        for i, n in enumerate(names):
            f = prob_dir / f"{n}.npz"
            if f.exists():  # frames without one (test frames) keep confidence 1
                c = C.tta_confidence(C.load_npz_key(f, "confidence", "an [H, W] 'confidence' array"), f)
                C.check_hw(c, hw, f)
                src.confidence[i] = encode_confidence(C.resize_map(c, size, nearest=False))
    invalid_dir = path / "m2f_invalid"
    if invalid_dir.is_dir():
        keep = np.ones((len(names),) + tuple(size or hw), dtype=bool)
        for i, n in enumerate(names):
            f = invalid_dir / f"{n}.png"
            if f.exists():
                bad = read_label_png(f) != 0
                C.check_hw(bad, hw, f)
                keep[i] = ~C.resize_map(bad, size, nearest=True)
                for arr in (sem, inst):
                    if arr is not None:
                        arr[i][~keep[i]] = 0
        C.unsupervise([src], keep)
    return src


def _read_depth(path: Path, names, hw, size, K_color: np.ndarray) -> np.ndarray | None:
    """float16 ``[N, h, w]`` metres from uint16 mm maps of the images' size, or of any size resampled
    through ``intrinsic_depth.txt``; None when ``depth/`` is absent."""
    d = path / "depth"
    if not d.is_dir():
        return None
    out_hw = tuple(size or hw)
    k_file = path / "intrinsic" / "intrinsic_depth.txt"
    index, depth_hw = None, None
    out = C.depth_stack(len(names), out_hw)
    for i, n in enumerate(names):
        f = d / f"{n}.png"
        mm = read_label_png(f)
        C.check_ids(mm, 0, None, f, "depth values (uint16 millimetres)")
        m = mm.astype(np.float32) / 1000.0
        if k_file.exists():
            if index is None:  # one lookup for every frame: the cameras share their intrinsics
                depth_hw = m.shape
                K_depth = _read_intrinsics(k_file, depth_hw, "depth maps")
                index = depth_pixel_index(K_depth, depth_hw, C.scale_intrinsics(K_color, hw, out_hw), out_hw)
            elif m.shape != depth_hw:
                raise SdfsegError(f"{f}: depth is {m.shape[0]}x{m.shape[1]}, expected {depth_hw[0]}x{depth_hw[1]} "
                                  "like the other depth maps")
            C.store_depth(out, i, resample_depth(m, index), f)
        elif m.shape != tuple(hw):
            raise SdfsegError(f"{f}: depth is {m.shape[0]}x{m.shape[1]}, expected {hw[0]}x{hw[1]} like color/ "
                              f"(or add {k_file.relative_to(path)} to resample it)")
        else:
            C.store_depth(out, i, C.resize_map(m, size, nearest=True), f)
    return out


def _read_normals(path: Path, names, hw, size, keep: bool = True) -> np.ndarray | None:
    """int8 ``[N, h, w, 3]`` unit camera-frame normals (``v / 127``) from ``normal/<f>.npy`` ``[H, W, 3]``;
    None if absent. ``keep`` False: every file is read and checked, None is returned."""
    d = path / "normal"
    if not d.is_dir():
        return None
    out = C.normals_stack(len(names), size or hw) if keep else None
    for i, n in enumerate(names):
        f = d / f"{n}.npy"
        nm = C.load_npy(f, "[H, W, 3] camera-frame normals").astype(np.float32)
        if nm.ndim != 3 or nm.shape[2] != 3:
            raise SdfsegError(f"{f}: expected [H, W, 3] normals, got shape {nm.shape}")
        C.check_hw(nm, hw, f)
        if not np.isfinite(nm).all():
            raise SdfsegError(f"{f}: normals have non-finite values")
        if out is not None:
            nm = C.resize_map(nm, size, nearest=True)
            out[i] = encode_normals(nm / np.maximum(np.linalg.norm(nm, axis=-1, keepdims=True), 1e-8))
    return out


def read(path: Path, options) -> Scene:
    path = Path(path)
    colors = _color_files(path / "color")
    if not colors:
        raise SdfsegError(f"{path / 'color'}: no images found (expected color/<frame>.png or .jpg)")
    all_names = list(colors)
    keep = C.select_frames(len(all_names), options.max_frames)
    names = [all_names[i] for i in keep]
    native_hw = read_rgb(colors[names[0]]).shape[:2]
    size = tuple(options.image_size) if options.image_size else None
    hw = size or native_hw
    K_color = _read_intrinsics(path / "intrinsic" / "intrinsic_color.txt", native_hw, "images")

    rgb = C.read_rgb_stack([colors[n] for n in names], native_hw, size)
    poses = [C.check_pose(_read_matrix(path / "pose" / f"{n}.txt", (4, 4)), str(path / "pose" / f"{n}.txt"))
             for n in names]
    depth = _read_depth(path, names, native_hw, size, K_color)
    normals = _read_normals(path, names, native_hw, size, keep=options.normals)

    classes = _read_classes(path)
    split_file = path / "splits.json"
    if not split_file.exists():
        raise SdfsegError(f"{split_file}: file not found (expected {{\"train\": [...], \"test\": [...]}})")
    split = C.remap_split(C.read_split_json(split_file, all_names, ints_are_names=True), keep, split_file)
    labels = {}
    m2f = _read_m2f(path, names, native_hw, size, classes)
    if m2f is not None:
        labels[options.label_source] = m2f
    # sources written by tools/segment2d.py (frames they do not cover get id 0, confidence 0)
    for prefix, src in C.read_png_sources(path, names, native_hw, size, exclude=("m2f", "rs")).items():
        if prefix not in labels:
            if src.semantic is not None:
                C.check_ids(src.semantic, 0, classes.num_classes - 1, path / f"{prefix}_semantics", "semantic ids")
            labels[prefix] = src
    room = C.read_room_masks(path / "invalid", names, native_hw, size)
    if room is not None:
        C.unsupervise(labels.values(), room)
    # GT maps of the test frames only when asked, unless hierarchy GT needs the GT instance maps of every frame
    gt_frames = None
    if options.gt_frames == "test" and not any((path / f"gt_{lv}").is_dir() for lv in ("part", "group")):
        gt_frames = split["test"]
    gt_sem = _read_labels(path, "rs_semantics", names, native_hw, size, classes.num_classes - 1, gt_frames)
    gt_inst = _read_labels(path, "rs_instance", names, native_hw, size, frames=gt_frames)
    gt = LabelSource(instance=gt_inst, semantic=gt_sem) if gt_sem is not None else None
    hierarchy = {}
    for level in ("part", "group"):
        arr = _read_labels(path, f"gt_{level}", names, native_hw, size)
        if arr is not None:
            hierarchy[level] = arr
    if hierarchy and gt_inst is not None:
        hierarchy["object"] = gt_inst
    meta = {}
    if (path / "synthetic.json").exists():
        meta["synthetic"] = path / "synthetic.json"
    if (path / "gt_meshes").is_dir():
        meta["gt_meshes"] = path / "gt_meshes"
    K = C.scale_intrinsics(K_color, native_hw, hw)
    return Scene(
        path=path, frame_names=names, rgb=rgb, c2w=np.stack(poses).astype(np.float32),
        intrinsics=np.repeat(K[None].astype(np.float32), len(names), axis=0),
        classes=classes, split=split, depth=depth, depth_kind="metric", normals=normals,
        labels=labels, gt=gt, gt_hierarchy=hierarchy, mask_dirs=C.mask_dirs(path), meta=meta,
    )
