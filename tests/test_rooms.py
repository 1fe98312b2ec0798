"""The independent room scene family (sdfseg.data.rooms): layouts, ray-cast views that agree with the
Panoptic Lifting reader's conventions, GT meshes, and the two label-noise models."""

import dataclasses
import json

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from sdfseg.data import load_scene
from sdfseg.data.formats.common import PL_REDUCED_NAMES
from sdfseg.data.scene import decode_confidence
from sdfseg.data.rooms import M2FNoise, generate_room
from sdfseg.data.rooms.layout import build_room
from sdfseg.data.rooms.noise import m2f_frame, sam_frame
from sdfseg.data.rooms.writer import held_out_frames
from sdfseg.eval.meshes import surface_samples

CHAIR, TABLE, FLOOR = (PL_REDUCED_NAMES.index(n) for n in ("chair", "table", "floor"))


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    return generate_room(tmp_path_factory.mktemp("rooms") / "r3", seed=3, views=16, height=60, width=80,
                         progress=False)


def test_layouts_have_identical_neighbours_and_no_overlaps():
    for seed in range(12):
        r = build_room(seed)
        chairs = [it for it in r.items if it.asset.cls == "chair"]
        assert len(chairs) >= 4 and len({round(float(c.asset.mesh().volume), 9) for c in chairs}) == 1  # identical
        assert {it.asset.cls for it in r.things()} >= {"sofa", "bed", "television", "bag", "chair"}
        floor_items = [it for it in r.items if it.asset.cls not in ("wall", "floor", "ceiling", "door", "window")
                       and it.asset.mesh().bounds[0, 2] < 0.05]
        for i, a in enumerate(floor_items):  # furniture on the floor never intersects (chairs go under tables)
            for b in floor_items[i + 1:]:
                if {a.asset.cls, b.asset.cls} == {"table", "chair"}:
                    continue
                (la, ha), (lb, hb) = a.asset.mesh().bounds, b.asset.mesh().bounds
                overlap = np.minimum(ha, hb)[:2] - np.maximum(la, lb)[:2]
                assert (overlap < 0.02).any(), (seed, a.asset.cls, b.asset.cls)


def test_written_room_reads_back_with_consistent_geometry(room):
    scene = load_scene(room)
    assert scene.layout == "panoptic_lifting" and scene.frame_names[:3] == ["0", "1", "2"]
    assert [scene.frame_names[i] for i in scene.split["test"]] == [str(i) for i in held_out_frames(16)] == \
        ["2", "3", "10", "11"]
    assert scene.classes.names == PL_REDUCED_NAMES and set(scene.labels) >= {"m2f", "sam"}
    meshes = {int(k): v for k, v in json.loads((room / "gt_meshes" / "objects.json").read_text()).items()}
    assert set(np.unique(scene.gt.instance)) - {0} <= set(meshes)
    # every thing pixel's depth, back-projected with the reader's K and pose, lies on that object's GT mesh
    checked = 0
    for i in range(0, 16, 3):
        inst, z = scene.gt.instance[i], scene.depth_float(i)
        v, u = np.nonzero((inst > 0) & (z > 0))
        if len(v) == 0:
            continue
        pick = np.random.default_rng(i).choice(len(v), size=min(30, len(v)), replace=False)
        v, u = v[pick], u[pick]
        K, c2w = scene.intrinsics[i].astype(np.float64), scene.c2w[i].astype(np.float64)
        cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1], np.ones(len(u))], 1) * z[v, u, None]
        world = cam @ c2w[:3, :3].T + c2w[:3, 3]
        for obj in np.unique(inst[v, u]):
            mesh = trimesh.load(room / "gt_meshes" / f"object_{obj:03d}.ply", force="mesh")
            sel = inst[v, u] == obj
            d = cKDTree(surface_samples(mesh, 200000)).query(world[sel])[0]
            sigma = 0.0015 * z[v, u][sel] ** 2 + 0.004  # the sensor noise model, plus the samples' spacing
            assert np.median(d / sigma) < 2.0, (i, obj, d, sigma)
            checked += sel.sum()
    assert checked > 50


def test_noisy_labels_are_noisy_and_ids_change_between_views(room):
    scene = load_scene(room)
    m2f, gt = scene.labels["m2f"], scene.gt
    disagree = (m2f.semantic != gt.semantic).mean()
    assert 0.02 < disagree < 0.4
    conf = decode_confidence(m2f.confidence)
    assert conf.min() >= 0.1 - 1e-6 and conf.max() <= 1.0 and (conf < 0.5).mean() > 0.01  # TTA zeros read as 0.1
    info = json.loads((room / "room.json").read_text())
    assert info["m2f_noise_scale"] > 0 and 0 <= info["m2f_pq_scene"] <= 100
    sam = scene.labels["sam"]
    assert sam.semantic is None and (room / "masks_sam" / "0.npz").exists()
    thing = gt.instance[0] > 0
    assert len(np.unique(sam.instance[0][thing])) > len(np.unique(gt.instance[0][thing]))  # over-segmented


def _two_chairs():
    sem = np.full((40, 60), FLOOR)
    inst = np.zeros((40, 60), np.int32)
    sem[10:30, 10:29], inst[10:30, 10:29] = CHAIR, 1
    sem[10:30, 29:50], inst[10:30, 29:50] = CHAIR, 2
    return sem, inst


def test_m2f_merges_misses_and_random_ids():
    sem, inst = _two_chairs()
    exact = M2FNoise(merge=0, miss=0, miss_small=0, split=0, confuse=0, stuff_confuse=0, blobby=0, dilate=0,
                     erode=0, ragged=0, bleed=0, void_blobs=0)
    s, i, c = m2f_frame(sem, inst, exact, np.random.default_rng(0))
    assert (s == sem).all() and len(np.unique(i[inst > 0])) == 2 and (i[inst == 0] == 0).all()
    ids = {tuple(np.unique(m2f_frame(sem, inst, exact, np.random.default_rng(k))[1])) for k in range(5)}
    assert len(ids) > 1  # the segmenter's ids mean nothing across frames
    assert set(np.unique(c * 8)) <= set(range(9))  # agreement of 8 augmented predictions
    merged = m2f_frame(sem, inst, dataclasses.replace(exact, merge=1.0), np.random.default_rng(0))[1]
    assert len(np.unique(merged[inst > 0])) == 1  # touching chairs of one class come out as one
    missed = m2f_frame(sem, inst, dataclasses.replace(exact, miss=1.0), np.random.default_rng(0))
    assert (missed[1] == 0).all() and not (missed[0] == CHAIR).any()


def test_sam_like_masks_nest_parts_in_objects():
    item = np.zeros((30, 40), np.int64)
    part = np.zeros((30, 40), np.int64)
    item[5:25, 5:20], part[5:25, 5:20] = 1, 1
    part[5:15, 5:20] = 2  # item 1 has two parts
    item[:, 25:], part[:, 25:] = 2, 3
    split = 0
    for seed in range(10):
        flat, masks = sam_frame(item, part, [[1, 2]], {0}, np.random.default_rng(seed))
        assert len(masks) >= 2 and flat.shape == (30, 40) and masks.mask(0).sum() >= masks.mask(len(masks) - 1).sum()
        split += len(np.unique(flat[item == 1])) >= 2
    assert split >= 7  # the object mostly comes in parts (each part mask is kept with probability 0.75)


def test_make_room_cli(tmp_path):
    import subprocess
    import sys

    from _helpers import ROOT

    cmd = [sys.executable, str(ROOT / "tools" / "make_room.py"), str(tmp_path / "r"), "--seed", "5", "--views", "8",
           "--height", "40", "--width", "48", "--quiet"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "gt_meshes" / "objects.json").exists() and (tmp_path / "r" / "color" / "7.png").exists()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--force" in again.stderr
