"""The in-memory scene model every reader produces and every tool consumes.

Conventions (all readers convert to these):

* ``c2w``: camera-to-world 4x4 matrices, OpenCV camera axes (x right, y down,
  z forward, looking along +z). A pixel (u, v) with depth d (distance along +z,
  not along the ray) maps to ``c2w @ [d * K^-1 [u + 0.5, v + 0.5, 1], 1]``.
* ``intrinsics``: 3x3 pinhole matrices at the *loaded* image resolution.
* ``depth``: metres (before normalisation), 0 where invalid. ``depth_kind`` says
  whether it is metric sensor depth or a monocular cue up to scale and shift.
* ``normals``: unit normals in the *camera* frame (OpenCV axes), or None.
* label maps are int32 ``[N, H, W]``; semantic id 0 = void; instance id 0 =
  "no instance" (stuff or unlabelled).

A scene is read in world units with the identity :class:`Normalization`;
:func:`sdfseg.data.normalize.normalize_scene` maps it into the unit sphere and
records the transform so exports can go back to world coordinates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class ClassInfo:
    """Semantic class metadata. Class 0 is always void."""

    num_classes: int
    """Number of semantic classes including void (ids 0 .. num_classes-1)."""
    thing_ids: tuple[int, ...]
    """Classes whose pixels form countable instances."""
    stuff_ids: tuple[int, ...]
    """Amorphous classes (walls, floor ...): one segment per class per scene."""
    names: tuple[str, ...] = ()
    """Optional names, ``names[c]`` for class ``c``."""

    def name(self, c: int) -> str:
        return self.names[c] if c < len(self.names) else f"class{c}"

    def is_thing(self, c: int) -> bool:
        return c in self.thing_ids


@dataclass
class LabelSource:
    """One set of per-frame 2D labels: a segmenter's output or the ground truth.

    All arrays are ``[N, H, W]`` over *all* frames of the scene (None if absent).
    """

    instance: Optional[np.ndarray] = None
    """int32 instance ids; ids are only meaningful within one frame for 2D segmenters."""
    semantic: Optional[np.ndarray] = None
    """int32 semantic class ids (0 = void)."""
    confidence: Optional[np.ndarray] = None
    """float32 per-pixel confidence in [0, 1]."""


@dataclass
class Normalization:
    """Similarity transform between world and normalised scene coordinates.

    ``normalized = (world - center) / scale``.
    """

    center: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.float64))
    scale: float = 1.0

    def to_normalized(self, points: np.ndarray) -> np.ndarray:
        """World points ``[..., 3]`` -> normalised points ``[..., 3]``."""
        return (np.asarray(points, dtype=np.float64) - self.center) / self.scale

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Normalised points ``[..., 3]`` -> world points ``[..., 3]``."""
        return np.asarray(points, dtype=np.float64) * self.scale + self.center

    def to_dict(self) -> dict:
        return {"center": [float(x) for x in self.center], "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(center=np.asarray(d["center"], dtype=np.float64), scale=float(d["scale"]))


@dataclass
class Scene:
    """A posed image collection with 2D labels. See the module docstring for conventions."""

    path: Path
    frame_names: list[str]
    """Frame stems, e.g. ``"0042"``; output files are named ``<frame>.png``."""
    rgb: np.ndarray
    """float32 ``[N, H, W, 3]`` in [0, 1]."""
    c2w: np.ndarray
    """float32 ``[N, 4, 4]`` camera-to-world (OpenCV axes)."""
    intrinsics: np.ndarray
    """float32 ``[N, 3, 3]``."""
    classes: ClassInfo
    split: dict[str, np.ndarray]
    """``{"train": int64 [Ntr], "test": int64 [Nte]}`` frame indices."""
    depth: Optional[np.ndarray] = None
    """float32 ``[N, H, W]``, 0 = invalid."""
    depth_kind: str = "metric"
    """``"metric"`` (sensor depth, same units as poses) or ``"mono"`` (up to scale and shift)."""
    normals: Optional[np.ndarray] = None
    """float32 ``[N, H, W, 3]`` unit normals in the camera frame."""
    labels: dict[str, LabelSource] = field(default_factory=dict)
    """2D label sources by name, e.g. ``{"m2f": ...}`` (noisy segmenter output)."""
    gt: Optional[LabelSource] = None
    """Ground-truth instance and semantic maps, when the scene has them."""
    gt_hierarchy: dict[str, np.ndarray] = field(default_factory=dict)
    """GT maps per hierarchy level (synthetic scenes): ``{"part"|"object"|"group": int32 [N, H, W]}``."""
    mask_dirs: dict[str, Path] = field(default_factory=dict)
    """Folders of per-frame multi-granular mask sets by source (``sam``, ``classical``, ``sim``),
    each holding ``<frame>.npz`` files readable with :class:`sdfseg.data.masks.MaskSet`."""
    normalization: Normalization = field(default_factory=Normalization)
    layout: str = ""
    """Name of the on-disk layout the scene was read from."""
    meta: dict = field(default_factory=dict)
    """Reader-specific extras (e.g. the synthetic scene's GT geometry file)."""

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])

    def label_source(self, name: str) -> LabelSource:
        """The 2D label source ``name``; a one-line error lists the available ones."""
        from ..errors import SdfsegError

        if name not in self.labels:
            have = ", ".join(sorted(self.labels)) or "none"
            raise SdfsegError(f"{self.path}: scene has no 2D label source '{name}' (available: {have})")
        return self.labels[name]

    def replace(self, **changes) -> "Scene":
        return dataclasses.replace(self, **changes)
