"""Hierarchy metrics on hand-made masks: hierarchical mIoU, NC, SI, VC."""

import numpy as np
import pytest

from sdfseg.data.masks import MaskSet
from sdfseg.eval.hierarchy import (
    View, best_threshold_iou, gt_level_masks, hierarchical_miou, normalized_covering, raw_mask_candidates,
    raw_mask_score_map, segmentation_injectivity, view_consistency, view_consistency_iou, view_pairs, warp_pixel,
    warp_to_view,
)
from sdfseg.methods.hierarchy.query import segmentation_candidates

SCORE = np.array([[0.9, 0.9, 0.5, 0.1],
                  [0.9, 0.8, 0.5, 0.1],
                  [0.2, 0.2, 0.1, 0.1]])


def test_best_threshold_iou_and_hierarchical_miou():
    part = SCORE >= 0.8                      # 4 pixels: exactly recoverable
    obj = part.copy()
    obj[0, 2] = True                         # 5 pixels: best is top-6 (both 0.5s): 5 / 6
    assert best_threshold_iou(SCORE, part) == (1.0, 0.5)
    iou, th = best_threshold_iou(SCORE, obj)
    assert iou == pytest.approx(5 / 6) and th == pytest.approx(0.2)
    out = hierarchical_miou([SCORE, SCORE], [{"part": part, "object": obj}, {"part": obj}])
    assert out["part"] == pytest.approx((1 + 5 / 6) / 2)
    assert out["object"] == pytest.approx(5 / 6)
    assert out["mean"] == pytest.approx(((1 + 5 / 6) / 2 + 5 / 6) / 2)
    valid = np.ones_like(part)
    valid[0, 2] = False                      # hide the ambiguous pixel: object becomes exact
    assert best_threshold_iou(SCORE, obj, valid)[0] == pytest.approx(1.0)


def test_gt_level_masks():
    part = np.array([[1, 2], [0, 3]])
    obj = np.array([[5, 5], [0, 6]])
    out = gt_level_masks({"part": part, "object": obj}, (0, 1))
    np.testing.assert_array_equal(out["part"], [[False, True], [False, False]])
    np.testing.assert_array_equal(out["object"], [[True, True], [False, False]])
    assert gt_level_masks({"part": part}, (1, 0)) == {}


def nested_masks():
    small = np.zeros((4, 6), bool)
    small[:2, :2] = True
    mid = np.zeros((4, 6), bool)
    mid[:, :3] = True
    other = np.zeros((4, 6), bool)
    other[:, 4:] = True
    return [mid, other, small]


def test_raw_mask_baseline_score_map():
    masks = nested_masks()
    score = raw_mask_score_map(masks, (0, 0))
    expected = np.zeros((4, 6), np.float32)
    expected[:, :3] = 0.5
    expected[:2, :2] = 1.0
    np.testing.assert_allclose(score, expected)
    np.testing.assert_allclose(raw_mask_score_map(MaskSet.from_masks(masks, 4, 6), (0, 0)), expected)
    out = hierarchical_miou([score], [{"part": masks[2], "object": masks[0]}])
    assert out == {"part": 1.0, "object": 1.0, "mean": 1.0}
    cands = raw_mask_candidates(masks)((0, 0))
    np.testing.assert_array_equal(cands, [masks[2], masks[2] | masks[0]])


def test_normalized_covering():
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    seg = np.array([[0, 0, 0, 1], [0, 0, 0, 1]])          # IoU(gt1, seg0) = 4/6
    mask = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], bool)   # IoU(gt2, mask) = 1
    assert normalized_covering(gt, [seg], min_area=0) == pytest.approx((4 / 6 + 2 / 4) / 2)
    assert normalized_covering(gt, [seg, mask], min_area=0) == pytest.approx((4 / 6 + 1) / 2)
    assert np.isnan(normalized_covering(gt, [seg], min_area=20))        # both GT segments < 20 px
    gt0 = np.array([[0, 0, 2, 2], [0, 0, 2, 2]])
    assert normalized_covering(gt0, [mask], min_area=0) == 1.0           # id 0 ignored


def test_segmentation_injectivity_exact():
    gt = np.array([[1, 1, 1, 1]])
    split = segmentation_candidates(np.array([[[0, 0, 1, 1]]]))
    # p1, p2 uniform over the 4 pixels: same half with probability 1/2, else IoU 0
    assert segmentation_injectivity(split, gt, n_samples=None, min_area=0) == pytest.approx(0.5)
    both = segmentation_candidates(np.array([[[0, 0, 1, 1]], [[0, 0, 0, 0]]]))
    assert segmentation_injectivity(both, gt, n_samples=None, min_area=0) == pytest.approx(1.0)
    sampled = segmentation_injectivity(split, gt, n_samples=400, rng=np.random.default_rng(0), min_area=0)
    assert 0.4 < sampled < 0.6


def shifted_views(h=4, w=8):
    """Fronto-parallel plane at depth 5, fx = 10; view B moved +1 along x: B pixel (y, x) sees A pixel (y, x + 2)."""
    k = np.array([[10.0, 0, w / 2], [0, 10.0, h / 2], [0, 0, 1]])
    c2w_b = np.eye(4)
    c2w_b[0, 3] = 1.0
    return View(np.full((h, w), 5.0), k, np.eye(4)), View(np.full((h, w), 5.0), k, c2w_b)


def test_warp_and_view_consistency_iou():
    va, vb = shifted_views()
    mask_a = np.zeros((4, 8), bool)
    mask_a[:, 3:6] = True
    warped, covis = warp_to_view(mask_a, va, vb)
    np.testing.assert_array_equal(warped[0], [0, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(covis[0], [1, 1, 1, 1, 1, 1, 0, 0])
    assert warp_pixel((1, 4), va, vb) == (1, 2)
    assert warp_pixel((1, 1), va, vb) is None            # lands left of B's image
    mask_b = np.zeros((4, 8), bool)
    mask_b[:, 2:5] = True
    mask_b[:, 7] = True                                   # not co-visible: ignored
    assert view_consistency_iou(mask_a, mask_b, va, vb) == pytest.approx(8 / 16)
    occluded = View(np.where(np.arange(8)[None] < 3, 2.0, 5.0) * np.ones((4, 1)), va.K, va.c2w)
    _, covis2 = warp_to_view(mask_a, occluded, vb)        # A pixels x < 3 are closer: B x < 1 not co-visible
    np.testing.assert_array_equal(covis2[0], [0, 1, 1, 1, 1, 1, 0, 0])


def test_view_consistency_score():
    va, vb = shifted_views()
    gt_a = np.zeros((4, 8), np.int64)
    gt_a[:, 2:6] = 1
    gt_b = np.zeros((4, 8), np.int64)
    gt_b[:, 0:4] = 1
    consistent = view_consistency(segmentation_candidates(gt_a[None]), segmentation_candidates(gt_b[None]),
                                  gt_a, gt_b, va, vb, n_samples=20, min_area=0)
    assert consistent == pytest.approx(1.0)
    drift = gt_b.copy()
    drift[:, 4] = 1                                       # B's segment leaks into one co-visible column: IoU 4/5
    score = view_consistency(segmentation_candidates(gt_a[None]), segmentation_candidates(drift[None]),
                             gt_a, gt_b, va, vb, n_samples=20, min_area=0)
    assert score == pytest.approx(0.8)


def test_view_pairs():
    def yaw(deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        m = np.eye(4)
        m[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        return m
    c2w = np.stack([yaw(0), yaw(10), yaw(45), yaw(55.5)])
    assert view_pairs(c2w, 10, 2) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert view_pairs(c2w, 10, 0.1) == [(0, 1), (1, 0)]


def test_gt_hierarchy_field_scores_part_object_group():
    import torch

    from sdfseg.data.scene import Normalization
    from sdfseg.data.synthetic.layout import random_scene
    from sdfseg.eval.hierarchy_report import gt_hierarchy_field

    syn = random_scene(4, seed=1)
    norm = Normalization(np.zeros(3), 2.0)
    field = gt_hierarchy_field(syn, norm)
    tables = syn.part_tables()
    # one point deep inside each part (its centre, if no other part is deeper there), one in free air
    pts, ids = [], []
    for p in syn.parts:
        c = np.asarray(p.center, dtype=np.float64)
        if np.argmin(syn.part_sdf(c[None])[0]) == [q.id for q in syn.parts].index(p.id) + 1:
            pts.append(c)
            ids.append(p.id)
    room_air = np.asarray(syn.room.center, dtype=np.float64) + [0.0, 0.0, 1.2]
    x = torch.as_tensor(norm.to_normalized(np.stack(pts + [room_air])), dtype=torch.float32)
    f = field(x).numpy()
    assert f.shape[0] == len(ids) + 1 and f[-1, 0] == 1.0 and np.allclose(f[-1, 1:], 0.0)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(f[:-1] @ f[-1], 0.0)          # the room scores 1/2 against every part
    score = (f[:-1] @ f[:-1].T + 1) / 2            # unit rows: the click score (cos + 1) / 2
    obj, grp = tables["object"][ids], tables["group"][ids]
    want = np.where(np.equal.outer(ids, ids), 1.0, np.where(np.equal.outer(obj, obj), 5 / 6,
                    np.where(np.equal.outer(grp, grp), 2 / 3, 1 / 2)))
    assert len(ids) >= 5 and len(set(obj.tolist())) >= 3
    np.testing.assert_allclose(score, want, atol=1e-6)
