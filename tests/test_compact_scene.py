"""Compact scene storage (uint8 colours, float16 depth, int8 normals, small label types, uint8 confidences):
the dtypes, the codecs, and that training sees the same rays and colours as the float32 decoding of the files."""

import numpy as np
import pytest
import torch
from _helpers import DEVICE, tiny_scene
from PIL import Image

from sdfseg.config import load_config
from sdfseg.data import load_scene
from sdfseg.data.formats.common import depth_stack, store_depth, tta_confidence
from sdfseg.data.normalize import normalize_scene
from sdfseg.data.rays import (
    RaySampler, decode_confidence_tensor, decode_normals_tensor, decode_rgb_tensor, remap_instance_ids,
)
from sdfseg.data.scene import (
    CONFIDENCE_STEPS, ClassInfo, LabelMapBuilder, LabelSource, Scene, decode_confidence, decode_normals, decode_rgb,
    encode_confidence, encode_normals, encode_rgb, label_dtype,
)
from sdfseg.errors import SdfsegError
from sdfseg.io import read_label_png
from sdfseg.training.labels import training_labels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_scene(tmp_path_factory.mktemp("compact") / "scene", seed=3)


def test_label_dtype_and_builder_widen_only_when_needed():
    assert label_dtype(0, 255) == np.uint8 and label_dtype(0, 256) == np.int16 and label_dtype(-1, 127) == np.int8
    assert label_dtype(-1, 99999) == np.int32 and label_dtype(0, 40000) == np.uint16 and label_dtype(-1, 40000) == np.int32
    b = LabelMapBuilder((3, 2, 2))
    b[0] = np.full((2, 2), 200)
    assert b.array.dtype == np.uint8
    b[1] = np.full((2, 2), 300)
    assert b.array.dtype == np.int16
    b[2] = np.full((2, 2), 70000)
    assert b.array.dtype == np.int32 and b.array[:, 0, 0].tolist() == [200, 300, 70000]
    neg = LabelMapBuilder((1, 2), lo=-1)
    neg[0] = [-1, 5]
    assert neg.array.dtype == np.int8 and neg.array.tolist() == [[-1, 5]]


def test_codecs():
    u8 = np.arange(256, dtype=np.uint8)
    assert (encode_rgb(decode_rgb(u8)) == u8).all()  # uint8 -> float -> uint8 is lossless
    np.testing.assert_array_equal(decode_rgb(u8), u8.astype(np.float32) / np.float32(255))
    fractions = np.array([0.0, 0.1, 0.25, 1 / 3, 0.5, 0.8, 0.9, 1.0])
    np.testing.assert_array_equal(decode_confidence(encode_confidence(fractions)), fractions.astype(np.float32))
    c = np.random.default_rng(0).random(1000)
    assert np.abs(decode_confidence(encode_confidence(c)) - c).max() <= 0.5 / CONFIDENCE_STEPS + 1e-7
    n = np.random.default_rng(1).normal(size=(1000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    n[0] = 0.0  # no normal
    back = decode_normals(encode_normals(n))
    assert (back[0] == 0).all()
    cos = np.clip((back[1:] * n[1:]).sum(1), -1, 1)
    assert np.degrees(np.arccos(cos)).max() < 0.5 and np.allclose(np.linalg.norm(back[1:], axis=1), 1, atol=1e-6)


def test_device_decoding_is_the_host_decoding():
    """The sampler decodes batches on its device to the very float32 values the host decoding gives."""
    u8 = np.arange(256, dtype=np.uint8)
    on = torch.from_numpy(u8).to(DEVICE)
    np.testing.assert_array_equal(decode_rgb_tensor(on).cpu().numpy(), decode_rgb(u8))
    np.testing.assert_array_equal(decode_confidence_tensor(on[:CONFIDENCE_STEPS + 1]).cpu().numpy(),
                                  decode_confidence(u8[:CONFIDENCE_STEPS + 1]))
    q = np.random.default_rng(2).integers(-127, 128, size=(500, 3)).astype(np.int8)
    q[0] = 0
    got = decode_normals_tensor(torch.from_numpy(q).to(DEVICE)).cpu().numpy()
    np.testing.assert_allclose(got, decode_normals(q), atol=1e-6)


def test_depth_beyond_float16_is_refused():
    out = depth_stack(1, (2, 2))
    store_depth(out, 0, np.full((2, 2), 12.5, np.float32), "d.png")
    assert out.dtype == np.float16 and out[0, 0, 0] == 12.5
    with pytest.raises(SdfsegError, match="d.npy: depth up to 1e\\+06 does not fit"):
        store_depth(out, 0, np.full((2, 2), 1e6, np.float32), "d.npy")


def test_reader_stores_compact_types(tiny):
    s = load_scene(tiny)
    assert (s.rgb.dtype, s.depth.dtype, s.normals.dtype) == (np.uint8, np.float16, np.int8)
    m2f = s.labels["m2f"]
    for arr in (m2f.instance, m2f.semantic, s.gt.instance, s.gt.semantic, *s.gt_hierarchy.values()):
        assert arr.dtype == label_dtype(0, int(arr.max()))
    assert m2f.confidence.dtype == np.uint8
    assert s.gt_hierarchy["object"] is s.gt.instance
    assert s.nbytes() == sum(a.nbytes for a in s.arrays().values())
    # 3 + 2 + 3 bytes of colour, depth, normals and one byte per label map and confidence per pixel
    n, h, w = s.depth.shape
    assert m2f.instance.dtype == np.uint16  # the simulated segmenter draws ids up to 65535
    assert s.nbytes() == n * h * w * (3 + 2 + 3 + (2 + 1 + 1) + 2 + 2)


def _file_pixels(root, name, what):
    if what == "rgb":
        return np.asarray(Image.open(root / "color" / f"{name}.png").convert("RGB"), dtype=np.float32) / 255.0
    if what == "depth":
        return read_label_png(root / "depth" / f"{name}.png").astype(np.float32) / 1000.0
    if what == "normal":
        nm = np.load(root / "normal" / f"{name}.npy").astype(np.float32)
        return nm / np.maximum(np.linalg.norm(nm, axis=-1, keepdims=True), 1e-8)
    if what == "confidence":
        with np.load(root / "m2f_probabilities" / f"{name}.npz") as z:
            return tta_confidence(z["confidence"], name)
    return read_label_png(root / what / f"{name}.png")


def test_training_rays_match_the_float32_decoding_of_the_files(tiny):
    """Synthetic generator -> files -> reader -> normalisation -> training labels -> sampler: every ray of two
    training frames carries the colour, depth, normal, confidence and labels of the files, decoded in float32 as
    the readers did before storage was compact (colours exactly; depth, normals and confidences within the
    storage precision), and the training labels are the same remapped ids."""
    cfg = load_config(None)
    scene = normalize_scene(load_scene(tiny), radius=cfg.data.sphere_radius)
    tl = training_labels(scene, cfg, cfg.model.num_channels)
    sampler = RaySampler(scene, tl.labels, tl.semantic, tl.confidence, DEVICE, seed=0)  # the tests' device
    assert (sampler.rgb.dtype, sampler.depth.dtype, sampler.normals.dtype) == (torch.uint8, torch.float16, torch.int8)
    assert sampler.confidence.dtype == torch.uint8 and sampler.semantic.dtype == torch.uint8
    assert sampler.labels.dtype == torch.int32  # remapped ids go up to 99999, -1 = not supervised
    if DEVICE.type == "cpu":
        assert sampler.rgb.data_ptr() == scene.rgb.ctypes.data  # on the CPU the sampler shares the scene's arrays

    # the labels training used before (int64 remap of the whole stack with the same generator)
    src = scene.labels["m2f"]
    before = remap_instance_ids(src.instance.astype(np.int64), np.random.default_rng(cfg.train.seed + 17))
    conf = decode_confidence(src.confidence)
    np.testing.assert_array_equal(tl.labels, np.where(conf > 0, before, -1))

    h, w = scene.hw
    scale = scene.normalization.scale
    for f in scene.split["train"][:2]:
        name = scene.frame_names[int(f)]
        pix = np.arange(h * w)
        b = sampler.gather(np.full(pix.size, f), pix, np.zeros(pix.size, dtype=np.int64))
        b = type(b)(**{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in vars(b).items()})
        assert b.rgb.dtype == b.depth.dtype == b.normal.dtype == b.confidence.dtype == torch.float32
        assert b.label.dtype == b.semantic.dtype == torch.int64
        np.testing.assert_array_equal(b.rgb.numpy(), _file_pixels(tiny, name, "rgb").reshape(-1, 3))
        depth = _file_pixels(tiny, name, "depth").reshape(-1) / np.float32(scale)
        np.testing.assert_allclose(b.depth.numpy(), depth, rtol=2 ** -10)  # two float16 roundings
        assert ((b.depth.numpy() == 0) == (depth == 0)).all()
        normal = _file_pixels(tiny, name, "normal").reshape(-1, 3)
        valid = np.linalg.norm(normal, axis=1) > 0.5
        cos = (b.normal.numpy()[valid] * normal[valid]).sum(1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.5
        c = _file_pixels(tiny, name, "confidence").reshape(-1)
        assert np.abs(b.confidence.numpy() - c).max() <= 0.5 / CONFIDENCE_STEPS + 1e-6
        sem = _file_pixels(tiny, name, "m2f_semantics").reshape(-1)
        np.testing.assert_array_equal(b.semantic.numpy(), np.where(c > 0, sem, 0))
        np.testing.assert_array_equal(b.label.numpy(), np.where(c > 0, before[int(f)].reshape(-1), -1))


def test_normalisation_keeps_float16_and_leaves_the_input(tiny):
    s = load_scene(tiny)
    kept = s.depth.copy()
    n = normalize_scene(s)
    assert n.depth.dtype == np.float16 and (s.depth == kept).all()
    expected = kept.astype(np.float32) / np.float32(n.normalization.scale)
    np.testing.assert_allclose(n.depth, expected, rtol=2 ** -11)


def test_sampler_takes_float_arrays_too():
    """Scenes built in code may hold float32 colours, normals and confidences: the batch carries them as they are."""
    rng = np.random.default_rng(0)
    n, h, w = 2, 3, 4
    rgb = rng.random((n, h, w, 3)).astype(np.float32)
    normals = rng.normal(size=(n, h, w, 3)).astype(np.float32)
    conf = rng.random((n, h, w)).astype(np.float32)
    scene = Scene(path=".", frame_names=["0", "1"], rgb=rgb, c2w=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
                  intrinsics=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)), classes=ClassInfo(3, (2,), (1,)),
                  split={"train": np.arange(n), "test": np.arange(0)}, depth=rng.random((n, h, w)).astype(np.float32),
                  normals=normals, labels={"m2f": LabelSource(np.ones((n, h, w), np.int64), np.ones((n, h, w), np.int64),
                                                              conf)})
    labels = np.ones((n, h, w), np.int64)
    s = RaySampler(scene, labels, labels, conf, torch.device("cpu"))
    pix = np.arange(h * w)
    b = s.gather(np.full(pix.size, 1), pix, np.zeros(pix.size, dtype=np.int64))
    np.testing.assert_array_equal(b.rgb.numpy(), rgb[1].reshape(-1, 3))
    np.testing.assert_array_equal(b.normal.numpy(), normals[1].reshape(-1, 3))
    np.testing.assert_array_equal(b.confidence.numpy(), conf[1].reshape(-1))
    np.testing.assert_array_equal(scene.rgb_float(1), rgb[1])


def test_scene_memory_benchmark_small(tmp_path):
    from sdfseg.apps.scene_memory import scene_memory

    r = scene_memory(3, 16, 24, scene_dir=tmp_path / "scene")  # the ScanNet recipe: no normal losses
    assert r["num_frames"] == 3 and r["hw"] == [16, 24] and not r["reused"] and r["config"].endswith("scannet.yaml")
    assert r["arrays"]["rgb"]["dtype"] == "uint8" and r["arrays"]["depth"]["dtype"] == "float16"
    assert "normals" not in r["arrays"] and not r["keeps_normals"]  # read and checked, not kept
    assert r["arrays"]["labels.m2f.confidence"]["dtype"] == "uint8"
    assert set(r["arrays"]) >= {"labels.m2f.instance", "labels.m2f.semantic", "gt.instance", "gt.semantic"}
    # GT maps of the test frames only: frame 0 of 3 (every 8th frame is a test frame)
    assert r["arrays"]["gt.instance"]["held_frames"] == r["arrays"]["gt.semantic"]["held_frames"] == 1
    assert r["arrays"]["gt.instance"]["shape"] == [3, 16, 24]
    px, gt_px = 3 * 16 * 24, 16 * 24
    assert r["scene_bytes"] == px * (3 + 2 + 3) + gt_px * 2
    assert r["float32_scene_bytes"] == px * (12 + 4 + 3 * 4) + gt_px * 2 * 4
    # the training labels hold their tables only; the sampler holds no remapped or sorted copy of the maps
    assert r["training_labels"]["labels"]["type"] == "LabelMaps" and r["training_labels"]["labels"]["bytes"] < 2000
    tensors = r["sampler_tensors"]
    assert tensors["labels.base"] == "torch.uint8" and tensors["labels.values"] == "torch.int64"
    assert r["peak_rss_bytes"] >= r["maxrss_imports"] > 0 and r["batch_rays"] > 0 and r["batch_seconds"] > 0
    again = scene_memory(3, 16, 24, scene_dir=tmp_path / "scene")
    assert again["reused"] and again["scene_bytes"] == r["scene_bytes"]
    defaults = scene_memory(3, 16, 24, scene_dir=tmp_path / "scene", config=None)  # normal losses on: kept
    assert defaults["keeps_normals"] and defaults["arrays"]["normals"]["dtype"] == "int8"
    assert defaults["scene_bytes"] == r["scene_bytes"] + px * 3


def test_uint16_ids_go_to_an_accelerator_as_a_type_it_can_index():
    """CUDA (torch 2.11) has no uint16 indexing: ids above 32767 travel to any non-CPU device as int32, smaller ones
    as int16; the CPU keeps the uint16 array itself (shared, no copy)."""
    from sdfseg.data.rays import _device_tensor

    big = np.array([0, 40000, 3], dtype=np.uint16)
    meta = torch.device("meta")
    assert _device_tensor(big, meta).dtype == torch.int32
    assert _device_tensor(np.array([1, 300], dtype=np.uint16), meta).dtype == torch.int16
    assert _device_tensor(np.array([1, 70000], dtype=np.uint32), meta).dtype == torch.int32
    cpu = _device_tensor(big, torch.device("cpu"))
    assert cpu.dtype == torch.uint16 and cpu.numpy().ctypes.data == big.ctypes.data
    assert cpu[torch.tensor([1])].long().tolist() == [40000]
