"""Reader for the ObjectSDF++ / MonoSDF layout.

Folder contents::

    <f>_rgb.png              RGB (frame name ``<f>``, e.g. ``000000``)
    <f>_depth.npy            [H, W] monocular depth (Omnidata; scale and shift unknown -> depth_kind "mono")
    <f>_normal.npy           3 x H x W monocular normals in [0, 1], camera frame: n = 2 v - 1
    <f>_mask.npy             optional [H, W]; 0 = ignore the depth cue there
    segs/<f>_segs.png        optional instance segmentation (view-consistent ids)
    instance_mapping.txt     optional lines ``raw_id,semantic_id,instance_id`` for the segs values
    cameras.npz              world_mat_<i> (= K [R | t], 3x4 or 4x4) and scale_mat_<i>, i = frame index
    splits.json              optional {"train": [...], "test": [...]} (indices or frame names)

Cameras: ``P = world_mat @ scale_mat`` maps normalised coordinates to pixels; it is
decomposed (RQ) into K and the camera-to-world pose, so poses are in the normalised
(scale_mat) frame and ``Scene.normalization`` records ``scale_mat`` to go back to world
units. Frames are in plain file-name order (MonoSDF's ``sorted(glob(...))``), the i-th
for ``world_mat_i``. MonoSDF's Replica / Tanks and Temples / DTU preparations keep the
K of the original images, which were centre-cropped and resized to 384 x 384; MonoSDF
adjusts K with the dataset's known crop (its ``center_crop_type``), which
``options.crop`` (``data.crop``) names: see :func:`monosdf_intrinsics`. MonoSDF casts
rays through integer pixel coordinates, so 0.5 is then added to cx, cy.

Labels: the segs are consistent instance ids, stored as ground truth and (so that the
ObjectSDF++ "oracle" setting trains out of the box) as the noisy source
``options.label_source``. Classes are instance-only (void / background / object);
the raw semantic id of each instance is kept in ``meta["instance_semantics"]``.
Sources written by ``tools/segment2d.py`` (``<src>_instance/<f>.png``) are added by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg

from ...errors import SdfsegError
from ...io import read_label_png, read_rgb
from ..scene import LabelMapBuilder, LabelSource, Normalization, Scene, encode_normals
from . import common as C
from .geometry import index_to_edge

NAME = "objectsdf"


def detect(path: Path) -> bool:
    return (path / "cameras.npz").is_file() and any(path.glob("*_rgb.png"))


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P = K [R | t]`` ``[3, 4]`` -> (K ``[3, 3]`` with K[2, 2] = 1, camera-to-world ``[4, 4]``).

    RQ decomposition of the left 3x3 block with signs fixed so that K has a positive
    diagonal and R is a proper rotation; the camera centre is ``-M^-1 p4``.
    """
    P = np.asarray(P, dtype=np.float64)
    M = P[:, :3]
    if np.linalg.det(M) < 0:  # P is defined up to scale; pick the sign with det > 0
        P, M = -P, -M
    K, R = scipy.linalg.rq(M)
    signs = np.where(np.diag(K) < 0, -1.0, 1.0)
    K = K * signs[None, :]
    R = signs[:, None] * R
    K = K / K[2, 2]
    if abs(K[0, 1]) < 1e-6 * abs(K[0, 0]):
        K[0, 1] = 0.0
    centre = -np.linalg.solve(M, P[:, 3])
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = centre
    return K, c2w


def _scale_normalization(S: np.ndarray, file: Path, key: str) -> Normalization:
    """``scale_mat`` (normalised -> world, uniform scale + translation) as a :class:`Normalization`."""
    S = np.asarray(S, dtype=np.float64)
    if S.shape != (4, 4) or not np.isfinite(S).all():
        raise SdfsegError(f"{file}: {key} must be a finite 4x4 matrix, got shape {S.shape}")
    s = S[0, 0]
    if s <= 0 or np.abs(S[:3, :3] - s * np.eye(3)).max() > 1e-6 * s or np.abs(S[3] - [0, 0, 0, 1]).max() > 1e-9:
        raise SdfsegError(f"{file}: {key} must be a uniform scale plus translation [[s,0,0,cx],[0,s,0,cy],[0,0,s,cz],[0,0,0,1]]")
    return Normalization(center=S[:3, 3].copy(), scale=float(s))


MONOSDF_CROPS = {
    "center_crop_for_replica": (1200, 680, 384, 384),
    "center_crop_for_tnt": (960, 540, 384, 384),
    "center_crop_for_dtu": (1600, 1200, 384, 384),
    "padded_for_dtu": (1200, 1200, 384, 512),
}
"""MonoSDF's ``center_crop_type`` values (its ``scene_dataset.py``): the dataset's original image
width and height, whose centred ``height x height`` square (``padded_for_dtu``: the full height,
no horizontal offset) was resized to the stored ``out_h x out_w`` images."""
CROP_CHOICES = ("auto", "no_crop", *MONOSDF_CROPS)


def monosdf_intrinsics(K_index: np.ndarray, crop: str, hw: tuple[int, int], file: Path, key: str) -> np.ndarray:
    """K ``[3, 3]`` decomposed from ``world_mat`` (pixel-index convention) -> our K for ``hw`` images.

    Applies MonoSDF's crop adjustment for ``crop`` exactly as MonoSDF does (on the pixel-index K:
    ``cx -= (orig_w - orig_h) / 2``, then the first two rows times ``out_h / orig_h``), then adds
    0.5 to the principal point, so our rays are MonoSDF's rays. ``crop="auto"`` uses K as stored
    when its principal point lies inside the image (MonoSDF's ``no_crop``: ScanNet, ObjectSDF++ and
    full-resolution preparations) and refuses otherwise, naming ``data.crop``: which crop a
    dataset used cannot be read from K (DTU centre-cropped and padded share one K).
    """
    if crop not in CROP_CHOICES:
        raise SdfsegError(f"data.crop: unknown crop '{crop}' (expected one of {', '.join(CROP_CHOICES)})")
    K = np.asarray(K_index, dtype=np.float64).copy()
    if crop in MONOSDF_CROPS:
        orig_w, orig_h, out_h, out_w = MONOSDF_CROPS[crop]
        if tuple(hw) != (out_h, out_w):
            raise SdfsegError(f"{file}: data.crop={crop} resizes to {out_w}x{out_h} images (MonoSDF's preprocessing), "
                              f"but the images are {hw[1]}x{hw[0]}")
        if crop != "padded_for_dtu":
            K[0, 2] -= 0.5 * (orig_w - orig_h)
        K[:2] *= out_h / orig_h
    K = index_to_edge(K)
    inside = 0 < K[0, 2] < hw[1] and 0 < K[1, 2] < hw[0]
    if crop == "auto" and not inside:
        raise SdfsegError(f"{file}: {key} principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) lies outside the "
                          f"{hw[1]}x{hw[0]} image, so the images were cropped: set data.crop to MonoSDF's "
                          f"center_crop_type for this dataset ({', '.join(MONOSDF_CROPS)}), or no_crop to use K "
                          "as stored")
    if crop in MONOSDF_CROPS and not inside:
        raise SdfsegError(f"{file}: {key} principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) lies outside the "
                          f"{hw[1]}x{hw[0]} image after data.crop={crop}: this is not that dataset's crop")
    return K


def read_cameras_npz(file: Path, n: int, hw: tuple[int, int],
                     crop: str = "auto") -> tuple[np.ndarray, np.ndarray, Normalization]:
    """IDR/MonoSDF ``cameras.npz`` -> (K ``[n, 3, 3]`` in our pixel convention, c2w ``[n, 4, 4]``, Normalization).

    ``world_mat_i`` belongs to the i-th image; ``crop`` is MonoSDF's ``center_crop_type`` (see
    :func:`monosdf_intrinsics`).
    """
    try:
        cams = dict(np.load(file, allow_pickle=False))
    except FileNotFoundError:
        raise SdfsegError(f"{file}: file not found (expected world_mat_<i> and scale_mat_<i> per frame)") from None
    except (ValueError, OSError) as exc:
        raise SdfsegError(f"{file}: cannot read camera archive ({exc})") from None
    count = sum(1 for k in cams if k.startswith("world_mat_") and not k.startswith("world_mat_inv"))
    C.check_count(count, n, "world_mat_<i> entries", file)
    Ks, poses, norm = [], [], None
    for i in range(n):
        for key in (f"world_mat_{i}", f"scale_mat_{i}"):
            if key not in cams:
                raise SdfsegError(f"{file}: missing {key} (expected world_mat_0..{n - 1} and scale_mat_0..{n - 1})")
        W = np.asarray(cams[f"world_mat_{i}"], dtype=np.float64)
        if W.shape not in ((3, 4), (4, 4)):
            raise SdfsegError(f"{file}: world_mat_{i} must be 3x4 or 4x4, got shape {W.shape}")
        if not np.isfinite(W).all():
            raise SdfsegError(f"{file}: world_mat_{i} has non-finite values")
        W4 = np.eye(4)
        W4[: W.shape[0]] = W
        S = np.asarray(cams[f"scale_mat_{i}"], dtype=np.float64)
        this = _scale_normalization(S, file, f"scale_mat_{i}")
        if norm is None:
            norm, S0 = this, S
        elif np.abs(S - S0).max() > 1e-6 * max(1.0, np.abs(S0).max()):
            raise SdfsegError(f"{file}: scale_mat_{i} differs from scale_mat_0 (one normalisation per scene expected)")
        P = (W4 @ S)[:3]
        if abs(np.linalg.det(P[:, :3])) < 1e-12:
            raise SdfsegError(f"{file}: world_mat_{i} is singular (not a projection K [R | t])")
        K, c2w = decompose_projection(P)
        K = monosdf_intrinsics(K, crop, hw, file, f"world_mat_{i}")
        Ks.append(C.check_intrinsics(K, hw, f"{file}: world_mat_{i}"))
        poses.append(C.check_pose(c2w, f"{file}: world_mat_{i}"))
    return np.stack(Ks), np.stack(poses), norm


def _read_instance_mapping(file: Path) -> dict[int, tuple[int, int]]:
    """``raw,semantic,instance`` lines -> {raw: (semantic, instance)}."""
    out = {}
    for ln, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            raw, sem, ins = (int(p) for p in parts)
        except ValueError:
            raise SdfsegError(f"{file}: line {ln} is not 'raw_id,semantic_id,instance_id': {line.strip()!r}") from None
        out[raw] = (sem, ins)
    if not out:
        raise SdfsegError(f"{file}: no mappings found (expected lines 'raw_id,semantic_id,instance_id')")
    return out


def _read_segs(path: Path, all_names: list[str], keep: np.ndarray, hw, size) -> tuple[np.ndarray | None, dict]:
    """Instance ids ``[len(keep), h, w]`` (compact ints, 0 = background) from ``segs/``, and instance -> raw
    semantic id."""
    seg_dir = path / "segs"
    if not seg_dir.is_dir():
        return None, {}
    files = C.pair_by_order(seg_dir, "_segs.png", all_names, "instance segmentations")
    files = [files[i] for i in keep]
    mapping_file = path / "instance_mapping.txt"
    lut, inst_sem = None, {}
    if mapping_file.exists():
        mapping = _read_instance_mapping(mapping_file)
        order = sorted({ins for _, ins in mapping.values()})  # the smallest instance id is the background
        lut = {raw: order.index(ins) for raw, (_, ins) in mapping.items()}
        inst_sem = {order.index(ins): sem for _, (sem, ins) in mapping.items()}
    out = LabelMapBuilder((len(files),) + tuple(size or hw))
    for i, f in enumerate(files):
        raw = read_label_png(f)
        C.check_hw(raw, hw, f)
        if lut is not None:
            vals = np.unique(raw)
            unknown = [int(v) for v in vals if int(v) not in lut]
            if unknown:
                raise SdfsegError(f"{f}: segment ids {unknown[:5]} are not in {mapping_file.name}")
            mapped = np.array([lut[int(v)] for v in vals], dtype=np.int32)
            raw = mapped[np.searchsorted(vals, raw)]
        C.check_ids(raw, 0, None, f, "instance ids")
        out[i] = C.resize_map(raw, size, nearest=True)
    return out.array, inst_sem


def read(path: Path, options) -> Scene:
    path = Path(path)
    rgb_files = C.frames_with_suffix(path, "_rgb.png", lexical=True)
    if not rgb_files:
        raise SdfsegError(f"{path}: no '*_rgb.png' images found (ObjectSDF++/MonoSDF layout)")
    all_names = list(rgb_files)
    size = tuple(options.image_size) if options.image_size else None
    native_hw = read_rgb(rgb_files[all_names[0]]).shape[:2]
    Ks, c2w, norm = read_cameras_npz(path / "cameras.npz", len(all_names), native_hw, options.crop)
    keep = C.select_frames(len(all_names), options.max_frames)
    names = [all_names[i] for i in keep]
    hw = size or native_hw

    rgb = C.read_rgb_stack([rgb_files[n] for n in names], native_hw, size)

    depth = None
    if any(path.glob("*_depth.npy")):
        depth = C.depth_stack(len(names), hw)
        masks = C.frames_with_suffix(path, "_mask.npy")
        for i, n in enumerate(names):
            f = path / f"{n}_depth.npy"
            d = C.load_npy(f, "an [H, W] depth map").astype(np.float32).squeeze()
            C.check_hw(d, native_hw, f)
            if not np.isfinite(d).all():
                raise SdfsegError(f"{f}: depth has non-finite values")
            if n in masks:
                m = C.load_npy(masks[n], "an [H, W] mask").squeeze()
                C.check_hw(m, native_hw, masks[n])
                d = np.where(m > 0, d, 0.0)
            C.store_depth(depth, i, C.resize_map(d, size, nearest=True), f)
    normals = None
    if any(path.glob("*_normal.npy")):
        normals = C.normals_stack(len(names), hw) if options.normals else None
        for i, n in enumerate(names):
            nm = C.read_normals_chw(path / f"{n}_normal.npy", native_hw)  # read and checked even when not kept
            if normals is not None:
                normals[i] = encode_normals(C.resize_map(nm, size, nearest=True))

    inst, inst_sem = _read_segs(path, all_names, keep, native_hw, size)
    labels, gt = {}, None
    if inst is not None:
        sem = np.where(inst > 0, np.uint8(2), np.uint8(1))
        gt = LabelSource(instance=inst, semantic=sem)
        labels[options.label_source] = LabelSource(instance=inst.copy(), semantic=sem.copy())
    for src, ls in C.read_png_sources(path, names, native_hw, size).items():
        labels[src] = ls

    split_file = path / "splits.json"
    split = C.read_split_json(split_file, all_names) if split_file.exists() else C.holdout_split(len(all_names))
    K = np.stack([C.scale_intrinsics(Ks[i], native_hw, hw) for i in keep])
    return Scene(
        path=path, frame_names=names, rgb=rgb, c2w=c2w[keep].astype(np.float32),
        intrinsics=K.astype(np.float32), classes=C.INSTANCE_ONLY_CLASSES,
        split=C.remap_split(split, keep, split_file), depth=depth, depth_kind="mono", normals=normals,
        labels=labels, gt=gt, mask_dirs=C.mask_dirs(path), normalization=norm,
        meta={"instance_semantics": inst_sem},
    )
