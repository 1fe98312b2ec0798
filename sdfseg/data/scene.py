"""The in-memory scene model every reader produces and every tool consumes.

Conventions (all readers convert to these):

* ``c2w``: camera-to-world 4x4 matrices, OpenCV camera axes (x right, y down,
  z forward, looking along +z). A pixel (u, v) with depth d (distance along +z,
  not along the ray) maps to ``c2w @ [d * K^-1 [u + 0.5, v + 0.5, 1], 1]``.
* ``intrinsics``: 3x3 pinhole matrices at the *loaded* image resolution.
* ``depth``: metres (before normalisation), 0 where invalid. ``depth_kind`` says
  whether it is metric sensor depth or a monocular cue up to scale and shift.
* ``normals``: unit normals in the *camera* frame (OpenCV axes), or None.
* label maps are ``[N, H, W]`` integers; semantic id 0 = void; instance id 0 =
  "no instance" (stuff or unlabelled).

Storage is compact, because a scene holds every frame decoded (the arrays of a ScanNet-size
scene, 1000 frames of 480 x 640 with depth, normals, noisy and GT labels and confidences,
take 3.7 GiB this way instead of 13.7 GiB in float32; ``tools/benchmark.py --scene-memory``).
Training reads less (:func:`sdfseg.training.trainer.read_options`): normal maps only for the normal losses
and GT maps of the test frames only (:class:`FrameSubset`), every file still read and checked.

===============  =========================  ==============================================
array            dtype                      value
===============  =========================  ==============================================
``rgb``          uint8 ``[N, H, W, 3]``     ``v / 255`` (:func:`decode_rgb`); 8-bit images are exact
``depth``        float16 ``[N, H, W]``      the depth itself (relative error <= 2^-11 ~ 4.9e-4)
``normals``      int8 ``[N, H, W, 3]``      ``v / 127``, renormalised (:func:`decode_normals`; < 0.5 degree)
label maps       uint8 ... int32            the smallest integer type holding the map's ids (:func:`label_dtype`)
``confidence``   uint8 ``[N, H, W]``        ``v / 240`` (:func:`decode_confidence`; 0.1, 0.25, 1/3, 0.8 exact)
===============  =========================  ==============================================

Code that builds a :class:`Scene` itself may pass float arrays instead (float32 RGB in [0, 1],
float normals and confidences): every consumer decodes through the ``decode_*`` functions, which
take both. :meth:`Scene.rgb_float`, :meth:`Scene.depth_float` and :meth:`Scene.normals_float`
give one frame as float32.

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

RGB_DTYPE = np.dtype(np.uint8)
DEPTH_DTYPE = np.dtype(np.float16)
NORMAL_DTYPE = np.dtype(np.int8)
NORMAL_SCALE = 127
"""Stored normal component ``v`` means ``v / NORMAL_SCALE`` (then renormalised)."""
CONFIDENCE_DTYPE = np.dtype(np.uint8)
CONFIDENCE_STEPS = 240
"""Stored confidence ``v`` means ``v / CONFIDENCE_STEPS`` (steps of 1/240 ~ 0.0042): tenths (0.1 is the TTA
floor), quarters, thirds, eighths, twelfths and sixteenths decode to exactly the float32 of the fraction."""
FLOAT16_MAX = float(np.finfo(np.float16).max)


def label_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest of uint8, int8, int16, uint16, int32 (int64 beyond) that holds every integer in ``[lo, hi]``
    (int16 before uint16: torch indexes it without a copy)."""
    for dt in (np.uint8, np.int8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


class LabelMapBuilder:
    """``[N, H, W]`` integer maps filled frame by frame in the smallest dtype holding every value so far.

    Starts as uint8 zeros (the range ``[lo, hi]`` given, 0 by default) and is widened with one copy when
    a frame needs more (:func:`label_dtype`), so no int32 stack is ever built for maps that fit in a byte.
    """

    def __init__(self, shape: tuple[int, ...], lo: int = 0, hi: int = 0):
        self.lo, self.hi = min(int(lo), 0), max(int(hi), 0)
        self.array = np.zeros(shape, dtype=label_dtype(self.lo, self.hi))

    def __setitem__(self, index, values: np.ndarray) -> None:
        values = np.asarray(values)
        if values.dtype.kind not in "iub":
            raise TypeError(f"label maps must be integer, got {values.dtype}")
        if values.size:
            lo, hi = int(values.min()), int(values.max())
            if lo < self.lo or hi > self.hi:
                self.lo, self.hi = min(lo, self.lo), max(hi, self.hi)
                dt = label_dtype(self.lo, self.hi)
                if dt != self.array.dtype:
                    self.array = self.array.astype(dt)
        self.array[index] = values


class FrameSubset:
    """``[N, H, W]`` per-frame maps of which only some frames are held (the others were read and checked, then
    dropped, e.g. the GT maps of training frames, ``ReadOptions.gt_frames="test"``).

    Indexing by frame works as on the full array for held frames (``maps[i]``, ``maps[idx]`` with an index array,
    a slice or a boolean mask over the ``N`` frames, optionally followed by pixel indices) and raises
    :class:`~sdfseg.errors.SdfsegError` naming the frame for any other; every whole-array use (``np.asarray``,
    arithmetic, ``.max()``) fails instead of computing on a partial stack.
    """

    __array_ufunc__ = None  # numpy operators (maps == 0, maps + 1) raise TypeError instead of returning garbage

    def __init__(self, num_frames: int, frames: np.ndarray, held: np.ndarray):
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        if frames.size != held.shape[0] or (frames.size and (np.any(np.diff(frames) <= 0) or frames[0] < 0
                                                             or frames[-1] >= num_frames)):
            raise ValueError(f"FrameSubset: {frames.size} sorted distinct frames in 0..{num_frames - 1} expected "
                             f"for {held.shape[0]} maps")
        self.num_frames = int(num_frames)
        self.frames = frames
        """int64 ``[M]`` the held frames, ascending."""
        self.held = held
        """``[M, H, W]`` the maps of :attr:`frames`, in that order."""
        self._pos = {int(f): k for k, f in enumerate(frames)}

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.num_frames,) + tuple(self.held.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.held.dtype

    @property
    def ndim(self) -> int:
        return self.held.ndim

    @property
    def nbytes(self) -> int:
        """Bytes actually held (the kept frames only)."""
        return int(self.held.nbytes)

    def __len__(self) -> int:
        return self.num_frames

    def _position(self, f: int) -> int:
        from ..errors import SdfsegError

        i = int(f)
        if i < 0:
            i += self.num_frames
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {int(f)} out of range for {self.num_frames} frames")
        if i not in self._pos:
            raise SdfsegError(f"the maps of frame {i} were checked but not kept (only {self.frames.size} of "
                              f"{self.num_frames} frames are held, e.g. GT maps of the test split only)")
        return self._pos[i]

    def __getitem__(self, key):
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(key, (int, np.integer)):
            return self.held[(self._position(key),) + rest]
        if isinstance(key, slice):
            if any(not isinstance(k, (int, np.integer, slice)) and k is not None for k in rest):
                raise IndexError("FrameSubset: a frame slice followed by index arrays is not supported")
            pos = np.array([self._position(f) for f in range(self.num_frames)[key]], dtype=np.int64)
            return self.held[pos][(slice(None),) + rest]
        idx = np.asarray(key)
        if idx.dtype == np.bool_:
            if idx.shape != (self.num_frames,):
                raise IndexError(f"boolean frame mask of shape {idx.shape}, expected ({self.num_frames},)")
            idx = np.flatnonzero(idx)
        elif idx.dtype.kind not in "iu":
            raise IndexError(f"frames must be indexed by integers, got {idx.dtype}")
        pos = np.array([self._position(f) for f in idx.reshape(-1)], dtype=np.int64).reshape(idx.shape)
        return self.held[(pos,) + rest]  # numpy's own semantics with frame positions in place of frames

    def __array__(self, dtype=None, copy=None):
        from ..errors import SdfsegError

        raise SdfsegError(f"only {self.frames.size} of {self.num_frames} frames of these maps are held (e.g. GT "
                          "maps of the test split only): index them by frame instead of using the whole stack")

    def __iter__(self):
        for f in range(self.num_frames):
            yield self[f]

    def _refuse(self, *args, **kwargs):
        self.__array__()

    # whole-array operators would otherwise fall back to identity comparison (maps == 0 -> False) or TypeErrors
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __floordiv__ = __mod__ = _refuse
    __and__ = __rand__ = __or__ = __ror__ = __invert__ = __neg__ = __bool__ = _refuse
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"FrameSubset(shape={self.shape}, dtype={self.dtype}, frames held={self.frames.size})"


def encode_rgb(rgb: np.ndarray) -> np.ndarray:
    """Colours: uint8 as they are; floats in [0, 1] rounded to ``v / 255`` steps. uint8 ``[..., 3]``."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb
    return (np.clip(rgb, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def decode_rgb(rgb: np.ndarray) -> np.ndarray:
    """float32 colours in [0, 1] of uint8 (``v / 255``, exactly what decoding the 8-bit image as float gives)
    or float input."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / np.float32(255.0)
    return rgb.astype(np.float32, copy=False)


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """Unit normals ``[..., 3]`` (0 = none) -> int8 ``round(n * 127)``."""
    n = np.asarray(normals, dtype=np.float32)
    return np.clip(np.rint(n * np.float32(NORMAL_SCALE)), -NORMAL_SCALE, NORMAL_SCALE).astype(NORMAL_DTYPE)


def decode_normals(normals: np.ndarray) -> np.ndarray:
    """float32 unit normals ``[..., 3]`` of int8 storage (renormalised, zero vectors stay zero) or float input."""
    n = np.asarray(normals)
    if n.dtype != NORMAL_DTYPE:
        return n.astype(np.float32, copy=False)
    f = n.astype(np.float32)
    norm = np.linalg.norm(f, axis=-1, keepdims=True)
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)


def encode_confidence(conf: np.ndarray) -> np.ndarray:
    """Confidences in [0, 1] -> uint8 ``round(c * 240)``."""
    c = np.asarray(conf, dtype=np.float32)
    return np.clip(np.rint(c * np.float32(CONFIDENCE_STEPS)), 0, CONFIDENCE_STEPS).astype(CONFIDENCE_DTYPE)


def decode_confidence(conf: np.ndarray) -> np.ndarray:
    """float32 confidences of uint8 storage (``v / 240``) or float input."""
    c = np.asarray(conf)
    if c.dtype == CONFIDENCE_DTYPE:
        return c.astype(np.float32) / np.float32(CONFIDENCE_STEPS)
    return c.astype(np.float32, copy=False)


def full_confidence(shape: tuple[int, ...]) -> np.ndarray:
    """Confidence 1 everywhere, in the storage dtype."""
    return np.full(shape, CONFIDENCE_STEPS, dtype=CONFIDENCE_DTYPE)


METRIC_DEPTH = ("metric", "sparse")
"""The ``depth_kind`` values in the poses' units (normalised with the scene; metric depth losses)."""


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

    All arrays are ``[N, H, W]`` over *all* frames of the scene (None if absent). GT maps read with
    ``ReadOptions(gt_frames="test")`` may be a :class:`FrameSubset` holding the test frames only
    (indexed by frame like the full array; other frames raise).
    """

    instance: Optional[np.ndarray] = None
    """Instance ids (uint8, int16, uint16 or int32, :func:`label_dtype`); ids are only meaningful within one frame
    for 2D segmenters."""
    semantic: Optional[np.ndarray] = None
    """Semantic class ids (0 = void), uint8 for up to 256 classes."""
    confidence: Optional[np.ndarray] = None
    """Per-pixel confidence in [0, 1]: uint8 ``v / 240`` (:func:`decode_confidence`)."""


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
    """uint8 ``[N, H, W, 3]``, colour ``v / 255`` (:meth:`rgb_float`)."""
    c2w: np.ndarray
    """float32 ``[N, 4, 4]`` camera-to-world (OpenCV axes)."""
    intrinsics: np.ndarray
    """float32 ``[N, 3, 3]``."""
    classes: ClassInfo
    split: dict[str, np.ndarray]
    """``{"train": int64 [Ntr], "test": int64 [Nte]}`` frame indices."""
    depth: Optional[np.ndarray] = None
    """float16 ``[N, H, W]`` in scene units, 0 = invalid (:meth:`depth_float`)."""
    depth_kind: str = "metric"
    """``"metric"`` (sensor depth, same units as poses), ``"sparse"`` (metric depth at a few pixels: SfM
    points projected into the views; the depth losses use it, ray sampling does not) or ``"mono"`` (up to
    scale and shift)."""
    normals: Optional[np.ndarray] = None
    """int8 ``[N, H, W, 3]`` unit normals in the camera frame, ``v / 127`` (:meth:`normals_float`)."""
    labels: dict[str, LabelSource] = field(default_factory=dict)
    """2D label sources by name, e.g. ``{"m2f": ...}`` (noisy segmenter output)."""
    gt: Optional[LabelSource] = None
    """Ground-truth instance and semantic maps, when the scene has them."""
    gt_hierarchy: dict[str, np.ndarray] = field(default_factory=dict)
    """GT maps per hierarchy level (synthetic scenes): ``{"part"|"object"|"group": [N, H, W]}`` (compact ints)."""
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

    def rgb_float(self, i: int) -> np.ndarray:
        """float32 ``[H, W, 3]`` colours in [0, 1] of frame ``i``."""
        return decode_rgb(self.rgb[i])

    def depth_float(self, i: int) -> np.ndarray:
        """float32 ``[H, W]`` depth of frame ``i`` (0 = invalid); the scene must have depth."""
        return np.asarray(self.depth[i], dtype=np.float32)

    def normals_float(self, i: int) -> np.ndarray:
        """float32 ``[H, W, 3]`` unit camera-frame normals of frame ``i``; the scene must have normals."""
        return decode_normals(self.normals[i])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-pixel array of the scene by name (``rgb``, ``depth``, ``labels.m2f.instance``, ``gt.semantic``,
        ``gt_hierarchy.part``, ...), each array once (the hierarchy's ``object`` level is the GT instance maps)."""
        out: dict[str, np.ndarray] = {}
        seen: set[int] = set()

        def add(name: str, arr: Optional[np.ndarray]) -> None:
            if arr is not None and id(arr) not in seen:
                seen.add(id(arr))
                out[name] = arr

        add("rgb", self.rgb)
        add("depth", self.depth)
        add("normals", self.normals)
        for src_name, src in list(self.labels.items()) + ([("gt", self.gt)] if self.gt is not None else []):
            prefix = src_name if src is self.gt else f"labels.{src_name}"
            for key in ("instance", "semantic", "confidence"):
                add(f"{prefix}.{key}", getattr(src, key))
        for level, arr in self.gt_hierarchy.items():
            add(f"gt_hierarchy.{level}", arr)
        return out

    def nbytes(self) -> int:
        """Bytes held by the per-pixel arrays (:meth:`arrays`)."""
        return int(sum(a.nbytes for a in self.arrays().values()))

    def label_source(self, name: str) -> LabelSource:
        """The 2D label source ``name``; a one-line error lists the available ones."""
        from ..errors import SdfsegError

        if name not in self.labels:
            have = ", ".join(sorted(self.labels)) or "none"
            raise SdfsegError(f"{self.path}: scene has no 2D label source '{name}' (available: {have})")
        return self.labels[name]

    def replace(self, **changes) -> "Scene":
        return dataclasses.replace(self, **changes)
