"""Join step: two object instances of one thing class that together are the size of one such object.

After the split step a chair can be two objects: its seat and its back, whose thin posts the geometry
does not hold, seen in different views (the seat hidden under the table from behind, the back seen
over it), so the 2D masks barely link them. Each piece is much smaller than a chair, and the two of them
together are the size of one. The scene's own objects of that class say how large one is.

:func:`plan_joins`: per object instance, the box of its surface points (2nd to 98th percentile on each
axis), its extents sorted largest first; per class, the ``TYPICAL_QUANTILE`` of each sorted extent over
the class's instances. Two instances of one class join when the box of their points together fits in
``fit`` times the class's typical extents (largest extent against largest, and so on: no axis is taken
to be up). Pairs are joined smallest union first, and a group grows only while all its points still fit,
so two whole chairs side by side (twice as long as one) never join.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ...core.model import SceneModel
from ...core.ownership import OwnershipGrid
from ...data.rays import RaySampler
from ..outputs import ChannelTable
from .channels import surface_rays

TYPICAL_QUANTILE = 75.0
"""Percentile of an extent over a class's instances taken as one object's: some of them are pieces."""

MIN_POINTS = 10
"""An instance with fewer surface points among the rays is not sized (nor joined)."""


def sorted_extent(points: np.ndarray) -> np.ndarray:
    """Extents ``[3]`` of the 2nd-98th percentile box of ``points [N, 3]``, largest first."""
    lo, hi = np.percentile(points, [2.0, 98.0], axis=0)
    return np.sort(hi - lo)[::-1]


def plan_joins(instance: np.ndarray, points: np.ndarray, classes: np.ndarray, fit: float) -> dict[int, int]:
    """Which instances join which: ``{instance: the instance it joins}``. ``instance [N]`` (> 0) and
    ``points [N, 3]`` per ray; ``classes [K]`` the class of each instance id (indexed by id)."""
    size = {int(i): int(c) for i, c in zip(*np.unique(instance, return_counts=True))}
    ids = [i for i, c in size.items() if c >= MIN_POINTS]
    ext = {i: sorted_extent(points[instance == i]) for i in ids}
    rep = {i: i for i in ids}  # union-find over instance ids

    def root(i: int) -> int:
        while rep[i] != i:
            i = rep[i]
        return i

    joins: dict[int, int] = {}
    for cls in np.unique(classes[ids]) if ids else []:
        members = [i for i in ids if classes[i] == cls]
        if len(members) < 2:
            continue
        typical = np.percentile(np.stack([ext[i] for i in members]), TYPICAL_QUANTILE, axis=0)
        pairs = []
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1:]:
                u = sorted_extent(points[(instance == a) | (instance == b)])
                if np.all(u <= fit * typical):
                    pairs.append((float(np.prod(u)), a, b))
        for _, a, b in sorted(pairs):
            ra, rb = root(a), root(b)
            if ra == rb:
                continue
            group = [i for i in members if root(i) in (ra, rb)]
            if not np.all(sorted_extent(points[np.isin(instance, group)]) <= fit * typical):
                continue
            # the instance with more points keeps its id
            keep, gone = (ra, rb) if size[ra] >= size[rb] else (rb, ra)
            rep[gone] = keep
    for i in ids:
        if root(i) != i:
            joins[i] = root(i)
    return joins


@torch.no_grad()
def join_objects(model: SceneModel, sampler: RaySampler, table: ChannelTable, grid: OwnershipGrid, fit: float,
                 n_rays: int, chunk: int = 2048, seed: int = 0
                 ) -> tuple[ChannelTable, OwnershipGrid, dict[int, int]]:
    """The join step (module docstring) on a model that follows ``grid``: the new table (a joined
    instance's channels take the id of the instance it joins), the grid with its voxels relabelled the
    same way, and the joins ``{instance: instance joined}``."""
    _, _, _, owner, points, hit = surface_rays(model, sampler, n_rays, chunk, seed + 3)[:6]
    inst = table.instance[owner]
    use = hit & (inst > 0)
    joins = plan_joins(inst[use], points[use], table.classes, fit)
    if not joins:
        return table, grid, {}
    instance = table.instance.copy()
    target = grid.target.clone()
    for gone, keep in joins.items():
        instance[table.instance == gone] = keep
        target[grid.target == gone] = keep
    new_table = ChannelTable(is_object=table.is_object.copy(), classes=table.classes.copy(), votes=table.votes,
                             instance=instance)
    return new_table, replace(grid, target=target, _boundary=None), joins
