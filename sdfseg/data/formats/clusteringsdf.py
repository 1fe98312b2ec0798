"""Reader for the ClusteringSDF layout (Panoptic Lifting data resized to 240 x 320 with Omnidata cues).

Folder contents::

    color/<f>.png                  RGB
    depth/<f>_depth.npy            [H, W] monocular depth (Omnidata; depth_kind "mono")
    normal/<f>_normal.npy          3 x H x W monocular normals in [0, 1], camera frame: n = 2 v - 1
    m2f_instance/<f>.png           noisy instance ids (0 = no instance; not consistent across frames)
    m2f_semantics/<f>.png          noisy semantic ids (Panoptic Lifting's reduced classes, 0 = void)
    m2f_confidence/<f>.npz         optional ``confidence`` [H, W]
    cameras.npz                    world_mat_<i>, scale_mat_<i> as in MonoSDF (see objectsdf.py)
    splits_new.json                {"train": [...], "test": [...]} frame indices (or names)
    rs_instance/, rs_semantics/    optional GT maps (PNG, as in the Panoptic Lifting layout)
    segmentation_data.pkl          optional class set (else the reduced 21-class set)

Frames are in plain file-name order (``0, 10, 12, 2``): the reference pairs ``world_mat_i``,
the split indices and every per-frame folder with the images by ``sorted(glob(...))`` order,
and so does this reader (:func:`~sdfseg.data.formats.common.pair_by_order`; a file named
after a frame that this order would give to another frame is refused). K is used as
stored (the reference applies no crop). Confidences of 0 are raised to 0.1
(:func:`~sdfseg.data.formats.common.tta_confidence`). Poses are in the scale_mat frame
(recorded in ``Scene.normalization``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ...errors import SdfsegError
from ...io import read_rgb
from ..scene import ClassInfo, LabelSource, Scene, encode_confidence, encode_normals
from . import common as C
from .objectsdf import read_cameras_npz

NAME = "clusteringsdf"


def detect(path: Path) -> bool:
    """``cameras.npz`` and ``color/`` with ``splits_new.json``, ``depth/*_depth.npy`` or ``m2f_confidence/``."""
    return ((path / "cameras.npz").is_file() and (path / "color").is_dir()
            and ((path / "splits_new.json").is_file() or any((path / "depth").glob("*_depth.npy"))
                 or (path / "m2f_confidence").is_dir()))


def _read_classes(path: Path) -> ClassInfo:
    f = path / "segmentation_data.pkl"
    if not f.exists():
        return C.PL_REDUCED_CLASSES
    try:
        with open(f, "rb") as fh:
            d = pickle.load(fh)
        n = int(d["num_semantic_classes"])
        things = tuple(sorted(int(c) for c in d["fg_classes"]))
        stuff = tuple(sorted(int(c) for c in d["bg_classes"] if int(c) != 0))
    except (KeyError, TypeError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise SdfsegError(f"{f}: expected a dict with num_semantic_classes, fg_classes, bg_classes ({exc!r})") from None
    if any(not 0 < c < n for c in things + stuff) or set(things) & set(stuff):
        raise SdfsegError(f"{f}: fg/bg classes must be disjoint ids in 1..{n - 1}")
    names = C.PL_REDUCED_NAMES if n == C.PL_REDUCED_CLASSES.num_classes else ()
    return ClassInfo(num_classes=n, thing_ids=things, stuff_ids=stuff, names=names)


def _read_maps(folder: Path, all_names: list[str], keep: np.ndarray, hw, size, what: str) -> np.ndarray | None:
    """``[len(keep), h, w]`` label maps (compact ints) of the kept frames, or None when the folder is absent."""
    if not folder.is_dir():
        return None
    files = C.pair_by_order(folder, ".png", all_names, what)
    return C.stack_label_pngs([files[i] for i in keep], hw, size)


def _read_source(path: Path, prefix: str, all_names, keep, hw, size, classes: ClassInfo) -> LabelSource | None:
    inst = _read_maps(path / f"{prefix}_instance", all_names, keep, hw, size, "instance maps")
    sem = _read_maps(path / f"{prefix}_semantics", all_names, keep, hw, size, "semantic maps")
    if inst is None and sem is None:
        return None
    if inst is not None:
        C.check_ids(inst, 0, None, path / f"{prefix}_instance", "instance ids")
    if sem is not None:
        C.check_ids(sem, 0, classes.num_classes - 1, path / f"{prefix}_semantics", "semantic ids")
    return LabelSource(instance=inst, semantic=sem)


def _read_confidence(folder: Path, all_names, keep, hw, size) -> np.ndarray | None:
    """uint8 ``[len(keep), h, w]`` confidences (``v / 240``) from ``<f>.npz`` files, or None when the folder
    is absent."""
    if not folder.is_dir():
        return None
    files = C.pair_by_order(folder, ".npz", all_names, "confidence maps")
    out = np.zeros((len(keep),) + tuple(size or hw), dtype=np.uint8)
    for i, f in enumerate(files[k] for k in keep):
        c = C.tta_confidence(C.load_npz_key(f, "confidence", "an npz with an [H, W] 'confidence' array"), f)
        C.check_hw(c, hw, f)
        out[i] = encode_confidence(C.resize_map(c, size, nearest=False))
    return out


def read(path: Path, options) -> Scene:
    path = Path(path)
    colors = (C.frames_with_suffix(path / "color", ".png", lexical=True)
              or C.frames_with_suffix(path / "color", ".jpg", lexical=True))
    if not colors:
        raise SdfsegError(f"{path / 'color'}: no images found (expected color/<frame>.png)")
    all_names = list(colors)
    native_hw = read_rgb(colors[all_names[0]]).shape[:2]
    crop = "no_crop" if options.crop == "auto" else options.crop
    Ks, c2w, norm = read_cameras_npz(path / "cameras.npz", len(all_names), native_hw, crop)
    keep = C.select_frames(len(all_names), options.max_frames)
    names = [all_names[i] for i in keep]
    size = tuple(options.image_size) if options.image_size else None
    hw = size or native_hw

    rgb = C.read_rgb_stack([colors[n] for n in names], native_hw, size)

    def pick(files: list[Path]) -> list[Path]:
        return [files[i] for i in keep]

    depth = None
    if (path / "depth").is_dir():
        files = pick(C.pair_by_order(path / "depth", "_depth.npy", all_names, "depth maps"))
        depth = C.depth_stack(len(files), hw)
        for i, f in enumerate(files):
            d = C.load_npy(f, "an [H, W] depth map").astype(np.float32).squeeze()
            C.check_hw(d, native_hw, f)
            if not np.isfinite(d).all():
                raise SdfsegError(f"{f}: depth has non-finite values")
            C.store_depth(depth, i, C.resize_map(d, size, nearest=True), f)
    normals = None
    if (path / "normal").is_dir():
        files = pick(C.pair_by_order(path / "normal", "_normal.npy", all_names, "normal maps"))
        normals = C.normals_stack(len(files), hw) if options.normals else None
        for i, f in enumerate(files):
            nm = C.read_normals_chw(f, native_hw)  # read and checked even when not kept
            if normals is not None:
                normals[i] = encode_normals(C.resize_map(nm, size, nearest=True))

    classes = _read_classes(path)
    labels = {}
    m2f = _read_source(path, "m2f", all_names, keep, native_hw, size, classes)
    if m2f is not None:
        m2f.confidence = _read_confidence(path / "m2f_confidence", all_names, keep, native_hw, size)
        labels[options.label_source] = m2f
    for src, ls in C.read_png_sources(path, names, native_hw, size, exclude=("m2f", "rs")).items():
        labels[src] = ls
    gt = _read_source(path, "rs", all_names, keep, native_hw, size, classes)

    split_file = path / "splits_new.json"
    split = C.read_split_json(split_file, all_names) if split_file.exists() else C.holdout_split(len(all_names))
    K = np.stack([C.scale_intrinsics(Ks[i], native_hw, hw) for i in keep])
    return Scene(
        path=path, frame_names=names, rgb=rgb, c2w=c2w[keep].astype(np.float32),
        intrinsics=K.astype(np.float32), classes=classes, split=C.remap_split(split, keep, split_file),
        depth=depth, depth_kind="mono", normals=normals, labels=labels, gt=gt,
        mask_dirs=C.mask_dirs(path), normalization=norm,
    )
