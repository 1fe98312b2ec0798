"""Multi-view ownership vote: which object owns each piece of the reconstructed surface.

After training, some surface is held by the wrong SDF channel: part of an object stays
with the background channel (the cold ownership softmax gives it no gradient back), or a
small second channel keeps a few views' worth of an object. The 2D masks still know
better when their evidence is pooled over views *in 3D*:

1. Sample training rays (half uniform, half on labelled pixels, the labelled half re-weighted
   to the uniform density, so a labelled pixel counts twice), render them and take the surface
   point ``o + depth * d``. With ``render.vote_confidence`` a ray's weight is also its label's
   confidence.
2. Each 2D mask (frame, label) is mapped to the object instance owning most of its
   object-owned rays (its *dominant* instance, as in channel merging); masks whose
   dominant holds less than ``min_purity`` of those rays (an under-segmented mask over
   two objects) say nothing. A ray votes for its mask's dominant instance; a ray with
   label 0 votes for background.
3. Votes are pooled in a voxel grid (each vote also counts in the ``kernel^3``
   neighbourhood). A voxel with votes goes to background if at least half of its votes
   say background, to its most-voted object if objects have more than ``object_share``
   of them (0.5: plain majority), and otherwise keeps the channels' ownership.
4. Islands (``min_island``): a piece of voxels with one decision, smaller than ``min_island``
   voxels and surrounded mostly by another decision, takes that one (a few stray votes on a bed
   do not cut a hole in it; a patch of floor votes does not become a chair fragment).
5. Geometry gate (``max_gap``): a vote counts, and a point is re-assigned, only where the
   voted owner's own SDF lies within ``max_gap`` of the scene SDF, i.e. where that object
   already models the surface. The 2D labels of small objects are dilated (they spill onto
   the floor and wall around them); without the gate those spills would paint the floor.

The result is an :class:`~sdfseg.core.ownership.OwnershipGrid` that edits the channel SDFs, so
the maps and meshes follow it. Votes use the training labels only. Object instances left with
(almost) no surface after the vote count as background (:func:`.channels.drop_vanished_objects`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ...core.ownership import OwnershipGrid, flat_voxel, voxel_index


def segment_owner_counts(segment: np.ndarray, owner: np.ndarray, n_segments: int, n_owners: int) -> np.ndarray:
    """``counts [n_segments, n_owners]``: how many rays of each mask (ids ``segment [N]``) each owner
    (``owner [N]``) holds."""
    counts = np.zeros((n_segments, n_owners))
    np.add.at(counts, (segment, owner), 1.0)
    return counts


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


def absorb_islands(target: np.ndarray, resolution: int, min_island: int) -> np.ndarray:
    """``target [G^3]`` (-1 = no say, else the deciding owner) with its islands taken over: each
    26-connected piece of one owner with fewer than ``min_island`` voxels goes to the owner holding more
    than half of the decided voxels around it (its 26-neighbours outside the piece). Pieces are taken
    smallest first, each seeing the ones taken before it (two one-voxel islands side by side end up as
    one owner, not swapped); voxels with no say stay."""
    g = resolution
    t = np.asarray(target).reshape(g, g, g)
    out = t.copy()
    if min_island <= 1:
        return out.reshape(-1)
    cube = np.ones((3, 3, 3), dtype=bool)
    pieces = []  # (size, owner, box, mask of the piece in its box)
    for lab in np.unique(t[t >= 0]):
        comp, n = ndimage.label(t == lab, structure=cube)
        sizes = np.bincount(comp.reshape(-1), minlength=n + 1)
        boxes = ndimage.find_objects(comp)
        for c in np.flatnonzero(sizes[1:] < min_island) + 1:
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in boxes[c - 1])
            pieces.append((int(sizes[c]), int(lab), box, comp[box] == c))
    for _, lab, box, piece in sorted(pieces, key=lambda p: (p[0], p[1])):
        around = out[box][ndimage.binary_dilation(piece, structure=cube) & ~piece]
        around = around[around >= 0]
        if around.size == 0:
            continue
        owners, counts = np.unique(around, return_counts=True)
        best = counts.argmax()
        if owners[best] != lab and 2 * counts[best] > around.size:
            out[box][piece] = owners[best]
    return out.reshape(-1)


def vote_grid(points: np.ndarray, vote: np.ndarray, weight: np.ndarray, resolution: int, radius: float,
              kernel: int = 3, object_share: float = 0.5, max_gap: float = float("inf"),
              min_island: int = 0) -> OwnershipGrid:
    """Pool ray votes ``[N]`` (-1 = none) at surface ``points [N, 3]`` into an :class:`OwnershipGrid`.

    Each vote counts ``weight`` in its voxel and the ``kernel^3`` neighbours. A voxel goes to its
    most-voted object when objects have more than ``object_share`` of its votes, to background when
    background has at least half of them; otherwise (``object_share > 0.5``) it has no say.
    ``max_gap`` is the grid's geometry gate (:attr:`OwnershipGrid.max_gap`). ``min_island`` > 1: smaller
    pieces of one decision go to what surrounds them (:func:`absorb_islands`).
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
    if min_island > 1:
        target = torch.as_tensor(absorb_islands(target.numpy(), g, min_island))
    return OwnershipGrid(target, g, radius, max_gap)
