"""Write 2D segmentations into a scene folder, in the form every reader picks up.

For a label source ``<src>`` (``tools/segment2d.py --output-name``) and frame ``<f>``
(``Scene.frame_names``)::

    <src>_instance/<f>.png      instance ids (sdfseg.io label PNG: 16-bit, or RGBA for ids >= 65536)
    <src>_semantics/<f>.png     semantic ids, only for segmenters that know the scene's classes
    masks_<src>/<f>.npz         all masks of the frame (sdfseg.data.masks.MaskSet)
    <src>_instance/segment2d.json   the segmenter settings

This is the Panoptic Lifting naming (``m2f_instance/``...), so the lead reader and the
ClusteringSDF reader use a source named ``m2f`` as their native noisy labels and all
readers add other sources by name. Every file is written atomically, the instance
map last, so a frame is complete exactly when all its files exist: an interrupted run
resumes where it stopped, and a run with different settings into the same source is
refused instead of mixing outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ...errors import SdfsegError
from ...io import save_label_png, write_json_atomic
from ..scene import Scene
from . import Segmentation, Segmenter, to_uint8
from ...progress import progress_iter

SETTINGS_FILE = "segment2d.json"


def label_paths(scene_path: str | Path, source: str, frame: str) -> dict[str, Path]:
    """Output files of one frame by kind ("instance", "semantic", "masks")."""
    root = Path(scene_path)
    return {"instance": root / f"{source}_instance" / f"{frame}.png",
            "semantic": root / f"{source}_semantics" / f"{frame}.png",
            "masks": root / f"masks_{source}" / f"{frame}.npz"}


class LabelWriter:
    """Per-frame writer of one label source with the outputs ``kinds``."""

    def __init__(self, scene_path: str | Path, source: str, kinds: Iterable[str]) -> None:
        if not source or any(c in source for c in "/\\") or source.startswith("."):
            raise SdfsegError(f"--output-name: '{source}' is not a valid folder prefix")
        self.root = Path(scene_path)
        self.source = source
        self.kinds = tuple(k for k in ("masks", "semantic", "instance") if k in set(kinds))
        if "instance" not in self.kinds:
            raise SdfsegError("a segmenter must produce instance maps")

    def paths(self, frame: str) -> dict[str, Path]:
        return {k: p for k, p in label_paths(self.root, self.source, frame).items() if k in self.kinds}

    def done(self, frame: str) -> bool:
        """True when every output file of ``frame`` exists (each is written atomically)."""
        return all(p.exists() for p in self.paths(frame).values())

    def check_settings(self, settings: dict) -> None:
        """Record ``settings``; refuse to continue a source made with different ones."""
        f = self.root / f"{self.source}_instance" / SETTINGS_FILE
        normal = json.loads(json.dumps(settings, sort_keys=True, default=str))
        if f.exists():
            try:
                old = json.loads(f.read_text())
            except json.JSONDecodeError:
                old = None
            if old != normal:
                raise SdfsegError(f"{f}: labels '{self.source}' were made with other settings ({old}); "
                                  "pass another --output-name or delete that source's folders")
            return
        write_json_atomic(f, normal)

    def write(self, frame: str, seg: Segmentation) -> None:
        """Write the frame's outputs (instance map last)."""
        paths = self.paths(frame)
        inst = np.asarray(seg.instance)
        if inst.ndim != 2 or inst.dtype.kind not in "iu" or (inst.size and inst.min() < 0):
            raise SdfsegError(f"{paths['instance']}: segmenter returned an invalid instance map "
                              f"({inst.dtype}, shape {inst.shape})")
        if "masks" in paths:
            if seg.masks is None:
                raise SdfsegError(f"{paths['masks']}: segmenter returned no mask set")
            seg.masks.save(paths["masks"])
        if "semantic" in paths:
            if seg.semantic is None:
                raise SdfsegError(f"{paths['semantic']}: segmenter returned no semantic map")
            save_label_png(paths["semantic"], np.asarray(seg.semantic, dtype=np.int32))
        save_label_png(paths["instance"], inst.astype(np.int32))


def frame_indices(scene: Scene, frames: str) -> np.ndarray:
    """Indices of the frames to segment: "train", "test" or "all"."""
    if frames == "all":
        return np.arange(scene.num_frames, dtype=np.int64)
    if frames not in scene.split:
        raise SdfsegError(f"--frames: expected train, test or all, got '{frames}'")
    return np.asarray(scene.split[frames], dtype=np.int64)


def segment_scene(scene: Scene, segmenter: Segmenter, source: str, frames: str = "all",
                  progress: bool = True, limit: Optional[int] = None) -> dict[str, int]:
    """Segment the chosen frames of ``scene`` and write them into its folder; skip finished frames.

    Returns ``{"written": .., "skipped": ..}``. ``limit`` caps the number of frames written.
    """
    writer = LabelWriter(scene.path, source, segmenter.outputs)
    writer.check_settings(segmenter.settings())
    written = skipped = 0
    for i in progress_iter(frame_indices(scene, frames), f"segment2d {segmenter.method} -> {source}", progress,
                           unit="frame"):
        name = scene.frame_names[int(i)]
        if writer.done(name):
            skipped += 1
            continue
        if limit is not None and written >= limit:
            break
        writer.write(name, segmenter(to_uint8(scene.rgb[int(i)])))
        written += 1
    return {"written": written, "skipped": skipped}
