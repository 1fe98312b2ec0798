"""Scene mIoU (one confusion matrix, void as a predicted class, 0.5% rule) on hand-worked maps."""

import numpy as np
import pytest

from sdfseg.errors import SdfsegError
from sdfseg.eval import mean_iou, resize_nearest


def iou_of(result, c):
    return result["per_class"][c]["iou"]


def test_perfect_prediction():
    sem = np.ones((2, 5, 5), np.int32)
    sem[:, :2] = 2
    sem[1, 4] = 0  # GT void is removed
    r = mean_iou(sem, np.where(sem == 0, 3, sem), 4)
    assert r["miou"] == 1.0 and r["num_pixels"] == 45
    assert [x["skipped"] for x in r["per_class"]] == [True, False, False, True]


def test_hand_worked_confusion_over_two_frames():
    # frame 0: 60 wall, 40 chair, 10 wall px predicted chair; frame 1: 100 wall, 10 predicted chair
    gt = np.ones((2, 10, 10), np.int32)
    gt[0, 6:] = 2
    pred = gt.copy()
    pred[0, 0] = 2
    pred[1, 0] = 2
    r = mean_iou(gt, pred, 3)
    # one matrix: wall GT 160, predicted wall 140 (all correct); chair GT 40, predicted 60
    assert iou_of(r, 1) == pytest.approx(140 / 160)
    assert iou_of(r, 2) == pytest.approx(40 / 60)
    assert r["miou"] == pytest.approx((140 / 160 + 40 / 60) / 2)
    # per-frame averaging would give a different number: the matrix is pooled
    per_frame = np.mean([mean_iou(gt[i:i + 1], pred[i:i + 1], 3)["miou"] for i in range(2)])
    assert per_frame != pytest.approx(r["miou"])


def test_predicted_void_counts_as_a_class():
    gt = np.ones((1, 10, 10), np.int32)
    gt[0, 0] = 2
    pred = gt.copy()
    pred[0, 9] = 0  # 10% of the pixels predicted void
    r = mean_iou(gt, pred, 3)
    assert iou_of(r, 0) == 0.0 and r["per_class"][0]["pred_fraction"] == pytest.approx(0.1)
    assert r["miou"] == pytest.approx((0.0 + 80 / 90 + 1.0) / 3)


def test_rare_classes_skipped_only_when_rare_on_both_sides():
    gt = np.ones((1, 16, 16), np.int32)  # 256 px
    pred = gt.copy()
    pred[0, 0, 0] = 0  # void predicted on 1 px (0.39%): skipped
    r = mean_iou(gt, pred, 4)
    assert r["per_class"][0]["skipped"] and r["miou"] == pytest.approx(255 / 256)
    gt[0, 5, 5] = 3  # table: 1 px in GT, 0 in prediction -> rare on both sides, skipped
    r = mean_iou(gt, pred, 4)
    assert r["per_class"][3]["skipped"] and r["miou"] == pytest.approx(254 / 256)
    pred[0, 7, :2] = 3  # table now predicted on 2 px (0.78%): kept, IoU = 0 / 3
    r = mean_iou(gt, pred, 4)
    assert iou_of(r, 3) == 0.0
    assert r["miou"] == pytest.approx((252 / 256 + 0.0) / 2)


def test_prediction_resized_and_bad_class_rejected():
    gt = np.ones((1, 4, 6), np.int32)
    gt[0, :, :3] = 2
    assert mean_iou(gt, gt.repeat(3, 1).repeat(3, 2), 3)["miou"] == 1.0
    with pytest.raises(SdfsegError, match="class 7"):
        mean_iou(gt, np.full_like(gt, 7), 3)


def test_resize_nearest_is_pixel_centre_aligned():
    a = np.arange(12).reshape(3, 4)
    assert np.array_equal(resize_nearest(a.repeat(2, 0).repeat(2, 1), (3, 4)), a)
    assert np.array_equal(resize_nearest(a, (6, 8)), a.repeat(2, 0).repeat(2, 1))
    assert resize_nearest(a, (3, 4)) is a
