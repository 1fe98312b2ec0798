"""Per-frame 2D segmenters that produce the noisy labels the 3D methods lift.

Three methods share one interface (:class:`Segmenter`): ``sam`` (segment-anything's
automatic mask generator, local checkpoint), ``mask2former`` (detectron2, user config
and weights) and ``classical`` (weight-free multi-scale graph segmentation). Each
returns a :class:`Segmentation`: a flat int32 instance map plus, where the method has
them, all overlapping masks as a :class:`~sdfseg.data.masks.MaskSet` and a semantic
map. :mod:`.writer` stores them in the scene folder; ``tools/segment2d.py`` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from ...errors import SdfsegError
from ..masks import MaskSet


@dataclass
class Segmentation:
    """One frame's segmentation."""

    instance: np.ndarray
    """int32 ``[H, W]`` instance ids (0 = not covered); ids mean nothing across frames."""
    masks: Optional[MaskSet] = None
    """All (possibly overlapping, multi-granular) masks of the frame."""
    semantic: Optional[np.ndarray] = None
    """int32 ``[H, W]`` semantic class ids of the scene's class set (0 = void), when known."""


class Segmenter(Protocol):
    """A 2D segmenter: ``seg = segmenter(rgb)`` with ``rgb`` uint8 ``[H, W, 3]``."""

    method: str
    outputs: tuple[str, ...]
    """Which of "instance", "semantic", "masks" every call returns."""

    def __call__(self, rgb: np.ndarray) -> Segmentation: ...

    def settings(self) -> dict:
        """Everything that changes the output (recorded beside the labels, checked on resume)."""
        ...


METHODS = ("sam", "mask2former", "classical")


def make_segmenter(method: str, **kwargs) -> Segmenter:
    """Build the segmenter ``method`` (see :data:`METHODS`) from its config keyword arguments."""
    if method == "classical":
        from .classical import ClassicalConfig, ClassicalSegmenter
        return ClassicalSegmenter(ClassicalConfig(**kwargs))
    if method == "sam":
        from .sam import SamConfig, SamSegmenter
        return SamSegmenter.from_config(SamConfig(**kwargs))
    if method == "mask2former":
        from .mask2former import Mask2FormerConfig, Mask2FormerSegmenter
        return Mask2FormerSegmenter(Mask2FormerConfig(**kwargs))
    raise SdfsegError(f"--method: unknown segmenter '{method}' (expected one of {', '.join(METHODS)})")


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float ``[H, W, 3]`` in [0, 1] (or uint8) -> contiguous uint8 ``[H, W, 3]``."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., :3])


def paint_masks(masks: list[np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    """Flatten overlapping bool masks ``[H, W]`` into an int32 instance map.

    Masks are painted from the largest to the smallest, so a small mask inside a large
    one stays visible; ids are 1..K in order of first appearance in raster order over
    the visible masks (0 = pixels no mask covers).
    """
    out = np.zeros(hw, dtype=np.int32)
    areas = [int(np.count_nonzero(m)) for m in masks]
    for k, i in enumerate(sorted(range(len(masks)), key=lambda j: (-areas[j], j)), start=1):
        out[np.asarray(masks[i], dtype=bool)] = k
    return relabel_consecutive(out)


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """int32 map with the non-zero ids renumbered 1..K in raster order of first appearance (0 stays 0)."""
    flat = labels.ravel()
    uniq, first = np.unique(flat, return_index=True)
    order = [u for _, u in sorted(zip(first, uniq)) if u != 0]
    lut = {int(u): k for k, u in enumerate(order, start=1)}
    lut[0] = 0
    table_keys = np.array(sorted(lut), dtype=np.int64)
    table_vals = np.array([lut[int(k)] for k in table_keys], dtype=np.int32)
    return table_vals[np.searchsorted(table_keys, flat)].reshape(labels.shape).astype(np.int32)
