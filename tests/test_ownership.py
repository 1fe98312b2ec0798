"""Multi-view ownership vote: hand-worked mask votes, voxel pooling and the SDF edit."""

import numpy as np
import pytest
import torch

from sdfseg.core.ownership import MARGIN, ChannelSplit, OwnershipGrid, follow_ownership
from sdfseg.errors import SdfsegError
from sdfseg.methods.clustering.channels import owner_gap
from sdfseg.methods.clustering.ownership import absorb_islands, mask_votes, vote_grid


def test_mask_votes_follow_the_dominant_instance():
    owner = np.array([0, 0, 4, 4, 4, 0, 3, 5, 0])
    segment = np.array([10, 10, 10, 10, 10, -1, 20, 20, 30])
    # mask 10: its object rays are all instance 4 -> its two background-owned rays vote 4 too;
    # unlabelled ray -> background; mask 20 split 1:1 over 3 and 5 (purity 0.5 < 0.6) -> no vote;
    # mask 30 has no object-owned ray -> no vote
    assert mask_votes(owner, segment, 0.6).tolist() == [4, 4, 4, 4, 4, 0, -1, -1, -1]
    # at purity 0.5 the split mask votes for its (first) most-owned instance
    assert mask_votes(owner, segment, 0.5)[6:8].tolist() == [3, 3]


def _cell(grid, i, j, k):
    g = grid.resolution
    return int(grid.target[(i * g + j) * g + k])


def test_vote_grid_majority_per_voxel():
    # resolution 4 over [-1, 1]^3: voxel edge 0.5
    pts = np.array([[0.1, 0.1, 0.1]] * 5 + [[-0.9, -0.9, -0.9]] * 2 + [[0.9, 0.9, 0.9]] * 2)
    vote = np.array([4, 4, 4, 0, 0, 4, 0, 4, 7])
    weight = np.array([1, 1, 1, 1, 1, 1, 1, 1, 2.0])
    grid = vote_grid(pts, vote, weight, resolution=4, radius=1.0, kernel=1)
    assert _cell(grid, 2, 2, 2) == 4  # 3 object votes against 2 background
    assert _cell(grid, 0, 0, 0) == 0  # a tie goes to background
    assert _cell(grid, 3, 3, 3) == 7  # the most-voted (by weight) object
    assert int((grid.target >= 0).sum()) == 3  # voxels without votes have no say
    strict = vote_grid(pts, vote, weight, resolution=4, radius=1.0, kernel=1, object_share=0.7)
    assert _cell(strict, 2, 2, 2) == -1  # 3/5 object votes: not enough for an object, too few for background
    assert _cell(strict, 0, 0, 0) == 0 and _cell(strict, 3, 3, 3) == 7
    weight[6] = 0.4  # the background vote now weighs less than the object's
    assert _cell(vote_grid(pts, vote, weight, 4, 1.0, kernel=1), 0, 0, 0) == 4


def test_vote_grid_kernel_spreads_to_neighbours():
    grid = vote_grid(np.array([[-0.4, -0.4, -0.4]]), np.array([4]), np.ones(1), resolution=4, radius=1.0, kernel=3)
    assert _cell(grid, 1, 1, 1) == 4 and _cell(grid, 0, 0, 0) == 4 and _cell(grid, 2, 2, 2) == 4
    assert _cell(grid, 3, 3, 3) == -1 and int((grid.target >= 0).sum()) == 27
    none = vote_grid(np.zeros((2, 3)), np.array([-1, -1]), np.ones(2), resolution=4, radius=1.0)
    assert int((none.target >= 0).sum()) == 0


def test_absorb_islands_hand_worked():
    g = 6
    t = np.full((g, g, g), -1)
    t[:, :, 0] = 0  # a floor: one layer of background voxels
    t[2, 2, 0] = 5  # one stray object voxel in it -> floor
    t[0:2, 0:2, 1] = 3  # a 4-voxel object standing on the floor: its decided neighbours are floor ...
    t[0:3, 0:3, 2] = 3  # ... and itself (9 more voxels above it: a piece of 13)
    t[1, 1, 2] = 0  # a background hole in the object's top -> the object
    t[5, 5, 5] = 7  # alone in space: no decided neighbour, it stays
    out = absorb_islands(t.reshape(-1), g, 4).reshape(g, g, g)
    assert out[2, 2, 0] == 0 and out[1, 1, 2] == 3 and out[5, 5, 5] == 7
    assert (out[0:2, 0:2, 1] == 3).all()  # a piece of min_island voxels or more stays
    assert (out[t == -1] == -1).all()  # voxels with no say keep none
    changed = out != t
    assert changed.sum() == 2
    # at min_island 13 the object (12 voxels) is an island too: the hole goes to it first, then the
    # object to the floor, which holds most of its decided ring
    ring = absorb_islands(t.reshape(-1), g, 13).reshape(g, g, g)
    assert (ring[t == 3] == 0).all() and ring[1, 1, 2] == 3
    assert np.array_equal(absorb_islands(t.reshape(-1), g, 0), t.reshape(-1))  # off
    # a tie around an island: no owner holds more than half, it stays
    tie = np.full((g, g, g), -1)
    tie[2, 2, 2] = 4
    tie[1, 2, 2], tie[3, 2, 2] = 1, 2
    assert absorb_islands(tie.reshape(-1), g, 2).reshape(g, g, g)[2, 2, 2] == 4
    # two one-voxel islands side by side: the first taken (the smaller owner id) joins the other
    pair = np.full((g, g, g), -1)
    pair[2, 2, 2], pair[3, 2, 2] = 4, 6
    assert absorb_islands(pair.reshape(-1), g, 2).reshape(g, g, g)[2:4, 2, 2].tolist() == [6, 6]
    # through vote_grid: the same edit of the pooled grid
    pts = np.array([[0.1, 0.1, 0.1]] * 3 + [[0.6, 0.1, 0.1]])
    grid = vote_grid(pts, np.array([0, 0, 0, 9]), np.ones(4), resolution=4, radius=1.0, kernel=1, min_island=2)
    assert _cell(grid, 2, 2, 2) == 9 and _cell(grid, 3, 2, 2) == 9  # background (id 0) is taken first


def test_apply_moves_ownership_not_the_surface():
    target = torch.full((8,), -1, dtype=torch.long)
    target[0] = 2  # voxel (0,0,0): x, y, z < 0 -> object channel 2
    target[7] = 0  # voxel (1,1,1) -> background
    grid = OwnershipGrid(target, resolution=2, radius=1.0)
    x = torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [1.5, 0.0, 0.0]])
    sdf = torch.tensor([[0.1, 0.3, 0.5], [0.4, 0.2, 0.6], [0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    out = grid.apply(x, sdf, torch.tensor([0, 1, 2]))  # instance id per channel (0 = background)
    expected = torch.tensor([[0.1 + MARGIN, 0.3, 0.1],          # channel 2 takes the scene SDF
                             [0.2, 0.2 + MARGIN, 0.6],          # background channel 0 takes it
                             [0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])  # no say / outside: unchanged
    assert torch.allclose(out, expected)
    assert torch.equal(out.min(dim=1).values, sdf.min(dim=1).values)


def _halves_grid(**kw) -> OwnershipGrid:
    """4^3 voxels over [-1, 1]^3 (0.5 wide): x < 0 voted to instance 1, x >= 0 to background; the
    column z >= 0.5 (voxel z index 3) has no say."""
    target = torch.zeros((4, 4, 4), dtype=torch.long)
    target[:2] = 1
    target[:, :, 3] = -1
    return OwnershipGrid(target.reshape(-1), resolution=4, radius=1.0, **kw)


def test_refine_boundary_voxels_hand_worked():
    grid = _halves_grid(refine=True)
    b = grid.boundary().reshape(4, 4, 4)
    # the two voxel layers beside x = 0 (x index 1 and 2), where a voxel decides; not the undecided column
    assert b[1, :, :3].all() and b[2, :, :3].all() and int(b.sum()) == 2 * 4 * 3
    assert not b[0].any() and not b[3].any() and not b[:, :, 3].any()


def test_refine_lets_the_channels_draw_the_border_inside_boundary_voxels():
    instance = torch.tensor([0, 1, 2])  # channel 2: an object that no voxel nearby is voted to
    x = torch.tensor([[-0.1, 0.1, 0.1],   # boundary voxel of instance 1, background's channel lowest
                      [-0.9, 0.1, 0.1],   # inside instance 1's voxels (not a boundary voxel)
                      [0.1, 0.1, 0.1],    # boundary voxel of background, instance 1's channel lowest
                      [-0.1, 0.1, 0.1]])  # boundary voxel: channel 2 lowest, not a candidate there
    sdf = torch.tensor([[0.00, 0.02, 0.30],
                        [0.00, 0.02, 0.30],
                        [0.04, 0.01, 0.30],
                        [0.03, 0.02, 0.01]])
    plain = _halves_grid().apply(x, sdf, instance)
    refined = _halves_grid(refine=True).apply(x, sdf, instance)
    s_min = sdf.min(dim=1).values
    # the voxel's owner without refine: instance 1, background, background, instance 1
    assert plain[:, 1].tolist() == pytest.approx([0.0, 0.0, 0.01 + MARGIN, 0.01])
    # refined: background, instance 1 (no boundary), instance 1, instance 1 (channel 2 has no say there)
    assert refined[:, 0].tolist() == pytest.approx([0.0, 0.0 + MARGIN, 0.01 + MARGIN, 0.01 + MARGIN])
    assert refined[:, 1].tolist() == pytest.approx([0.0 + MARGIN, 0.0, 0.01, 0.01])
    assert refined[3, 2].item() == pytest.approx(0.01 + MARGIN)  # pushed above the owner
    assert torch.equal(refined.min(dim=1).values, s_min) and torch.equal(plain.min(dim=1).values, s_min)


def test_grid_save_load_round_trip(tmp_path):
    grid = vote_grid(np.array([[0.1, 0.2, 0.3]]), np.array([5]), np.ones(1), resolution=8, radius=1.0)
    grid.max_gap = 0.03
    grid.save(tmp_path / "o.npz")
    back = OwnershipGrid.load(tmp_path / "o.npz")
    assert back.resolution == 8 and back.radius == 1.0 and torch.equal(back.target, grid.target)
    assert back.max_gap == 0.03 and back.refine is False
    grid.refine = True
    grid.save(tmp_path / "r.npz")
    assert OwnershipGrid.load(tmp_path / "r.npz").refine is True
    (tmp_path / "bad.npz").write_text("not a grid")
    with pytest.raises(SdfsegError, match="bad.npz"):
        OwnershipGrid.load(tmp_path / "bad.npz")


def test_apply_merged_instance_and_geometry_gate():
    """Channels 0, 1 background, 2 and 3 one merged object (instance 3); gate 0.1."""
    target = torch.full((8,), -1, dtype=torch.long)
    target[0] = 3  # voxel (0,0,0)
    target[7] = 0  # voxel (1,1,1)
    grid = OwnershipGrid(target, resolution=2, radius=1.0, max_gap=0.1)
    x = torch.tensor([[-0.5, -0.5, -0.5], [-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    sdf = torch.tensor([[0.1, 0.2, 0.15, 0.5],   # object's lowest channel 2 is 0.05 above: re-assigned
                        [0.1, 0.2, 0.4, 0.5],    # object 0.3 above the surface: gate keeps it as it is
                        [0.3, 0.25, 0.2, 0.6]])  # background's lowest channel 1 is 0.05 above: re-assigned
    out = grid.apply(x, sdf, torch.tensor([0, 0, 3, 3]))
    expected = torch.tensor([[0.15, 0.2, 0.1, 0.5],
                             [0.1, 0.2, 0.4, 0.5],
                             [0.3, 0.2, 0.25, 0.6]])
    assert torch.allclose(out, expected)
    assert torch.equal(out.min(dim=1).values, sdf.min(dim=1).values)


def test_owner_gap_uses_the_instance_lowest_channel():
    class Columns(torch.nn.Module):  # channel SDFs = the point's coordinates
        def sdf(self, x):
            return x, None

    pts = np.array([[0.0, 0.4, 0.3], [0.2, 0.1, 0.5], [0.3, 0.1, 0.0]])
    gap = owner_gap(Columns(), pts, np.array([0, 5, 5]), np.array([5, 0, 0]), chunk=2)
    assert np.allclose(gap, [0.3, 0.1, 0.3])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_follow_ownership_puts_the_grid_on_the_model_device(device):
    """The model's edit uses the grid's tensors on the model's device (no copy per SDF evaluation) and
    gives what the grid gives on the CPU."""
    target = torch.full((8,), -1, dtype=torch.long)
    target[0], target[7] = 2, 0
    split = ChannelSplit(torch.full((8,), -1, dtype=torch.long), 2, 1.0, torch.tensor([-1, -1, -1]),
                         torch.tensor([-1, -1, -1]))
    grid = OwnershipGrid(target, 2, 1.0, 0.5, split)
    moved = grid.to(device)
    assert moved.target.device.type == device and moved.split.region.device.type == device
    assert moved.split.source.device.type == device and moved.split.fold.device.type == device
    assert (moved.resolution, moved.radius, moved.max_gap) == (2, 1.0, 0.5) and grid.target.device.type == "cpu"
    model = torch.nn.Linear(1, 1).to(device)
    follow_ownership(model, np.array([0, 1, 2]), grid)
    x = torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5]])
    sdf = torch.tensor([[0.1, 0.3, 0.5], [0.4, 0.2, 0.6], [0.3, 0.2, 0.1]])
    out = model.channel_edit(x.to(device), sdf.to(device))
    assert out.device.type == device
    assert torch.allclose(out.cpu(), grid.apply(x, sdf, torch.tensor([0, 1, 2])))
    follow_ownership(model, np.array([0, 1, 2]), None)
    assert model.channel_edit is None
