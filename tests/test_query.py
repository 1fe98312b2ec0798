"""2D click queries and 3D graph segmentation of feature points."""

import numpy as np
import pytest
import torch

from sdfseg.errors import SdfsegError
from sdfseg.methods.hierarchy.query import (
    click_feature, feature_candidates, hierarchy_of_segments, masks_at_thresholds, multi_score_map, query_image,
    query_points, score_map, segment_image, segment_image_hierarchy, segment_points, segmentation_candidates,
)


def toy_map():
    """Left object (1,0,0) with a part (0.8,0,0.6) in its top-left 2x2; right object (0,1,0). Scaled features."""
    f = np.zeros((4, 6, 3), np.float32)
    f[:, :3] = [2.0, 0, 0]
    f[:2, :2] = [0.8, 0, 0.6]
    f[:, 3:] = [0, 3.0, 0]
    left = np.zeros((4, 6), bool)
    left[:, :3] = True
    part = np.zeros((4, 6), bool)
    part[:2, :2] = True
    return f, part, left


def test_score_map_thresholds_walk_the_hierarchy():
    f, part, left = toy_map()
    s = score_map(f, (0, 0))
    assert s[0, 0] == pytest.approx(1.0)
    assert s[3, 2] == pytest.approx(0.9)       # same object, other part: (0.8 + 1) / 2
    assert s[0, 5] == pytest.approx(0.5)       # other object: orthogonal
    masks = masks_at_thresholds(s, [0.95, 0.7, 0.4])
    np.testing.assert_array_equal(masks[0], part)
    np.testing.assert_array_equal(masks[1], left)
    assert masks[2].all()
    np.testing.assert_array_equal(masks_at_thresholds(score_map(torch.tensor(f), (3, 4)), [0.95])[0], ~left)


def test_multi_click_and_consistent_query_feature():
    f, part, left = toy_map()
    both = multi_score_map(f, [(0, 0), (2, 5)]) > 0.95
    np.testing.assert_array_equal(both, part | ~left)
    q = click_feature(f, (3, 0))
    np.testing.assert_allclose(q, [1, 0, 0])
    # the same query feature selects the object in another "view" (a flipped copy)
    np.testing.assert_array_equal(query_image(f[:, ::-1], q, 0.7), left[:, ::-1])
    with pytest.raises(SdfsegError):
        click_feature(f, (4, 0))


def test_query_points():
    feats = np.array([[1.0, 0], [0.9, 0.1], [0, 1], [-1, 0]])
    np.testing.assert_array_equal(query_points(feats, np.array([2.0, 0]), 0.9), [True, True, False, False])


def two_blobs(rng, n=60, touching=False):
    a = rng.normal(0, 0.3, (n, 3))
    b = rng.normal(0, 0.3, (n, 3)) + ([0.8, 0, 0] if touching else [5.0, 0, 0])
    pts = np.concatenate([a, b])
    feats = np.concatenate([np.tile([1.0, 0, 0], (n, 1)), np.tile([0, 1.0, 0], (n, 1))])
    feats += rng.normal(0, 0.01, feats.shape)
    return pts, feats


def test_segment_points_two_blobs():
    rng = np.random.default_rng(0)
    pts, feats = two_blobs(rng)
    labels = segment_points(pts, feats, threshold=0.1, k=16)
    assert set(labels.tolist()) == {0, 1}
    assert len(set(labels[:60])) == 1 and len(set(labels[60:])) == 1 and labels[0] != labels[60]
    # touching blobs: the kNN graph connects them; only the feature distance (1 - cos = 1) separates them
    pts, feats = two_blobs(rng, touching=True)
    np.testing.assert_array_equal(np.bincount(segment_points(pts, feats, threshold=0.1, k=16)), [60, 60])
    assert (segment_points(pts, feats, threshold=1.5, k=16) == 0).all()
    assert set(segment_points(pts, feats, 0.1, k=16, max_segments=1).tolist()) == {0, -1}
    pts, feats = two_blobs(rng, n=400)
    voxel = segment_points(pts, feats, threshold=0.1, k=8, voxel=0.25)
    assert len(set(voxel[:400])) == 1 and len(set(voxel[400:])) == 1 and voxel[0] != voxel[400]


def test_hierarchy_of_segments_is_nested():
    rng = np.random.default_rng(1)
    pts, feats = two_blobs(rng, touching=True)
    feats[:60][pts[:60, 0] < 0] = [0.8, 0.0, 0.6]     # left half of blob A is a part at distance 0.2
    h = hierarchy_of_segments(pts, feats, [0.05, 0.5, 1.5], k=16)
    assert [len(set(row.tolist())) for row in h] == [3, 2, 1]
    for fine, coarse in zip(h[:-1], h[1:]):  # every fine segment inside one coarse segment
        pairs = np.unique(np.stack([fine, coarse]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1]


def test_segment_image_and_candidates():
    f, part, left = toy_map()
    labels = segment_image(f, 0.05)
    expected = np.zeros((4, 6), np.int64)
    expected[:, 3:] = 0
    expected[:, :3] = 1
    expected[:2, :2] = 2                     # sizes: right 12 (0), left rest 8 (1), part 4 (2)
    np.testing.assert_array_equal(labels, expected)
    stack = segment_image_hierarchy(f, [0.05, 0.25, 1.5])
    assert [len(np.unique(s)) for s in stack] == [3, 2, 1]
    cands = segmentation_candidates(stack)((0, 0))
    np.testing.assert_array_equal(cands[0], part)
    np.testing.assert_array_equal(cands[1], left)
    fc = feature_candidates(f, [0.95, 0.7])((0, 0))
    np.testing.assert_array_equal(fc, [part, left])
