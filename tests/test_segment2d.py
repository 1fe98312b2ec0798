"""2D segmentation: classical hierarchy, flattening, writer (atomic, resumable), CLI, Mask2Former conversion."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfseg.data import load_scene
from sdfseg.data.scene import decode_confidence
from sdfseg.data.labels2d import Segmentation, make_segmenter, paint_masks, relabel_consecutive
from sdfseg.data.labels2d.classical import ClassicalConfig, ClassicalSegmenter
from sdfseg.data.labels2d.mask2former import Mask2FormerConfig, Mask2FormerSegmenter, panoptic_to_segmentation
from sdfseg.data.labels2d.writer import LabelWriter, label_paths, segment_scene
from sdfseg.data.masks import MaskSet
from sdfseg.errors import SdfsegError
from sdfseg.io import read_label_png

ROOT = Path(__file__).resolve().parents[1]


def quadrant_image() -> np.ndarray:
    """Top quadrants two similar reds, bottom two similar blues, a green square in the top-left one."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[:32, :32] = (200, 30, 30)
    img[:32, 32:] = (160, 40, 40)
    img[32:, :32] = (30, 30, 200)
    img[32:, 32:] = (40, 40, 150)
    img[8:16, 8:16] = (30, 200, 30)
    return img


def assert_nested(maps):
    """Every segment of a finer map lies inside exactly one segment of the next coarser map."""
    for fine, coarse in zip(maps[:-1], maps[1:]):
        for i in np.unique(fine):
            assert np.unique(coarse[fine == i]).size == 1


def test_classical_hierarchy_hand_worked():
    seg = ClassicalSegmenter(ClassicalConfig(sigma=0.0, min_size=10, levels=(8, 4, 2), instance_segments=4))
    maps = seg.hierarchy(quadrant_image())
    assert [int(m.max()) for m in maps] == [5, 4, 2]  # the base has only 5 regions, so 8 is the base itself
    assert all(m.dtype == np.int32 for m in maps)
    assert_nested(maps)
    # Ward merging joins the two similar reds before the small, very different green square
    out = seg(quadrant_image())
    expected = np.full((64, 64), 1, np.int32)
    expected[8:16, 8:16] = 2
    expected[32:, :32] = 3
    expected[32:, 32:] = 4
    np.testing.assert_array_equal(out.instance, expected)
    # distinct masks: 5 base + (reds without square) + 2 halves
    assert sorted(out.masks.areas().tolist()) == [64, 960, 1024, 1024, 1024, 1984, 2048, 2048]


def test_classical_nested_on_textured_image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:80]
    img = np.stack([xx * 3, yy * 4, (xx + yy) * 1.5], -1) + rng.normal(0, 12, (60, 80, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    seg = ClassicalSegmenter(ClassicalConfig(levels=(32, 16, 8, 4, 2), instance_segments=8))
    maps = seg.hierarchy(img)
    assert [int(m.max()) for m in maps] == [32, 16, 8, 4, 2]
    assert_nested(maps)
    out = seg(img)
    assert out.instance.dtype == np.int32 and int(out.instance.max()) == 8 and out.instance.min() == 1
    masks = list(out.masks)
    for m in masks:  # every mask is a union of finest-level segments
        assert all(np.unique(m[maps[0] == i]).size == 1 for i in range(1, 33))


def test_paint_masks_small_on_top_and_relabel():
    big = np.zeros((4, 6), bool)
    big[:, :4] = True
    small = np.zeros((4, 6), bool)
    small[1:3, 1:3] = True
    other = np.zeros((4, 6), bool)
    other[0, 5] = True
    out = paint_masks([small, other, big], (4, 6))
    # ids follow raster order of first appearance: big (0,0) -> 1, other (0,5) -> 2, small (1,1) -> 3
    expected = np.array([[1, 1, 1, 1, 0, 2], [1, 3, 3, 1, 0, 0], [1, 3, 3, 1, 0, 0], [1, 1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(relabel_consecutive(np.array([[0, 9], [7, 9]])), [[0, 1], [2, 1]])


def test_panoptic_to_segmentation():
    pan = np.array([[0, 1, 1], [2, 2, 3], [3, 3, 3]])
    info = [{"id": 1, "isthing": True, "category_id": 56}, {"id": 2, "isthing": False, "category_id": 120},
            {"id": 3, "isthing": True, "category_id": 56, "score": 0.7}]
    seg = panoptic_to_segmentation(pan, info, class_map={56: 5, 120: 1})
    np.testing.assert_array_equal(seg.instance, [[0, 1, 1], [0, 0, 2], [2, 2, 2]])
    np.testing.assert_array_equal(seg.semantic, [[0, 5, 5], [1, 1, 5], [5, 5, 5]])
    assert len(seg.masks) == 3 and seg.masks.scores.tolist() == pytest.approx([1.0, 1.0, 0.7])
    assert panoptic_to_segmentation(pan, info).semantic is None


def test_mask2former_errors(tmp_path):
    with pytest.raises(SdfsegError, match=r"Mask2Former config file not found \(pass --config PATH\)"):
        Mask2FormerSegmenter(Mask2FormerConfig(config=str(tmp_path / "nope.yaml"), checkpoint="x"))
    if importlib.util.find_spec("detectron2") is None:
        (tmp_path / "c.yaml").write_text("MODEL: {}\n")
        (tmp_path / "w.pkl").write_bytes(b"0")
        with pytest.raises(SdfsegError, match=r"needs detectron2 .*pip install"):
            Mask2FormerSegmenter(Mask2FormerConfig(config=str(tmp_path / "c.yaml"), checkpoint=str(tmp_path / "w.pkl")))


def write_transforms_scene(root: Path, n: int = 3) -> None:
    (root / "images").mkdir(parents=True)
    frames = []
    for i in range(n):
        img = quadrant_image()[::2, ::2].copy()
        img[..., 1] = np.clip(img[..., 1].astype(int) + 10 * i, 0, 255)
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        m = np.eye(4)
        m[0, 3] = i
        frames.append({"file_path": f"images/{i:02d}.png", "transform_matrix": m.tolist()})
    (root / "transforms.json").write_text(json.dumps({"fl_x": 30, "fl_y": 30, "frames": frames}))


class CountingSegmenter:
    method = "counting"
    outputs = ("instance", "masks", "semantic")

    def __init__(self, tag=0):
        self.calls, self.tag = 0, tag

    def settings(self):
        return {"tag": self.tag}

    def __call__(self, rgb):
        self.calls += 1
        inst = np.zeros(rgb.shape[:2], np.int32)
        inst[:, : rgb.shape[1] // 2] = 70000  # needs 32-bit PNG encoding
        m = inst > 0
        return Segmentation(instance=inst, masks=MaskSet.from_masks([m, ~m], *rgb.shape[:2]), semantic=m.astype(np.int32) + 1)


def test_writer_resumes_and_refuses_other_settings(tmp_path):
    write_transforms_scene(tmp_path)
    scene = load_scene(tmp_path)
    seg = CountingSegmenter()
    assert segment_scene(scene, seg, "toy", progress=False, limit=2) == {"written": 2, "skipped": 0}
    assert segment_scene(scene, seg, "toy", progress=False) == {"written": 1, "skipped": 2}
    assert seg.calls == 3
    paths = label_paths(tmp_path, "toy", "02")
    lab = read_label_png(paths["instance"])
    assert lab.dtype == np.int32 and lab[0, 0] == 70000 and lab[0, -1] == 0
    assert read_label_png(paths["semantic"])[0, 0] == 2 and len(MaskSet.load(paths["masks"])) == 2
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]  # atomic writes leave no temporaries
    with pytest.raises(SdfsegError, match=r"toy_instance/segment2d\.json: labels 'toy' were made with other settings"):
        segment_scene(scene, CountingSegmenter(tag=1), "toy", progress=False)
    with pytest.raises(SdfsegError, match=r"--output-name: '\.\./x' is not a valid folder prefix"):
        LabelWriter(tmp_path, "../x", ("instance",))
    reread = load_scene(tmp_path)  # the reader picks the source up by name
    assert reread.labels["toy"].instance[1, 0, 0] == 70000 and reread.labels["toy"].semantic[1, 0, 0] == 2
    assert reread.mask_dirs["toy"] == tmp_path / "masks_toy"


def load_tool():
    from sdfseg.cli import segment2d

    return segment2d


def test_cli_classical_end_to_end(tmp_path, capsys):
    write_transforms_scene(tmp_path)
    tool = load_tool()
    assert tool.main([str(tmp_path), "--method", "classical", "--frames", "train", "--levels", "8,4,2",
                      "--instance-segments", "4"]) == 0
    assert "wrote 2 frames" in capsys.readouterr().out
    scene = load_scene(tmp_path)
    np.testing.assert_array_equal(scene.split["train"], [1, 2])
    src = scene.labels["classical"]  # test frame 00 was not segmented: id 0, confidence 0
    assert src.instance[0].max() == 0 and src.instance[1].min() >= 1
    np.testing.assert_array_equal(decode_confidence(src.confidence[:, 0, 0]), [0.0, 1.0, 1.0])
    assert sorted(p.name for p in (tmp_path / "classical_instance").glob("*.png")) == ["01.png", "02.png"]
    ms = MaskSet.load(tmp_path / "masks_classical" / "01.npz")
    assert (ms.height, ms.width) == (32, 32) and len(ms) >= 3
    assert tool.main([str(tmp_path), "--method", "classical", "--frames", "train", "--levels", "8,4,2",
                      "--instance-segments", "4"]) == 0
    assert "wrote 0 frames, skipped 2" in capsys.readouterr().out


def test_cli_errors(tmp_path):
    tool = load_tool()
    write_transforms_scene(tmp_path)
    with pytest.raises(SdfsegError, match=r"--levels: expected comma-separated integers"):
        tool.main([str(tmp_path), "--method", "classical", "--levels", "a,b"])
    with pytest.raises(SdfsegError, match=r"scene folder not found"):
        tool.main([str(tmp_path / "missing"), "--method", "classical"])
    with pytest.raises(SdfsegError, match=r"unknown segmenter"):
        make_segmenter("watershed")
