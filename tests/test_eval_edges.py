"""Edge accuracy (edge Dice of each GT instance and its densest predicted id) on small drawn masks."""

import numpy as np
import pytest

from sdfseg.eval import edge_accuracy, label_edges
from sdfseg.eval.edges import frame_edge_dice


def square(hw=(6, 6), rows=(1, 4), cols=(1, 4), value=1, base=None):
    m = np.zeros(hw, np.int32) if base is None else base.copy()
    m[rows[0]:rows[1], cols[0]:cols[1]] = value
    return m


GT = square()  # 3x3 object, id 1


def test_edges_of_a_square_and_at_the_image_border():
    e = label_edges(GT)
    ring = np.zeros((6, 6), bool)
    ring[1:4, 1:4] = True
    ring[2, 2] = False  # the centre has no outside neighbour
    assert np.array_equal(e & (GT == 1), ring)
    corner = square(rows=(0, 3), cols=(0, 3))
    # the image border is no edge: only the pixels next to the background count
    assert sorted(zip(*np.nonzero(label_edges(corner) & (corner == 1)))) == [(0, 2), (1, 2), (2, 0), (2, 1), (2, 2)]


def test_perfect_and_relabelled_prediction():
    assert edge_accuracy(GT[None], GT[None]) == 1.0
    assert edge_accuracy(GT[None], (GT * 777)[None]) == 1.0


def test_shifted_prediction():
    # edges of the GT square and of the square shifted by one column share 4 of 8 pixels
    pred = square(cols=(2, 5), value=3)
    assert edge_accuracy(GT[None], pred[None]) == pytest.approx(0.5)


def test_split_object_pairs_with_densest_id():
    pred = square(rows=(1, 3), value=4)  # 6 px of the object
    pred[3, 1:4] = 5                     # 3 px
    # partner = id 4 (2x3 block, all 6 px are edge); common edge pixels: 5 -> 2*5 / (8 + 6)
    assert edge_accuracy(GT[None], pred[None]) == pytest.approx(5 / 7)


def test_ties_go_to_the_smallest_id():
    gt = square((5, 5), rows=(1, 3), cols=(1, 3))  # 2x2 object: all 4 px are edge
    pred = np.zeros((5, 5), np.int32)
    pred[1, 1:4] = 7  # 2 px inside (+1 outside): Dice would be 2*2/(4+3)
    pred[2, 1:3] = 3  # 2 px inside: Dice 2*2/(4+2)
    assert frame_edge_dice(gt, pred) == pytest.approx([2 / 3])


def test_missed_object_scores_zero_and_samples_are_averaged():
    gt0 = square(value=1, base=square(rows=(4, 6), cols=(4, 6), value=2))  # two objects in frame 0
    pred0 = gt0.copy()
    pred0[gt0 == 2] = 0  # object 2 predicted as background -> Dice 0
    gt1 = GT
    pred1 = square(cols=(2, 5), value=9)  # Dice 0.5
    # samples: frame 0 -> [1, 0], frame 1 -> [0.5]; plain mean over the three
    assert edge_accuracy(np.stack([gt0, gt1]), np.stack([pred0, pred1])) == pytest.approx(0.5)


def test_ids_are_paired_per_frame_and_large_ids_work():
    gt = np.stack([GT * 70000, GT * 70000])
    pred = np.stack([GT * 300, GT * 65536])  # different ids per frame: EA is a per-view measure
    assert edge_accuracy(gt, pred) == 1.0


def test_prediction_resized_and_whole_image_object_skipped():
    assert edge_accuracy(GT[None], GT.repeat(2, 0).repeat(2, 1)[None]) == 1.0
    full = np.ones((1, 4, 4), np.int32)
    assert edge_accuracy(full, full) is None
