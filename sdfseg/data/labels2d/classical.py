"""Weight-free multi-granular segmentation: graph-based over-segmentation + hierarchical merging.

1. Felzenszwalb-Huttenlocher graph segmentation (scikit-image) gives a fine partition.
2. Adjacent regions are merged greedily by Ward's criterion on mean CIELAB colour,
   ``cost(a, b) = n_a n_b / (n_a + n_b) * |mu_a - mu_b|^2`` (cheapest pair first), which
   builds a binary merge tree; cutting it at several region counts gives partitions
   from fine to coarse. Every coarse segment is a union of finer ones, so the masks
   are nested by construction (the hierarchy the hierarchical feature head expects).
3. The flat instance map is the level whose region count is closest to
   ``instance_segments``; the MaskSet holds every distinct segment of every level.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.segmentation import felzenszwalb

from ...errors import SdfsegError
from ..masks import MaskSet
from . import Segmentation, relabel_consecutive


@dataclass
class ClassicalConfig:
    scale: float = 100.0
    """Felzenszwalb scale of the finest partition (larger = fewer, larger segments)."""
    sigma: float = 0.8
    """Gaussian pre-smoothing of the graph segmentation."""
    min_size: int = 0
    """Smallest segment of the finest partition in pixels; 0 = H * W / 2000 (38 px at 240 x 320)."""
    levels: tuple[int, ...] = (128, 64, 32, 16, 8, 4, 2)
    """Region counts at which the merge tree is cut, fine to coarse."""
    instance_segments: int = 32
    """The instance map is the level whose region count is closest to this."""

    def __post_init__(self) -> None:
        self.levels = tuple(sorted({int(v) for v in self.levels}, reverse=True))
        if not self.levels or min(self.levels) < 1:
            raise SdfsegError(f"classical levels must be positive region counts, got {self.levels}")
        if self.scale <= 0 or self.sigma < 0 or self.min_size < 0 or self.instance_segments < 1:
            raise SdfsegError("classical segmenter: scale > 0, sigma >= 0, min_size >= 0, instance_segments >= 1 expected")


def region_adjacency(labels: np.ndarray) -> np.ndarray:
    """Unique pairs ``[E, 2]`` (a < b) of 4-connected neighbouring labels of ``[H, W]`` map."""
    pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
             np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1)]
    p = np.concatenate(pairs)
    p = p[p[:, 0] != p[:, 1]]
    return np.unique(np.sort(p, axis=1), axis=0)


def merge_hierarchy(labels: np.ndarray, features: np.ndarray, levels: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a Ward merge tree of the regions of ``labels`` at the region counts ``levels``.

    Args:
        labels: int ``[H, W]`` base partition with ids 0..R-1.
        features: float ``[H, W, F]`` per-pixel features (e.g. Lab colour).
        levels: region counts, fine to coarse.
    Returns:
        one int64 ``[R]`` array per distinct level mapping base region -> merged region id.
    """
    n = int(labels.max()) + 1
    count = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(labels.ravel(), weights=features[..., c].ravel(), minlength=n)
                     for c in range(features.shape[-1])], 1)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in region_adjacency(labels):
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))
    parent = np.arange(n)
    version = np.zeros(n, dtype=np.int64)

    def cost(a: int, b: int) -> float:
        d = sums[a] / count[a] - sums[b] / count[b]
        return count[a] * count[b] / (count[a] + count[b]) * float(d @ d)

    heap = [(cost(a, b), a, b, 0, 0) for a in range(n) for b in neighbours[a] if a < b]
    heapq.heapify(heap)
    alive = n
    cuts, targets = [], [t for t in levels if t < n] or []
    if not levels or levels[0] >= n:
        cuts.append(np.arange(n))
    for target in targets:
        while alive > target and heap:
            _, a, b, va, vb = heapq.heappop(heap)
            if parent[a] != a or parent[b] != b or version[a] != va or version[b] != vb:
                continue  # stale entry
            parent[b] = a
            count[a] += count[b]
            sums[a] += sums[b]
            version[a] += 1
            neighbours[a] |= neighbours[b]
            neighbours[a] -= {a, b}
            for c in neighbours[b] - {a}:
                neighbours[c].discard(b)
                neighbours[c].add(a)
            neighbours[b] = set()
            for c in neighbours[a]:
                lo, hi = (a, c) if a < c else (c, a)
                heapq.heappush(heap, (cost(a, c), lo, hi, version[lo], version[hi]))
            alive -= 1
        cuts.append(_roots(parent))
    return cuts


def _roots(parent: np.ndarray) -> np.ndarray:
    """Path-compressed root of every node of a union forest ``[R]``."""
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


class ClassicalSegmenter:
    """Multi-granular segmenter without weights (see the module docstring)."""

    method = "classical"
    outputs = ("instance", "masks")

    def __init__(self, config: ClassicalConfig | None = None) -> None:
        self.config = config or ClassicalConfig()

    def settings(self) -> dict:
        return {"method": self.method, **{k: list(v) if isinstance(v, tuple) else v
                                          for k, v in asdict(self.config).items()}}

    def hierarchy(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Nested partitions, fine to coarse: int32 ``[H, W]`` maps with ids 1..K_l."""
        cfg = self.config
        h, w = rgb.shape[:2]
        img = np.asarray(rgb, dtype=np.float64) / (255.0 if rgb.dtype == np.uint8 else 1.0)
        min_size = cfg.min_size or max(1, (h * w) // 2000)
        base = felzenszwalb(img, scale=cfg.scale, sigma=cfg.sigma, min_size=min_size)
        base = _connected(base)
        cuts = merge_hierarchy(base, rgb2lab(img), cfg.levels)
        maps, seen = [], set()
        for root in cuts:
            m = relabel_consecutive(root[base].astype(np.int32) + 1)
            key = int(m.max())
            if key in seen:  # a level the base partition could not reach twice
                continue
            seen.add(key)
            maps.append(m)
        return maps

    def __call__(self, rgb: np.ndarray) -> Segmentation:
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise SdfsegError(f"classical segmenter: expected an [H, W, 3] image, got shape {rgb.shape}")
        maps = self.hierarchy(rgb[..., :3])
        counts = [int(m.max()) for m in maps]
        pick = int(np.argmin([abs(c - self.config.instance_segments) for c in counts]))
        return Segmentation(instance=maps[pick], masks=nested_maskset(maps))


def _connected(labels: np.ndarray) -> np.ndarray:
    """Split disconnected segments into connected ones; ids 0..R-1."""
    out = np.zeros(labels.shape, dtype=np.int64)
    nxt = 0
    for i, sl in enumerate(ndimage.find_objects(labels + 1)):
        if sl is None:
            continue
        comp, k = ndimage.label(labels[sl] == i)
        region = out[sl]
        region[comp > 0] = comp[comp > 0] - 1 + nxt
        nxt += k
    return out


def nested_maskset(maps: list[np.ndarray]) -> MaskSet:
    """Every distinct segment of the partitions ``maps`` (int ``[H, W]``, ids >= 1) as one MaskSet."""
    h, w = maps[0].shape
    seen, masks = set(), []
    for m in maps:
        for i, sl in enumerate(ndimage.find_objects(m), start=1):
            if sl is None:
                continue
            crop = m[sl] == i
            key = (sl[0].start, sl[1].start, crop.shape, np.packbits(crop).tobytes())
            if key in seen:
                continue
            seen.add(key)
            full = np.zeros((h, w), dtype=bool)
            full[sl] = crop
            masks.append(full)
    return MaskSet.from_masks(masks, h, w)
