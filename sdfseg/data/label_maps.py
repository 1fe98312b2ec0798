"""Training label maps without a copy of every map: a base stack, per-frame id tables and a mask.

Training relabels a label source frame by frame: instance ids get random distinct ids (clustering), or
their rank by area or a clamp to the channel count (supervised), and pixels that are not supervised
(confidence 0) get a fill value (-1 for instance labels, class 0 for semantic labels). Materialised,
that is one int32 map per frame (1.1 GiB for 1000 frames of 480 x 640). :class:`LabelMaps` keeps
instead the source's own maps (``base``, shared, not copied), one small lookup table per frame
(the frame's distinct base ids and their new ids) and the mask (the source's confidences), and gives

* one frame's labels (:meth:`LabelMaps.frame`), the whole stack (:meth:`LabelMaps.full`, ``np.asarray``,
  indexing as an array), all equal to what the materialised maps held;
* one frame's labels as small sort keys (:meth:`LabelMaps.frame_codes`) that order the pixels exactly as
  the labels do, for the ray sampler's per-label pixel lists;
* the labels of a batch of rays on the device (:class:`DeviceLabelMaps`), through the tables.

The base and mask arrays must not change afterwards (the ray sampler shares them, as it shares the
scene's colours).
"""

from __future__ import annotations

import weakref
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .scene import label_dtype

DENSE_SPAN = 1 << 17
"""Frames whose base ids span at most this many values are decoded through a dense lookup array."""


def frame_ids(frame: np.ndarray) -> np.ndarray:
    """Sorted distinct values of one integer map, int64 (``np.unique``; a count of each value for maps of at
    most 16-bit ints)."""
    v = np.asarray(frame).reshape(-1)
    if v.size == 0:
        return np.zeros(0, dtype=np.int64)
    if v.dtype.kind in "iu" and v.dtype.itemsize <= 2:
        lo = int(v.min())
        counts = np.bincount(v if lo >= 0 else v.astype(np.int32) - lo)
        return np.flatnonzero(counts).astype(np.int64) + lo
    return np.unique(v).astype(np.int64)


def _code_dtype(n: int) -> np.dtype:
    return np.dtype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.int64)


def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``table[k]`` for every value of ``values`` (each one of the sorted ``keys``), as ``table``'s dtype."""
    if keys.size == 0:
        return np.zeros(values.shape, dtype=table.dtype)
    k0, span = int(keys[0]), int(keys[-1]) - int(keys[0]) + 1
    if span <= DENSE_SPAN:
        if k0 >= 0 and int(keys[-1]) < DENSE_SPAN:  # index with the values themselves (no widened copy)
            dense = np.zeros(int(keys[-1]) + 1, dtype=table.dtype)
            dense[keys] = table
            return dense[values]
        dense = np.zeros(span, dtype=table.dtype)
        dense[keys - k0] = table
        return dense[values.astype(np.int64) - k0]
    return table[np.searchsorted(keys, values)]


class LabelMaps:
    """``[N, H, W]`` integer maps: ``value = fill`` where ``mask <= 0`` (mask given), else ``table_i(base)``.

    Args:
        base: ``[N, H, W]`` integer maps (a label source's own array; kept, not copied).
        tables: None (the base values themselves) or one ``(keys, values)`` pair per frame: the frame's
            distinct base values, sorted (every value of ``base[i]`` must be one of them), and what each
            becomes.
        mask: ``[N, H, W]`` (confidences: uint8 or float) or None; pixels where it is not ``> 0`` get ``fill``.
        fill: the value of masked pixels.
    """

    def __init__(self, base: np.ndarray, tables: Optional[Sequence[tuple[np.ndarray, np.ndarray]]] = None,
                 mask: Optional[np.ndarray] = None, fill: int = 0):
        self.base = base
        self.mask = mask
        self.fill = int(fill)
        if mask is not None and tuple(mask.shape) != tuple(base.shape):
            raise ValueError(f"LabelMaps: mask {tuple(mask.shape)} and base {tuple(base.shape)} differ in shape")
        self._keys: Optional[np.ndarray] = None
        if tables is not None:
            if len(tables) != base.shape[0]:
                raise ValueError(f"LabelMaps: {len(tables)} tables for {base.shape[0]} frames")
            sizes = [len(k) for k, _ in tables]
            self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            self._keys = np.concatenate([np.asarray(k, dtype=np.int64) for k, _ in tables] or [np.zeros(0, np.int64)])
            self._values = np.concatenate([np.asarray(v, dtype=np.int64) for _, v in tables]
                                          or [np.zeros(0, np.int64)])
            if any(len(v) != s for (_, v), s in zip(tables, sizes)):
                raise ValueError("LabelMaps: each table needs one value per key")
        self._dtype: Optional[np.dtype] = None

    # ---- array-like ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.base.shape)

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return int(self.base.shape[0])

    @property
    def identity(self) -> bool:
        """True when the maps are the base itself (no tables, no mask): :meth:`full` is ``base``."""
        return self._keys is None and self.mask is None

    @property
    def dtype(self) -> np.dtype:
        """dtype of the materialised maps: the base's when it holds every value, else the smallest integer
        type holding the table values, the fill and (without tables) the base values
        (:func:`~sdfseg.data.scene.label_dtype`)."""
        if self._dtype is None:
            if self._keys is not None:
                vals = self._values
                lo = min([int(vals.min())] if vals.size else [0])
                hi = max([int(vals.max())] if vals.size else [0])
                if self.mask is not None:
                    lo, hi = min(lo, self.fill), max(hi, self.fill)
                self._dtype = label_dtype(lo, hi)
            else:
                dt = self.base.dtype
                if self.mask is None or (dt.kind in "iu" and np.iinfo(dt).min <= self.fill <= np.iinfo(dt).max):
                    self._dtype = dt
                else:
                    lo = min(self.fill, int(self.base.min())) if self.base.size else self.fill
                    hi = max(self.fill, int(self.base.max())) if self.base.size else self.fill
                    self._dtype = label_dtype(lo, hi)
        return self._dtype

    def table(self, i: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Frame ``i``'s ``(keys, values)`` (int64), or None without tables."""
        if self._keys is None:
            return None
        a, b = self._offsets[i], self._offsets[i + 1]
        return self._keys[a:b], self._values[a:b]

    @property
    def held_bytes(self) -> int:
        """Bytes this object holds itself (the tables; base and mask belong to the label source)."""
        return 0 if self._keys is None else int(self._keys.nbytes + self._values.nbytes + self._offsets.nbytes)

    def frame(self, i: int) -> np.ndarray:
        """The maps of frame ``i``, ``[H, W]`` in :attr:`dtype`."""
        b = self.base[int(i)]
        t = self.table(int(i))
        out = b if t is None else _lookup(t[0], t[1], b)
        out = out.astype(self.dtype, copy=t is None)  # never a view of the base
        if self.mask is not None:
            out[~(self.mask[int(i)] > 0)] = self.fill
        return out

    def full(self) -> np.ndarray:
        """All maps ``[N, H, W]`` in :attr:`dtype` (the base itself when :attr:`identity`)."""
        if self.identity:
            return self.base
        out = np.empty(self.shape, dtype=self.dtype)
        for i in range(len(self)):
            out[i] = self.frame(i)
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.full()
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.frame(int(key) % len(self) if -len(self) <= int(key) < 0 else int(key))
        if isinstance(key, tuple) and key and isinstance(key[0], (int, np.integer)):
            return self[key[0]][key[1:]]
        return self.full()[key]

    def max(self) -> int:
        """Largest value of the materialised maps (frame by frame)."""
        return max(int(self.frame(i).max()) for i in range(len(self))) if self.base.size else 0

    # ---- sort keys ---------------------------------------------------------------------------------
    def frame_codes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``i`` as sort keys: ``(codes [H * W], values [C])`` with ``frame(i).ravel() == values[codes]``;
        ``values`` are sorted and distinct, so ``codes`` (uint8 / uint16 for up to 256 / 65536 values) order the
        pixels exactly as the labels do (a stable argsort of either gives the same permutation). ``values`` may
        hold values no pixel takes."""
        i = int(i)
        b = np.asarray(self.base[i]).reshape(-1)
        t = self.table(i)
        if t is None:
            values = frame_ids(b)
            keys, key_values = values, values
        else:
            keys, key_values = t
        if self.mask is not None:
            values = np.union1d(key_values, [self.fill])
        elif t is not None:
            values = np.unique(key_values)
        cdt = _code_dtype(values.size)
        codes = _lookup(keys, np.searchsorted(values, key_values).astype(cdt), b)
        if self.mask is not None:
            codes[~(np.asarray(self.mask[i]).reshape(-1) > 0)] = np.searchsorted(values, self.fill)
        return codes, values


def as_label_maps(labels) -> LabelMaps:
    """``labels`` as :class:`LabelMaps` (an array becomes the identity maps of itself)."""
    return labels if isinstance(labels, LabelMaps) else LabelMaps(np.asarray(labels))


class DeviceLabelMaps:
    """The labels of rays of a :class:`LabelMaps` on a device: base and mask as device tensors (``tensor_of``:
    the caller's conversion, which shares CPU arrays), the tables as one sorted key array
    ``frame * span + (id - lo)`` searched per batch."""

    def __init__(self, maps: LabelMaps, tensor_of: Callable[[np.ndarray], torch.Tensor], device: torch.device):
        self.maps = maps
        n = len(maps)
        self.base = tensor_of(maps.base)
        self.mask = None if maps.mask is None else tensor_of(maps.mask)
        self.fill = maps.fill
        self.keys = self.values = None
        if maps._keys is not None:
            keys, offsets = maps._keys, maps._offsets
            self.lo = int(keys.min()) if keys.size else 0
            self.span = (int(keys.max()) - self.lo + 1) if keys.size else 1
            if n * self.span >= 2 ** 62:
                raise ValueError(f"LabelMaps: ids spanning {self.span} values over {n} frames do not fit one key array")
            frame_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
            self.keys = torch.as_tensor(frame_of * self.span + (keys - self.lo), device=device)
            self.values = torch.as_tensor(maps._values, device=device)
        self._full: Optional[weakref.ref] = None

    def rays(self, frame: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """int64 labels ``[R]`` of the pixels ``flat`` (indices into the flattened maps) of frames ``frame``."""
        v = self.base[flat].long()
        if self.keys is not None:
            v = self.values[torch.searchsorted(self.keys, frame * self.span + (v - self.lo))]
        if self.mask is not None:
            v = torch.where(self.mask[flat] > 0, v, torch.full_like(v, self.fill))
        return v

    def full(self, tensor_of: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        """The flat ``[N * H * W]`` maps on the device: the base tensor when the maps are the base, else
        materialised (the same tensor while a caller still holds it)."""
        if self.maps.identity:
            return self.base
        t = self._full() if self._full is not None else None
        if t is None:
            t = tensor_of(self.maps.full())
            self._full = weakref.ref(t)
        return t
