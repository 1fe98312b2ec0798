"""Compact storage of many overlapping binary masks per image (SAM "everything" output).

A :class:`MaskSet` keeps each mask as its bounding box plus the bit-packed crop
inside it, so a 1000-mask image never needs a dense ``[M, H, W]`` tensor. On disk
it is one ``.npz`` per frame (``<scene>/masks_<source>/<frame>.npz``) with keys
``hw`` [2], ``boxes`` int32 [M, 4] as (y0, x0, y1, x1) half-open, ``offsets``
int64 [M + 1] into ``bits`` (uint8, concatenated ``np.packbits`` of each crop,
row-major), and ``scores`` float32 [M].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import SdfsegError
from ..io import save_npz_atomic


@dataclass
class MaskSet:
    """``M`` binary masks of one ``H x W`` image, stored as packed bounding-box crops."""

    height: int
    width: int
    boxes: np.ndarray
    """int32 ``[M, 4]``: (y0, x0, y1, x1), half-open."""
    offsets: np.ndarray
    """int64 ``[M + 1]``: crop ``i`` is ``bits[offsets[i]:offsets[i+1]]``."""
    bits: np.ndarray
    """uint8 packed crop bits."""
    scores: np.ndarray
    """float32 ``[M]`` segmenter scores (1 when unknown)."""

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def from_masks(cls, masks: Iterable[np.ndarray], height: int, width: int,
                   scores: Iterable[float] | None = None) -> "MaskSet":
        """Build from boolean ``[H, W]`` masks (consumed one at a time; empty masks are dropped)."""
        boxes, chunks, kept_scores = [], [], []
        score_iter = iter(scores) if scores is not None else None
        for m in masks:
            s = float(next(score_iter)) if score_iter is not None else 1.0
            m = np.asarray(m, dtype=bool)
            if m.shape != (height, width):
                raise ValueError(f"mask shape {m.shape} != {(height, width)}")
            rows = np.flatnonzero(m.any(axis=1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(m.any(axis=0))
            y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            boxes.append((y0, x0, y1, x1))
            chunks.append(np.packbits(m[y0:y1, x0:x1].ravel()))
            kept_scores.append(s)
        offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
        if chunks:
            offsets[1:] = np.cumsum([c.size for c in chunks])
        bits = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)
        return cls(height, width, np.asarray(boxes, dtype=np.int32).reshape(-1, 4), offsets, bits,
                   np.asarray(kept_scores, dtype=np.float32))

    def crop(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Mask ``i`` as (box int32 [4], bool crop ``[y1 - y0, x1 - x0]``)."""
        y0, x0, y1, x1 = (int(v) for v in self.boxes[i])
        n = (y1 - y0) * (x1 - x0)
        crop = np.unpackbits(self.bits[self.offsets[i]:self.offsets[i + 1]], count=n).astype(bool)
        return self.boxes[i], crop.reshape(y1 - y0, x1 - x0)

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as a full bool ``[H, W]`` array."""
        (y0, x0, y1, x1), crop = self.crop(i)
        out = np.zeros((self.height, self.width), dtype=bool)
        out[y0:y1, x0:x1] = crop
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.mask(i)

    def nbytes(self) -> int:
        """Bytes held by the packed masks (boxes, offsets, bits, scores)."""
        return int(self.boxes.nbytes + self.offsets.nbytes + self.bits.nbytes + self.scores.nbytes)

    def areas(self) -> np.ndarray:
        """int64 ``[M]`` pixel count of each mask."""
        return np.array([int(np.unpackbits(self.bits[self.offsets[i]:self.offsets[i + 1]]).sum())
                         for i in range(len(self))], dtype=np.int64)

    def save(self, path: str | Path) -> None:
        """Write atomically as ``.npz`` (see module docstring); byte-deterministic."""
        save_npz_atomic(path, hw=np.array([self.height, self.width], dtype=np.int64), boxes=self.boxes,
                        offsets=self.offsets, bits=self.bits, scores=self.scores)

    @classmethod
    def load(cls, path: str | Path) -> "MaskSet":
        path = Path(path)
        try:
            with np.load(path) as z:
                h, w = (int(v) for v in z["hw"])
                return cls(h, w, z["boxes"].astype(np.int32), z["offsets"].astype(np.int64),
                           z["bits"].astype(np.uint8), z["scores"].astype(np.float32))
        except FileNotFoundError:
            raise SdfsegError(f"{path}: mask set not found") from None
        except (KeyError, ValueError, OSError) as exc:
            raise SdfsegError(f"{path}: not a valid mask set npz (expected keys hw, boxes, offsets, bits, scores): {exc}") from None
