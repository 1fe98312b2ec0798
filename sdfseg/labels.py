"""Training labels from a scene's 2D label source, per training mode and method.

* instance mode, clustering: per-frame instance ids (randomly remapped, 0 = background).
* instance mode, supervised (ObjectSDF++): ids taken as consistent channel indices. With GT
  labels (oracle) the GT ids are the channels; with noisy labels each frame's ids are
  numbered 1..n by size, as a 2D segmenter numbers them, and used as channels.
* semantic mode: semantic class ids (0 = void, ignored by the segmentation losses).

"Not supervised" and "low confidence" stay apart: pixels whose source confidence is 0 (outside
the room, frames a source does not cover; REFERENCE 8) get label -1 and semantic class 0, so every
segmentation loss and the end-of-run votes ignore them; a test-time-augmentation confidence of 0
is low confidence, which the readers already raised to 0.1 (REFERENCE 2), and only weights a pixel.

The labels are built frame by frame in the smallest integer type that holds them (int32 for remapped
ids, int8/int16 otherwise; :func:`~sdfseg.data.scene.label_dtype`); confidences and, where no pixel
needs masking, semantic maps are the scene's own arrays, not copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .config import Config
from .data.rays import remap_frame_ids
from .data.scene import LabelMapBuilder, LabelSource, Scene
from .errors import SdfsegError


@dataclass
class TrainingLabels:
    labels: np.ndarray
    """``[N, H, W]`` segmentation labels (instance or semantic ids; -1 = not supervised), compact signed or
    unsigned ints. Read-only: in semantic mode it is the same array as :attr:`semantic`."""
    semantic: np.ndarray
    """``[N, H, W]`` semantic classes of the same source (0 = void, also where not supervised), the source's
    dtype: the source's own array when every pixel is supervised, else a copy."""
    confidence: Optional[np.ndarray]
    """``[N, H, W]`` weights in (0, 1] of supervised pixels (0 where not supervised), or None: the source's
    array (uint8 ``v / 240``, :func:`~sdfseg.data.scene.decode_confidence`)."""
    source: str


def _source(scene: Scene, cfg: Config) -> tuple[LabelSource, str]:
    if cfg.train.oracle_labels:
        if scene.gt is None or scene.gt.semantic is None:
            raise SdfsegError(f"{scene.path}: train.oracle_labels needs GT maps (rs_semantics/, rs_instance/)")
        return scene.gt, "gt"
    return scene.label_source(cfg.data.label_source), cfg.data.label_source


def rank_frame_ids(frame: np.ndarray) -> np.ndarray:
    """One frame's non-zero ids ``[H, W]`` renumbered 1..n by decreasing area (a segmenter's numbering), int64."""
    ids, inv, counts = np.unique(frame, return_inverse=True, return_counts=True)
    counts = np.where(ids == 0, -1, counts)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(ids))
    nz = ids != 0
    new = np.where(nz, rank + 1, 0)  # id 0 ranks last, so non-zero ranks are 0..n-1
    return new[inv].reshape(frame.shape)


def rank_ids_per_frame(inst: np.ndarray) -> np.ndarray:
    """Renumber each frame's non-zero ids 1..n by decreasing area (a segmenter's numbering). ``[N,H,W]``,
    compact ints."""
    out = LabelMapBuilder(inst.shape)
    for i in range(inst.shape[0]):
        out[i] = rank_frame_ids(inst[i])
    return out.array


def training_labels(scene: Scene, cfg: Config, num_channels: int) -> TrainingLabels:
    src, name = _source(scene, cfg)
    sem_src = src
    if src.semantic is None:
        # class-agnostic sources (SAM, classical) take their classes from the layout's Mask2Former labels
        sem_src = scene.labels.get("m2f")
        if sem_src is None or sem_src.semantic is None:
            raise SdfsegError(f"{scene.path}: label source '{name}' has no semantic maps and the scene has no "
                              "m2f semantics to take classes from")
    conf = src.confidence
    n = sem_src.semantic.shape[0]

    def supervised(i: int) -> np.ndarray:
        return conf[i] > 0

    semantic = sem_src.semantic
    if conf is not None:
        for i in range(n):  # frame by frame: no [N, H, W] temporaries
            off = ~supervised(i)
            if off.any():
                if semantic is sem_src.semantic:  # copied only when some pixel is not supervised
                    semantic = semantic.copy()
                semantic[i][off] = 0
    if cfg.train.mode == "semantic":
        return TrainingLabels(semantic, semantic, conf, name)
    if src.instance is None:
        raise SdfsegError(f"{scene.path}: label source '{name}' has no instance maps (instance mode)")
    rng = np.random.default_rng(cfg.train.seed + 17)
    out = LabelMapBuilder(src.instance.shape, lo=-1 if conf is not None else 0)
    for i in range(n):
        inst = src.instance[i]
        if cfg.train.method == "supervised":
            if not cfg.train.oracle_labels:
                inst = rank_frame_ids(inst)
            inst = np.where(inst >= num_channels, 0, inst)
        elif cfg.train.remap_ids:
            inst = remap_frame_ids(inst, rng)
        if conf is not None:
            inst = np.where(supervised(i), inst.astype(np.int64, copy=False), -1)
        out[i] = inst
    return TrainingLabels(out.array, semantic, conf, name)
