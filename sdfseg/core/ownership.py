"""Surface ownership grid: which instance owns the scene surface in each voxel.

A method may end a run with an :class:`OwnershipGrid` (ClusteringSDF: the multi-view vote of
:mod:`sdfseg.methods.clustering.ownership`). It edits the channel SDFs (:meth:`OwnershipGrid.apply`):
at points of a voxel owned by instance ``t`` (background: the background channels) the lowest channel
of ``t`` takes the scene SDF (the min over channels) and every other column is pushed above it, so the
scene surface is unchanged and only who owns it changes. Rendering (instance and semantic maps) and
mesh export both follow the edited field (:func:`follow_ownership`), so maps and meshes agree.

A grid may also carry a :class:`ChannelSplit` (ClusteringSDF's split step): regions where one object's
channels hand their surface to a spare channel before the vote's edit, so two objects trained into
one channel become two instances without moving any surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import SdfsegError
from ..io import save_npz_atomic

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


_NEIGHBOURS = torch.stack(torch.meshgrid(*[torch.arange(-1, 2)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
"""The 27 offsets of a voxel's ``3^3`` neighbourhood (itself included)."""


def voxel_lookup(values: torch.Tensor, x: torch.Tensor, radius: float, resolution: int) -> torch.Tensor:
    """``values [G^3]`` (flat, x-major) at the voxels of points ``x [P, 3]``; -1 outside the grid."""
    g = resolution
    v = voxel_index(x.detach(), radius, g)
    inside = ((v >= 0) & (v < g)).all(dim=-1)
    t = values.to(x.device)[flat_voxel(v.clamp(0, g - 1), g)]
    return torch.where(inside, t, torch.full_like(t, -1))


@dataclass
class ChannelSplit:
    """Regions of space where an object instance's channels hand their surface to a spare channel.

    ``region [G^3]`` is -1 or the spare channel that takes over in that voxel; ``source [K]`` is, per
    spare channel, the instance id whose channels it takes over from (-1 for the other channels).
    ``fold [K]`` (optional): per spare channel that owned background surface, the background channel that
    takes that surface first (its column becomes the union of both), -1 for the others.
    ``members [K]`` (optional): each channel's instance id when the split was made. The source's channels
    are found by it, so a source whose own remaining piece later owns too little surface to stay an object
    (its channels turned background, instance 0) still hands its split-off pieces to their spare channels.
    None (grids written before it): the instance ids given to :meth:`apply`.
    """

    region: torch.Tensor
    resolution: int
    radius: float
    source: torch.Tensor
    fold: Optional[torch.Tensor] = None
    members: Optional[torch.Tensor] = None

    def apply(self, x: torch.Tensor, sdf: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
        """Edited channel SDFs ``[P, K]``: in the region of spare channel ``c`` (source instance ``r``),
        column ``c`` is the union (min) of ``r``'s channels and those lie at least :data:`MARGIN` above
        it and above one voxel's width (no zero set of their own there); outside its region column ``c``
        is at least :data:`MARGIN` above the other columns and one voxel's width above 0. The scene SDF
        (min over columns) is unchanged wherever the spare channel did not hold it before.
        ``instance [K]``: each channel's instance id, the spare channels' own included. A folded spare
        channel's own surface goes to its fold target first, so the scene SDF is unchanged there too."""
        if self.fold is not None:
            cols = list(sdf.unbind(dim=-1))  # out of place: the normals take gradients through this
            for c in torch.nonzero(self.fold >= 0).flatten().tolist():
                t = int(self.fold[c])
                cols[t] = torch.minimum(cols[t], cols[c])
            sdf = torch.stack(cols, dim=-1)
        dest = voxel_lookup(self.region, x, self.radius, self.resolution)
        source = self.source.to(sdf.device)
        spare = source >= 0
        instance = (instance if self.members is None else self.members).to(sdf.device)
        above = 2.0 * self.radius / self.resolution
        others = torch.where(spare[None, :], torch.full_like(sdf, float("inf")), sdf).min(dim=-1).values
        out = sdf.clone()
        for c in torch.nonzero(spare).flatten().tolist():
            members = (instance == source[c]) & ~spare
            here = dest == c
            union = sdf[:, members].min(dim=-1).values if bool(members.any()) else torch.full_like(others, float("inf"))
            out[:, c] = torch.where(here, union, torch.maximum(sdf[:, c], torch.clamp(others + MARGIN, min=above)))
            pushed = torch.maximum(sdf[:, members], torch.clamp(union + MARGIN, min=above)[:, None])
            out[:, members] = torch.where(here[:, None], pushed, sdf[:, members])
        return out

    def to(self, device) -> "ChannelSplit":
        """The same split with its tensors on ``device``."""
        return replace(self, region=self.region.to(device), source=self.source.to(device),
                       fold=None if self.fold is None else self.fold.to(device),
                       members=None if self.members is None else self.members.to(device))

    def arrays(self) -> dict[str, np.ndarray]:
        extra = {} if self.fold is None else {"split_fold": self.fold.cpu().numpy().astype(np.int64)}
        if self.members is not None:
            extra["split_members"] = self.members.cpu().numpy().astype(np.int64)
        return {"split_region": self.region.cpu().numpy().astype(np.int32),
                "split_resolution": np.int64(self.resolution), "split_radius": np.float64(self.radius),
                "split_source": self.source.cpu().numpy().astype(np.int64), **extra}

    @staticmethod
    def from_arrays(z) -> Optional["ChannelSplit"]:
        if "split_region" not in z:
            return None
        fold = torch.as_tensor(z["split_fold"].astype(np.int64)) if "split_fold" in z else None
        members = torch.as_tensor(z["split_members"].astype(np.int64)) if "split_members" in z else None
        return ChannelSplit(torch.as_tensor(z["split_region"].astype(np.int64)), int(z["split_resolution"]),
                            float(z["split_radius"]), torch.as_tensor(z["split_source"].astype(np.int64)), fold,
                            members)


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
    split: Optional[ChannelSplit] = None
    """Applied before the vote's edit (:class:`ChannelSplit`); None: no object is split."""
    refine: bool = False
    """Boundary voxels (decided, with a 26-neighbour decided otherwise) are not given whole to their
    owner: a point there goes to whichever owner of the voxel's ``3^3`` neighbourhood has the lowest
    channel SDF at it, so the channels' geometry draws the border inside the voxel."""
    _boundary: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)

    def boundary(self) -> torch.Tensor:
        """``[G^3]`` int8: 1 where a decided voxel has a 26-neighbour with another decision (computed once)."""
        if self._boundary is None:
            g = self.resolution
            t = self.target.reshape(g, g, g)
            padded = torch.nn.functional.pad(t, (1, 1, 1, 1, 1, 1), value=-1)
            b = torch.zeros_like(t, dtype=torch.bool)
            for dx, dy, dz in _NEIGHBOURS.tolist():
                n = padded[1 + dx:1 + dx + g, 1 + dy:1 + dy + g, 1 + dz:1 + dz + g]
                b |= (n >= 0) & (n != t)
            self._boundary = (b & (t >= 0)).reshape(-1).to(torch.int8)
        return self._boundary

    def refined_owner(self, x: torch.Tensor, sdf: torch.Tensor, instance: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Owner ``[P]`` with :attr:`refine`: ``t`` (:meth:`lookup`) except at points of boundary voxels,
        which go to the owner in their voxel's neighbourhood whose lowest channel SDF is the lowest there.
        ``sdf [P, K]`` (split applied), ``instance [K]`` each channel's instance id."""
        at = voxel_lookup(self.boundary(), x, self.radius, self.resolution) > 0
        if not bool(at.any()):
            return t
        g = self.resolution
        nb = voxel_index(x.detach()[at], self.radius, g)[:, None, :] + _NEIGHBOURS.to(x.device)[None]
        inside = ((nb >= 0) & (nb < g)).all(dim=-1)
        owners = torch.where(inside, self.target[flat_voxel(nb.clamp(0, g - 1), g)], torch.full_like(inside, -1,
                             dtype=torch.long))
        candidate = (owners[:, :, None] == instance[None, None, :]).any(dim=1)  # [Pb, K]
        best = torch.where(candidate, sdf[at], torch.full_like(sdf[at], float("inf"))).argmin(dim=-1)
        out = t.clone()
        out[at] = instance[best]
        return out

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """Owner ``[P]`` of the voxels of points ``x [P, 3]`` (-1 outside the grid or without votes)."""
        return voxel_lookup(self.target, x, self.radius, self.resolution)

    def apply(self, x: torch.Tensor, sdf: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
        """Edited channel SDFs ``[P, K]``: where the voxel of ``x`` has an owner whose surface lies within
        :attr:`max_gap` of the scene surface there, the owner's lowest channel equals the scene SDF and
        the others lie at least :data:`MARGIN` above it. ``instance [K]`` is each channel's instance id
        (0 = background channel)."""
        if self.split is not None:
            sdf = self.split.apply(x, sdf, instance)
        instance = instance.to(sdf.device)
        t = self.lookup(x)
        if self.refine:
            t = self.refined_owner(x, sdf, instance, t)
        edit = t >= 0
        if not bool(edit.any()):
            return sdf
        s_min = sdf.min(dim=-1).values
        mine = torch.where(instance[None, :] == t[:, None], sdf, torch.full_like(sdf, float("inf")))
        group_min, owner = mine.min(dim=-1)
        # gate; an owner with no channel left (an instance dropped after the vote) has no say
        edit = edit & torch.isfinite(group_min) & (group_min - s_min <= self.max_gap)
        own = torch.nn.functional.one_hot(owner, sdf.shape[-1]).bool() & edit[:, None]
        out = torch.where(edit[:, None] & ~own, torch.maximum(sdf, s_min[:, None] + MARGIN), sdf)
        return torch.where(own, s_min[:, None], out)

    def to(self, device) -> "OwnershipGrid":
        """The same grid with its tensors on ``device`` (lookups then copy nothing to it)."""
        return replace(self, target=self.target.to(device), split=None if self.split is None else self.split.to(device),
                       _boundary=None if self._boundary is None else self._boundary.to(device))

    def save(self, path: Path) -> None:
        extra = self.split.arrays() if self.split is not None else {}
        save_npz_atomic(path, target=self.target.cpu().numpy().astype(np.int32),
                        resolution=np.int64(self.resolution), radius=np.float64(self.radius),
                        max_gap=np.float64(self.max_gap), refine=np.bool_(self.refine), **extra)

    @staticmethod
    def load(path: Path) -> "OwnershipGrid":
        try:
            with np.load(path) as z:
                return OwnershipGrid(torch.as_tensor(z["target"].astype(np.int64)), int(z["resolution"]),
                                     float(z["radius"]), float(z["max_gap"]) if "max_gap" in z else float("inf"),
                                     ChannelSplit.from_arrays(z), bool(z["refine"]) if "refine" in z else False)
        except (OSError, KeyError, ValueError) as e:
            raise SdfsegError(f"{path}: not a readable ownership grid (expected target, resolution, radius; "
                              f"split_region, split_resolution, split_radius, split_source together): {e}")


def follow_ownership(model, instance, grid: Optional[OwnershipGrid]) -> None:
    """Make ``model``'s renders and meshes follow ``grid`` (None: the channels' own ownership);
    ``instance [K]`` is each channel's instance id (0 = background channel). The grid's tensors go to the
    model's device once, not to every SDF evaluation of the renders and meshes."""
    dev = next(model.parameters(), torch.zeros(0)).device
    instance = torch.as_tensor(instance).to(dev)
    grid = None if grid is None else grid.to(dev)
    model.channel_edit = None if grid is None else (lambda x, sdf: grid.apply(x, sdf, instance))
