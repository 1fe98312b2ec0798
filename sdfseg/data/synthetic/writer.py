"""Write a synthetic scene in the Panoptic Lifting layout (plus GT hierarchy, normals and masks).

Everything is written into a hidden staging folder next to ``out`` (each file atomically)
and the folder is renamed into place at the end, so an interrupted run leaves no
half-written scene. Files are byte-identical for the same arguments: PNG, text and
pickle output is deterministic, and ``.npz`` archives are written with fixed
timestamps (:func:`sdfseg.io.npz_bytes`), the format of :meth:`MaskSet.save`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from pathlib import Path

import numpy as np

from ...errors import SdfsegError
from ...io import (
    npz_bytes, save_image_atomic, save_label_png, staged_folder, write_bytes_atomic, write_json_atomic,
    write_text_atomic,
)
from ...progress import progress_iter
from ..formats.geometry import edge_to_index
from ..label_noise import NoiseConfig, probability_map, simulate_labels
from ..mask_sim import MaskSimConfig, simulate_masks
from ..masks import MaskSet
from ..scene import ClassInfo
from .cameras import intrinsics, split_frames, trajectory_poses
from .layout import random_scene
from .model import CLASS_NAMES, STUFF_IDS, THING_IDS, SyntheticScene
from .render import RenderedView, render_view

HFOV_DEG = 75.0
CLASSES = ClassInfo(num_classes=len(CLASS_NAMES), thing_ids=THING_IDS, stuff_ids=STUFF_IDS, names=CLASS_NAMES)
"""Class ids of every synthetic scene (void, wall, floor, ceiling, then the things)."""


def frame_name(i: int) -> str:
    """Frame stem of frame ``i``: zero-padded to 4 digits."""
    return f"{i:04d}"


def save_maskset(masks: MaskSet, path: str | os.PathLike) -> None:
    """Write ``masks`` atomically and byte-deterministically (:meth:`MaskSet.save`)."""
    masks.save(path)


def _matrix_text(m: np.ndarray) -> str:
    return "".join(" ".join(f"{round(float(x), 9) + 0.0:.9f}" for x in row) + "\n" for row in m)


def write_frame(root: Path, name: str, view: RenderedView, c2w: np.ndarray, noisy: tuple, masks: MaskSet) -> None:
    """All per-frame files of one view; ``noisy`` = (sem, inst, confidence) from the label simulator."""
    save_image_atomic(root / "color" / f"{name}.png", view.rgb)
    depth_mm = np.clip(np.round(view.depth.astype(np.float64) * 1000.0), 0, 65535).astype(np.uint16)
    save_image_atomic(root / "depth" / f"{name}.png", depth_mm)
    write_text_atomic(root / "pose" / f"{name}.txt", _matrix_text(c2w))
    save_label_png(root / "rs_semantics" / f"{name}.png", view.semantic)
    save_label_png(root / "rs_instance" / f"{name}.png", view.instance)
    save_label_png(root / "gt_part" / f"{name}.png", view.part)
    save_label_png(root / "gt_group" / f"{name}.png", view.group)
    sem, inst, conf = noisy
    save_label_png(root / "m2f_semantics" / f"{name}.png", sem)
    save_label_png(root / "m2f_instance" / f"{name}.png", inst)
    prob = probability_map(sem, conf, CLASSES.num_classes)
    write_bytes_atomic(root / "m2f_probabilities" / f"{name}.npz",
                       npz_bytes(confidence=conf.astype(np.float16), probability=prob.astype(np.float16)))
    buf = io.BytesIO()
    np.save(buf, view.normal.astype(np.float16), allow_pickle=False)
    write_bytes_atomic(root / "normal" / f"{name}.npy", buf.getvalue())
    save_maskset(masks, root / "masks_sim" / f"{name}.npz")


def write_scene_files(root: Path, scene: SyntheticScene, K: np.ndarray, names: list[str],
                      split: tuple[list[int], list[int]]) -> None:
    """Per-scene files: intrinsics, splits, class metadata and the full scene description.

    ``K`` ``[3, 3]`` is the renderer's (pixel-edge convention); ``intrinsic_color.txt`` stores it in
    Panoptic Lifting's pixel-index convention (principal point 0.5 smaller), which the reader undoes.
    """
    K4 = np.eye(4)
    K4[:3, :3] = edge_to_index(K)
    write_text_atomic(root / "intrinsic" / "intrinsic_color.txt", _matrix_text(K4))
    write_json_atomic(root / "splits.json", {"train": [names[i] for i in split[0]],
                                             "test": [names[i] for i in split[1]]})
    seg = {"num_semantic_classes": CLASSES.num_classes, "fg_classes": list(THING_IDS),
           "bg_classes": list(STUFF_IDS), "class_names": list(CLASS_NAMES)}
    write_bytes_atomic(root / "segmentation_data.pkl", pickle.dumps(seg, protocol=4))
    write_json_atomic(root / "synthetic.json", scene.to_dict())


def _check_args(num_views: int, height: int, width: int, seed: int) -> None:
    if seed < 0:
        raise SdfsegError(f"--seed: expected a non-negative integer, got {seed}")
    if not 1 <= num_views <= 9999:
        raise SdfsegError(f"--views: expected 1..9999 views, got {num_views}")
    if not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise SdfsegError(f"--height/--width: expected 8..4096 pixels, got {height} x {width}")


def generate_scene(out: str | os.PathLike, objects: int = 6, views: int = 60, height: int = 120, width: int = 160,
                   seed: int = 0, noise: NoiseConfig | None = None, mask_noise: MaskSimConfig | None = None,
                   force: bool = False, progress: bool = True) -> Path:
    """Generate, render and write a synthetic scene with ``objects`` objects and ``views`` views to ``out``.

    ``noise`` / ``mask_noise`` configure the simulated Mask2Former labels and SAM masks (defaults if None).
    Refuses a non-empty ``out`` unless ``force``. Returns ``out`` as a Path.
    """
    out = Path(out)
    _check_args(views, height, width, seed)
    noise = (noise or NoiseConfig()).validate()
    mask_noise = (mask_noise or MaskSimConfig()).validate()
    scene = random_scene(objects, seed)
    K = intrinsics(height, width, HFOV_DEG)
    poses = trajectory_poses(scene.meta["trajectory"], views)
    names = [frame_name(i) for i in range(views)]
    split = split_frames(views)
    scene.meta.update({"num_views": views, "height": height, "width": width, "hfov_deg": HFOV_DEG,
                       "test_every": 5, "test_offset": 2, "noise": dataclasses.asdict(noise),
                       "mask_noise": dataclasses.asdict(mask_noise)})
    with staged_folder(out, force) as stage:
        for i in progress_iter(range(views), "rendering views", unit="view") if progress else range(views):
            view = render_view(scene, poses[i], K, height, width)
            noisy = simulate_labels(view.semantic, view.instance, np.random.default_rng([seed, 1, i]), noise, CLASSES)
            masks = simulate_masks(view.part, view.instance, view.group, view.semantic,
                                   np.random.default_rng([seed, 2, i]), mask_noise, CLASSES)
            write_frame(stage, names[i], view, poses[i], noisy, masks)
        write_scene_files(stage, scene, K, names, split)
    return out
