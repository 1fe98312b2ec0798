"""The join step's plan (sdfseg/methods/clustering/join.py) on hand-built point sets."""

import numpy as np
import pytest

from sdfseg.methods.clustering.join import plan_joins, sorted_extent


def box_points(lo, hi, n=200, seed=0):
    """``n`` points spread evenly (seeded) in the box ``lo``-``hi``."""
    rng = np.random.default_rng(seed)
    return np.asarray(lo) + rng.random((n, 3)) * (np.asarray(hi) - np.asarray(lo))


def test_sorted_extent_is_the_2_98_percentile_box_largest_first():
    pts = np.zeros((101, 3))
    pts[:, 0] = np.linspace(0.0, 1.0, 101)       # 2nd-98th percentile: 0.02 .. 0.98
    pts[:, 2] = np.linspace(0.0, 0.5, 101)       # 0.01 .. 0.49
    assert sorted_extent(pts) == pytest.approx([0.96, 0.48, 0.0])


def scene(pieces):
    """``instance [N]`` and ``points [N, 3]`` from ``{id: (lo, hi)}`` boxes."""
    inst, pts = [], []
    for i, (lo, hi) in pieces.items():
        p = box_points(lo, hi, seed=i)
        inst.append(np.full(len(p), i))
        pts.append(p)
    return np.concatenate(inst), np.concatenate(pts)


# three whole chairs 0.5 x 0.5 x 0.9 in a row 1 m apart; chair 4 is a seat (0.5 x 0.5 x 0.1) and chair 5
# its back (0.5 x 0.1 x 0.5) above it, 0.2 apart; class 5 = chair, class 6 = sofa (instance 6)
CHAIRS = {1: ([0, 0, 0], [0.5, 0.5, 0.9]), 2: ([1, 0, 0], [1.5, 0.5, 0.9]), 3: ([2, 0, 0], [2.5, 0.5, 0.9]),
          4: ([3, 0, 0.3], [3.5, 0.5, 0.4]), 5: ([3, 0.4, 0.6], [3.5, 0.5, 0.9])}
CLASSES = np.array([0, 5, 5, 5, 5, 5, 6])


def test_the_seat_and_the_back_of_one_chair_join():
    inst, pts = scene(CHAIRS)
    # the chairs' sorted extents: 0.9, 0.5, 0.5 (x0.96 by the percentiles) three times; the seat's 0.5,
    # 0.5, 0.1 and the back's 0.5, 0.3, 0.1 (x0.96): the 75th percentiles are a whole chair's
    assert plan_joins(inst, pts, CLASSES, 1.1) == {5: 4}  # as many points each: the lower id keeps its id
    # the box of the two is 0.5 x 0.5 x 0.6 (x0.96): it does not fit in 0.5 of a chair
    assert plan_joins(inst, pts, CLASSES, 0.5) == {}


def test_two_whole_chairs_side_by_side_do_not_join():
    # chairs 1 and 2 touching: together 1.0 x 0.5 x 0.9, twice a chair's length
    inst, pts = scene({1: ([0, 0, 0], [0.5, 0.5, 0.9]), 2: ([0.5, 0, 0], [1.0, 0.5, 0.9]),
                       3: ([2, 0, 0], [2.5, 0.5, 0.9])})
    assert plan_joins(inst, pts, CLASSES, 1.5) == {}


def test_no_join_across_classes_nor_for_a_class_seen_once():
    inst, pts = scene({1: ([0, 0, 0], [0.5, 0.5, 0.9]), 6: ([0, 0.5, 0], [0.5, 0.6, 0.9])})
    assert plan_joins(inst, pts, CLASSES, 2.0) == {}
    # too few points to size: not joined
    inst, pts = scene(CHAIRS)
    few = (inst != 5) | (np.arange(len(inst)) % 40 == 0)  # 5 of chair 5's 200 points
    assert plan_joins(inst[few], pts[few], CLASSES, 1.1) == {}


def test_join_objects_relabels_the_table_and_the_vote(monkeypatch):
    import torch

    from sdfseg.core.ownership import OwnershipGrid
    from sdfseg.methods.clustering import join
    from sdfseg.methods.outputs import ChannelTable

    inst, pts = scene(CHAIRS)
    # channel k holds instance k (channel 0 background); every ray hits
    monkeypatch.setattr(join, "surface_rays", lambda *a, **k: (None, None, None, inst, pts, np.ones(len(inst), bool)))
    table = ChannelTable(is_object=np.array([False, True, True, True, True, True]), classes=np.array([0, 5, 5, 5, 5, 5]))
    grid = OwnershipGrid(torch.tensor([0, 1, 4, 5, 5, -1, 2, 3]), 2, 1.0)
    new, g, joins = join.join_objects(None, None, table, grid, 1.1, 100)
    assert joins == {5: 4}
    assert new.instance.tolist() == [0, 1, 2, 3, 4, 4] and new.is_object.tolist() == table.is_object.tolist()
    assert g.target.tolist() == [0, 1, 4, 4, 4, -1, 2, 3] and grid.target.tolist() == [0, 1, 4, 5, 5, -1, 2, 3]
    # nothing to join: the same table and grid back
    same = join.join_objects(None, None, table, grid, 0.5, 100)
    assert same[0] is table and same[1] is grid and same[2] == {}
