"""Training labels from a scene's 2D label source: the building blocks the methods read their labels with
(:meth:`sdfseg.methods.Method.training_labels`).

* :func:`instance_training_labels`: per-frame instance ids (0 = background), mapped frame by frame
  (ClusteringSDF: random ids; the ObjectSDF++ baselines: ids by size as channel indices).
* :func:`semantic_training_labels`: semantic class ids (0 = void, ignored by the segmentation losses).

"Not supervised" and "low confidence" stay apart: pixels whose source confidence is 0 (outside
the room, frames a source does not cover; REFERENCE 8) get label -1 and semantic class 0, so every
segmentation loss and the end-of-run votes ignore them; a test-time-augmentation confidence of 0
is low confidence, which the readers already raised to 0.1 (REFERENCE 2), and only weights a pixel.

The labels are not materialised: :class:`~sdfseg.data.label_maps.LabelMaps` keeps the source's own maps,
one small table per frame (its ids and what they become: random ids, ranks, clamped ids) and the
source's confidences as the mask (confidence 0 -> -1, or class 0 for semantic labels), and gives frames,
rays or the whole stack with exactly the values the materialised maps held (the same random ids for the
same seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..config import Config
from ..data.formats.common import INSTANCE_ONLY_CLASSES
from ..data.label_maps import LabelMaps
from ..data.scene import LabelMapBuilder, LabelSource, Scene
from ..errors import SdfsegError


@dataclass
class TrainingLabels:
    labels: LabelMaps
    """``[N, H, W]`` segmentation labels (instance or semantic ids; -1 = not supervised) as
    :class:`~sdfseg.data.label_maps.LabelMaps` over the source's maps (``np.asarray`` / ``.frame(i)`` give
    arrays). In semantic mode the same object as :attr:`semantic`."""
    semantic: LabelMaps
    """``[N, H, W]`` semantic classes of the same source (0 = void, also where not supervised): the source's
    maps, masked by the confidences when some pixel is not supervised."""
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


def rank_frame_table(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame's distinct ids (sorted, int64) and their numbers 1..n by decreasing area, 0 staying 0 (a
    segmenter's numbering; ties in id order)."""
    ids, counts = np.unique(frame, return_counts=True)
    counts = np.where(ids == 0, -1, counts)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(ids))
    return ids.astype(np.int64), np.where(ids != 0, rank + 1, 0)  # id 0 ranks last, so non-zero ranks are 0..n-1


def rank_frame_ids(frame: np.ndarray) -> np.ndarray:
    """One frame's non-zero ids ``[H, W]`` renumbered 1..n by decreasing area (a segmenter's numbering), int64."""
    ids, new = rank_frame_table(frame)
    return new[np.searchsorted(ids, frame)]


def rank_ids_per_frame(inst: np.ndarray) -> np.ndarray:
    """Renumber each frame's non-zero ids 1..n by decreasing area (a segmenter's numbering). ``[N,H,W]``,
    compact ints."""
    out = LabelMapBuilder(inst.shape)
    for i in range(inst.shape[0]):
        out[i] = rank_frame_ids(inst[i])
    return out.array


def semantic_labels(scene: Scene, cfg: Config) -> tuple[LabelSource, str, LabelMaps, Optional[np.ndarray]]:
    """The run's label source, its name, the semantic classes of its frames (0 where not supervised; a
    class-agnostic source takes the layout's Mask2Former classes) and its confidences."""
    src, name = _source(scene, cfg)
    sem_src = src
    if src.semantic is None and scene.classes == INSTANCE_ONLY_CLASSES and src.instance is not None:
        # instance-only scenes (a COLMAP capture, a folder of images): a labelled instance is an object,
        # the rest background
        n = src.instance.shape[0]
        sem = np.empty(src.instance.shape, dtype=np.uint8)
        for i in range(n):
            sem[i] = np.where(np.asarray(src.instance[i]) > 0, 2, 1)
        sem_src = LabelSource(instance=src.instance, semantic=sem, confidence=src.confidence)
    elif src.semantic is None:
        # class-agnostic sources (SAM, classical) take their classes from the layout's Mask2Former labels
        sem_src = scene.labels.get("m2f")
        if sem_src is None or sem_src.semantic is None:
            raise SdfsegError(f"{scene.path}: label source '{name}' has no semantic maps and the scene has no "
                              "m2f semantics to take classes from")
    conf = src.confidence
    n = sem_src.semantic.shape[0]
    # semantic classes: 0 where not supervised (a mask only when some pixel is; frame by frame, no temporaries)
    masked = conf is not None and any(not (conf[i] > 0).all() for i in range(n))
    return src, name, LabelMaps(sem_src.semantic, mask=conf if masked else None, fill=0), conf


def semantic_training_labels(scene: Scene, cfg: Config) -> TrainingLabels:
    """Semantic classes as the segmentation labels (semantic mode)."""
    _, name, semantic, conf = semantic_labels(scene, cfg)
    return TrainingLabels(semantic, semantic, conf, name)


FrameTable = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""One frame's instance map -> (its sorted distinct ids, what each becomes)."""


def instance_training_labels(scene: Scene, cfg: Config, frame_table: Optional[FrameTable]) -> TrainingLabels:
    """The source's instance ids as the segmentation labels, each frame's ids mapped by ``frame_table``
    (called frame by frame, in order; None: the source's ids as they are); -1 where not supervised."""
    src, name, semantic, conf = semantic_labels(scene, cfg)
    if src.instance is None:
        raise SdfsegError(f"{scene.path}: label source '{name}' has no instance maps (instance mode)")
    tables = None
    if frame_table is not None:
        tables = [frame_table(src.instance[i]) for i in range(semantic.shape[0])]
    return TrainingLabels(LabelMaps(src.instance, tables, mask=conf, fill=-1), semantic, conf, name)


def training_labels(scene: Scene, cfg: Config, num_channels: int) -> TrainingLabels:
    """The training labels of the config's method (:meth:`sdfseg.methods.Method.training_labels`)."""
    from ..methods import create_method

    return create_method(cfg).training_labels(scene, num_channels)
