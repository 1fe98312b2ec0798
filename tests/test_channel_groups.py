"""Merging object channels that the 2D masks put together (inference.channel_groups) and the merged
channel table's round trip / mesh SDF."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sdfseg.core.ownership import OwnershipGrid, flat_voxel
from sdfseg.data.scene import ClassInfo
from sdfseg.methods.clustering import channels
from sdfseg.methods.clustering.channels import channel_groups, keep_owning_objects, mask_class_votes
from sdfseg.methods.outputs import ChannelTable, save_channel_table
from sdfseg.training.pipeline import grouped_sdf, load_channel_table, supported_sdf


def _rays(spec):
    """``[(segment, owner, count), ...]`` -> owner, segment arrays."""
    owner = np.concatenate([np.full(n, o) for _, o, n in spec])
    segment = np.concatenate([np.full(n, s) for s, _, n in spec])
    return owner, segment


# masks 0, 1 cover an object split over channels 1 and 2 (dominated by 1), mask 2 only its channel-2
# piece, mask 3 a second object (channel 3), mask 4 wrongly covers both objects (dominated by 1);
# rays outside any mask (-1) do not count
SPEC = [(0, 1, 6), (0, 2, 3), (1, 1, 5), (1, 2, 2), (2, 2, 2), (3, 3, 5), (4, 3, 2), (4, 1, 4),
        (-1, 0, 9), (-1, 2, 4)]
IS_OBJECT = np.array([False, True, True, True])


def test_channel_groups_hand_worked():
    owner, segment = _rays(SPEC)
    # channel 2: 5 of its 7 masked rays in masks channel 1 dominates (0.71 > 0.35) -> joins 1, which
    # has more masked rays (15 vs 7) and represents the group; channel 3: 2 of 7 (0.29) -> stays
    assert channel_groups(owner, segment, IS_OBJECT, 0.35).tolist() == [0, 1, 1, 3]
    # a share below 0.29 also takes the under-segmented object in
    assert channel_groups(owner, segment, IS_OBJECT, 0.25).tolist() == [0, 1, 1, 1]
    # 0 (off) or >= 1 merges nothing; neither does a share above every fraction
    for share in (0.0, 1.0, 0.8):
        assert channel_groups(owner, segment, IS_OBJECT, share).tolist() == [0, 1, 2, 3]


def test_channel_groups_same_class_only():
    owner, segment = _rays(SPEC)
    votes = np.zeros((4, 6))
    votes[1, 5], votes[2, 5], votes[3, 4] = 10.0, 4.0, 6.0  # channels 1, 2 chair; 3 table
    # share 0.25 merged the table into the chairs above; with the class votes it stays apart
    assert channel_groups(owner, segment, IS_OBJECT, 0.25, votes).tolist() == [0, 1, 1, 3]
    # channel 2 votes table: it no longer joins channel 1 (0.71 of its rays in channel 1's masks); its
    # masks 0-2 being dominated by channel 1 and 3 by 3 leaves it with no group of its class above 0.35
    votes[2] = [0, 0, 0, 0, 4.0, 0]
    assert channel_groups(owner, segment, IS_OBJECT, 0.35, votes).tolist() == [0, 1, 2, 3]
    # a channel's class is the argmax of its votes: mostly table (4 : 1) stays apart, mostly chair joins
    votes[2] = [0, 0, 0, 0, 4.0, 1.0]
    assert channel_groups(owner, segment, IS_OBJECT, 0.35, votes).tolist() == [0, 1, 2, 3]
    votes[2] = [0, 0, 0, 0, 1.0, 4.0]
    assert channel_groups(owner, segment, IS_OBJECT, 0.35, votes).tolist() == [0, 1, 1, 3]


def test_channel_groups_ignores_non_object_channels():
    owner, segment = _rays(SPEC)
    # channel 1 is not an object (e.g. it owns stuff): masks are dominated by object channels only,
    # so channel 2 dominates masks 0-2 and nothing merges
    is_object = np.array([False, False, True, True])
    assert channel_groups(owner, segment, is_object, 0.35).tolist() == [0, 1, 2, 3]


def test_merged_table_round_trip_and_mesh_sdf(tmp_path):
    table = ChannelTable(is_object=IS_OBJECT, classes=np.array([0, 5, 5, 4]), votes=np.array([9, 15, 7, 7]),
                         instance=np.array([0, 1, 1, 3]))
    classes = ClassInfo(num_classes=6, thing_ids=(4, 5), stuff_ids=(1,), names=("void", "wall", "x", "y", "table", "chair"))
    save_channel_table(tmp_path / "channels.json", table, classes)
    rows = json.loads((tmp_path / "channels.json").read_text())["channels"]
    assert [r["instance_id"] for r in rows] == [0, 1, 1, 3]
    back = load_channel_table(tmp_path)
    assert back.instance.tolist() == [0, 1, 1, 3] and back.is_object.tolist() == IS_OBJECT.tolist()
    # column 1 becomes the union (min) of channels 1 and 2, column 2 never wins, the scene min is kept
    fn = grouped_sdf(lambda p: p, table)
    s = torch.tensor([[0.5, 0.2, 0.3, 0.1], [0.5, -0.1, -0.4, 0.0]])
    out = fn(s)
    assert torch.allclose(out, torch.tensor([[0.5, 0.2, 1.2, 0.1], [0.5, -0.4, 0.6, 0.0]]))
    assert torch.equal(out.min(dim=1).values, s.min(dim=1).values)
    # unmerged tables leave the SDF function as it is
    plain = ChannelTable(is_object=IS_OBJECT, classes=np.array([0, 5, 5, 4]))
    assert plain.instance.tolist() == [0, 1, 2, 3] and grouped_sdf(fn, plain) is fn


def test_objects_left_without_surface_become_background():
    # channels 1 and 2 are one merged object (instance 1), channel 3 another; 0 and 4 background
    table = ChannelTable(is_object=np.array([False, True, True, True, False]), classes=np.array([0, 5, 5, 4, 0]),
                         instance=np.array([0, 1, 1, 3, 0]))
    owner = np.array([1, 1, 2, 3, 0, 0, 4])  # instance 1 owns 3 rays (over both channels), instance 3 one
    kept = keep_owning_objects(table, owner, min_votes=3)
    assert kept.is_object.tolist() == [False, True, True, False, False]
    assert kept.instance.tolist() == [0, 1, 1, 0, 0] and kept.classes.tolist() == [0, 5, 5, 0, 0]
    assert keep_owning_objects(table, owner, min_votes=1).is_object.tolist() == table.is_object.tolist()


# class ids: 1 wall, 2 floor (stuff), 4 table, 5 chair (things). Rays: (owner, semantic, confidence, label)
# channel 0 (background) owns wall and floor; channel 1 a chair and the floor around it; channel 2 a
# table piece; channel 3 the floor only, one ray of it in a mask that calls it a chair
CLASSES = ClassInfo(num_classes=6, thing_ids=(4, 5), stuff_ids=(1, 2), names=("void", "wall", "floor", "x", "table", "chair"))
VOTE_RAYS = ([(0, 1, 1.0, 0)] * 5 + [(0, 2, 1.0, 0)] * 5
             + [(1, 5, 0.5, 3)] * 4 + [(1, 4, 1.0, 3)] + [(1, 2, 1.0, 0)] * 5 + [(1, 0, 1.0, 0)] * 2
             + [(1, 5, 1.0, -1)] * 2
             + [(2, 4, 1.0, 7)] * 2 + [(2, 1, 1.0, 0)]
             + [(3, 2, 1.0, 0)] * 5 + [(3, 5, 0.2, 2)])


def _vote_batch():
    owner, sem, conf, label = (np.array(col) for col in zip(*VOTE_RAYS))
    batch = SimpleNamespace(semantic=torch.as_tensor(sem), confidence=torch.as_tensor(conf, dtype=torch.float32),
                            label=torch.as_tensor(label))
    return np.zeros(owner.size, dtype=np.int64), batch, owner


def test_mask_class_votes_hand_worked():
    _, b, owner = _vote_batch()
    hist, share = mask_class_votes(owner, b.semantic.numpy(), b.confidence.numpy(), b.label.numpy(), 4, CLASSES)
    # channel 1: 10 labelled rays (void and unsupervised ones do not count), 5 of them in thing masks:
    # chair 4 x 0.5 = 2.0, table 1.0; channel 2: 2 of 3; channel 3: 1 of 6
    assert np.allclose(share, [0.0, 0.5, 2 / 3, 1 / 6])
    assert np.allclose(hist[1], [0, 0, 0, 0, 1.0, 2.0]) and np.allclose(hist[2], [0, 0, 0, 0, 2.0, 0])
    assert np.allclose(hist[3], [0, 0, 0, 0, 0, 0.2]) and not hist[0].any()


def test_object_by_mask_share(monkeypatch):
    monkeypatch.setattr(channels, "_class_vote_rays", lambda *a, **k: _vote_batch())
    model = SimpleNamespace(num_channels=4)

    def table(min_votes=2, **kw):
        return channels.assign_channel_classes(model, None, CLASSES, min_votes=min_votes, **kw)

    # the class vote of all its rays: channel 1 is floor (5.0 against chair 2.0 + 2.0 unsupervised), so background
    plain = table()
    assert plain.is_object.tolist() == [False, False, True, False] and plain.classes.tolist() == [0, 0, 4, 0]
    # by the mask share: channel 1 is a chair (half its labelled rays in masks); channel 3 (1 in 6) is
    # not an object at 0.25, but is at 0.15
    by_mask = table(mask_share=0.25)
    assert by_mask.is_object.tolist() == [False, True, True, False] and by_mask.classes.tolist() == [0, 5, 4, 0]
    assert table(mask_share=0.15).classes.tolist() == [0, 5, 4, 5]
    # the size rule still holds: channel 2 has 3 rays with a class
    assert table(mask_share=0.25, min_votes=4).classes.tolist() == [0, 5, 0, 0]


def test_object_meshes_cut_to_their_voted_voxels():
    # 4^3 voxels over [-1, 1]^3 (0.5 wide): voxel (0, 0, 0) voted to instance 1, voxel (3, 3, 3) to
    # background; instance 2 has no voted voxel, so its column is not cut
    target = torch.full((64,), -1, dtype=torch.long)
    target[flat_voxel(np.array([0, 0, 0]), 4)] = 1
    target[flat_voxel(np.array([3, 3, 3]), 4)] = 0
    grid = OwnershipGrid(target, 4, 1.0)
    table = ChannelTable(is_object=np.array([False, True, True]), classes=np.array([0, 5, 4]))
    fn = lambda p: torch.tensor([[-0.2, -0.3, -0.4]]).expand(p.shape[0], 3)  # noqa: E731
    p = torch.tensor([[-0.9, -0.9, -0.9], [-0.4, -0.4, -0.4], [0.1, 0.1, 0.1], [0.9, 0.9, 0.9], [2.0, 0.0, 0.0]])
    cut = supported_sdf(fn, table, grid, 0)(p)
    # column 1 keeps -0.3 in its voxel only, and is one voxel's width (0.5) elsewhere, outside the grid too
    assert cut[:, 1].tolist() == pytest.approx([-0.3, 0.5, 0.5, 0.5, 0.5])
    assert torch.equal(cut[:, [0, 2]], fn(p)[:, [0, 2]])
    # grown by one voxel: voxel (1, 1, 1) is kept, (2, 2, 2) is not
    assert supported_sdf(fn, table, grid, 1)(p)[:, 1].tolist() == pytest.approx([-0.3, -0.3, 0.5, 0.5, 0.5])
    assert supported_sdf(fn, table, grid, -1) is fn and supported_sdf(fn, table, None, 0) is fn
    # refined vote: the region also holds the boundary voxels beside the object's, where the border may
    # run: voxel (0, 0, 0) touches no other decided voxel, so nothing changes; a background voxel next to
    # it does and is kept for column 1
    target[flat_voxel(np.array([1, 1, 1]), 4)] = 0
    refined = OwnershipGrid(target, 4, 1.0, refine=True)
    assert supported_sdf(fn, table, refined, 0)(p)[:, 1].tolist() == pytest.approx([-0.3, -0.3, 0.5, 0.5, 0.5])
    assert supported_sdf(fn, table, OwnershipGrid(target, 4, 1.0), 0)(p)[:, 1].tolist() == pytest.approx(
        [-0.3, 0.5, 0.5, 0.5, 0.5])


def _origin_owner(monkeypatch, sampler, **kw) -> int:
    """Owner the vote gives the voxel at the origin, from ``sampler``'s rays that all end there (channel 1,
    an object, owns the rays whose ``dirs[:, 0]`` is 1; channel 0 is background)."""

    def render(model, o, d, chunk, keys):  # the surface lies at the origin: depth = |origin|
        return {"opacity": torch.nn.functional.one_hot(d[:, 0].long(), 2).float(), "depth": o.norm(dim=1),
                "acc": torch.ones(o.shape[0])}

    monkeypatch.setattr(channels, "render_rays_chunked", render)
    table = ChannelTable(is_object=np.array([False, True]), classes=np.array([0, 5]), instance=np.array([0, 1]))
    grid = channels.ownership_vote(None, sampler, table, 4000, 8, kernel=1, **kw)
    return int(grid.lookup(torch.zeros(1, 3))[0])


def test_vote_weighed_by_confidence(monkeypatch):
    # one surface voxel seen by seven training pixels: two in a chair mask (confidence 0.9) owned by channel 1,
    # five labelled background by views that missed the chair (confidence 0.2)
    labels = torch.tensor([1, 1, 0, 0, 0, 0, 0])
    conf = torch.tensor([0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2])

    class Sampler:
        frames, h, w = np.array([0]), 1, 7

        def frame_labels(self, f):
            return labels.numpy()

        def gather(self, frames, pix, view):  # every ray starts at the origin; dirs[:, 0] is its owning channel
            p = torch.as_tensor(pix)
            dirs = torch.zeros(p.numel(), 3)
            dirs[:, 0] = (labels[p] > 0).float()
            return SimpleNamespace(origins=torch.zeros(p.numel(), 3), dirs=dirs, label=labels[p], confidence=conf[p])

    # a labelled pixel's vote counts twice (its uniform rays and the labelled half's): chair 2 x 2 against
    # background 5, the voxel goes to background
    assert _origin_owner(monkeypatch, Sampler()) == 0
    # weighed by confidence: chair 4 x 0.9 = 3.6 against 5 x 0.2 = 1.0
    assert _origin_owner(monkeypatch, Sampler(), use_confidence=True) == 1
