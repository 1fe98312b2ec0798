"""Reader for the Panoptic Lifting layout (ScanNet / Replica / Hypersim preparations, synthetic scenes).

Folder contents (REFERENCE 6)::

    color/<f>.jpg|png            RGB
    depth/<f>.png                optional, uint16 millimetres (0 = invalid), z-depth
    pose/<f>.txt                 4x4 camera-to-world, OpenCV axes
    intrinsic/intrinsic_color.txt  4x4 (top-left 3x3 = K at the colour resolution)
    rs_semantics/, rs_instance/  optional GT maps (instance 0 = stuff)
    m2f_semantics/, m2f_instance/  noisy 2D labels (ids not consistent across frames)
    m2f_probabilities/<f>.npz    optional, ``confidence`` [H, W] (and ``probability``)
    m2f_invalid/<f>.png          optional, non-zero = label invalid (set to void)
    splits.json                  {"train": [...], "test": [...]} frame names (or ints)
    segmentation_data.pkl        num_semantic_classes, fg_classes, bg_classes[, class_names]

Extra label sources written by ``tools/segment2d.py`` live beside them as
``<source>_instance/``, ``<source>_semantics/``; multi-granular mask sets as
``masks_<source>/<f>.npz``. Synthetic scenes add ``normal/<f>.npy`` (camera-frame
normals), ``gt_part/``, ``gt_group/`` (hierarchy GT) and ``synthetic.json``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ...errors import SdfsegError
from ...io import read_label_png, read_rgb
from ..scene import ClassInfo, LabelSource, Scene
from .common import mask_dirs, read_png_sources, resize_map

NAME = "panoptic_lifting"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def detect(path: Path) -> bool:
    return (path / "pose").is_dir() and (path / "color").is_dir() and (path / "intrinsic").is_dir()


def _frame_files(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in exts}


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


def _read_splits(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    f = path / "splits.json"
    if not f.exists():
        raise SdfsegError(f"{f}: file not found (expected {{\"train\": [...], \"test\": [...]}})")
    try:
        d = json.loads(f.read_text())
        raw = {k: list(d[k]) for k in ("train", "test")}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SdfsegError(f"{f}: expected {{\"train\": [...], \"test\": [...]}} ({exc!r})") from None
    index = {n: i for i, n in enumerate(names)}
    index_int = {}
    for i, n in enumerate(names):
        if n.isdigit():
            index_int[int(n)] = i
    split = {}
    for k, items in raw.items():
        idx = []
        for it in items:
            key = str(it)
            if key in index:
                idx.append(index[key])
            elif key.isdigit() and int(key) in index_int:
                idx.append(index_int[int(key)])
            else:
                raise SdfsegError(f"{f}: {k} frame '{it}' has no color/ image")
        split[k] = np.asarray(sorted(set(idx)), dtype=np.int64)
    if split["train"].size == 0:
        raise SdfsegError(f"{f}: the train split is empty")
    return split


def _read_label_dir(path: Path, folder: str, names: list[str], size, hw) -> np.ndarray | None:
    d = path / folder
    if not d.is_dir():
        return None
    out = np.zeros((len(names),) + tuple(hw), dtype=np.int32)
    for i, n in enumerate(names):
        f = d / f"{n}.png"
        lab = read_label_png(f)
        if size is None and lab.shape != tuple(hw):
            raise SdfsegError(f"{f}: label map is {lab.shape[0]}x{lab.shape[1]}, expected {hw[0]}x{hw[1]} like color/")
        out[i] = resize_map(lab, hw, nearest=True)
    return out


def _check_semantic(arr: np.ndarray | None, classes: ClassInfo, folder: Path) -> None:
    if arr is None:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= classes.num_classes:
        raise SdfsegError(f"{folder}: semantic ids in [{lo}, {hi}], expected 0..{classes.num_classes - 1} "
                          "(num_semantic_classes in segmentation_data.pkl)")


def _read_source(path: Path, prefix: str, names, size, hw, classes) -> LabelSource | None:
    sem = _read_label_dir(path, f"{prefix}_semantics", names, size, hw)
    inst = _read_label_dir(path, f"{prefix}_instance", names, size, hw)
    if sem is None and inst is None:
        return None
    _check_semantic(sem, classes, path / f"{prefix}_semantics")
    conf = None
    prob_dir = path / f"{prefix}_probabilities"
    if prob_dir.is_dir():
        conf = np.ones((len(names),) + tuple(hw), dtype=np.float32)
        for i, n in enumerate(names):
            f = prob_dir / f"{n}.npz"
            if not f.exists():
                continue
            with np.load(f) as z:
                if "confidence" in z:
                    conf[i] = resize_map(z["confidence"].astype(np.float32), hw, nearest=False)
    invalid_dir = path / f"{prefix}_invalid"
    if invalid_dir.is_dir():
        for i, n in enumerate(names):
            f = invalid_dir / f"{n}.png"
            if f.exists():
                bad = resize_map(read_label_png(f), hw, nearest=True) != 0
                if sem is not None:
                    sem[i][bad] = 0
                if inst is not None:
                    inst[i][bad] = 0
    return LabelSource(instance=inst, semantic=sem, confidence=conf)


def read(path: Path, options) -> Scene:
    path = Path(path)
    colors = _frame_files(path / "color", _IMAGE_EXTS)
    if not colors:
        raise SdfsegError(f"{path / 'color'}: no images found (expected color/<frame>.png or .jpg)")
    names = sorted(colors)
    if options.max_frames is not None and len(names) > options.max_frames:
        keep = np.linspace(0, len(names) - 1, options.max_frames).round().astype(int)
        names = [names[i] for i in sorted(set(keep))]
    k4 = _read_matrix(path / "intrinsic" / "intrinsic_color.txt", (4, 4))
    size = tuple(options.image_size) if options.image_size else None

    rgbs, poses = [], []
    native_hw = None
    for n in names:
        rgb = read_rgb(colors[n])
        if native_hw is None:
            native_hw = rgb.shape[:2]
        elif rgb.shape[:2] != native_hw:
            raise SdfsegError(f"{colors[n]}: image is {rgb.shape[0]}x{rgb.shape[1]}, expected {native_hw[0]}x{native_hw[1]}")
        rgbs.append(resize_map(rgb, size, nearest=False))
        poses.append(_read_matrix(path / "pose" / f"{n}.txt", (4, 4)))
    hw = size or native_hw
    k = k4[:3, :3].copy()
    k[0] *= hw[1] / native_hw[1]
    k[1] *= hw[0] / native_hw[0]

    depth = None
    if (path / "depth").is_dir():
        depth = np.zeros((len(names),) + tuple(hw), dtype=np.float32)
        for i, n in enumerate(names):
            f = path / "depth" / f"{n}.png"
            d = read_label_png(f).astype(np.float32) / 1000.0
            depth[i] = resize_map(d, hw, nearest=True)
    normals = None
    if (path / "normal").is_dir():
        normals = np.zeros((len(names),) + tuple(hw) + (3,), dtype=np.float32)
        for i, n in enumerate(names):
            f = path / "normal" / f"{n}.npy"
            try:
                nm = np.load(f).astype(np.float32)
            except FileNotFoundError:
                raise SdfsegError(f"{f}: file not found (expected [H, W, 3] camera-frame normals)") from None
            if nm.ndim != 3 or nm.shape[2] != 3:
                raise SdfsegError(f"{f}: expected [H, W, 3] normals, got shape {nm.shape}")
            nm = resize_map(nm, hw, nearest=True)
            normals[i] = nm / np.maximum(np.linalg.norm(nm, axis=-1, keepdims=True), 1e-8)

    classes = _read_classes(path)
    split = _read_splits(path, names)
    labels = {}
    m2f = _read_source(path, "m2f", names, size, hw, classes)
    if m2f is not None:
        labels[options.label_source] = m2f
    # sources written by tools/segment2d.py (frames they do not cover get id 0, confidence 0)
    for prefix, src in read_png_sources(path, names, native_hw, size, exclude=("m2f", "rs")).items():
        if prefix not in labels:
            _check_semantic(src.semantic, classes, path / f"{prefix}_semantics")
            labels[prefix] = src
    gt_sem = _read_label_dir(path, "rs_semantics", names, size, hw)
    gt_inst = _read_label_dir(path, "rs_instance", names, size, hw)
    _check_semantic(gt_sem, classes, path / "rs_semantics")
    gt = LabelSource(instance=gt_inst, semantic=gt_sem) if gt_sem is not None else None
    hierarchy = {}
    for level in ("part", "group"):
        arr = _read_label_dir(path, f"gt_{level}", names, size, hw)
        if arr is not None:
            hierarchy[level] = arr
    if hierarchy and gt_inst is not None:
        hierarchy["object"] = gt_inst
    meta = {}
    if (path / "synthetic.json").exists():
        meta["synthetic"] = path / "synthetic.json"
    return Scene(
        path=path, frame_names=names, rgb=np.stack(rgbs).astype(np.float32),
        c2w=np.stack(poses).astype(np.float32),
        intrinsics=np.repeat(k[None].astype(np.float32), len(names), axis=0),
        classes=classes, split=split, depth=depth, depth_kind="metric", normals=normals,
        labels=labels, gt=gt, gt_hierarchy=hierarchy, mask_dirs=mask_dirs(path), meta=meta,
    )
