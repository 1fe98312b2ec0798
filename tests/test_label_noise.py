"""Label-noise simulator: every effect at about its configured rate, none at rate 0, GT at zero noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sdfseg.data.label_noise import NoiseConfig, apply_overrides, probability_map, simulate_labels
from sdfseg.data.scene import ClassInfo
from sdfseg.errors import SdfsegError

CLASSES = ClassInfo(num_classes=7, thing_ids=(3, 4, 5, 6), stuff_ids=(1, 2))
WALL, FLOOR = 1, 2
ZERO = NoiseConfig(**{f.name: 0.0 for f in dataclasses.fields(NoiseConfig) if f.name.endswith("_rate")})
TRIALS = 150


def frame(boxes: list[tuple[int, int, int, int, int]], h: int = 64, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """GT maps with a wall (top half) and floor (bottom half) plus objects ``(y0, x0, y1, x1, class)``, ids 1..n."""
    sem = np.full((h, w), FLOOR, dtype=np.int32)
    sem[: h // 2] = WALL
    inst = np.zeros((h, w), dtype=np.int32)
    for k, (y0, x0, y1, x1, c) in enumerate(boxes, start=1):
        sem[y0:y1, x0:x1] = c
        inst[y0:y1, x0:x1] = k
    return sem, inst


# six separated 10 x 10 objects, 6+ px apart and away from the border
SEPARATE = [(4 + 20 * (k // 3), 4 + 20 * (k % 3), 14 + 20 * (k // 3), 14 + 20 * (k % 3), 3 + k % 4) for k in range(6)]


def run(cfg: NoiseConfig, gt: tuple[np.ndarray, np.ndarray], trials: int = TRIALS, seed: int = 0):
    """``trials`` simulated frames drawn from one random stream."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        yield simulate_labels(gt[0], gt[1], rng, cfg, CLASSES)


def ids_inside(inst: np.ndarray, gt_inst: np.ndarray, k: int) -> set[int]:
    return set(np.unique(inst[gt_inst == k]).tolist())


def test_zero_noise_reproduces_gt_up_to_relabelling():
    sem_gt, inst_gt = frame(SEPARATE + [(40, 40, 50, 50, 3)])
    inst_gt[40:50, 40:50] = 0  # a thing pixel without an instance stays id 0
    sem, inst, conf = simulate_labels(sem_gt, inst_gt, np.random.default_rng(0), ZERO, CLASSES)
    np.testing.assert_array_equal(sem, sem_gt)
    assert np.all(inst[inst_gt == 0] == 0)
    mapping = {k: ids_inside(inst, inst_gt, k) for k in range(1, 7)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len(set().union(*mapping.values())) == 6  # one distinct fresh id per object
    assert inst.dtype == np.int32 and conf.dtype == np.float32 and conf.shape == sem.shape
    _, inst2, _ = simulate_labels(sem_gt, inst_gt, np.random.default_rng(1), ZERO, CLASSES)
    assert set(np.unique(inst2)) != set(np.unique(inst))  # ids carry no meaning across frames


def test_same_rng_seed_same_output():
    gt = frame(SEPARATE)
    a = simulate_labels(*gt, np.random.default_rng(5), NoiseConfig(), CLASSES)
    b = simulate_labels(*gt, np.random.default_rng(5), NoiseConfig(), CLASSES)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_over_segmentation_rate(rate):
    gt = frame(SEPARATE)
    cfg = dataclasses.replace(ZERO, over_seg_rate=rate)
    split = [len(ids_inside(inst, gt[1], k)) == 2 for _, inst, _ in run(cfg, gt) for k in range(1, 7)]
    assert np.mean(split) == pytest.approx(rate, abs=0.05)


@pytest.mark.parametrize("rate", [0.0, 0.4])
def test_under_segmentation_rate_and_merged_class(rate):
    # objects 1 (class 3, larger) and 2 (class 4) touch; object 3 stands apart
    gt = frame([(10, 10, 30, 30, 3), (10, 30, 20, 40, 4), (40, 10, 50, 20, 5)])
    cfg = dataclasses.replace(ZERO, under_seg_rate=rate)
    merged = []
    for sem, inst, _ in run(cfg, gt, trials=300):
        ids = [ids_inside(inst, gt[1], k) for k in (1, 2, 3)]
        merged.append(ids[0] == ids[1])
        assert ids[2].isdisjoint(ids[0] | ids[1])
        if ids[0] == ids[1]:
            assert np.all(sem[gt[1] == 2] == 3)  # the merged segment takes the larger object's class
    assert np.mean(merged) == pytest.approx(rate, abs=0.05)


@pytest.mark.parametrize("rate", [0.0, 0.4])
def test_missed_small_objects_rate(rate):
    # three 3 x 3 objects (0.2% of the image: small) on the wall and three 10 x 10 ones
    small = [(5, 5 + 10 * k, 8, 8 + 10 * k, 3) for k in range(3)]
    gt = frame(small + SEPARATE[3:])
    cfg = dataclasses.replace(ZERO, miss_small_rate=rate, miss_to_void=0.0)
    missed, big_missed = [], []
    for sem, inst, _ in run(cfg, gt):
        for k in (1, 2, 3):
            gone = np.all(inst[gt[1] == k] == 0)
            missed.append(gone)
            if gone:
                assert np.all(sem[gt[1] == k] == WALL)  # swallowed by the surrounding stuff
        big_missed += [np.all(inst[gt[1] == k] == 0) for k in (4, 5, 6)]
    assert np.mean(missed) == pytest.approx(rate, abs=0.05)
    assert not any(big_missed)


def test_missed_truncated_objects_rate_and_void():
    # object 1 touches the left border (truncated); object 2 is inside
    gt = frame([(40, 0, 50, 10, 3), (40, 30, 50, 40, 4)])
    cfg = dataclasses.replace(ZERO, miss_truncated_rate=0.3, miss_to_void=1.0)
    missed = []
    for sem, inst, _ in run(cfg, gt, trials=300):
        gone = np.all(inst[gt[1] == 1] == 0)
        missed.append(gone)
        if gone:
            assert np.all(sem[gt[1] == 1] == 0)  # miss_to_void = 1: void
        assert np.all(inst[gt[1] == 2] > 0)
    assert np.mean(missed) == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("rate", [0.0, 0.25])
def test_class_confusion_rate(rate):
    sem_gt, inst_gt = frame(SEPARATE)
    cfg = dataclasses.replace(ZERO, class_confusion_rate=rate)
    changed = []
    for sem, _, _ in run(cfg, (sem_gt, inst_gt)):
        for k in range(1, 7):
            m = inst_gt == k
            new = np.unique(sem[m])
            assert new.size == 1 and new[0] in CLASSES.thing_ids
            changed.append(new[0] != sem_gt[m][0])
    assert np.mean(changed) == pytest.approx(rate, abs=0.05)


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_ragged_boundary_rate(rate):
    sem_gt, inst_gt = frame(SEPARATE)
    cfg = dataclasses.replace(ZERO, boundary_rate=rate, boundary_px=2)
    reshaped = []
    for _, inst, _ in run(cfg, (sem_gt, inst_gt)):
        for k in range(1, 7):
            (new_id,) = ids_inside(inst, inst_gt, k) - {0} or {0}
            reshaped.append(not np.array_equal(inst == new_id, inst_gt == k))
    assert np.mean(reshaped) == pytest.approx(rate, abs=0.05)


@pytest.mark.parametrize("rate", [0.0, 0.25])
def test_boundary_jitter_rate(rate):
    sem_gt, inst_gt = frame(SEPARATE)
    key = sem_gt * 100 + inst_gt
    pad = np.pad(key, 1, mode="edge")
    boundary = ((pad[:-2, 1:-1] != key) | (pad[2:, 1:-1] != key) | (pad[1:-1, :-2] != key) | (pad[1:-1, 2:] != key))
    cfg = dataclasses.replace(ZERO, jitter_rate=rate)
    flips = []
    for sem, _, _ in run(cfg, (sem_gt, inst_gt), trials=40):
        changed = sem != sem_gt
        assert not changed[~boundary].any()
        flips.append(changed[boundary].mean())
    # every boundary pixel here has a differing neighbour of a different class
    assert np.mean(flips) == pytest.approx(rate, abs=0.02)


def test_confidence_lower_at_boundaries_and_on_corrupted_segments():
    sem_gt, inst_gt = frame(SEPARATE)
    cfg = dataclasses.replace(ZERO, conf_spread=0.0)
    _, _, conf = simulate_labels(sem_gt, inst_gt, np.random.default_rng(0), cfg, CLASSES)
    interior = np.zeros_like(inst_gt, dtype=bool)
    interior[7:11, 7:11] = True  # centre of object 1 (rows/cols 4..13), 3-4 px from its edge pixels
    edge = np.zeros_like(interior)
    edge[4, 4:14] = True  # top row of object 1
    # conf = 0.9 * (1 - 0.5 exp(-d / 2)), d = distance to the nearest label-edge pixel (+ N(0, 0.02) noise)
    y, x = np.nonzero(interior)
    d = np.minimum.reduce([y - 4, 13 - y, x - 4, 13 - x])
    assert conf[edge].mean() == pytest.approx(0.45, abs=0.015)
    assert conf[interior].mean() == pytest.approx(np.mean(0.9 * (1 - 0.5 * np.exp(-d / 2))), abs=0.015)
    bad = dataclasses.replace(cfg, class_confusion_rate=1.0)
    _, _, conf_bad = simulate_labels(sem_gt, inst_gt, np.random.default_rng(0), bad, CLASSES)
    assert conf_bad[interior].mean() == pytest.approx(0.6 * conf[interior].mean(), abs=0.03)


def test_probability_map_hand_values():
    prob = probability_map(np.array([[1, 2]]), np.array([[0.7, 0.4]]), 3)
    np.testing.assert_allclose(prob, [[[0.15, 0.7, 0.15], [0.3, 0.3, 0.4]]], atol=1e-6)


def test_overrides_cast_and_reject_bad_keys():
    cfg = apply_overrides(NoiseConfig(), ["over_seg_rate=0.25", "boundary_px=3"])
    assert cfg.over_seg_rate == 0.25 and cfg.boundary_px == 3 and isinstance(cfg.boundary_px, int)
    assert NoiseConfig().over_seg_rate == 0.1  # the default is untouched
    with pytest.raises(SdfsegError, match="--noise nope: unknown key"):
        apply_overrides(NoiseConfig(), ["nope=1"])
    with pytest.raises(SdfsegError, match="over_seg_rate=abc: expected a number"):
        apply_overrides(NoiseConfig(), ["over_seg_rate=abc"])
    with pytest.raises(SdfsegError, match="boundary_px=1.5: expected an integer"):
        apply_overrides(NoiseConfig(), ["boundary_px=1.5"])
    with pytest.raises(SdfsegError, match=r"noise.over_seg_rate: expected a value in \[0, 1\]"):
        apply_overrides(NoiseConfig(), ["over_seg_rate=1.5"])
    with pytest.raises(SdfsegError, match="expected key=value"):
        apply_overrides(NoiseConfig(), ["over_seg_rate"])
