"""Training labels without materialised copies (LabelMaps), the ray sampler's per-frame pixel order sorted on the
fly, normal maps kept only for the normal losses and GT maps of the test frames only: every value the same as the
materialised / full arrays gave, the same ray stream, exact resume."""

import numpy as np
import pytest
import torch

from sdfseg.apps.scene_memory import write_memory_scene
from sdfseg.config import load_config
from sdfseg.data import ReadOptions, load_scene
from sdfseg.data.label_maps import DENSE_SPAN, LabelMaps, frame_ids
from sdfseg.data.normalize import normalize_scene
from sdfseg.data.rays import RaySampler, remap_instance_ids, select_keyframes
from sdfseg.data.scene import ClassInfo, FrameSubset, LabelSource, Scene, encode_confidence
from sdfseg.errors import SdfsegError
from sdfseg.eval.report import evaluate_label_source
from sdfseg.training.labels import rank_frame_ids, training_labels
from sdfseg.training.trainer import read_options


def _scene(inst, sem, conf, n_test=1):
    n, h, w = inst.shape
    return Scene(path=".", frame_names=[str(i) for i in range(n)], rgb=np.zeros((n, h, w, 3), np.uint8),
                 c2w=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), intrinsics=np.tile(np.eye(3, dtype=np.float32),
                                                                                          (n, 1, 1)),
                 classes=ClassInfo(5, (2, 3), (1,)),
                 split={"train": np.arange(n_test, n), "test": np.arange(n_test)},
                 labels={"m2f": LabelSource(instance=inst, semantic=sem, confidence=conf)},
                 gt=LabelSource(instance=inst.copy(), semantic=sem.copy()))


def _random_source(seed=0, n=5, h=12, w=16, ids=(0, 3, 7, 200), dtype=np.uint8):
    rng = np.random.default_rng(seed)
    inst = rng.choice(np.asarray(ids), size=(n, h // 4, w // 4))
    inst = np.repeat(np.repeat(inst, 4, 1), 4, 2).astype(dtype)  # blocks: segments of several pixels
    inst[:, 0, 0] = ids[-1]  # every frame has the largest id (a one-pixel segment in some)
    sem = rng.integers(0, 5, size=(n, h, w)).astype(np.uint8)
    conf = encode_confidence(rng.random((n, h, w)) * 0.9 + 0.1)
    conf[:, :, :3] = 0  # not supervised
    return inst, sem, conf


def test_label_maps_hand_example():
    base = np.array([[[0, 5, 5], [9, 9, 0]]], dtype=np.uint8)
    mask = np.array([[[1, 1, 0], [1, 1, 1]]], dtype=np.uint8)
    lm = LabelMaps(base, [(np.array([0, 5, 9]), np.array([0, 70, 3]))], mask=mask, fill=-1)
    assert lm.frame(0).tolist() == [[0, 70, -1], [3, 3, 0]] and lm.dtype == np.int8
    assert np.asarray(lm).tolist() == [[[0, 70, -1], [3, 3, 0]]] and lm[0, 1].tolist() == [3, 3, 0]
    codes, values = lm.frame_codes(0)
    assert values.tolist() == [-1, 0, 3, 70] and values[codes].tolist() == [0, 70, -1, 3, 3, 0]
    assert codes.dtype == np.uint8 and lm.max() == 70
    ident = LabelMaps(base)
    assert ident.identity and ident.full() is base and ident.dtype == np.uint8


@pytest.mark.parametrize("ids,dtype", [((0, 3, 7, 200), np.uint8), ((0, 2, 300, 40000), np.uint16),
                                       ((-1, 0, 5, 9), np.int16), ((0, 4, 1_000_000), np.int32),
                                       (tuple(range(0, 300)), np.int32)])
def test_frame_codes_sort_pixels_as_the_labels_do(ids, dtype):
    inst, _, conf = _random_source(1, ids=ids, dtype=dtype)
    rng = np.random.default_rng(3)
    tables = []
    for i in range(inst.shape[0]):
        k = frame_ids(inst[i])
        tables.append((k, rng.permutation(k.size) * 7 - 2))  # any per-frame relabelling, negatives and collisions
        assert k.tolist() == np.unique(inst[i]).tolist()
    for lm in (LabelMaps(inst, tables, conf, -1), LabelMaps(inst, tables), LabelMaps(inst, mask=conf, fill=-1),
               LabelMaps(inst)):
        for i in range(inst.shape[0]):
            lab = lm.frame(i).reshape(-1)
            codes, values = lm.frame_codes(i)
            assert (values[codes] == lab).all() and (np.diff(values) > 0).all()
            np.testing.assert_array_equal(np.argsort(codes, kind="stable"), np.argsort(lab, kind="stable"))
    if max(ids) - min(ids) >= DENSE_SPAN:
        assert LabelMaps(inst, tables).frame(0).size  # the searchsorted path


def test_training_labels_equal_the_materialised_ones():
    inst, sem, conf = _random_source(2)
    scene = _scene(inst, sem, conf)
    seed = 4
    i64 = inst.astype(np.int64)
    for overrides, expect in [
        ([], np.where(conf > 0, remap_instance_ids(inst, np.random.default_rng(seed + 17)), -1)),
        (["train.remap_ids=false"], np.where(conf > 0, i64, -1)),
        (["train.method=supervised"],
         np.where(conf > 0, np.stack([np.where((r := rank_frame_ids(f)) >= 3, 0, r) for f in inst]), -1)),
        (["train.method=supervised", "train.oracle_labels=true"], np.where(i64 >= 3, 0, i64)),  # GT: all supervised
        (["train.mode=semantic"], np.where(conf > 0, sem, 0)),
    ]:
        cfg = load_config(None, [f"train.seed={seed}"] + overrides)
        tl = training_labels(scene, cfg, 3)
        np.testing.assert_array_equal(np.asarray(tl.labels), expect)
        oracle = "train.oracle_labels=true" in overrides
        sem_expect = sem if oracle else np.where(conf > 0, sem, 0)
        np.testing.assert_array_equal(np.asarray(tl.semantic), sem_expect)
        # the rays of every pixel of every frame, looked up per batch, carry the same labels
        s = RaySampler(scene, tl.labels, tl.semantic, tl.confidence, torch.device("cpu"), seed=0)
        n, h, w = inst.shape
        fr = np.repeat(np.arange(n), h * w)
        b = s.gather(fr, np.tile(np.arange(h * w), n), np.zeros(fr.size, np.int64))
        np.testing.assert_array_equal(b.label.numpy(), expect.reshape(-1))
        np.testing.assert_array_equal(b.semantic.numpy(), sem_expect.reshape(-1))
        np.testing.assert_array_equal(s.labels.numpy(), expect.reshape(-1))  # materialised on request
        assert s.labels.dtype == (torch.int32 if overrides == [] else s.labels.dtype)
        np.testing.assert_array_equal(s.frame_labels(2), expect[2])
        assert list(s.keyframes) == list(select_keyframes(expect, s.frames, 0.1))
    # a stack with no unsupervised pixel gives the source's own semantic maps
    tl = training_labels(_scene(inst, sem, np.full_like(conf, 240)), load_config(None), 3)
    assert tl.semantic.identity and tl.semantic.full() is sem


class _MaterialisedSampler(RaySampler):
    """The sampler as it was: a materialised copy of the labels, each training frame's pixels sorted by label once."""

    def __init__(self, scene, labels, *args, **kwargs):
        super().__init__(scene, labels, *args, **kwargs)
        self._lab = np.asarray(labels)
        self._sorted = {}
        for f in self.frames:
            lab = self._lab[f].reshape(-1)
            order = np.argsort(lab, kind="stable").astype(np.int32)
            ids, starts, counts = np.unique(lab[order], return_index=True, return_counts=True)
            keep = ids >= 0
            self._sorted[int(f)] = (order, ids[keep], starts[keep], counts[keep])

    def frame_pixels(self, f, n_random, n_label):
        order, ids, starts, counts = self._sorted[f]
        rand = self.rng.integers(0, self.h * self.w, size=n_random)
        if n_label <= 0 or ids.size == 0:
            return rand
        alloc = np.maximum(1, np.round(n_label * counts / counts.sum()).astype(np.int64))
        seg = np.repeat(np.arange(len(ids)), alloc)
        offs = (self.rng.random(seg.size) * counts[seg]).astype(np.int64)
        return np.concatenate([rand, order[starts[seg] + offs]])

    def foreground_pixels(self, f, n):
        order, ids, starts, counts = self._sorted[f]
        fg = ids > 0
        if not fg.any():
            return self.rng.integers(0, self.h * self.w, size=n)
        pool = np.concatenate([order[s:s + c] for s, c in zip(starts[fg], counts[fg])])
        return pool[self.rng.integers(0, pool.size, size=n)]


def _same_batch(a, b):
    for k in ("frame", "view", "label", "semantic", "rgb", "confidence", "origins", "dirs"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k


def test_sampler_stream_is_the_materialised_one_and_resumes_exactly():
    inst, sem, conf = _random_source(5, n=9)
    inst[4] = 0  # a frame without labels (replaced by a key frame)
    scene = _scene(inst, sem, conf)
    tl = training_labels(scene, load_config(None), 3)
    new = RaySampler(scene, tl.labels, tl.semantic, tl.confidence, torch.device("cpu"), seed=3)
    old = _MaterialisedSampler(scene, tl.labels, tl.semantic, tl.confidence, torch.device("cpu"), seed=3)
    for f in new.frames:  # the segments and the on-the-fly order are the stored ones
        order, ids, starts, counts = old._sorted[int(f)]
        got = new._segments[int(f)]
        assert got[0].tolist() == ids.tolist() and got[1].tolist() == starts.tolist()
        assert got[2].tolist() == counts.tolist()
        np.testing.assert_array_equal(new.frame_order(int(f)), order)
    for _ in range(30):  # several epochs of 8 frames
        _same_batch(new.sample(40, 30, extra_views=3, extra_rays=7), old.sample(40, 30, extra_views=3, extra_rays=7))
    # resume: the generator state and the rest of the epoch (what the checkpoint stores) give the same stream
    state, epoch = new.rng.bit_generator.state, list(new._epoch)
    resumed = RaySampler(scene, tl.labels, tl.semantic, tl.confidence, torch.device("cpu"), seed=99)
    resumed.rng.bit_generator.state, resumed._epoch = state, epoch
    for _ in range(12):
        _same_batch(new.sample(40, 30, 3, 7), resumed.sample(40, 30, 3, 7))


def test_sampler_holds_no_copy_of_the_maps():
    inst, sem, conf = _random_source(6)
    scene = _scene(inst, sem, conf)
    tl = training_labels(scene, load_config(None), 3)
    s = RaySampler(scene, tl.labels, tl.semantic, tl.confidence, torch.device("cpu"))
    t = s.tensors()
    assert t["labels.base"].data_ptr() == inst.ctypes.data and t["semantic.base"].data_ptr() == sem.ctypes.data
    assert s._label_rays.mask is s._semantic_rays.mask is s.confidence  # one tensor, listed once
    assert "labels.mask" not in t and t["confidence"].data_ptr() == conf.ctypes.data
    big = [k for k, v in t.items() if v.numel() >= inst.size and v.data_ptr() not in
           (inst.ctypes.data, sem.ctypes.data, conf.ctypes.data, scene.rgb.ctypes.data)]
    assert big == [] and not hasattr(s, "_sorted")


@pytest.fixture()
def pl_scene(tmp_path):
    return write_memory_scene(tmp_path / "scene", frames=10, height=16, width=24, distinct=10)


def test_normals_read_and_checked_but_kept_only_when_asked(pl_scene):
    full = load_scene(pl_scene, "panoptic_lifting")
    lean = load_scene(pl_scene, "panoptic_lifting", ReadOptions(normals=False))
    assert full.normals is not None and lean.normals is None
    np.testing.assert_array_equal(full.rgb, lean.rgb)
    bad = np.load(pl_scene / "normal" / "0003.npy")
    bad[2, 2] = np.nan
    np.save(pl_scene / "normal" / "0003.npy", bad)
    with pytest.raises(SdfsegError, match="0003.npy: normals have non-finite values"):
        load_scene(pl_scene, "panoptic_lifting", ReadOptions(normals=False))
    assert read_options(load_config(None)).normals  # the default config trains with the normal losses
    assert not read_options(load_config("confs/scannet.yaml")).normals


def test_gt_of_test_frames_only(pl_scene):
    full = load_scene(pl_scene, "panoptic_lifting")
    lean = load_scene(pl_scene, "panoptic_lifting", ReadOptions(gt_frames="test"))
    test = full.split["test"]
    assert test.tolist() == [0, 8]
    for key in ("instance", "semantic"):
        sub, ref = getattr(lean.gt, key), getattr(full.gt, key)
        assert isinstance(sub, FrameSubset) and sub.frames.tolist() == [0, 8] and sub.shape == ref.shape
        np.testing.assert_array_equal(sub[test], ref[test])
        np.testing.assert_array_equal(sub[8], ref[8])
        with pytest.raises(SdfsegError, match="frame 3 were checked but not kept"):
            sub[3]
        with pytest.raises(SdfsegError):
            np.asarray(sub)
        with pytest.raises(SdfsegError):
            sub == 0
    assert lean.nbytes() == full.nbytes() - 8 * 2 * 16 * 24  # 8 training frames x 2 uint8 GT maps dropped
    assert evaluate_label_source(lean, "m2f") == evaluate_label_source(full, "m2f")  # the noisy-label row
    # the oracle trains on GT labels of every frame; other training reads the test frames' only
    assert read_options(load_config(None)).gt_frames == "test"
    assert read_options(load_config(None, ["train.oracle_labels=true"])).gt_frames == "all"
    # every GT file is still checked
    from sdfseg.io import read_label_png, save_label_png
    m = read_label_png(pl_scene / "rs_semantics" / "0003.png")
    m[0, 0] = 99
    save_label_png(pl_scene / "rs_semantics" / "0003.png", m)
    with pytest.raises(SdfsegError, match="0003.png: semantic ids"):
        load_scene(pl_scene, "panoptic_lifting", ReadOptions(gt_frames="test"))
    with pytest.raises(SdfsegError, match="gt_frames"):
        load_scene(pl_scene, "panoptic_lifting", ReadOptions(gt_frames="train"))


def test_in_place_normalisation_gives_the_same_depth(pl_scene):
    ref = normalize_scene(load_scene(pl_scene, "panoptic_lifting"))
    world = load_scene(pl_scene, "panoptic_lifting")
    depth = world.depth
    got = normalize_scene(world, in_place=True)
    assert got.depth is depth
    np.testing.assert_array_equal(got.depth, ref.depth)
    assert got.normalization.to_dict() == ref.normalization.to_dict()


def test_scene_extent_is_the_one_of_the_concatenated_points(pl_scene):
    """The extent's points are filled in place and partitioned per axis: the same percentiles, bit for bit, as
    concatenating every frame's points and taking the percentiles over axis 0."""
    from sdfseg.data.normalize import backproject_depth, scene_extent

    scene = load_scene(pl_scene, "panoptic_lifting")
    scene.depth[3] = 0  # a frame without valid depth
    centres = scene.c2w[:, :3, 3].astype(np.float64)
    for percentile, stride in ((0.5, 8), (10.0, 3), (0.0, 1)):
        pts = np.concatenate([backproject_depth(scene.depth[i], scene.intrinsics[i], scene.c2w[i], stride)
                              for i in range(scene.num_frames)] + [centres])
        lo, hi = scene_extent(scene, percentile, stride)
        np.testing.assert_array_equal(lo, np.minimum(np.percentile(pts, percentile, axis=0), centres.min(0)))
        np.testing.assert_array_equal(hi, np.maximum(np.percentile(pts, 100 - percentile, axis=0), centres.max(0)))
