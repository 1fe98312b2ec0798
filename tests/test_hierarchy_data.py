"""Patch hierarchy (OmniSeg3D), inclusion tree and pair sampling (ultrametric fields)."""


import numpy as np

from sdfseg.data import hierarchy as hmod
from sdfseg.data.hierarchy import (
    batch_correlation, build_patch_hierarchy, inclusion_parents, level_matrix, sample_hierarchical_pairs,
)
from sdfseg.data.masks import MaskSet


def three_masks() -> MaskSet:
    """m0 = left 4x4 block, m1 = its top-left 2x2 (nested), m2 = columns 2..5; column 6 uncovered."""
    m = np.zeros((3, 4, 7), dtype=bool)
    m[0, :, :4] = True
    m[1, :2, :2] = True
    m[2, :, 2:6] = True
    return MaskSet.from_masks(m, 4, 7)


EXPECTED_PATCHES = np.array([[0, 0, 1, 1, 2, 2, -1],
                             [0, 0, 1, 1, 2, 2, -1],
                             [3, 3, 1, 1, 2, 2, -1],
                             [3, 3, 1, 1, 2, 2, -1]])
# patch memberships: p0 {m0, m1}, p1 {m0, m2}, p2 {m2}, p3 {m0}
EXPECTED_C = np.array([[2, 1, 0, 1],
                       [1, 2, 1, 1],
                       [0, 1, 1, 0],
                       [1, 1, 0, 1]])


def test_patch_map_and_correlation_on_three_masks():
    h = build_patch_hierarchy(three_masks())
    np.testing.assert_array_equal(h.patch_map, EXPECTED_PATCHES)
    np.testing.assert_array_equal(h.patch_area, [4, 8, 8, 4])
    np.testing.assert_array_equal(h.incidence.toarray(), [[1, 1, 0, 1], [1, 0, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(h.correlation(), EXPECTED_C)
    np.testing.assert_array_equal(h.correlation([3, 0]), [[1, 1], [1, 2]])
    np.testing.assert_array_equal(h.mask_areas(), [16, 4, 16])
    np.testing.assert_array_equal(h.mask_intersections(), [[16, 4, 8], [4, 4, 0], [8, 0, 16]])
    np.testing.assert_array_equal(h.mask_patches(0), [0, 1, 3])
    np.testing.assert_array_equal(h.patch_masks(1), [0, 2])


def test_levels():
    np.testing.assert_array_equal(level_matrix(EXPECTED_C), [[0, 1, -1, 1],
                                                             [1, 0, 1, 1],
                                                             [-1, 0, 0, -1],
                                                             [0, 0, -1, 0]])
    h = build_patch_hierarchy(three_masks())
    values, level = h.patch_levels(0)
    np.testing.assert_array_equal(values, [2, 1])
    np.testing.assert_array_equal(level, [0, 1, -1, 1])


def test_membership_and_batch_correlation():
    h = build_patch_hierarchy(three_masks())
    mem = h.membership(np.array([[0, 0], [3, 6], [3, 3]]))
    np.testing.assert_array_equal(mem, [[True, False, True], [True, False, False], [False, False, True]])
    local, corr = batch_correlation(h, np.array([2, -1, 1, 2]))
    np.testing.assert_array_equal(local, [1, -1, 0, 1])
    np.testing.assert_array_equal(corr, [[2, 1], [1, 1]])


def test_key_collision_is_detected_and_retried():
    ms = three_masks()
    # equal keys: {m0} and {m2} both hash to 7 and {m0, m1}, {m0, m2} cancel to 0 ("uncovered")
    keys = np.array([7, 7, 7], dtype=np.uint64)
    acc = hmod._patch_keys(ms, keys)
    patch_map, n = hmod._number_patches(acc)
    area = np.bincount(patch_map[patch_map >= 0], minlength=n)
    assert n < 4
    assert hmod._incidence(ms, patch_map, area) is None
    h = build_patch_hierarchy(ms)        # random keys: verified, exact
    np.testing.assert_array_equal(h.patch_map, EXPECTED_PATCHES)


def test_empty_mask_has_no_patches():
    ms = MaskSet.from_masks([np.pad(np.ones((2, 2), bool), ((0, 1), (0, 1)))], 3, 3)
    ms = MaskSet(3, 3, np.array([[0, 0, 2, 2], [0, 0, 2, 2]], np.int32), np.array([0, 1, 2]),
                 np.concatenate([ms.bits, [0]]).astype(np.uint8), np.ones(2, np.float32))
    h = build_patch_hierarchy(ms)           # mask 1 has a box but no pixels
    np.testing.assert_array_equal(h.patch_map, [[0, 0, -1], [0, 0, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(h.incidence.toarray(), [[1], [0]])


def random_masks(h, w, n, rng):
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        size = np.exp(rng.uniform(np.log(4), np.log(min(h, w))))
        ar = np.exp(rng.uniform(-0.7, 0.7))
        hh, ww = size * ar / 2, size / ar / 2
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.5:
            yield (np.abs(yy - cy) < hh) & (np.abs(xx - cx) < ww)
        else:
            yield ((yy - cy) / hh) ** 2 + ((xx - cx) / ww) ** 2 < 1


def test_random_masks_match_dense_reference():
    rng = np.random.default_rng(3)
    h, w = 48, 64
    dense = np.stack(list(random_masks(h, w, 40, rng)))
    ms = MaskSet.from_masks(dense, h, w)
    dense = np.stack(list(ms))
    hier = build_patch_hierarchy(ms)
    flat = dense.reshape(len(ms), -1).T                     # [HW, M] membership vectors
    covered = flat.any(axis=1)
    assert np.array_equal(hier.patch_map.ravel() >= 0, covered)
    # same partition: identical membership <=> identical patch id
    _, ref = np.unique(flat[covered], axis=0, return_inverse=True)
    ours = hier.patch_map.ravel()[covered]
    pairs = np.unique(np.stack([ref.ravel(), ours]), axis=1)
    assert pairs.shape[1] == ref.max() + 1 == ours.max() + 1 == hier.num_patches
    # correlation = number of masks containing both patches
    reps = np.array([np.flatnonzero(hier.patch_map.ravel() == p)[0] for p in range(hier.num_patches)])
    vec = flat[reps].astype(np.int64)
    np.testing.assert_array_equal(hier.correlation(), vec @ vec.T)
    inter = dense.reshape(len(ms), -1).astype(np.int64)
    np.testing.assert_array_equal(hier.mask_intersections(), inter @ inter.T)


def test_inclusion_parents():
    inter = np.array([[16, 4, 8], [4, 4, 0], [8, 0, 16]])
    np.testing.assert_array_equal(inclusion_parents(inter, np.diag(inter)), [-1, 0, -1])
    # nested chain 10 < 40 < 100, plus a near-duplicate of the 40 (IoU 0.9 -> not a child)
    areas = np.array([10, 40, 100, 36])
    inter = np.array([[10, 10, 10, 10],
                      [10, 40, 40, 36],
                      [10, 40, 100, 36],
                      [10, 36, 36, 36]])
    np.testing.assert_array_equal(inclusion_parents(inter, areas), [3, 2, -1, 2])


def test_sample_hierarchical_pairs():
    h = build_patch_hierarchy(three_masks())
    ys, xs = np.mgrid[0:4, 0:7]
    pix = np.stack([ys.ravel(), xs.ravel()], axis=1)
    mem = h.membership(pix)
    parents = inclusion_parents(h.mask_intersections(), h.mask_areas())
    pos, neg, owner = sample_hierarchical_pairs(mem, parents, pairs_per_mask=16, min_rays=2,
                                                rng=np.random.default_rng(0))
    assert pos.shape == neg.shape == (48, 2)
    np.testing.assert_array_equal(np.bincount(owner), [16, 16, 16])
    for (a1, a2), (a, b), m in zip(pos, neg, owner):
        assert mem[m, a1] and mem[m, a2] and mem[m, a]
        assert not mem[m, b]
        if parents[m] >= 0:
            assert mem[parents[m], b]
    # m1's negatives lie in its parent m0; a mask with too few rays is skipped
    assert np.all(mem[0, neg[owner == 1, 1]])
    pos2, _, owner2 = sample_hierarchical_pairs(mem, parents, 8, min_rays=5, rng=np.random.default_rng(0))
    assert set(owner2.tolist()) == {0, 2}


def test_mask_hierarchy_memory_benchmark_small():
    from sdfseg.apps.benchmark import mask_hierarchy_memory, synthetic_sam_masks
    from sdfseg.methods.hierarchy.supervision import frame_hierarchy

    r = mask_hierarchy_memory(40, 30, 50, seed=3)
    ms = MaskSet.from_masks(synthetic_sam_masks(40, 30, 50, seed=3), 30, 50)
    fh = frame_hierarchy(ms, ultrametric=True, seed=3)
    assert r["num_masks"] == len(ms) == 40
    assert r["patches"] == fh.hier.num_patches > 1
    assert r["hierarchy_bytes"] == fh.nbytes()
    assert r["dense_bytes"] == 40 * 30 * 50
    assert r["maskset_bytes"] == ms.nbytes() == ms.bits.nbytes + ms.boxes.nbytes + ms.offsets.nbytes + ms.scores.nbytes
    # everything the hierarchy keeps was allocated during the build
    assert r["build_peak_bytes"] >= r["hierarchy_bytes"]
