"""Split step: hand-worked mask links, groups, regions, the channel hand-over and the whole step on a fake model."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sdfseg.config import load_config
from sdfseg.core.ownership import MARGIN, ChannelSplit, OwnershipGrid, flat_voxel
from sdfseg.errors import SdfsegError
from sdfseg.methods.clustering import channels
from sdfseg.methods.clustering.split import (bisect_components, class_depth_tolerance, group_class, group_home,
                                             group_regions, link_groups, mask_links, plan_class_splits, plan_splits,
                                             split_objects, touching_instance, valley)
from sdfseg.methods.outputs import ChannelTable


def test_mask_links_hand_worked():
    # components 0 (2 rays), 1 (3 rays), 2 (1 ray); mask 0 holds 2 rays of component 0 and 1 of component 1
    comp = np.array([0, 0, 1, 1, 1, 2])
    seg = np.array([0, 0, 0, 7, 7, 9])
    link = mask_links(comp, seg, 3)
    # shared(0, 1) = min(2, 1) = 1 over the smaller component's 2 rays; nothing else shares a mask
    assert link.tolist() == [[0.0, 0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert link_groups(link, 0.25).tolist() == [0, 0, 1]
    assert link_groups(link, 0.5).tolist() == [0, 1, 2]  # the link must be above the threshold
    # chains join: 0-1 and 1-2 linked, 0-2 not
    chain = np.array([[0, 0.9, 0], [0.9, 0, 0.9], [0, 0.9, 0]])
    assert link_groups(chain, 0.5).tolist() == [0, 0, 0]


def test_link_groups_keep_pairs_held_apart():
    link = np.array([[0, 0.9, 0], [0.9, 0, 0.6], [0, 0.6, 0]])
    assert link_groups(link, 0.5).tolist() == [0, 0, 0]
    apart = np.zeros((3, 3), dtype=bool)
    apart[0, 2] = apart[2, 0] = True
    # strongest first: 0-1 (0.9) join; 1-2 (0.6) would put 2 with 0: skipped
    assert link_groups(link, 0.5, apart).tolist() == [0, 0, 1]
    # held apart pairs do not stop links elsewhere
    assert link_groups(link, 0.5, np.zeros((3, 3), dtype=bool)).tolist() == [0, 0, 0]


def test_valley_hand_worked():
    # side 0 at x = -0.05 / 0.05 and stray points at -0.25 / 0.25 (centre 0), side 1 at 0.45 / 0.55 (centre 0.5)
    x = np.r_[np.full(10, -0.05), np.full(10, 0.05), -0.25, 0.25, np.full(10, 0.45), np.full(10, 0.55)]
    pts = np.c_[x, np.zeros((42, 2))]
    side = np.r_[np.zeros(22, int), np.ones(20, int)]
    # 5 slabs 0.1 thick over [0, 0.5) hold 10, 0, 1, 0, 10 (the end slabs repeated for the mean of three):
    # means 20/3, 11/3, 1/3, 11/3, 20/3; sparsest inner 1/3 over the lower half's densest 20/3
    assert valley(pts, side, 0.1) == pytest.approx(0.05)
    # surface all along: 10 points per slab, no valley
    even = np.c_[np.repeat(np.arange(-0.05, 0.6, 0.1), 10), np.zeros((70, 2))]
    assert valley(even, (even[:, 0] > 0.25).astype(int), 0.1) == pytest.approx(1.0)
    # centres fewer than three slabs apart: nothing to measure
    assert valley(pts, side, 0.2) == 1.0


def test_touching_instance_hand_worked():
    # instance 5 at voxels (2, 2, 2), (2, 2, 3); instance 6 at (6, 6, 6) (an 8^3 grid)
    inst = np.array([5, 5, 6])
    vox = np.array([[2, 2, 2], [2, 2, 3], [6, 6, 6]])
    # the group: next to 5, diagonal to 5, next to 6, next to nothing -> shares 2/4 and 1/4
    group = np.array([[3, 2, 2], [3, 3, 3], [5, 5, 5], [0, 7, 0]])
    assert touching_instance(group, inst, vox, 8, [5, 6], 0.4) == 5
    assert touching_instance(group, inst, vox, 8, [5, 6], 0.5) == 0  # more than the share
    assert touching_instance(group, inst, vox, 8, [6], 0.2) == 6  # only the candidates count
    assert touching_instance(group, inst, vox, 8, [7], 0.0) == 0  # no points


def test_group_regions_nearest_group_within_reach():
    vox = np.array([[1, 1, 1], [6, 6, 6]])
    near = group_regions(vox, np.array([0, 1]), 8, reach=2.0).reshape(8, 8, 8)
    assert near[2, 2, 2] == 0 and near[1, 1, 3] == 0 and near[5, 5, 5] == 1
    assert near[4, 4, 4] == -1  # sqrt(12) from the nearest point: beyond reach
    assert near[1, 1, 4] == -1  # 3 voxels away


def test_group_home_by_the_masks_dominant_owner():
    inst = np.array([3, 3, 3, 3, 7, 7, 7])
    seg = np.array([0, 0, 1, 1, 1, 1, 1])
    # rays 2, 3 (cut off instance 3) lie in mask 1, where instance 7 has 3 rays against their 2: a piece of 7
    assert group_home(inst, seg, np.array([0, 0, 1, 1, 0, 0, 0], bool)) == 7
    # rays 0, 1 have mask 0 to themselves: an object of their own
    assert group_home(inst, seg, np.array([1, 1, 0, 0, 0, 0, 0], bool)) == 0
    # a group in a mask its source dominates belongs to the source (the caller then keeps it there)
    assert group_home(np.full(5, 3), np.array([0, 0, 0, 1, 1]), np.array([1, 0, 0, 0, 0], bool)) == 3
    # half of the group in 7's masks is not more than half: its own
    assert group_home(np.array([3, 3, 7, 7, 7]), np.array([0, 1, 1, 1, 1]), np.array([1, 1, 0, 0, 0], bool)) == 0


def test_group_class_votes_things_by_confidence():
    sem = np.array([5, 5, 9, 2, 2])
    conf = np.array([0.3, 0.3, 0.9, 1.0, 1.0])
    assert group_class(sem, conf, [5, 9], fallback=4) == 9  # 0.9 against 0.6; class 2 is stuff
    assert group_class(np.array([2, 2]), np.ones(2), [5, 9], fallback=4) == 4


def _blobs(masks_b):
    rng = np.random.default_rng(0)
    a = rng.normal([-0.5, 0.0, 0.0], 0.03, (300, 3))
    b = rng.normal([0.5, 0.0, 0.0], 0.03, (200, 3))
    crumb = rng.normal([0.0, 0.6, 0.0], 0.01, (30, 3))  # 30 rays: below 10% of the instance
    seg = np.r_[rng.integers(0, 10, 300), masks_b, rng.integers(0, 10, 30)]
    return np.r_[a, b, crumb], seg


def test_plan_splits_cuts_pieces_the_masks_keep_apart():
    rng = np.random.default_rng(1)
    pts, seg = _blobs(rng.integers(10, 20, 200))  # piece B seen in masks of its own
    inst = np.full(len(pts), 3)
    (r, kept, group, rays, link, _), = plan_splits(inst, pts, seg, 64, 1.0, link=0.25, min_share=0.1)
    assert r == 3 and rays.tolist() == [300, 200] and link == 0.0
    assert (group[:300] == 0).all() and (group[300:500] == 1).all()
    assert not kept[500:].any() and (group[500:] == -1).all()  # the crumb is too small to be an object
    # the same masks over both pieces: one object seen in two pieces, nothing to cut
    pts, seg = _blobs(rng.integers(0, 10, 200))
    assert plan_splits(inst, pts, seg, 64, 1.0, link=0.25, min_share=0.1) == []
    # one instance per piece already: nothing to cut either
    assert plan_splits(np.r_[np.full(300, 3), np.full(230, 4)], pts, seg, 64, 1.0, 0.25, 0.1) == []


def test_plan_class_splits_hand_worked():
    # instance 3 (a table, class 4): 100 rays at x = -0.5 the head calls table, 60 at x = +0.5 it calls
    # chair (class 5), 50 of those labelled chair too (grid 16 over [-1, 1]: the pieces are far apart)
    rng = np.random.default_rng(0)
    pts = np.r_[rng.normal([-0.5, 0, 0], 0.02, (100, 3)), rng.normal([0.5, 0, 0], 0.02, (60, 3))]
    inst, classes, things = np.full(160, 3), np.array([0, 0, 0, 4]), [4, 5]
    head = np.r_[np.full(100, 4), np.full(60, 5)]
    labels = np.r_[np.full(100, 4), np.full(50, 5), np.full(10, 4)]
    # size floor max(40, 0.1 x 160) = 40: the chair piece (60) is cut, the labels agree on 50 / 60 > 0.5
    (r, kept, group, rays, link, held, cls), = plan_class_splits(inst, pts, head, labels, classes, things, 16, 1.0, 0.1)
    assert r == 3 and rays.tolist() == [100, 60] and cls.tolist() == [4, 5] and held.tolist() == [False, True]
    assert kept.all() and (group[:100] == 0).all() and (group[100:] == 1).all()
    # the labels call only 20 of its 60 rays chair (a stray piece the head calls chair): not cut
    mixed = np.r_[np.full(100, 4), np.full(20, 5), np.full(40, 11)]
    assert plan_class_splits(inst, pts, head, mixed, classes, things, 16, 1.0, 0.1) == []
    # a stuff class (1) is no object; a piece under the floor (60 of 400 rays < 0.2 x 400) neither
    assert plan_class_splits(inst, pts, np.r_[np.full(100, 4), np.full(60, 1)], np.r_[np.full(100, 4), np.full(60, 1)],
                             classes, things, 16, 1.0, 0.1) == []
    big = np.r_[pts, rng.normal([-0.5, 0, 0], 0.02, (240, 3))]
    assert plan_class_splits(np.full(400, 3), big, np.r_[head, np.full(240, 4)], np.r_[labels, np.full(240, 4)],
                             classes, things, 16, 1.0, 0.2) == []
    # the instance's own class holds only 30 rays (its class vote is in doubt): not cut
    assert plan_class_splits(inst[70:], pts[70:], head[70:], labels[70:], classes, things, 16, 1.0, 0.1) == []
    # two chair pieces apart: two objects, the bigger first
    pts2 = np.r_[pts, rng.normal([0, 0, 0.6], 0.02, (45, 3))]
    head2, labels2 = np.r_[head, np.full(45, 5)], np.r_[labels, np.full(45, 5)]
    (_, _, group, rays, _, _, cls), = plan_class_splits(np.full(205, 3), pts2, head2, labels2, classes, things, 16, 1.0,
                                                        0.1)
    assert rays.tolist() == [100, 60, 45] and cls.tolist() == [4, 5, 5] and (group[160:] == 2).all()
    # an instance in skip (cut by the masks or the geometry) is not searched
    assert plan_class_splits(inst, pts, head, labels, classes, things, 16, 1.0, 0.1, skip=[3]) == []
    # the sensor depth: the chair piece's surface within 0.1 of the measured depth on 30 of its 60 rays,
    # 0.5 off on 30 (a floater whose pixels see the chair behind it): 30 / 60 is not more than half
    err = np.r_[np.zeros(100), np.full(30, 0.05), np.full(30, 0.5)]
    assert plan_class_splits(inst, pts, head, labels, classes, things, 16, 1.0, 0.1, depth_err=err, depth_tol=0.1) == []
    # ... 31 of 60 within it, or 30 within and 30 without a measured depth (NaN): cut; tolerance 0 = off
    err31 = np.r_[np.zeros(100), np.full(31, 0.05), np.full(29, 0.5)]
    nan30 = np.r_[np.zeros(100), np.full(30, 0.05), np.full(30, np.nan)]
    for e, tol in ((err31, 0.1), (nan30, 0.1), (np.full(160, np.nan), 0.1), (err, 0.0)):
        (_, _, _, rays, _, _, cls), = plan_class_splits(inst, pts, head, labels, classes, things, 16, 1.0, 0.1,
                                                        depth_err=e, depth_tol=tol)
        assert rays.tolist() == [100, 60] and cls.tolist() == [4, 5]


def test_channel_split_hands_surface_to_the_spare_channel():
    # 4^3 voxels over [-1, 1]^3 (0.5 wide): voxel (0, 0, 0) goes from instance 1 to spare channel 2
    region = torch.full((64,), -1, dtype=torch.long)
    region[flat_voxel(np.array([0, 0, 0]), 4)] = 2
    split = ChannelSplit(region, 4, 1.0, torch.tensor([-1, -1, 1]))
    inst = torch.tensor([0, 1, 2])
    x = torch.tensor([[-0.9, -0.9, -0.9], [-0.9, -0.9, -0.9], [0.9, 0.9, 0.9], [0.9, 0.9, 0.9]])
    sdf = torch.tensor([[0.3, 0.1, 0.7],     # in the region: channel 2 takes instance 1's column
                        [0.3, -0.2, 0.7],    # ... inside the object: channel 1 is pushed to one voxel (0.5)
                        [0.3, 0.1, 0.7],     # outside: channel 2 at least 0.5 (one voxel) and MARGIN above
                        [0.3, 0.2, -0.1]])   # a spare that held surface loses it (0.2 is the scene SDF now)
    out = split.apply(x, sdf, inst)
    expected = torch.tensor([[0.3, 0.5, 0.1], [0.3, 0.5, -0.2], [0.3, 0.1, 0.7], [0.3, 0.2, 0.5]])
    assert torch.allclose(out, expected)
    assert torch.equal(out[:3].min(dim=1).values, sdf[:3].min(dim=1).values)
    # far from any surface the margin decides: others at 0.8 push the spare to 0.8 + MARGIN
    far = split.apply(torch.tensor([[0.9, 0.9, 0.9]]), torch.tensor([[0.8, 0.9, 0.1]]), inst)
    assert far[0, 2].item() == pytest.approx(0.8 + MARGIN)
    # a grid carrying the split applies it first; save / load keeps it
    grid = OwnershipGrid(torch.full((8,), -1, dtype=torch.long), 2, 1.0, split=split)
    assert torch.allclose(grid.apply(x, sdf, inst), expected)


def test_channel_split_keeps_its_source_channels_when_the_source_is_dropped():
    # the split was made while channel 1 was instance 1; a later step turned it into background
    # (instance 0): spare channel 2 still takes channel 1's surface in its region, channel 1 keeps the rest
    region = torch.full((64,), -1, dtype=torch.long)
    region[flat_voxel(np.array([0, 0, 0]), 4)] = 2
    source = torch.tensor([-1, -1, 1])
    x = torch.tensor([[-0.9, -0.9, -0.9], [0.9, 0.9, 0.9]])
    sdf = torch.tensor([[0.3, 0.1, 0.7], [0.3, 0.1, 0.7]])
    after = torch.tensor([0, 0, 2])
    frozen = ChannelSplit(region, 4, 1.0, source, members=torch.tensor([0, 1, 0]))
    assert torch.allclose(frozen.apply(x, sdf, after), torch.tensor([[0.3, 0.5, 0.1], [0.3, 0.1, 0.7]]))
    # without the split's own record the spare finds no source channel: the piece stays background
    old = ChannelSplit(region, 4, 1.0, source)
    assert torch.allclose(old.apply(x, sdf, after)[0], torch.tensor([0.3, 0.1, float("inf")]))

def test_grid_with_split_round_trip(tmp_path):
    split = ChannelSplit(torch.tensor([-1, 3] * 4), 2, 1.0, torch.tensor([-1, -1, -1, 1]),
                         members=torch.tensor([0, 1, 1, 0]))
    OwnershipGrid(torch.zeros(8, dtype=torch.long), 2, 1.0, 0.03, split).save(tmp_path / "o.npz")
    back = OwnershipGrid.load(tmp_path / "o.npz")
    assert torch.equal(back.split.region, split.region) and torch.equal(back.split.source, split.source)
    assert torch.equal(back.split.members, split.members) and back.split.fold is None
    assert back.split.resolution == 2 and back.max_gap == 0.03
    OwnershipGrid(torch.zeros(8, dtype=torch.long), 2, 1.0).save(tmp_path / "plain.npz")
    assert OwnershipGrid.load(tmp_path / "plain.npz").split is None


def _fake_scene(monkeypatch, n_a=120, n_b=80, merged=0, bridge=0):
    """One training frame, 1 x 240 pixels: pixels 0..n_a-1 are mask 1 (a chair at x = -0.5), the next n_b
    mask 2 (a chair at x = +0.5; its first ``merged`` pixels in mask 1 too, a mask merging the chairs), the
    next ``bridge`` mask 3 (stray points on an arc between them), the rest background (the floor at
    y = -0.6); channel 1 owns both chairs."""
    labels = torch.zeros(240, dtype=torch.long)
    labels[:n_a], labels[n_a:n_a + n_b], labels[n_a + n_b:n_a + n_b + bridge] = 1, 2, 3
    rng = np.random.default_rng(0)
    where = np.tile([0.0, -0.6, 0.0], (240, 1))
    where[:n_a, 0], where[:n_a, 1] = -0.5, 0.0
    where[n_a:n_a + n_b, 0], where[n_a:n_a + n_b, 1] = 0.5, 0.0
    arc = np.linspace(0.15, np.pi - 0.15, bridge)  # the rays' unit directions are their surface points
    where[n_a + n_b:n_a + n_b + bridge] = np.c_[-np.cos(arc), np.zeros(bridge), np.sin(arc)]
    labels[n_a:n_a + merged] = 1
    spot = torch.tensor(where + rng.normal(0, 0.02, (240, 3)), dtype=torch.float32)

    class Sampler:
        frames, h, w = np.array([0]), 1, 240

        def frame_labels(self, f):
            return labels.numpy()

        def gather(self, frames, pix, view):  # rays from the origin; depth 1 puts the surface at dirs
            p = torch.as_tensor(pix)
            return SimpleNamespace(origins=torch.zeros(p.numel(), 3), dirs=spot[p], label=labels[p],
                                   semantic=torch.where(labels[p] > 0, 6, 1), confidence=torch.ones(p.numel()))

    def render(model, o, d, chunk, keys):
        n = o.shape[0]
        owner = (d[:, 1] > -0.3).long()  # the chairs: channel 1; the floor: channel 0
        return {"opacity": torch.nn.functional.one_hot(owner, 3).float(), "depth": torch.ones(n), "acc": torch.ones(n)}

    monkeypatch.setattr(channels, "render_rays_chunked", render)
    return Sampler()


def test_split_objects_cuts_chairs_the_geometry_holds_apart(monkeypatch):
    # chair B's 80 rays: 50 in chair A's mask (a merged view), 30 in its own; 20 stray points join them
    sampler = _fake_scene(monkeypatch, merged=50, bridge=20)
    table = ChannelTable(is_object=np.array([False, True, False]), classes=np.array([0, 5, 0]),
                         votes=np.array([50, 200, 0]))
    grid = OwnershipGrid(torch.full((8 ** 3,), -1, dtype=torch.long), 8, 1.0, 0.03)
    # one connected piece; the masks link the halves (more than 0.25): no cut
    assert split_objects(None, sampler, table, grid, 16, 2000, bisect=1)[2] == []
    # the geometry holds them apart, though chair B's rays lie mostly in masks the bigger half dominates
    new, _, (report,) = split_objects(None, sampler, table, grid, 16, 2000, bisect=1, max_valley=0.2)
    assert new.is_object.tolist() == [False, True, True] and new.instance.tolist() == [0, 1, 2]
    assert report.groups == [1, 2] and 0.25 < report.max_link <= 0.75
    # masks that link them more than valley_link keep them one object
    assert split_objects(None, sampler, table, grid, 16, 2000, bisect=1, max_valley=0.2, valley_link=0.3)[2] == []
    # nothing of its class touches the piece: join_touching leaves it an object of its own
    assert split_objects(None, sampler, table, grid, 16, 2000, bisect=1, max_valley=0.2,
                         join_touching=0.5)[0].instance.tolist() == [0, 1, 2]


def test_split_objects_joins_a_piece_to_the_object_it_touches(monkeypatch):
    sampler = _fake_scene(monkeypatch, merged=50, bridge=20)

    def render(model, o, d, chunk, keys):  # chair B's rays with y > 0 go to channel 2, a chair of its own
        owner = (d[:, 1] > -0.3).long()
        owner[(d[:, 0] > 0.3) & (d[:, 2].abs() < 0.1) & (d[:, 1] > 0)] = 2
        return {"opacity": torch.nn.functional.one_hot(owner, 4).float(), "depth": torch.ones(o.shape[0]),
                "acc": torch.ones(o.shape[0])}

    monkeypatch.setattr(channels, "render_rays_chunked", render)
    table = ChannelTable(is_object=np.array([False, True, True, False]), classes=np.array([0, 5, 5, 0]),
                         votes=np.array([50, 200, 40, 0]))
    grid = OwnershipGrid(torch.full((8 ** 3,), -1, dtype=torch.long), 8, 1.0, 0.03)
    # cut off channel 1 by the geometry, the rest of chair B goes to spare channel 3: an object of its own ...
    alone, _, (report,) = split_objects(None, sampler, table, grid, 16, 2000, bisect=1, max_valley=0.2)
    assert alone.instance.tolist() == [0, 1, 2, 3] and report.groups == [1, 3]
    # ... or, all of its points next to chair B's other half, a piece of instance 2
    joined, _, (report,) = split_objects(None, sampler, table, grid, 16, 2000, bisect=1, max_valley=0.2,
                                         join_touching=0.5)
    assert joined.instance.tolist() == [0, 1, 2, 2] and joined.is_object.tolist() == [False, True, True, True]
    assert report.groups == [1, 2]
    # another class's object does not take it
    other = ChannelTable(is_object=table.is_object, classes=np.array([0, 5, 7, 0]), votes=table.votes)
    assert split_objects(None, sampler, other, grid, 16, 2000, bisect=1, max_valley=0.2,
                         join_touching=0.5)[0].instance.tolist() == [0, 1, 2, 3]


def test_split_objects_cuts_a_piece_of_another_class(monkeypatch):
    # chair B (x = +0.5) is in chair A's masks in every view: the masks keep them one object
    sampler = _fake_scene(monkeypatch, merged=80)
    gather = sampler.gather

    def gather_b(frames, pix, view):  # the labels call chair B's pixels class 7
        b = gather(frames, pix, view)
        b.semantic = torch.where(b.dirs[:, 0] > 0.3, 7, b.semantic)
        return b

    def render(model, o, d, chunk, keys):  # the head calls chair B class 7, the rest class 6
        owner = (d[:, 1] > -0.3).long()
        out = {"opacity": torch.nn.functional.one_hot(owner, 3).float(), "depth": torch.ones(o.shape[0]),
               "acc": torch.ones(o.shape[0])}
        if "semantic" in keys:
            out["semantic"] = torch.nn.functional.one_hot(torch.where(d[:, 0] > 0.3, 7, 6), 8).float()
        return out

    sampler.gather = gather_b
    monkeypatch.setattr(channels, "render_rays_chunked", render)
    table = ChannelTable(is_object=np.array([False, True, False]), classes=np.array([0, 6, 0]),
                         votes=np.array([50, 200, 0]))
    grid = OwnershipGrid(torch.full((8 ** 3,), -1, dtype=torch.long), 8, 1.0, 0.03)
    model = SimpleNamespace(semantic=object())  # a model with a semantic head (the fake render ignores it)
    assert split_objects(model, sampler, table, grid, 16, 2000, thing_ids=[6, 7])[2] == []
    new, _, (report,) = split_objects(model, sampler, table, grid, 16, 2000, thing_ids=[6, 7], by_class=True)
    assert new.instance.tolist() == [0, 1, 2] and new.classes.tolist() == [0, 6, 7]
    assert report.groups == [1, 2] and report.rays[0] > report.rays[1] > 0 and report.max_link == 0.0
    # without a semantic head or the thing classes the step stays as it was
    assert split_objects(None, sampler, table, grid, 16, 2000, thing_ids=[6, 7], by_class=True)[2] == []
    # the measured depth puts chair B's pixels twice as far as the rendered surface (a floater in front):
    # not cut with class_depth; within it (or no depth in the scene): cut as above
    far = lambda frames, pix, view: SimpleNamespace(  # noqa: E731
        **vars(gather_b(frames, pix, view)), ray_scale=torch.ones(len(pix)),
        depth=torch.where(torch.as_tensor(pix) >= 120, 2.0, 1.0))
    sampler.gather = far
    assert split_objects(model, sampler, table, grid, 16, 2000, thing_ids=[6, 7], by_class=True,
                         class_depth=0.1)[2] == []
    assert len(split_objects(model, sampler, table, grid, 16, 2000, thing_ids=[6, 7], by_class=True)[2]) == 1
    sampler.gather = lambda frames, pix, view: SimpleNamespace(  # noqa: E731
        **vars(gather_b(frames, pix, view)), ray_scale=torch.ones(len(pix)), depth=torch.ones(len(pix)))
    assert len(split_objects(model, sampler, table, grid, 16, 2000, thing_ids=[6, 7], by_class=True,
                             class_depth=0.1)[2]) == 1
    # a piece of 80 of 200 rays: cut at the class floor 0.3, not at 0.5 (split_min_share 0.1 does not size it)
    sampler.gather = gather_b
    assert len(split_objects(model, sampler, table, grid, 16, 2000, thing_ids=[6, 7], by_class=True,
                             class_min_share=0.3)[2]) == 1
    assert split_objects(model, sampler, table, grid, 16, 2000, thing_ids=[6, 7], by_class=True,
                         class_min_share=0.5)[2] == []
    assert split_objects(model, sampler, table, grid, 16, 2000, by_class=True)[2] == []


def test_split_objects_gives_the_second_chair_a_spare_channel(monkeypatch):
    sampler = _fake_scene(monkeypatch)
    table = ChannelTable(is_object=np.array([False, True, False]), classes=np.array([0, 5, 0]),
                         votes=np.array([50, 200, 0]))
    target = torch.full((8 ** 3,), -1, dtype=torch.long)
    target[flat_voxel(np.array([6, 4, 4]), 8)] = 1  # the vote gave chair B's voxel (x = +0.5) to instance 1
    grid = OwnershipGrid(target, 8, 1.0, 0.03)
    new, split_grid, (report,) = split_objects(None, sampler, table, grid, 16, 2000)
    assert new.is_object.tolist() == [False, True, True] and new.classes.tolist() == [0, 5, 5]
    # the new object's class voted by its own rays' labels (class 6) when the thing classes are given
    assert split_objects(None, sampler, table, grid, 16, 2000, thing_ids=[5, 6])[0].classes.tolist() == [0, 5, 6]
    assert new.instance.tolist() == [0, 1, 2]
    assert report.instance == 1 and report.groups == [1, 2] and report.rays[0] > report.rays[1] > 0
    assert split_grid.split.source.tolist() == [-1, -1, 1] and split_grid.max_gap == 0.03
    assert int(split_grid.target[flat_voxel(np.array([6, 4, 4]), 8)]) == 2  # the vote's voxel follows
    # at chair B the spare channel holds the surface; at chair A channel 1 keeps it
    x = torch.tensor([[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]])
    sdf = torch.tensor([[0.2, 0.0, 0.9], [0.2, 0.0, 0.9]])
    out = split_grid.split.apply(x, sdf, torch.as_tensor(new.instance))
    assert out[0].argmin().item() == 2 and out[1].argmin().item() == 1
    assert split_grid.split.fold is None  # the spare owned no surface: nothing to hand over
    # channel 0 is never a spare (instance id 0 is the background), even when it owns nothing: channel 2,
    # which owns the floor now, is the spare, and its floor goes to channel 0 first
    swapped = ChannelTable(is_object=np.array([False, True, False]), classes=np.array([0, 5, 0]),
                           votes=np.array([0, 200, 50]))
    monkeypatch.setattr(channels, "render_rays_chunked", lambda model, o, d, chunk, keys: {
        "opacity": torch.nn.functional.one_hot(torch.where(d[:, 1] > -0.3, 1, 2), 3).float(),
        "depth": torch.ones(o.shape[0]), "acc": torch.ones(o.shape[0])})
    new, folded, (report,) = split_objects(None, sampler, swapped, grid, 16, 2000)
    assert new.instance.tolist() == [0, 1, 2] and report.groups == [1, 2]
    assert folded.split.fold.tolist() == [-1, -1, 0] and folded.split.source.tolist() == [-1, -1, 1]
    # on the floor near chair A (outside the spare's region): channel 0 holds channel 2's floor, channel 2
    # is pushed one split voxel (2 / 16 = 0.125 > MARGIN 0.05) above 0, and the scene SDF (min) is the
    # same; at chair B the spare holds the chair
    x = torch.tensor([[-0.3, -0.6, 0.0], [0.5, 0.0, 0.0]])
    sdf = torch.tensor([[0.9, 0.5, 0.0], [0.2, 0.0, 0.9]])
    out = folded.split.apply(x, sdf, torch.as_tensor(new.instance))
    assert torch.allclose(out[0], torch.tensor([0.0, 0.5, 0.125])) and out[1].argmin().item() == 2
    assert torch.equal(out.min(dim=1).values, sdf.min(dim=1).values)
    # the normals take gradients through the fold: the floor's gradient reaches channel 2's column
    xg = x.clone().requires_grad_(True)
    col = torch.stack([xg[:, 0] + 0.9, xg[:, 1] + 0.5, xg[:, 1] + 0.6], dim=1)  # channel 2 = 0 at y = -0.6
    (g,) = torch.autograd.grad(folded.split.apply(xg, col, torch.as_tensor(new.instance)).min(dim=1).values.sum(), xg)
    assert g[0].tolist() == [0.0, 1.0, 0.0]
    # no spare channel (only channel 0 is background): nothing is cut
    full = ChannelTable(is_object=np.array([False, True]), classes=np.array([0, 5]), votes=np.array([50, 200]))
    monkeypatch.setattr(channels, "render_rays_chunked", lambda model, o, d, chunk, keys: {
        "opacity": torch.nn.functional.one_hot((d[:, 1] > -0.3).long(), 2).float(),
        "depth": torch.ones(o.shape[0]), "acc": torch.ones(o.shape[0])})
    same, same_grid, cut = split_objects(None, sampler, full, grid, 16, 2000)
    assert same is full and same_grid is grid and cut == []


def test_bisect_cuts_bridged_pieces_only_where_the_masks_keep_them_apart():
    rng = np.random.default_rng(0)
    a = rng.normal([-0.5, 0, 0], 0.03, (60, 3))
    b = rng.normal([0.5, 0, 0], 0.03, (50, 3))
    bridge = np.c_[np.linspace(-0.45, 0.45, 10), np.zeros((10, 2))]  # stray points join them in one piece
    pts = np.r_[a, b, bridge]
    one = np.zeros(len(pts), dtype=np.int64)
    seg_apart = np.r_[np.full(60, 1), np.full(50, 2), np.full(10, 3)]
    # cut at x = 0: B and half the bridge (55; 2-means starts from B's far side, the farthest point from
    # the centroid at x = -0.04), A and the other half (65); no mask holds both
    side, _ = bisect_components(pts, one, seg_apart, 20, 0.25, depth=1)
    assert side[:60].tolist() == [1] * 60 and side[60:110].tolist() == [0] * 50
    assert np.bincount(side).tolist() == [55, 65]
    # the same halves seen in one mask each view (one object): no cut
    seg_one = np.r_[np.full(60, 1), np.full(50, 1), np.full(10, 1)]
    assert bisect_components(pts, one, seg_one, 20, 0.25, depth=1)[0].tolist() == [0] * len(pts)
    # halves below the size floor, or depth 0: no cut
    assert bisect_components(pts, one, seg_apart, 70, 0.25, depth=1)[0].max() == 0
    assert bisect_components(pts, one, seg_apart, 20, 0.25, depth=0)[0].max() == 0
    # plan_splits with bisect: the bridged piece is two objects (resolution 16 joins them as one component)
    inst = np.full(len(pts), 3)
    assert plan_splits(inst, pts, seg_apart, 16, 1.0, link=0.25, min_share=0.1) == []
    (r, kept, group, rays, link, held), = plan_splits(inst, pts, seg_apart, 16, 1.0, link=0.25, min_share=0.1, bisect=1)
    # the bridge's mask 3 holds 5 points of each half: link 5 / 55
    assert r == 3 and rays.tolist() == [65, 55] and link == pytest.approx(5 / 55) and held.tolist() == [False, False]


def test_bisect_cuts_where_the_geometry_keeps_the_halves_apart():
    rng = np.random.default_rng(0)
    a = rng.normal([-0.5, 0, 0], 0.03, (60, 3))
    b = rng.normal([0.5, 0, 0], 0.03, (50, 3))
    bridge = np.c_[np.linspace(-0.45, 0.45, 10), np.zeros((10, 2))]
    pts = np.r_[a, b, bridge]
    one = np.zeros(len(pts), dtype=np.int64)
    # one mask merges A's first 30 and B's first 25 rays (a merged view); A, B and the bridge otherwise apart
    seg = np.r_[np.full(30, 1), np.full(30, 2), np.full(25, 1), np.full(25, 3), np.full(10, 4)]
    # halves 65 / 55 (as above); shared: mask 1 min(30, 25), mask 4 min(5, 5): link 30 / 55 > 0.25
    assert bisect_components(pts, one, seg, 20, 0.25, depth=1)[0].max() == 0
    side, apart = bisect_components(pts, one, seg, 20, 0.25, depth=1, max_valley=0.2, valley_link=0.75, width=0.1)
    assert np.bincount(side).tolist() == [55, 65] and len(apart) == 1
    assert sorted(map(len, apart[0])) == [55, 65]
    # the masks link them more than valley_link: no cut
    assert bisect_components(pts, one, seg, 20, 0.25, depth=1, max_valley=0.2, valley_link=0.5, width=0.1)[0].max() == 0
    # surface all along the line (one object): no cut
    line = np.c_[np.linspace(-0.5, 0.5, 120), np.zeros((120, 2))]
    assert bisect_components(line, one, seg, 20, 0.25, depth=1, max_valley=0.2, width=0.1)[0].max() == 0
    # plan_splits: the masks do not join halves the geometry cut (their link 30 / 55 is above 0.25)
    inst = np.full(len(pts), 3)
    assert plan_splits(inst, pts, seg, 16, 1.0, link=0.25, min_share=0.1, bisect=1) == []
    (r, kept, group, rays, link, held), = plan_splits(inst, pts, seg, 16, 1.0, link=0.25, min_share=0.1, bisect=1,
                                                      max_valley=0.2)
    assert r == 3 and rays.tolist() == [65, 55] and link == pytest.approx(30 / 55) and held.tolist() == [False, True]


def test_split_fold_round_trip(tmp_path):
    split = ChannelSplit(torch.tensor([-1, 2] * 4), 2, 1.0, torch.tensor([-1, -1, 1]), torch.tensor([-1, -1, 0]))
    grid = OwnershipGrid(torch.full((8,), -1, dtype=torch.long), 2, 1.0, 0.03, split)
    grid.save(tmp_path / "o.npz")
    back = OwnershipGrid.load(tmp_path / "o.npz")
    assert back.split.fold.tolist() == [-1, -1, 0] and back.split.source.tolist() == [-1, -1, 1]


def test_class_depth_tolerance_only_for_depth_in_the_poses_units():
    norm = SimpleNamespace(scale=2.0)
    scene = lambda kind, depth=np.ones((1, 2, 2)): SimpleNamespace(  # noqa: E731
        depth=depth, depth_kind=kind, normalization=norm)
    assert class_depth_tolerance(0.1, scene("metric")) == 0.05 and class_depth_tolerance(0.1, scene("sparse")) == 0.05
    # a monocular cue (up to scale and shift), no depth, or the check off: not checked
    assert class_depth_tolerance(0.1, scene("mono")) == 0.0 and class_depth_tolerance(0.1, scene("metric", None)) == 0.0
    assert class_depth_tolerance(0.0, scene("metric")) == 0.0


def test_split_config_checks():
    with pytest.raises(SdfsegError, match="render.split_grid"):
        load_config(None, ["render.split_grid=64"])  # needs the ownership vote
    with pytest.raises(SdfsegError, match="render.split_link"):
        load_config(None, ["render.vote_grid=64", "render.split_grid=64", "render.split_link=1.5"])
    assert load_config(None, ["render.vote_grid=64", "render.split_grid=128"]).render.split_grid == 128
    with pytest.raises(SdfsegError, match="render.split_bisect"):
        load_config(None, ["render.split_bisect=-1"])
    with pytest.raises(SdfsegError, match="render.split_min_share"):
        load_config(None, ["render.split_min_share=1.0"])
    with pytest.raises(SdfsegError, match="render.split_valley"):
        load_config(None, ["render.split_valley=1.0"])
    with pytest.raises(SdfsegError, match="render.split_valley_link"):
        load_config(None, ["render.split_valley_link=-0.1"])
    with pytest.raises(SdfsegError, match="render.split_join_touching"):
        load_config(None, ["render.split_join_touching=1.0"])
    assert load_config(None, ["render.split_class=true"]).render.split_class is True
    with pytest.raises(SdfsegError, match="render.split_class"):
        load_config(None, ["render.split_class=maybe"])
    r = load_config(None, ["render.split_class_min_share=0.0", "render.split_class_depth=0.1"]).render
    assert r.split_class_min_share == 0.0 and r.split_class_depth == 0.1
    assert load_config(None, []).render.split_class_min_share is None
    with pytest.raises(SdfsegError, match="render.split_class_min_share"):
        load_config(None, ["render.split_class_min_share=1.0"])
    with pytest.raises(SdfsegError, match="render.split_class_depth"):
        load_config(None, ["render.split_class_depth=-0.1"])
