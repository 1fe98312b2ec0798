"""Multi-view ownership vote: which object owns each piece of the reconstructed surface.

After training, some surface is held by the wrong SDF channel: part of an object stays
with the background channel (the cold ownership softmax gives it no gradient back), or a
small second channel keeps a few views' worth of an object. The 2D masks still know
better when their evidence is pooled over views *in 3D*:

1. Sample training rays (half uniform, half on labelled pixels, re-weighted to the
   uniform density), render them and take the surface point ``o + depth * d``.
2. Each 2D mask (frame, label) is mapped to the object instance owning most of its
   object-owned rays (its *dominant* instance, as in channel merging); masks whose
   dominant holds less than ``min_purity`` of those rays (an under-segmented mask over
   two objects) say nothing. A ray votes for its mask's dominant instance; a ray with
   label 0 votes for background.
3. Votes are pooled in a voxel grid (each vote also counts in the ``kernel^3``
   neighbourhood). A voxel with votes goes to background if at least half of its votes
   say background, to its most-voted object if objects have more than ``object_share``
   of them (0.5: plain majority), and otherwise keeps the channels' ownership.
4. Geometry gate (``max_gap``): a vote counts, and a point is re-assigned, only where the
   voted owner's own SDF lies within ``max_gap`` of the scene SDF, i.e. where that object
   already models the surface. The 2D labels of small objects are dilated (they spill onto
   the floor and wall around them); without the gate those spills would paint the floor.

The result edits the channel SDFs (:meth:`OwnershipGrid.apply`): at points of a voxel
owned by instance ``t`` (background: the background channels) the lowest channel of ``t``
takes the scene SDF (the min over channels) and every other column is pushed above it, so
the scene surface is unchanged and only who owns it changes. Rendering (instance and
semantic maps) and mesh export both use the edited field, so maps and meshes agree. Votes
use the training labels only. Object instances left with (almost) no surface after the vote
count as background (:func:`.inference.drop_vanished_objects`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import SdfsegError
from .io import save_npz_atomic

MARGIN = 0.05
"""How far above the scene SDF the non-owning columns are pushed (>> the ownership temperature)."""


def voxel_index(x, radius: float, resolution: int):
    """Integer voxel coordinates ``[..., 3]`` of points ``x`` in a ``resolution^3`` grid over
    ``[-radius, radius]^3`` (numpy arrays or torch tensors; out-of-grid points get out-of-range values)."""
    v = (x + radius) / (2 * radius) * resolution
    if isinstance(v, torch.Tensor):
        return torch.floor(v).long()
    return np.floor(v).astype(np.int64)


def flat_voxel(v, resolution: int):
    """Flat index of voxel coordinates ``v [..., 3]`` (x-major, as :attr:`OwnershipGrid.target`)."""
    return (v[..., 0] * resolution + v[..., 1]) * resolution + v[..., 2]


def segment_owner_counts(segment: np.ndarray, owner: np.ndarray, n_segments: int, n_owners: int) -> np.ndarray:
    """``counts [n_segments, n_owners]``: how many rays of each mask (ids ``segment [N]``) each owner
    (``owner [N]``) holds."""
    counts = np.zeros((n_segments, n_owners))
    np.add.at(counts, (segment, owner), 1.0)
    return counts


@dataclass
class OwnershipGrid:
    """Voxel grid over ``[-radius, radius]^3``: ``target [G^3]`` is -1 (no say), 0 (background)
    or the instance id (= representative channel) that owns the voxel's surface."""

    target: torch.Tensor
    resolution: int
    radius: float
    max_gap: float = float("inf")
    """Geometry gate: a point is re-assigned only where the owner's own SDF is within this of the
    scene SDF (the owner already models a surface there; a dilated 2D label does not paint it
    onto the floor next to it)."""

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """Owner ``[P]`` of the voxels of points ``x [P, 3]`` (-1 outside the grid or without votes)."""
        g = self.resolution
        v = voxel_index(x.detach(), self.radius, g)
        inside = ((v >= 0) & (v < g)).all(dim=-1)
        t = self.target.to(x.device)[flat_voxel(v.clamp(0, g - 1), g)]
        return torch.where(inside, t, torch.full_like(t, -1))

    def apply(self, x: torch.Tensor, sdf: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
        """Edited channel SDFs ``[P, K]``: where the voxel of ``x`` has an owner whose surface lies within
        :attr:`max_gap` of the scene surface there, the owner's lowest channel equals the scene SDF and
        the others lie at least :data:`MARGIN` above it. ``instance [K]`` is each channel's instance id
        (0 = background channel)."""
        t = self.lookup(x)
        edit = t >= 0
        if not bool(edit.any()):
            return sdf
        s_min = sdf.min(dim=-1).values
        mine = torch.where(instance.to(sdf.device)[None, :] == t[:, None], sdf, torch.full_like(sdf, float("inf")))
        group_min, owner = mine.min(dim=-1)
        # gate; an owner with no channel left (an instance dropped after the vote) has no say
        edit = edit & torch.isfinite(group_min) & (group_min - s_min <= self.max_gap)
        own = torch.nn.functional.one_hot(owner, sdf.shape[-1]).bool() & edit[:, None]
        out = torch.where(edit[:, None] & ~own, torch.maximum(sdf, s_min[:, None] + MARGIN), sdf)
        return torch.where(own, s_min[:, None], out)

    def save(self, path: Path) -> None:
        save_npz_atomic(path, target=self.target.cpu().numpy().astype(np.int32),
                        resolution=np.int64(self.resolution), radius=np.float64(self.radius),
                        max_gap=np.float64(self.max_gap))

    @staticmethod
    def load(path: Path) -> "OwnershipGrid":
        try:
            with np.load(path) as z:
                return OwnershipGrid(torch.as_tensor(z["target"].astype(np.int64)), int(z["resolution"]),
                                     float(z["radius"]), float(z["max_gap"]) if "max_gap" in z else float("inf"))
        except (OSError, KeyError, ValueError) as e:
            raise SdfsegError(f"{path}: not a readable ownership grid (expected target, resolution, radius): {e}")


def mask_votes(instance_owner: np.ndarray, segment: np.ndarray, min_purity: float) -> np.ndarray:
    """Vote of each ray ``[N]``: its mask's dominant instance, 0 for background rays (``segment == -1``),
    -1 (no vote) for unsupervised rays (``segment < -1``) and when the mask has no object-owned ray
    or its dominant holds less than ``min_purity`` of them.

    ``instance_owner [N]`` is the instance id owning each ray (0 = a background channel).
    """
    vote = np.where(segment == -1, 0, -1)
    labelled = segment >= 0
    if not labelled.any():
        return vote
    _, seg = np.unique(segment[labelled], return_inverse=True)
    own = instance_owner[labelled]
    obj = own > 0
    counts = segment_owner_counts(seg[obj], own[obj], seg.max() + 1, int(instance_owner.max()) + 1)
    total = counts.sum(axis=1)
    dominant = counts.argmax(axis=1)
    ok = (total > 0) & (counts.max(axis=1) >= min_purity * np.maximum(total, 1))
    vote[labelled] = np.where(ok[seg], dominant[seg], -1)
    return vote


def vote_grid(points: np.ndarray, vote: np.ndarray, weight: np.ndarray, resolution: int, radius: float,
              kernel: int = 3, object_share: float = 0.5, max_gap: float = float("inf")) -> OwnershipGrid:
    """Pool ray votes ``[N]`` (-1 = none) at surface ``points [N, 3]`` into an :class:`OwnershipGrid`.

    Each vote counts ``weight`` in its voxel and the ``kernel^3`` neighbours. A voxel goes to its
    most-voted object when objects have more than ``object_share`` of its votes, to background when
    background has at least half of them; otherwise (``object_share > 0.5``) it has no say.
    ``max_gap`` is the grid's geometry gate (:attr:`OwnershipGrid.max_gap`).
    """
    g = resolution
    keep = vote >= 0
    p, v, w = points[keep], vote[keep], weight[keep]
    vox = voxel_index(p, radius, g)
    r = kernel // 2
    offs = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    nb = vox[:, None, :] + offs[None]
    inside = ((nb >= 0) & (nb < g)).all(axis=-1)
    flat = flat_voxel(nb, g)[inside]
    cls = np.broadcast_to(v[:, None], inside.shape)[inside]
    wt = np.broadcast_to(w[:, None], inside.shape)[inside]
    target = torch.full((g ** 3,), -1, dtype=torch.long)
    if flat.size == 0:
        return OwnershipGrid(target, g, radius, max_gap)
    cells, idx = np.unique(flat, return_inverse=True)
    counts = np.zeros((cells.size, int(v.max()) + 1))
    np.add.at(counts, (idx, cls), wt)
    total = counts.sum(axis=1)
    best = counts[:, 1:].argmax(axis=1) + 1 if counts.shape[1] > 1 else np.zeros(cells.size, dtype=np.int64)
    decided = np.where(total - counts[:, 0] > object_share * total, best,
                       np.where(counts[:, 0] >= 0.5 * total, 0, -1))
    target[torch.as_tensor(cells)] = torch.as_tensor(decided)
    return OwnershipGrid(target, g, radius, max_gap)
