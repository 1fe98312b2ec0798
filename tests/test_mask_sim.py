"""SAM-like mask simulator: nesting of the levels, level subsets, noise rates, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sdfseg.data.mask_sim import MaskSimConfig, simulate_masks
from sdfseg.data.scene import ClassInfo

CLASSES = ClassInfo(num_classes=5, thing_ids=(3, 4), stuff_ids=(1, 2))
CLEAN = MaskSimConfig(p_part=1.0, p_object=1.0, p_group=1.0, p_stuff=1.0, miss_rate=0.0, merge_rate=0.0,
                      split_rate=0.0, boundary_rate=0.0)


def gt_maps(h: int = 40, w: int = 48) -> dict[str, np.ndarray]:
    """Wall (top) and floor (bottom); group 1 = objects 1 + 2 (touching), group 2 = object 3.

    Parts: object 1 = parts 1 (left) + 2 (right), object 2 = part 3, object 3 = parts 4 (top) + 5 (bottom).
    """
    sem = np.full((h, w), 2, dtype=np.int32)
    sem[: h // 2] = 1
    part = np.zeros((h, w), dtype=np.int32)
    part[10:20, 5:10], part[10:20, 10:15], part[10:20, 15:22] = 1, 2, 3
    part[24:30, 30:40], part[30:36, 30:40] = 4, 5
    obj = np.array([0, 1, 1, 2, 3, 3], dtype=np.int32)[part]
    group = np.array([0, 1, 1, 2], dtype=np.int32)[obj]
    sem[obj > 0] = 3
    return {"part": part, "object": obj, "group": group, "sem": sem}


def sim(cfg: MaskSimConfig, seed: int | np.random.Generator, maps: dict | None = None) -> list[np.ndarray]:
    m = maps or gt_maps()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ms = simulate_masks(m["part"], m["object"], m["group"], m["sem"], rng, cfg, CLASSES)
    return list(ms)


def has(masks: list[np.ndarray], target: np.ndarray) -> bool:
    return any(np.array_equal(m, target) for m in masks)


def test_clean_masks_are_the_gt_regions_and_nest():
    m = gt_maps()
    masks = sim(CLEAN, 0, m)
    # 5 parts + objects 1 and 3 (object 2 = part 3) + group 1 (group 2 = object 3) + wall + floor, each once
    assert len(masks) == 10
    for level in ("part", "object", "group"):
        for k in np.unique(m[level])[1:]:
            assert has(masks, m[level] == k), (level, k)
    assert has(masks, (m["sem"] == 1)) and has(masks, (m["sem"] == 2))
    # nesting: each part mask lies inside an object mask, each object mask inside a group mask
    for k in range(1, 6):
        obj = m["object"][m["part"] == k][0]
        assert np.all((m["part"] == k) <= (m["object"] == obj))
        grp = m["group"][m["object"] == obj][0]
        assert has(masks, m["object"] == obj) and has(masks, m["group"] == grp)
        assert np.all((m["object"] == obj) <= (m["group"] == grp))
    union = np.any(masks, axis=0)
    assert union.all()  # every pixel is covered by some mask


def test_level_subsets_follow_their_probabilities():
    m = gt_maps()
    cfg = dataclasses.replace(CLEAN, p_part=0.5, p_object=0.0, p_group=0.0)
    rng = np.random.default_rng(0)
    with_parts = [has(sim(cfg, rng, m), m["part"] == 1) for _ in range(300)]
    assert np.mean(with_parts) == pytest.approx(0.5, abs=0.06)
    only_objects = sim(dataclasses.replace(CLEAN, p_part=0.0, p_group=0.0), 0, m)
    assert not has(only_objects, m["part"] == 1) and not has(only_objects, m["group"] == 1)
    assert has(only_objects, m["object"] == 1)
    # no level drawn: the object level is used
    fallback = sim(dataclasses.replace(CLEAN, p_part=0.0, p_object=0.0, p_group=0.0), 0, m)
    assert has(fallback, m["object"] == 3) and len(fallback) == 5  # 3 objects + wall + floor


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_missed_mask_rate(rate):
    m = gt_maps()
    cfg = dataclasses.replace(CLEAN, p_part=0.0, p_group=0.0, miss_rate=rate)
    rng = np.random.default_rng(0)
    missing = [not has(masks, m["object"] == k) for _ in range(150) for masks in [sim(cfg, rng, m)] for k in (1, 2, 3)]
    assert np.mean(missing) == pytest.approx(rate, abs=0.05)


def test_merge_split_and_ragged_masks():
    m = gt_maps()
    objects_only = dataclasses.replace(CLEAN, p_part=0.0, p_group=0.0, p_stuff=0.0)
    merged = sim(dataclasses.replace(objects_only, merge_rate=1.0), 0, m)
    assert has(merged, m["group"] == 1) and not has(merged, m["object"] == 1)  # objects 1 + 2 touch
    assert has(merged, m["object"] == 3)
    split = sim(dataclasses.replace(objects_only, split_rate=1.0), 0, m)
    assert len(split) == 6
    for k in (1, 2, 3):
        pieces = [s for s in split if np.all(s <= (m["object"] == k))]
        assert len(pieces) == 2 and np.array_equal(pieces[0] | pieces[1], m["object"] == k)
        assert not (pieces[0] & pieces[1]).any()
    ragged = sim(dataclasses.replace(objects_only, boundary_rate=1.0, boundary_px=1), 0, m)
    for k in (1, 2, 3):
        gt = m["object"] == k
        assert not has(ragged, gt)
        iou = max((r & gt).sum() / (r | gt).sum() for r in ragged)
        assert 0.5 < iou < 1.0


def test_seeded():
    cfg = MaskSimConfig()
    a, b, c = sim(cfg, 7), sim(cfg, 7), sim(cfg, 8)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a) != len(c) or not all(np.array_equal(x, y) for x, y in zip(a, c))
