"""Split step: one object channel that holds two objects the 2D masks keep apart.

ClusteringSDF's channels are free clusters of the 2D masks. Identical objects side by side (the chairs
around a table) can end up in one channel: the clustering terms only ask masks *of one view* to fall in
different channels, and two chairs rarely share a view's mask. The channel's surface is then two pieces
far apart, and the instance map shows one object where there are two. After the ownership vote
(:func:`split_objects`):

1. Training rays (half uniform, half on labelled pixels) are rendered; each ray's surface point belongs to
   the instance that owns it after the vote.
2. Per object instance, its points on labelled pixels are put in a ``resolution^3`` voxel grid, grown by
   one voxel, and cut into connected components (with ``bisect``, each cut further by 2-means while the
   masks keep the halves apart: :func:`bisect_components`). A component with fewer than ``min_share`` of the
   instance's rays (or :data:`MIN_RAYS`) is too small to be an object of its own.
3. The 2D masks say which components are one object: components ``a`` and ``b`` are *linked* when
   ``sum_s min(n_sa, n_sb)`` over the masks ``s`` (``n_sa``: rays of component ``a`` in mask ``s``) is more
   than ``link`` of the smaller component's rays in masks. Pieces of one object are seen in the same masks;
   two objects are seen in different ones (a mask merging two touching objects in a few views links them
   only weakly).
4. Linked components form groups. The group with the most rays keeps the instance. Each other group
   gets a spare channel (a background channel other than 0, those owning fewest rays first; one that owns
   surface hands it to channel 0 first, see :data:`SPARE_SHARE`), which
   takes the part of space within ``reach`` voxels of the group's points that lies nearer to them than
   to the other groups' points (:class:`~sdfseg.core.ownership.ChannelSplit`); the vote's voxels there
   that went to the old instance go with it. The spare channel joins the instance whose masks hold most
   of the group's rays (a piece of another object), else it is an object of its own, of the class its
   rays vote for.

With ``by_class`` (``render.split_class``) an instance is also searched for pieces of another thing class:
rays the semantic head gives that class, connected on the grid, at least a share of the instance's rays
(``render.split_class_min_share``, else ``min_share``), called that class by the 2D labels too on most of
their rays, and, with ``render.split_class_depth``, where the sensor depth saw them (a floater's pixels
see the object behind it, whose class its labels and head give; :func:`plan_class_splits`). Such pieces
are cut off the same way, each an object of its class: the masks are not asked, since an object trained
into another's channel (a chair into the table's) was merged despite them. An instance the masks
or the geometry cut (steps 2-4) is cut their way only: on room 0 (seed 1) the class cut of a chair pair
the geometry had cut kept the pair together.

Nothing moves the surface: the split only renames who owns it, and maps and meshes follow (the
:class:`~sdfseg.core.ownership.OwnershipGrid` carries the split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...core.model import BOUND_RADIUS, SceneModel
from ...core.ownership import ChannelSplit, OwnershipGrid, flat_voxel, voxel_index
from ...data.rays import RaySampler
from ...data.scene import METRIC_DEPTH
from ..outputs import ChannelTable
from .channels import mask_segments, surface_rays

MIN_RAYS = 40
"""A component (group) must hold at least this many labelled rays to become an object of its own."""

SPARE_SHARE = 0.001
"""A background channel that owns at most this share of the rays is a spare as it is: the few bits of
surface it owned go to the next-lowest channel. One that owns more first hands its surface to channel 0
(:class:`~sdfseg.core.ownership.ChannelSplit` ``fold``); rooms trained at K = 20 often have no channel
that owns none."""


@dataclass
class SplitReport:
    """One instance cut into several: its id, the instance each group went to (the first keeps ``instance``;
    a group may join another existing instance), each group's labelled rays, and the largest mask link
    between two of its groups (0 when none)."""

    instance: int
    groups: list[int]
    rays: list[int]
    max_link: float


def grown_voxels(vox: np.ndarray, resolution: int) -> np.ndarray:
    """``[G, G, G]`` bool: the voxels ``vox [N, 3]`` of a ``resolution^3`` grid, each grown by one voxel
    (26-neighbourhood)."""
    from scipy.ndimage import binary_dilation

    occ = np.zeros((resolution,) * 3, dtype=bool)
    occ[vox[:, 0], vox[:, 1], vox[:, 2]] = True
    return binary_dilation(occ, np.ones((3, 3, 3), dtype=bool))


def point_components(vox: np.ndarray, resolution: int) -> np.ndarray:
    """Connected component ``[N]`` (0, 1, ...) of voxels ``vox [N, 3]`` in a ``resolution^3`` grid: voxels
    are neighbours when their one-voxel grown neighbourhoods touch (26-connected after growing)."""
    from scipy.ndimage import label

    comp, _ = label(grown_voxels(vox, resolution), np.ones((3, 3, 3), dtype=bool))
    _, ids = np.unique(comp[vox[:, 0], vox[:, 1], vox[:, 2]], return_inverse=True)
    return ids.reshape(-1)


def two_means(points: np.ndarray, iters: int = 20) -> np.ndarray:
    """Side ``[N]`` (0 or 1) of each point ``[N, 3]`` after 2-means, started deterministically from the
    point farthest from the centroid and the point farthest from that one."""
    a = points[np.argmax(((points - points.mean(axis=0)) ** 2).sum(axis=1))]
    b = points[np.argmax(((points - a) ** 2).sum(axis=1))]
    centres = np.stack([a, b])
    side = np.full(len(points), -1, dtype=np.int64)
    for _ in range(iters):
        new = ((points[:, None, :] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)
        if np.array_equal(new, side):  # converged
            break
        side = new
        centres = np.stack([points[side == k].mean(axis=0) if (side == k).any() else centres[k] for k in (0, 1)])
    return side


def valley(points: np.ndarray, side: np.ndarray, width: float) -> float:
    """How far apart the two sides of a 2-means cut are in the geometry itself: the points ``[N, 3]`` are
    projected on the line through the sides' centres and counted in slabs ``width`` thick between the
    centres (each count the mean of three neighbouring slabs); the result is the sparsest inner slab's
    count over the lower of the two halves' densest. Two chairs side by side leave only the stray points
    between them (near 0); one object cut in two is surface across the cut. 1 when the centres lie fewer
    than three slabs apart (nothing to measure)."""
    c0, c1 = points[side == 0].mean(axis=0), points[side == 1].mean(axis=0)
    span = float(np.linalg.norm(c1 - c0))
    n_bins = int(span // width)
    if n_bins < 3:
        return 1.0
    t = (points - c0) @ ((c1 - c0) / span)
    hist = np.histogram(t, bins=n_bins, range=(0.0, span))[0].astype(np.float64)
    dens = np.convolve(np.r_[hist[0], hist, hist[-1]], np.ones(3) / 3.0, mode="valid")
    half = n_bins // 2
    peak = min(dens[:half].max(), dens[half:].max())
    return float(dens[1:-1].min() / peak) if peak > 0 else 1.0


def bisect_components(points: np.ndarray, component: np.ndarray, segment: np.ndarray, min_size: int,
                      link: float, depth: int, max_valley: float = 0.0, valley_link: float = 1.0,
                      width: float = 0.0) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Components ``[N]`` (0, 1, ...) refined by 2-means, as long as the 2D masks keep the halves apart.

    Connected components miss two objects that some stray surface points bridge (two chairs joined by the
    table edge their masks spill onto). Each component is cut in two by :func:`two_means` on its points
    ``[N, 3]``; the cut stands when both halves hold at least ``min_size`` points and their
    :func:`mask_links` (``segment [N]``: each point's mask) is at most ``link``, and each half is cut
    again, ``depth`` levels down. One object cut in two is held together by the masks that cover it
    whole, so the geometry only proposes and the masks decide.

    ``max_valley`` > 0: a cut also stands where the geometry keeps the halves apart, its :func:`valley`
    (slabs ``width`` thick) at most ``max_valley``, and the masks link them by at most ``valley_link``
    (labels that merge touching objects in half of the views link two chairs side by side by about 0.5;
    an object whose parts meet in a thin stem is covered by one mask in nearly every view). Also returns
    each such cut as ``(point indices of one side, of the other)``: the masks must not join them again."""
    out = np.full(component.shape, -1, dtype=np.int64)
    todo = [(np.flatnonzero(component == c), depth) for c in np.unique(component)]
    apart = []
    n = 0
    while todo:
        idx, left = todo.pop(0)
        if left > 0 and idx.size >= 2 * min_size:
            side = two_means(points[idx])
            sizes = np.bincount(side, minlength=2)
            if sizes.min() >= min_size:
                lk = mask_links(side, segment[idx], 2)[0, 1]
                by_valley = (lk > link and max_valley > 0 and lk <= valley_link
                             and valley(points[idx], side, width) <= max_valley)
                if lk <= link or by_valley:
                    if by_valley:
                        apart.append((idx[side == 0], idx[side == 1]))
                    todo += [(idx[side == 0], left - 1), (idx[side == 1], left - 1)]
                    continue
        out[idx] = n
        n += 1
    return out, apart


def mask_links(component: np.ndarray, segment: np.ndarray, n_components: int) -> np.ndarray:
    """``[n, n]``: how much the 2D masks link each pair of components. ``component [N]`` and ``segment [N]``
    (mask id, >= 0) per ray; the link of ``a`` and ``b`` is ``sum_s min(n_sa, n_sb)`` divided by the
    smaller of the two components' ray counts (1: every ray of the smaller one shares its masks with
    as many rays of the other; 0: no mask holds both). The diagonal is 0."""
    n = n_components
    if component.size == 0:
        return np.zeros((n, n))
    _, seg = np.unique(segment, return_inverse=True)
    counts = np.zeros((seg.max() + 1, n))
    np.add.at(counts, (seg, component), 1.0)
    shared = np.minimum(counts[:, :, None], counts[:, None, :]).sum(axis=0)
    size = counts.sum(axis=0)
    link = shared / np.maximum(np.minimum(size[:, None], size[None, :]), 1.0)
    np.fill_diagonal(link, 0.0)
    return link


def link_groups(link: np.ndarray, threshold: float, apart: np.ndarray | None = None) -> np.ndarray:
    """Group ``[n]`` of each component: components linked above ``threshold``, directly or through
    others, share a group (numbered 0, 1, ... by their first component). ``apart [n, n]`` (bool): pairs
    that must stay in different groups; links are then taken strongest first and one that would join
    such a pair is skipped."""
    n = link.shape[0]
    group = np.arange(n)
    pairs = list(zip(*np.nonzero(np.triu(link > threshold, 1))))
    if apart is not None:
        pairs.sort(key=lambda ab: -link[ab[0], ab[1]])
    for a, b in pairs:
        ga, gb = group[a], group[b]
        if ga == gb or (apart is not None and apart[np.ix_(group == ga, group == gb)].any()):
            continue
        group[group == max(ga, gb)] = min(ga, gb)
    return np.unique(group, return_inverse=True)[1].reshape(-1)


def group_regions(vox: np.ndarray, group: np.ndarray, resolution: int, reach: float) -> np.ndarray:
    """``[G^3]`` nearest group of each voxel (-1 beyond ``reach`` voxels of every point): the voxels
    ``vox [N, 3]`` of the points, ``group [N]`` (>= 0) each point's group."""
    from scipy.ndimage import distance_transform_edt

    g = resolution
    seed = np.full((g,) * 3, -1, dtype=np.int64)
    seed[vox[:, 0], vox[:, 1], vox[:, 2]] = group
    dist, idx = distance_transform_edt(seed < 0, return_indices=True)
    nearest = seed[idx[0], idx[1], idx[2]]
    return np.where(dist <= reach, nearest, -1).reshape(-1)


def plan_splits(instance: np.ndarray, points: np.ndarray, segment: np.ndarray, resolution: int,
                radius: float, link: float, min_share: float, min_rays: int = MIN_RAYS, bisect: int = 0,
                max_valley: float = 0.0, valley_link: float = 1.0
                ) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]]:
    """Which instances to cut, from rays on labelled pixels: ``instance [N]`` (> 0) owning each ray, its
    surface point ``[N, 3]`` and 2D mask id ``segment [N]``; ``bisect`` > 0: the connected components are
    refined by :func:`bisect_components` that many levels down (``max_valley``, ``valley_link``: its cuts
    where the geometry keeps the halves apart, measured in slabs one voxel thick; the masks do not join
    such halves again). Returns per instance to cut
    ``(instance id, kept [N] bool (its rays in big enough components), group [N] (of those rays, 0 =
    the biggest group), rays per group, largest link between groups, held [groups] bool (the group is
    held apart from group 0 by a cut of the geometry))``."""
    plans = []
    vox_all = np.clip(voxel_index(points, radius, resolution), 0, resolution - 1)
    for r in np.unique(instance):
        mine = np.flatnonzero(instance == r)
        if mine.size < 2 * min_rays:
            continue
        vox = vox_all[mine]
        comp = point_components(vox, resolution)
        min_size = max(min_rays, min_share * mine.size)
        apart = []
        if bisect > 0:
            comp, apart = bisect_components(points[mine], comp, segment[mine], int(np.ceil(min_size)), link, bisect,
                                            max_valley, valley_link, 2.0 * radius / resolution)
        size = np.bincount(comp)
        big = np.flatnonzero(size >= min_size)
        if big.size < 2:
            continue
        keep = np.isin(comp, big)
        comp_big = np.searchsorted(big, comp[keep])
        links = mask_links(comp_big, segment[mine[keep]], big.size)
        held = None
        if apart:
            held = np.zeros((big.size, big.size), dtype=bool)
            for a, b in apart:
                ca = np.searchsorted(big, np.intersect1d(comp[a], big))
                cb = np.searchsorted(big, np.intersect1d(comp[b], big))
                held[np.ix_(ca, cb)] = held[np.ix_(cb, ca)] = True
        group = link_groups(links, link, held)
        if group.max() == 0:
            continue
        rays = np.bincount(group[comp_big])
        order = np.argsort(-rays, kind="stable")  # group 0: the most rays
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        group = rank[group]
        between = links[group[:, None] != group[None, :]]
        kept = np.zeros(instance.size, dtype=bool)
        kept[mine[keep]] = True
        ray_group = np.full(instance.size, -1)
        ray_group[mine[keep]] = group[comp_big]
        # groups the geometry holds apart from the kept group 0: the masks cannot take them back
        held_off = np.zeros(order.size, dtype=bool)
        if held is not None:
            for g in range(1, order.size):
                held_off[g] = bool(held[np.ix_(group == 0, group == g)].any())
        plans.append((int(r), kept, ray_group, rays[order], float(between.max(initial=0.0)), held_off))
    return plans


def plan_class_splits(instance: np.ndarray, points: np.ndarray, head: np.ndarray, label_class: np.ndarray,
                      classes: np.ndarray, thing_ids, resolution: int, radius: float, min_share: float,
                      min_rays: int = MIN_RAYS, agree: float = 0.5, skip=(), depth_err: np.ndarray | None = None,
                      depth_tol: float = 0.0
                      ) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]]:
    """Which instances hold an object of another thing class, by the semantic head: ``instance [N]`` (> 0)
    owning each ray, its surface point ``[N, 3]``, the head's class ``head [N]`` there and the 2D labels'
    class ``label_class [N]``; ``classes`` maps an instance id to its class. Per instance, the rays the
    head gives one other thing class are cut into connected pieces (the split grid's, grown by one
    voxel); a piece of at least ``min_share`` of the instance's rays (and ``min_rays``) whose labels give
    it that class on more than ``agree`` of its rays is an object of that class (the labels' classes
    are mixed on a stray piece of surface, a wall behind a sofa that the sofa's channel holds). With
    ``depth_tol`` > 0 and ``depth_err [N]`` (how far each ray's rendered surface lies from its measured
    depth, NaN where the pixel has none), more than half of a piece's rays with depth must lie within
    ``depth_tol``: surface the channel holds in front of what the views saw (a floater whose pixels see
    the sofa behind it) has labels and a head that name the thing behind. The rest (group 0) keeps the
    instance and must be as big. Instances in ``skip`` are not searched.
    Returns, like :func:`plan_splits`, per instance to cut ``(instance id, kept [N] (all its rays), group
    [N] (-1: other instances' rays), rays per group, 0.0, held [groups] (True but group 0's), class per
    group)``."""
    plans = []
    vox_all = np.clip(voxel_index(points, radius, resolution), 0, resolution - 1)
    things = np.asarray(list(thing_ids))
    for r in np.setdiff1d(np.unique(instance), np.asarray(list(skip), dtype=instance.dtype)):
        mine = np.flatnonzero(instance == r)
        own = int(classes[r])
        min_size = max(min_rays, min_share * mine.size)
        group = np.zeros(mine.size, dtype=np.int64)
        group_cls = [own]
        for c in np.unique(head[mine]):
            sel = np.flatnonzero(head[mine] == c)
            if c == own or c not in things or sel.size < min_size:
                continue
            comp = point_components(vox_all[mine[sel]], resolution)
            for k in np.argsort(-np.bincount(comp), kind="stable"):
                piece = sel[comp == k]
                if piece.size >= min_size and (label_class[mine[piece]] == c).mean() > agree and (
                        depth_tol <= 0 or depth_err is None or seen_there(depth_err[mine[piece]], depth_tol)):
                    group[piece] = len(group_cls)
                    group_cls.append(int(c))
        rays = np.bincount(group, minlength=len(group_cls))
        if len(group_cls) == 1 or rays[0] < min_size:
            continue  # nothing of another class / the instance's own class is the smaller part: its vote is in doubt
        kept = np.zeros(instance.size, dtype=bool)
        kept[mine] = True
        ray_group = np.full(instance.size, -1)
        ray_group[mine] = group
        plans.append((int(r), kept, ray_group, rays, 0.0, np.arange(rays.size) > 0, np.asarray(group_cls)))
    return plans


def seen_there(depth_err: np.ndarray, tol: float) -> bool:
    """Whether more than half of the rays with a measured depth (``depth_err [N]`` not NaN) render their
    surface within ``tol`` of it; True when none has one (nothing says otherwise)."""
    err = depth_err[np.isfinite(depth_err)]
    return err.size == 0 or bool((np.abs(err) <= tol).mean() > 0.5)


def class_depth_tolerance(metres: float, scene) -> float:
    """``render.split_class_depth`` in normalised units for ``scene``; 0 (not checked) where the scene has
    no depth in the poses' units: none, or a monocular cue up to scale and shift, which says nothing of
    where a surface is."""
    if metres <= 0 or scene.depth is None or scene.depth_kind not in METRIC_DEPTH:
        return 0.0
    return metres / scene.normalization.scale


def group_home(instance: np.ndarray, segment: np.ndarray, members: np.ndarray) -> int:
    """Where the rays ``members [N] bool`` (a group cut off an instance) belong by their 2D masks: 0 (an
    object of their own) unless more than half of them lie in masks dominated by one other instance, whose
    id is returned. ``instance [N]`` owns each ray (> 0), ``segment [N]`` is its mask; a mask is
    dominated by the owner of most of its rays, the group counting as an owner of its own."""
    group_id = instance.max(initial=0) + 1
    own = np.where(members, group_id, instance)
    _, seg = np.unique(segment, return_inverse=True)
    owners, owner = np.unique(own, return_inverse=True)
    counts = np.zeros((seg.max(initial=-1) + 1, owners.size))
    np.add.at(counts, (seg, owner), 1.0)
    dominant = owners[counts.argmax(axis=1)][seg[members]]
    ids, n = np.unique(dominant, return_counts=True)
    best = int(ids[n.argmax()]) if ids.size else 0
    return best if best != group_id and n.max(initial=0) > 0.5 * members.sum() else 0


def touching_instance(group_vox: np.ndarray, instance: np.ndarray, vox: np.ndarray, resolution: int,
                      candidates, share: float) -> int:
    """The instance among ``candidates`` whose points lie within one voxel of more than ``share`` of a group's
    points (``group_vox [M, 3]``, their voxels), the one with the largest such share; 0 when none does.
    ``instance [N]`` and ``vox [N, 3]``: the instance and voxel of every point. A piece of an object that
    another channel held (the back of a chair whose seat has a channel of its own) touches that object
    all along; two objects side by side touch at an edge at most."""
    best, best_share = 0, share
    for o in candidates:
        mine = vox[instance == o]
        if mine.size == 0:
            continue
        occ = grown_voxels(mine, resolution)
        near = float(occ[group_vox[:, 0], group_vox[:, 1], group_vox[:, 2]].mean())
        if near > best_share:
            best, best_share = int(o), near
    return best


def group_class(semantic: np.ndarray, confidence: np.ndarray, thing_ids, fallback: int) -> int:
    """The thing class with the largest summed confidence among a group's rays (``semantic [N]``, ``confidence
    [N]``); ``fallback`` when none of them has a thing class."""
    thing = np.isin(semantic, np.asarray(thing_ids))
    if not thing.any():
        return fallback
    votes = np.bincount(semantic[thing], weights=confidence[thing])
    return int(votes.argmax())


@torch.no_grad()
def split_objects(model: SceneModel, sampler: RaySampler, table: ChannelTable, grid: OwnershipGrid,
                  resolution: int, n_rays: int, chunk: int = 2048, seed: int = 0, link: float = 0.25,
                  min_share: float = 0.1, reach: float = 8.0, thing_ids=None, bisect: int = 0,
                  max_valley: float = 0.0, valley_link: float = 1.0, join_touching: float = 0.0,
                  by_class: bool = False, class_min_share: float | None = None, class_depth: float = 0.0
                  ) -> tuple[ChannelTable, OwnershipGrid, list[SplitReport]]:
    """The split step (module docstring) on a model that follows ``grid``: the new table, the grid carrying
    the split, and what was cut. A group cut off goes to a spare channel; that channel joins the instance
    whose masks hold most of the group's rays (:func:`group_home`; a piece of another object the vote left
    with this one), else it is an object of its own, of the class its rays vote for among ``thing_ids``
    (:func:`group_class`; None: its source's class); ``bisect``, ``max_valley``, ``valley_link``: see
    :func:`plan_splits`. ``join_touching`` > 0: a group held apart by the geometry alone (the masks merge it
    with the rest of its instance) that would be an object of its own joins an object instance of its class
    whose points lie within one voxel of more than that share of its points (:func:`touching_instance`). A
    group the masks cut off keeps their word: two chairs side by side touch too. ``by_class`` (needs the
    model's semantic head and ``thing_ids``): an instance that holds a piece of another thing class by the
    head and the labels (:func:`plan_class_splits`), and that the masks and the geometry do not cut, is cut
    that way, each piece an object of its class (or, with ``join_touching``, a piece of the object of its
    class it touches); ``class_min_share`` (None: ``min_share``) sizes those pieces, and ``class_depth`` > 0
    (normalised units) asks the sensor depth too (``depth_tol`` of :func:`plan_class_splits`; rays without
    depth are not asked). Without spare channels (or nothing to cut) the table and grid come back as they
    were."""
    by_class = by_class and thing_ids is not None and getattr(model, "semantic", None) is not None
    rendered = surface_rays(model, sampler, n_rays, chunk, seed + 2, semantic=by_class)
    frames, b, _, owner, points, hit = rendered[:6]
    inst = table.instance[owner]
    label = b.label.cpu().numpy()
    use = hit & (inst > 0) & (label > 0)
    inst_u, seg_u = inst[use], mask_segments(frames[use], b.label[torch.as_tensor(use)])
    plans = [p + (None,) for p in plan_splits(inst_u, points[use], seg_u, resolution, BOUND_RADIUS, link, min_share,
                                              bisect=bisect, max_valley=max_valley, valley_link=valley_link)]
    if by_class:
        # where the masks or the geometry found a cut, theirs stands
        err = None
        if class_depth > 0 and getattr(b, "depth", None) is not None:
            # how far each ray's rendered surface point lies from the one its measured depth puts there
            measured = (b.depth * b.ray_scale).cpu().numpy()
            seen = b.origins.cpu().numpy() + measured[:, None] * b.dirs.cpu().numpy()
            err = np.where(measured > 0, np.linalg.norm(points - seen, axis=1), np.nan)[use]  # 0: no depth
        plans += plan_class_splits(inst_u, points[use], rendered[6][use].argmax(axis=1), b.semantic.cpu().numpy()[use],
                                   table.classes, thing_ids, resolution, BOUND_RADIUS,
                                   min_share if class_min_share is None else class_min_share,
                                   skip=[p[0] for p in plans], depth_err=err, depth_tol=class_depth)
    owned = np.bincount(owner[hit], minlength=len(table.is_object))
    # spare channels: background channels (not channel 0, whose id 0 is the background), those that own
    # fewest rays first. One that owns more than SPARE_SHARE of them hands its surface to channel 0 first
    # (``fold``): both are background, so the maps and the room's mesh stay as they were.
    free = np.flatnonzero(~table.is_object)
    spares = [int(c) for c in free[np.argsort(owned[free], kind="stable")] if c > 0]
    if not plans or not spares:
        return table, grid, []
    fold = torch.full((len(table.is_object),), -1, dtype=torch.long)
    sem_u, conf_u = b.semantic.cpu().numpy()[use], b.confidence.cpu().numpy()[use]
    is_object, classes = table.is_object.copy(), table.classes.copy()
    instance, votes = table.instance.copy(), np.asarray(table.votes).copy()
    region = torch.full((resolution ** 3,), -1, dtype=torch.long)
    source = torch.full((len(is_object),), -1, dtype=torch.long)
    vox_use = np.clip(voxel_index(points[use], BOUND_RADIUS, resolution), 0, resolution - 1)
    reports = []
    for r, kept, ray_group, rays, max_link, held_off, group_cls in plans:
        near = group_regions(vox_use[kept], ray_group[kept], resolution, reach)
        ids, counts = [r], [int(rays[0])]
        for g in range(1, rays.size):
            # a piece of another class (head and labels) is not the masks' to give back
            home = 0 if group_cls is not None else group_home(inst_u, seg_u, ray_group == g)
            if home == r and held_off[g]:
                home = 0  # masks that merge it with the rest, but the geometry holds it apart: an object of its own
            if home == r or not spares:
                continue  # its masks say it is part of this object after all / no channel left
            c = spares.pop(0)
            if owned[c] > SPARE_SHARE * hit.sum():
                fold[c] = 0
            region[torch.as_tensor((near == g) & (region.numpy() < 0))] = c  # first come: regions do not overlap
            source[c] = r
            if not home:
                cls = (int(group_cls[g]) if group_cls is not None else classes[r] if thing_ids is None
                       else group_class(sem_u[ray_group == g], conf_u[ray_group == g], thing_ids, int(classes[r])))
                if held_off[g] and join_touching > 0:
                    # masks that merged it with the rest say nothing of whose it is: a piece of an object of
                    # its class that has an instance touches that object
                    same = [o for o in np.unique(instance[is_object]) if o != r and classes[o] == cls]
                    home = touching_instance(vox_use[ray_group == g], inst_u, vox_use, resolution, same,
                                             join_touching)
            if home:
                is_object[c], classes[c], instance[c] = True, classes[home], home
            else:
                is_object[c], classes[c], instance[c] = True, cls, c
            if votes.size:
                votes[c] = int(rays[g])
            ids.append(int(instance[c]))
            counts.append(int(rays[g]))
        if len(ids) > 1:
            reports.append(SplitReport(r, ids, counts, max_link))
    if not reports:
        return table, grid, []
    # the source's channels as they are now: a later step may turn a source whose own piece is too small
    # into background, and its split-off pieces must still take their surface from its channels
    split = ChannelSplit(region, resolution, BOUND_RADIUS, source, fold if bool((fold >= 0).any()) else None,
                         torch.as_tensor(table.instance, dtype=torch.long))
    # the vote's voxels inside a region that went to the region's source go to the region's instance
    g = grid.resolution
    centres = (np.stack(np.meshgrid(*[np.arange(g)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) + 0.5) * (
        2 * grid.radius / g) - grid.radius
    cv = np.clip(voxel_index(centres, BOUND_RADIUS, resolution), 0, resolution - 1)
    dest = region.numpy()[flat_voxel(cv, resolution)]
    target = grid.target.clone()
    moved = (dest >= 0) & (target.numpy() == source.numpy()[np.maximum(dest, 0)])
    target[torch.as_tensor(moved)] = torch.as_tensor(instance[dest[moved]])
    new_table = ChannelTable(is_object=is_object, classes=np.where(is_object, classes, 0), votes=votes,
                             instance=instance)
    return new_table, OwnershipGrid(target, g, grid.radius, grid.max_gap, split, grid.refine), reports
