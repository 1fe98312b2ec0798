"""Ray batches for training: camera rays, key frames, label-comprehensive sampling, id remapping.

All tensors live on one device. Pixel ``(v, u)`` of frame ``i`` is flattened to
``i * H * W + v * W + u``. Ray directions are unit vectors in normalised scene
coordinates; ``ray_scale = |K^-1 [u, v, 1]|`` converts z-depth to distance along
the ray (``t = z * ray_scale``).

The sampler keeps the scene's compact storage on the device (uint8 colours, float16
depth, int8 normals, uint8 confidences, labels in the small integer type they come in;
on the CPU these tensors share the arrays' memory) and decodes only the rays of a
batch in :meth:`RaySampler.gather`: a :class:`Batch` holds float32 colours, depth,
normals and confidences and int64 labels, as it always did. Training labels come as
:class:`~sdfseg.data.label_maps.LabelMaps` (the source's maps, per-frame id tables, the
confidence mask) and are looked up per batch; a frame's pixels sorted by label are sorted
again each time the frame is sampled. So the sampler holds no per-pixel array of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .label_maps import DeviceLabelMaps, LabelMaps, as_label_maps, frame_ids
from .scene import CONFIDENCE_DTYPE, CONFIDENCE_STEPS, NORMAL_DTYPE, Scene, label_dtype

REMAP_ID_RANGE = 100000
"""Randomly remapped instance ids are drawn from ``1 .. REMAP_ID_RANGE - 1`` (int32 after remapping)."""

EDGE_DEPTH_JUMP = 0.05
"""A depth edge: two neighbouring pixels with depth whose depths differ by more than this share of the nearer one."""


def edge_pixels(depth: Optional[np.ndarray], labels: Optional[np.ndarray]) -> np.ndarray:
    """Pixels (within-frame indices, int32) at the edges of one ``[H, W]`` frame: where the depth jumps (both
    pixels with depth, a difference over :data:`EDGE_DEPTH_JUMP` of the nearer depth) or the label changes (both
    labels supervised, ``>= 0``), on either side of the edge (8-neighbourhood). Either map may be None."""
    shape = (depth if depth is not None else labels).shape
    edge = np.zeros(shape, dtype=bool)
    # the 4 neighbour offsets of one side; marking both pixels of a pair covers the 8-neighbourhood
    for dv, du in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = (slice(0, shape[0] - dv), slice(max(0, -du), shape[1] - max(0, du)))
        b = (slice(dv, shape[0]), slice(max(0, du), shape[1] - max(0, -du)))
        pair = np.zeros(edge[a].shape, dtype=bool)
        if depth is not None:
            da, db = depth[a].astype(np.float32), depth[b].astype(np.float32)
            ok = (da > 0) & (db > 0)
            pair |= ok & (np.abs(da - db) > EDGE_DEPTH_JUMP * np.minimum(da, db))
        if labels is not None:
            la, lb = labels[a], labels[b]
            pair |= (la >= 0) & (lb >= 0) & (la != lb)
        edge[a] |= pair
        edge[b] |= pair
    return np.flatnonzero(edge.reshape(-1)).astype(np.int32)


def pixel_rays(c2w: torch.Tensor, K: torch.Tensor, v: torch.Tensor, u: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays through pixel centres.

    Args:
        c2w: ``[R, 4, 4]`` camera-to-world (OpenCV axes). K: ``[R, 3, 3]``. v, u: ``[R]`` pixel rows/cols.
    Returns:
        origins ``[R, 3]``, unit directions ``[R, 3]``, ray_scale ``[R]`` (z-depth -> ray distance).
    """
    x = (u.float() + 0.5 - K[:, 0, 2]) / K[:, 0, 0]
    y = (v.float() + 0.5 - K[:, 1, 2]) / K[:, 1, 1]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    scale = d_cam.norm(dim=-1)
    d_world = torch.einsum("rij,rj->ri", c2w[:, :3, :3], d_cam / scale[:, None])
    return c2w[:, :3, 3].clone(), d_world, scale


def view_rays(c2w, K, hw: tuple[int, int], device, u=None, v=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays of one camera (``c2w [4, 4]``, ``K [3, 3]``, image ``hw``): through every pixel, row-major, or
    through the pixels of columns ``u`` and rows ``v`` (arrays). Origins, unit directions ``[N, 3]`` and
    the ray scale ``[N]`` (z-depth -> ray distance); see :func:`pixel_rays`."""
    if u is None:
        h, w = hw
        vv, uu = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        u, v = uu.reshape(-1), vv.reshape(-1)
    else:
        u, v = torch.as_tensor(u, device=device), torch.as_tensor(v, device=device)
    n = u.numel()
    c2w_t = torch.as_tensor(c2w, dtype=torch.float32, device=device)[None].expand(n, 4, 4)
    k_t = torch.as_tensor(K, dtype=torch.float32, device=device)[None].expand(n, 3, 3)
    return pixel_rays(c2w_t, k_t, v, u)


def remap_frame_table(frame: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One frame's distinct ids (sorted, int64) and random distinct new ids for them (0 stays 0), int64."""
    ids = frame_ids(frame)
    new = rng.choice(np.arange(1, REMAP_ID_RANGE), size=len(ids), replace=False)
    new[ids == 0] = 0
    return ids, new.astype(np.int64)


def remap_frame_ids(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame's non-zero ids ``[H, W]`` -> random distinct new ids (0 stays 0), int32 ``[H, W]``
    (:func:`remap_frame_table` applied)."""
    ids, new = remap_frame_table(frame, rng)
    return new.astype(np.int32)[np.searchsorted(ids, frame)].reshape(np.shape(frame))


def remap_instance_ids(inst: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give each frame's non-zero instance ids random distinct new ids (0 stays 0).

    Args: inst ``[N, H, W]`` int. Returns the remapped int32 array (ids below :data:`REMAP_ID_RANGE`),
    frame by frame :func:`remap_frame_ids` with ``rng``. IDs carry no meaning across frames afterwards
    (the method must not rely on them).
    """
    out = np.zeros(inst.shape, dtype=np.int32)
    for i in range(inst.shape[0]):
        out[i] = remap_frame_ids(inst[i], rng)
    return out


def select_keyframes(labels, frames: np.ndarray, ratio: float) -> np.ndarray:
    """Frames (subset of ``frames``) with the most unique labels > 0: the top ``ratio``, at least one.
    ``labels``: ``[N, H, W]`` array or :class:`~sdfseg.data.label_maps.LabelMaps`."""
    return _top_frames([int((np.unique(labels[f]) > 0).sum()) for f in frames], frames, ratio)


def _top_frames(counts, frames: np.ndarray, ratio: float) -> np.ndarray:
    order = np.argsort(-np.asarray(counts, dtype=np.int64), kind="stable")
    n = max(1, int(round(ratio * len(frames))))
    return frames[order[:n]]


def _device_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """``a`` on ``device`` in its own dtype, but unsigned 16/32-bit ids (which torch barely supports) as the
    smallest type holding them that the device can index: uint16 stays on the CPU (shared, not copied); CUDA has
    no uint16 indexing (torch 2.11: ``"index_cuda" not implemented for 'UInt16'``), so there ids above 32767
    become int32. On the CPU a contiguous array is shared, not copied."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "u" and a.dtype.itemsize > 1:
        dt = label_dtype(0, int(a.max())) if a.size else np.dtype(np.int32)
        if dt == np.uint16 and torch.device(device).type != "cpu":
            dt = np.dtype(np.int32)
        a = a.astype(dt, copy=False)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8)
    return torch.as_tensor(a, device=device)


_LUTS: dict[tuple[int, str], torch.Tensor] = {}


def _byte_lut(steps: int, device: torch.device) -> torch.Tensor:
    """float32 ``[256]``: ``v / steps`` for every byte ``v``, divided on the CPU (correctly rounded, the same
    float32 as decoding on the host; CUDA divides by a scalar through its reciprocal), cached per device."""
    key = (steps, str(device))
    if key not in _LUTS:
        _LUTS[key] = torch.from_numpy(np.arange(256, dtype=np.float32) / np.float32(steps)).to(device)
    return _LUTS[key]


def decode_rgb_tensor(x: torch.Tensor) -> torch.Tensor:
    """float32 colours of uint8 (``v / 255``, bit for bit as :func:`~sdfseg.data.scene.decode_rgb`) or float
    rays ``[R, 3]``."""
    return _byte_lut(255, x.device)[x.long()] if x.dtype == torch.uint8 else x.float()


def decode_confidence_tensor(x: torch.Tensor) -> torch.Tensor:
    """float32 confidences of uint8 (``v / 240``, bit for bit as :func:`~sdfseg.data.scene.decode_confidence`)
    or float rays ``[R]``."""
    return _byte_lut(CONFIDENCE_STEPS, x.device)[x.long()] if x.dtype == _TORCH_CONFIDENCE else x.float()


def decode_normals_tensor(x: torch.Tensor) -> torch.Tensor:
    """float32 unit normals of int8 (``v / 127``, renormalised; zero stays zero) or float rays ``[R, 3]``."""
    if x.dtype != _TORCH_NORMAL:
        return x.float()
    f = x.float()
    norm = f.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, f / norm.clamp_min(1e-12), torch.zeros_like(f))


_TORCH_CONFIDENCE = torch.from_numpy(np.zeros(0, CONFIDENCE_DTYPE)).dtype
_TORCH_NORMAL = torch.from_numpy(np.zeros(0, NORMAL_DTYPE)).dtype


@dataclass
class Batch:
    """One training batch of ``R`` rays (main frame first, then extra views)."""

    origins: torch.Tensor  # [R, 3]
    dirs: torch.Tensor  # [R, 3]
    ray_scale: torch.Tensor  # [R]
    rgb: torch.Tensor  # [R, 3]
    frame: torch.Tensor  # [R] frame index
    view: torch.Tensor  # [R] 0 = main view, 1.. = extra views
    label: torch.Tensor  # [R] segmentation label (instance or semantic id; -1 = ignore)
    semantic: torch.Tensor  # [R] noisy semantic class (0 = void)
    confidence: torch.Tensor  # [R]
    depth: Optional[torch.Tensor] = None  # [R] z-depth, normalised units, 0 invalid
    normal: Optional[torch.Tensor] = None  # [R, 3] camera-frame normals
    c2w: Optional[torch.Tensor] = None  # [R, 4, 4]
    patch: Optional[torch.Tensor] = None  # [R] patch id in the frame's PatchHierarchy (-1 = no mask); feature rays
    pixel: Optional[torch.Tensor] = None  # [R, 2] (y, x) pixel of each ray; feature rays


class RaySampler:
    """Label-comprehensive ray sampling over the training frames of a normalised scene.

    Args:
        scene: normalised scene. labels: ``[N, H, W]`` per-frame training labels, an int array or
        :class:`~sdfseg.data.label_maps.LabelMaps` (instance ids, or semantic ids in semantic mode;
        0 = background or void as the caller decides; -1 = not supervised: no label rays are spent on it
        and the losses ignore it). semantic: ``[N, H, W]`` noisy semantic classes (array or LabelMaps).
        confidence: ``[N, H, W]`` confidences (uint8 ``v / 240`` or float) or None.

    The arrays are kept in the dtypes they come in (see the module docstring); labels given as
    :class:`~sdfseg.data.label_maps.LabelMaps` are looked up per batch (no copy of every map).
    Per training frame only the label segments (ids, starts, counts: a few numbers per label) are
    kept; the frame's pixels sorted by label, which area-proportional sampling indexes, are sorted
    again (a stable radix sort of one-byte keys) whenever the frame is sampled, the same order every
    time. :attr:`labels` / :attr:`semantic` give the flat ``[N * H * W]`` tensors, materialised on
    access when the labels are looked up (:meth:`frame_labels` gives one frame).
    """

    def __init__(self, scene: Scene, labels, semantic, confidence: Optional[np.ndarray],
                 device: torch.device, keyframe_ratio: float = 0.1, replace_prob: float = 0.2, seed: int = 0,
                 depth_rays: int = 0, edge_rays: int = 0, depth_edge_rays: int = 0):
        self.device = device
        self.label_maps: LabelMaps = as_label_maps(labels)
        self.semantic_maps: LabelMaps = as_label_maps(semantic)
        n, h, w = self.label_maps.shape
        self.h, self.w = h, w
        self.frames = np.asarray(scene.split["train"], dtype=np.int64)
        self.replace_prob = replace_prob
        self.rng = np.random.default_rng(seed)
        self._shared: dict[int, tuple[np.ndarray, torch.Tensor]] = {}  # one device tensor per array
        t = lambda a: None if a is None else self._tensor(a)
        self.rgb = t(scene.rgb)
        self.confidence = t(confidence)  # None: confidence 1
        self.depth = t(scene.depth)
        self.normals = t(scene.normals)
        self._label_rays = DeviceLabelMaps(self.label_maps, self._tensor, device)
        self._semantic_rays = (self._label_rays if self.semantic_maps is self.label_maps
                               else DeviceLabelMaps(self.semantic_maps, self._tensor, device))
        self.c2w = torch.as_tensor(scene.c2w, dtype=torch.float32, device=device)
        self.K = torch.as_tensor(scene.intrinsics, dtype=torch.float32, device=device)
        # per frame: the label segments (ids >= 0, their starts in the frame's pixels sorted by label, their
        # sizes), for area-proportional sampling
        self._segments: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for f in self.frames:
            codes, values = self.label_maps.frame_codes(int(f))
            counts = np.bincount(codes, minlength=values.size)
            present = counts > 0
            ids, counts = values[present], counts[present]
            starts = np.cumsum(counts) - counts
            keep = ids >= 0  # unsupervised pixels get no label rays
            self._segments[int(f)] = (ids[keep], starts[keep], counts[keep])
        self._has_labels = {int(f): bool((self._segments[int(f)][0] > 0).any()) for f in self.frames}
        self.keyframes = _top_frames([int((self._segments[int(f)][0] > 0).sum()) for f in self.frames], self.frames,
                                     keyframe_ratio)
        self._epoch: list[int] = []
        # sparse depth: per frame the pixels with a depth value, for depth_rays more rays through them
        self.depth_rays = depth_rays if scene.depth is not None else 0
        self._depth_pixels = {int(f): np.flatnonzero(np.asarray(scene.depth[int(f)]).reshape(-1) > 0)
                              for f in self.frames} if self.depth_rays > 0 else {}
        # edges: of the uniform rays, edge_rays through the main frame's depth and label edges (found on first use)
        self.edge_rays = edge_rays
        self._scene_depth = scene.depth if scene.depth_kind != "sparse" else None
        self._edges: dict[int, np.ndarray] = {}
        # geometry-only rays through the main frame's depth edges, on top of the others (labels not used)
        self.depth_edge_rays = depth_edge_rays if scene.depth is not None and scene.depth_kind == "metric" else 0
        self._depth_edges: dict[int, np.ndarray] = {}

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        """``a`` flattened over its frames and pixels (``[N * H * W, ...]``) on the device, one tensor per array
        (labels, semantic maps and confidences may share them)."""
        key = id(a)
        if key not in self._shared:
            flat = a.reshape((-1,) + tuple(a.shape[3:]))
            self._shared[key] = (a, _device_tensor(flat, self.device))
        return self._shared[key][1]

    @property
    def labels(self) -> torch.Tensor:
        """Flat ``[N * H * W]`` training labels on the device; when they are looked up per batch this
        materialises every map (the same tensor while a caller holds it): prefer :meth:`frame_labels`."""
        return self._label_rays.full(lambda a: _device_tensor(a.reshape(-1), self.device))

    @property
    def semantic(self) -> torch.Tensor:
        """Flat ``[N * H * W]`` semantic classes of the training labels on the device (see :attr:`labels`)."""
        return self._semantic_rays.full(lambda a: _device_tensor(a.reshape(-1), self.device))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The per-pixel tensors and label tables the sampler holds, by name, each once (on the CPU most share the
        scene's arrays)."""
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()

        def add(name: str, x: Optional[torch.Tensor]) -> None:
            if x is not None and id(x) not in seen:
                seen.add(id(x))
                out[name] = x

        for name in ("rgb", "depth", "normals", "confidence"):
            add(name, getattr(self, name))
        for name, d in (("labels", self._label_rays), ("semantic", self._semantic_rays)):
            add(f"{name}.base", d.base)
            add(f"{name}.mask", d.mask)
            add(f"{name}.keys", d.keys)
            add(f"{name}.values", d.values)
        return out

    def frame_labels(self, f: int) -> np.ndarray:
        """Training labels of frame ``f``, ``[H, W]``."""
        return self.label_maps.frame(int(f))

    def frame_order(self, f: int) -> np.ndarray:
        """Pixels of frame ``f`` (within-frame indices, int64 ``[H * W]``) sorted by training label, each label's
        pixels in raster order (a stable sort of the labels; the segments of :attr:`_segments` index it)."""
        codes, _ = self.label_maps.frame_codes(int(f))
        return np.argsort(codes, kind="stable")

    def next_frame(self) -> int:
        """Next training frame: epoch order, replaced by a random key frame when unlabelled or by chance."""
        if not self._epoch:
            self._epoch = list(self.rng.permutation(self.frames))
        f = int(self._epoch.pop())
        if not self._has_labels[f] or self.rng.random() < self.replace_prob:
            f = int(self.rng.choice(self.keyframes))
        return f

    def frame_pixels(self, f: int, n_random: int, n_label: int) -> np.ndarray:
        """Pixel indices (within frame) ``[n_random + ~n_label]``: uniform + per-label in proportion to area."""
        ids, starts, counts = self._segments[f]
        rand = self.rng.integers(0, self.h * self.w, size=n_random)
        if n_label <= 0 or ids.size == 0:
            return rand
        alloc = np.maximum(1, np.round(n_label * counts / counts.sum()).astype(np.int64))
        seg = np.repeat(np.arange(len(ids)), alloc)
        offs = (self.rng.random(seg.size) * counts[seg]).astype(np.int64)
        return np.concatenate([rand, self.frame_order(f)[starts[seg] + offs]])

    def frame_edges(self, f: int) -> np.ndarray:
        """Edge pixels of frame ``f`` (:func:`edge_pixels` of its sensor depth and training labels), cached."""
        if f not in self._edges:
            depth = None if self._scene_depth is None else np.asarray(self._scene_depth[f])
            self._edges[f] = edge_pixels(depth, self.frame_labels(f))
        return self._edges[f]

    def frame_depth_edges(self, f: int) -> np.ndarray:
        """Depth-edge pixels of frame ``f`` (:func:`edge_pixels` of its sensor depth alone), cached."""
        if f not in self._depth_edges:
            self._depth_edges[f] = edge_pixels(np.asarray(self._scene_depth[f]), None)
        return self._depth_edges[f]

    def foreground_pixels(self, f: int, n: int) -> np.ndarray:
        """``n`` pixels of frame ``f``, preferring labelled (non-zero) pixels."""
        ids, starts, counts = self._segments[f]
        fg = ids > 0
        if not fg.any():
            return self.rng.integers(0, self.h * self.w, size=n)
        # the labels > 0 are the last segments: their pixels are the tail of the sorted order
        first = int(starts[fg][0])
        pool_size = int(counts[fg].sum())
        pick = self.rng.integers(0, pool_size, size=n)
        return self.frame_order(f)[first + pick]

    def gather(self, frame_ids: np.ndarray, pix: np.ndarray, view: np.ndarray) -> Batch:
        """Build a :class:`Batch` for pixels ``pix`` (within-frame indices) of frames ``frame_ids``."""
        dev = self.device
        fr = torch.as_tensor(frame_ids, device=dev, dtype=torch.int64)
        px = torch.as_tensor(pix, device=dev, dtype=torch.int64)
        flat = fr * (self.h * self.w) + px
        v, u = px // self.w, px % self.w
        c2w = self.c2w[fr]
        o, d, s = pixel_rays(c2w, self.K[fr], v, u)
        conf = (torch.ones(flat.shape[0], device=dev) if self.confidence is None
                else decode_confidence_tensor(self.confidence[flat]))
        return Batch(origins=o, dirs=d, ray_scale=s, rgb=decode_rgb_tensor(self.rgb[flat]), frame=fr,
                     view=torch.as_tensor(view, device=dev, dtype=torch.int64), label=self._label_rays.rays(fr, flat),
                     semantic=self._semantic_rays.rays(fr, flat), confidence=conf,
                     depth=None if self.depth is None else self.depth[flat].float(),
                     normal=None if self.normals is None else decode_normals_tensor(self.normals[flat]), c2w=c2w)

    def sample(self, n_random: int, n_label: int, extra_views: int = 0, extra_rays: int = 0) -> Batch:
        """One iteration's rays: one main frame (label-comprehensive) + ``extra_views`` x ``extra_rays``."""
        f = self.next_frame()
        edges = self.frame_edges(f) if self.edge_rays > 0 else None
        n_edge = min(self.edge_rays, n_random) if edges is not None and edges.size else 0  # no edges: all uniform
        pix = [self.frame_pixels(f, n_random - n_edge, n_label)]
        if n_edge > 0:
            pix[0] = np.concatenate([pix[0], edges[self.rng.integers(0, edges.size, size=n_edge)].astype(np.int64)])
        if self.depth_rays > 0 and self._depth_pixels[f].size:
            pool = self._depth_pixels[f]
            pix[0] = np.concatenate([pix[0], pool[self.rng.integers(0, pool.size, size=self.depth_rays)]])
        n_geo = 0
        if self.depth_edge_rays > 0 and self.frame_depth_edges(f).size:
            pool, n_geo = self.frame_depth_edges(f), self.depth_edge_rays
            pix[0] = np.concatenate([pix[0], pool[self.rng.integers(0, pool.size, size=n_geo)].astype(np.int64)])
        main = pix[0].size
        frames = [np.full(pix[0].size, f)]
        views = [np.zeros(pix[0].size, dtype=np.int64)]
        if extra_views > 0:
            others = self.frames[self.frames != f]
            chosen = self.rng.choice(others, size=min(extra_views, others.size), replace=False) if others.size else []
            for j, g in enumerate(chosen, start=1):
                pix.append(self.foreground_pixels(int(g), extra_rays))
                frames.append(np.full(extra_rays, g))
                views.append(np.full(extra_rays, j))
        batch = self.gather(np.concatenate(frames), np.concatenate(pix), np.concatenate(views))
        if n_geo:  # the depth-edge rays (the main frame's last): geometry only
            batch.label, batch.semantic = batch.label.clone(), batch.semantic.clone()
            batch.label[main - n_geo:main] = -1
            batch.semantic[main - n_geo:main] = 0
        return batch
