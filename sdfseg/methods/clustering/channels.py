"""ClusteringSDF's channels at the end of a run: classes, merged pieces, the ownership vote.

Instance mode: a pixel's instance id is the channel with the largest object opacity
(argmax over O). Each object channel gets ONE class for the whole scene by a
confidence-weighted vote of the noisy semantic labels of the training pixels it owns
(``assign_channel_classes``); channels that own mostly stuff (or nothing) are
background. Background pixels take the best *stuff* class of the semantic head that
is trained in the same run. Channels the 2D masks show to be pieces of one object share an id
(``channel_groups``); the ownership vote (``ownership_vote``) gives each surface voxel the object its
masks say. The ObjectSDF++ baselines and the codebook reuse the class vote.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ...core.model import BOUND_RADIUS, SceneModel
from ...core.ownership import OwnershipGrid
from ...core.render.views import eval_points, render_rays_chunked
from ...data.rays import RaySampler
from ...data.scene import ClassInfo
from ..outputs import ChannelTable
from .ownership import mask_votes, segment_owner_counts, vote_grid


def mask_segments(frames: np.ndarray, label: torch.Tensor) -> np.ndarray:
    """One id per 2D mask (frame, instance label) for rays ``[N]``; ``-1`` where the label is 0
    (background), ``-2`` where it is negative (not supervised)."""
    lab = label.cpu().numpy().astype(np.int64)
    return np.where(lab > 0, frames.astype(np.int64) * (int(lab.max(initial=0)) + 1) + lab,
                    np.where(lab == 0, -1, -2))


def channel_groups(owner: np.ndarray, segment: np.ndarray, is_object: np.ndarray, min_share: float,
                   class_votes: np.ndarray | None = None) -> np.ndarray:
    """Merge object channels that the 2D masks put together: representative channel per channel ``[K]``.

    ``owner [N]`` is the channel owning each sampled training ray, ``segment [N]`` the 2D mask it
    falls in (one id per (frame, label); ``-1`` for background / ignored pixels). Each mask is
    *dominated* by the group of object channels owning most of its rays. Agglomerative: while some
    group ``a`` has more than ``min_share`` of its masked rays in masks that one other group ``b``
    dominates, the group with the largest such share joins ``b``. An object split over channels
    is merged back (a mask covering the object is dominated by its largest piece, and the pieces
    join it one by one); a 2D mask that wrongly covers two objects (under-segmentation) does so
    only in some views, which keeps their share low. Each group is represented by its member with
    the most masked rays. ``min_share <= 0`` or ``>= 1`` merges nothing.

    ``class_votes [K, C]`` (optional): each channel's class votes. Two groups then join only when the
    class their members' summed votes give is the same: pieces of one object agree on its class, while a
    mask that covers a bag and the bed it lies on does not make one object of them.
    """
    k = is_object.size
    group = np.arange(k)
    keep = (segment >= 0) & is_object[owner]
    if not 0 < min_share < 1 or not keep.any():
        return group
    _, seg = np.unique(segment[keep], return_inverse=True)
    own = owner[keep]
    rays = np.bincount(own, minlength=k)
    while True:
        g = group[own]
        counts = segment_owner_counts(seg, g, seg.max() + 1, k)
        dominant = counts.argmax(axis=1)
        share = np.zeros((k, k))  # share[a, b]: rays of group a in masks dominated by group b
        np.add.at(share, (g, dominant[seg]), 1.0)
        np.fill_diagonal(share, 0.0)
        frac = share / np.maximum(np.bincount(g, minlength=k), 1)[:, None]
        if class_votes is not None:
            group_votes = np.zeros((k, class_votes.shape[1]))
            np.add.at(group_votes, group, class_votes)
            cls = group_votes.argmax(axis=1)
            frac[cls[:, None] != cls[None, :]] = 0.0
        a, b = np.unravel_index(frac.argmax(), frac.shape)
        if frac[a, b] <= min_share:
            break
        group[group == a] = b
    for r in np.unique(group):
        members = np.flatnonzero(group == r)
        group[members] = members[rays[members].argmax()]
    return group


@torch.no_grad()
def _class_vote_rays(model: SceneModel, sampler: RaySampler, n_rays: int, chunk: int, seed: int,
                     owner: Callable[[dict], torch.Tensor] | None = None, keys: tuple[str, ...] = ("opacity",)):
    """The training rays the channel table is voted on: ``(frames [N], batch, owning slot [N])``. ``owner``
    maps a render (``keys``) to slots (default: the channel of largest object opacity)."""
    rng = np.random.default_rng(seed)
    frames = rng.choice(sampler.frames, size=n_rays)
    pix = rng.integers(0, sampler.h * sampler.w, size=n_rays)
    b = sampler.gather(frames, pix, np.zeros(n_rays, dtype=np.int64))
    out = render_rays_chunked(model, b.origins, b.dirs, chunk, keys)
    slots = out["opacity"].argmax(dim=-1) if owner is None else owner(out)
    return frames, b, slots.cpu().numpy()


MIN_VOTES = 20
"""An object channel (instance) must own at least this many labelled rays of the class vote."""


def assign_channel_classes(model: SceneModel, sampler: RaySampler, classes: ClassInfo, n_rays: int = 16384,
                           chunk: int = 2048, min_votes: int = MIN_VOTES, seed: int = 0,
                           merge_share: float = 0.0, owner: Callable[[dict], torch.Tensor] | None = None,
                           keys: tuple[str, ...] = ("opacity",), num_slots: int | None = None,
                           background_slot: int | None = 0, mask_share: float = 0.0,
                           merge_same_class: bool = False) -> ChannelTable:
    """Vote a class per channel from the noisy semantic labels of training pixels the channel owns;
    with ``merge_share > 0`` object channels that are fragments of one object share its instance id
    and class (:func:`channel_groups`, from the 2D instance labels of the same rays). Other slots than
    channels (a codebook's codes): ``owner`` and ``keys`` (see :func:`_class_vote_rays`), ``num_slots``
    rows; ``background_slot`` is the slot that is background whatever its vote (None: none is).
    ``merge_same_class``: only channels whose class votes agree are merged.

    ``mask_share > 0``: a channel is an object when at least that share of its labelled rays lie in 2D
    instance masks, and its class is voted by the thing labels of those rays only
    (:func:`mask_class_votes`); else by all its rays, and it is an object when the winner is a thing."""
    frames, b, owner = _class_vote_rays(model, sampler, n_rays, chunk, seed, owner, keys)
    sem = b.semantic.cpu().numpy()
    conf = b.confidence.cpu().numpy()
    k, c = model.num_channels if num_slots is None else num_slots, classes.num_classes
    votes = np.bincount(owner[sem > 0], minlength=k)
    if mask_share > 0:
        hist, share = mask_class_votes(owner, sem, conf, b.label.cpu().numpy(), k, classes)
        object_like = (share >= mask_share) & (hist.max(axis=1) > 0)
    else:
        hist = np.zeros((k, c))
        np.add.at(hist, (owner, np.clip(sem, 0, c - 1)), conf)
        hist[:, 0] = 0.0  # void votes for nothing
        object_like = np.isin(hist.argmax(axis=1), classes.thing_ids)
    cls = hist.argmax(axis=1)
    is_object = object_like & (votes >= min_votes)
    if background_slot is not None:
        is_object[background_slot] = False
    instance = None  # ChannelTable's default: the channel index of each object
    if merge_share > 0:
        group = channel_groups(owner, mask_segments(frames, b.label), is_object, merge_share,  # objects join objects
                               hist if merge_same_class else None)
        instance = np.where(is_object, group, 0)
        for r in np.unique(instance[is_object]):
            members = instance == r
            cls[members] = int(hist[members].sum(axis=0).argmax())
    return ChannelTable(is_object=is_object, classes=np.where(is_object, cls, 0), votes=votes, instance=instance)


def mask_class_votes(owner: np.ndarray, semantic: np.ndarray, confidence: np.ndarray, label: np.ndarray, k: int,
                     classes: ClassInfo) -> tuple[np.ndarray, np.ndarray]:
    """Per slot, from the rays it owns (``owner [N]``): the confidence-weighted votes ``[k, C]`` of the rays
    inside 2D instance masks (``label > 0``) with a thing class, and the share ``[k]`` of its labelled rays
    (``label >= 0``, class not void) that are such rays."""
    c = classes.num_classes
    labelled = (label >= 0) & (semantic > 0)
    inside = labelled & (label > 0) & np.isin(semantic, classes.thing_ids)
    hist = np.zeros((k, c))
    np.add.at(hist, (owner[inside], semantic[inside]), confidence[inside])
    share = np.bincount(owner[inside], minlength=k) / np.maximum(np.bincount(owner[labelled], minlength=k), 1)
    return hist, share


def drop_vanished_objects(model: SceneModel, sampler: RaySampler, table: ChannelTable, n_rays: int = 16384,
                          chunk: int = 2048, min_votes: int = MIN_VOTES, seed: int = 0) -> ChannelTable:
    """The table's size rule applied to the final ownership (after :func:`ownership_vote` moved surface
    between channels): object instances that now own fewer than ``min_votes`` labelled rays of the
    class vote count as background."""
    _, b, owner = _class_vote_rays(model, sampler, n_rays, chunk, seed)
    return keep_owning_objects(table, owner[b.semantic.cpu().numpy() > 0], min_votes)


def keep_owning_objects(table: ChannelTable, owner: np.ndarray, min_votes: int) -> ChannelTable:
    """``table`` with the object instances whose channels own fewer than ``min_votes`` of the rays
    ``owner [N]`` (owning channel per ray) turned into background channels."""
    votes = np.bincount(table.instance[owner], minlength=len(table.instance))
    keep = table.is_object & (votes[table.instance] >= min_votes)
    return ChannelTable(is_object=keep, classes=np.where(keep, table.classes, 0), votes=table.votes,
                        instance=table.instance)


@torch.no_grad()
def surface_rays(model: SceneModel, sampler: RaySampler, n_rays: int, chunk: int, seed: int, semantic: bool = False):
    """Training rays rendered for the ownership vote and the split step: half uniform over the training
    pixels, half over the labelled ones (label > 0). Returns ``(frames [N], batch, weight [N], owning
    channel [N], surface point [N, 3], hit [N])``: the labelled half is weighted down to the uniform
    half's expected weight per pixel; ``hit``: the ray's accumulated weight is at least 0.5. ``semantic``:
    the semantic head's rendered logits ``[N, C]`` come last too (the same rays)."""
    rng = np.random.default_rng(seed)
    hw = sampler.h * sampler.w
    n_cells = len(sampler.frames) * hw  # cells: the training frames' pixels, frame after frame
    per_frame = np.array([int((sampler.frame_labels(f) > 0).sum()) for f in sampler.frames], dtype=np.int64)
    total = int(per_frame.sum())
    n_uni = n_rays // 2
    n_lab = n_rays - n_uni if total else 0
    uniform = rng.integers(0, n_cells, size=n_uni)
    # labelled cells drawn by rank among all labelled cells, one frame's labels at a time (the same
    # draws as choosing from the list of labelled cells, without building it)
    rank = rng.integers(0, total, size=n_lab) if n_lab else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(per_frame)])
    labelled = np.zeros(n_lab, dtype=np.int64)
    frame_of = np.searchsorted(starts, rank, side="right") - 1
    for j in np.unique(frame_of):
        pick = frame_of == j
        pixels = np.flatnonzero(sampler.frame_labels(sampler.frames[j]).reshape(-1) > 0)
        labelled[pick] = j * hw + pixels[rank[pick] - starts[j]]
    cells = np.concatenate([uniform, labelled])
    weight = np.concatenate([np.ones(n_uni), np.full(n_lab, total / n_cells * n_uni / max(n_lab, 1))])
    frames = sampler.frames[cells // hw]
    b = sampler.gather(frames, cells % hw, np.zeros(cells.size, dtype=np.int64))
    out = render_rays_chunked(model, b.origins, b.dirs, chunk,
                              ("opacity", "depth", "acc") + (("semantic",) if semantic else ()))
    owner = out["opacity"].argmax(dim=-1).cpu().numpy()
    points = (b.origins + out["depth"][:, None] * b.dirs).cpu().numpy()
    rays = (frames, b, weight, owner, points, out["acc"].cpu().numpy() >= 0.5)
    return rays + (out["semantic"].cpu().numpy(),) if semantic else rays


@torch.no_grad()
def ownership_vote(model: SceneModel, sampler: RaySampler, table: ChannelTable, n_rays: int, resolution: int,
                   chunk: int = 2048, seed: int = 0, min_purity: float = 0.5, object_share: float = 0.5,
                   kernel: int = 3, max_gap: float = float("inf"), use_confidence: bool = False,
                   min_island: int = 0) -> OwnershipGrid:
    """Multi-view ownership vote of the 2D instance labels on the rendered surface (:mod:`.ownership`).

    Rays: half uniform over the training pixels, half over the labelled ones; the labelled half is
    weighted down to the uniform half's expected weight per pixel, so a labelled pixel's vote counts
    twice an unlabelled one's (its uniform rays and its labelled rays). ``use_confidence``: each ray's weight is
    also multiplied by its label's confidence. ``min_island``: see :func:`.ownership.absorb_islands`."""
    frames, b, weight, owner, points, hit = surface_rays(model, sampler, n_rays, chunk, seed + 1)
    if use_confidence:
        weight = weight * b.confidence.cpu().numpy()
    vote = mask_votes(table.instance[owner], mask_segments(frames, b.label), min_purity)
    vote[~hit] = -1  # rays that hit no surface say nothing
    if np.isfinite(max_gap):
        vote[owner_gap(model, points, table.instance, vote, chunk) > max_gap] = -1
    return vote_grid(points, vote, weight, resolution, BOUND_RADIUS, kernel=kernel, object_share=object_share,
                     max_gap=max_gap, min_island=min_island)


def owner_gap(model: SceneModel, points: np.ndarray, instance: np.ndarray, owner: np.ndarray, chunk: int) -> np.ndarray:
    """``[N]``: how far the lowest channel of instance ``owner`` (0 = background channels; ``instance [K]``
    per channel) lies above the scene SDF at ``points [N, 3]`` (0 where it is the scene surface)."""
    dev = next(model.parameters(), torch.zeros(0)).device
    sdf = eval_points(lambda x: model.sdf(x)[0], points, chunk, dev, instance.size)
    mine = np.where(instance[None, :] == owner[:, None], sdf, np.inf).min(axis=1)
    return mine - sdf.min(axis=1)
