"""SAM path: a randomly initialised tiny SAM built with segment-anything's own builder, no checkpoint."""

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sdfseg.data import load_scene
from sdfseg.data.labels2d import paint_masks
from sdfseg.data.labels2d.sam import SamConfig, SamSegmenter, batched_nms, import_segment_anything, load_sam
from sdfseg.data.labels2d.writer import segment_scene
from sdfseg.data.masks import MaskSet
from sdfseg.errors import SdfsegError
from sdfseg.io import read_label_png


def test_batched_nms_hand_worked():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([0.5, 0.9, 0.8, 0.1])
    cats = torch.tensor([0, 0, 1, 0])
    # box 1 (IoU with box 0 = 81/100 > 0.7) suppresses box 0; box 2 is another category; box 3 does not overlap
    assert batched_nms(boxes, scores, cats, 0.7).tolist() == [1, 2, 3]
    assert batched_nms(boxes, scores, cats, 0.9).tolist() == [1, 2, 0, 3]


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    with pytest.raises(SdfsegError, match=r"missing\.pth: SAM checkpoint file not found \(pass --checkpoint PATH"):
        load_sam(tmp_path / "missing.pth", "vit_b")
    with pytest.raises(SdfsegError, match=r"--model-type: 'vit_x' is not one of"):
        load_sam(tmp_path / "missing.pth", "vit_x")


# segment_anything cannot be imported directly without torchvision; import_segment_anything() handles that
@pytest.mark.skipif(importlib.util.find_spec("segment_anything") is None, reason="segment-anything not installed")
def test_not_installed_says_how_to_install(monkeypatch, tmp_path):
    import sdfseg.data.labels2d.sam as sam_module

    monkeypatch.delitem(sys.modules, "segment_anything", raising=False)
    monkeypatch.setattr(sam_module, "sam_installed", lambda: False)
    (tmp_path / "w.pth").write_bytes(b"0")
    with pytest.raises(SdfsegError, match=r"segment-anything package, which is not installed: .*pip install -e \.\[sam\]"):
        load_sam(tmp_path / "w.pth", "vit_b")


@pytest.mark.skipif(importlib.util.find_spec("segment_anything") is None, reason="segment-anything not installed")
def test_tiny_random_sam_writes_masks_and_instance_map(tmp_path):
    import_segment_anything()
    assert "torchvision" not in sys.modules or hasattr(sys.modules["torchvision"], "__file__")  # no stand-in left
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    model = _build_sam(encoder_embed_dim=16, encoder_depth=1, encoder_num_heads=1, encoder_global_attn_indexes=[0])
    seg = SamSegmenter(model, SamConfig(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0))
    seen = []  # record what the package's generator returned
    generate = seg.generator.generate
    seg.generator.generate = lambda image: seen.append(generate(image)) or seen[-1]

    (tmp_path / "images").mkdir()
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "images" / "a.png")
    frames = [{"file_path": "images/a.png", "transform_matrix": np.eye(4).tolist()}]
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 50, "fl_y": 50, "frames": frames}))
    scene = load_scene(tmp_path)
    assert segment_scene(scene, seg, "sam", progress=False) == {"written": 1, "skipped": 0}

    (records,) = seen
    ms = MaskSet.load(tmp_path / "masks_sam" / "a.npz")
    kept = [r for r in records if r["segmentation"].any()]
    assert len(ms) == len(kept) >= 1 and (ms.height, ms.width) == (64, 64)
    for i, r in enumerate(kept):
        np.testing.assert_array_equal(ms.mask(i), r["segmentation"])
        assert ms.scores[i] == pytest.approx(r["predicted_iou"])
    inst = read_label_png(tmp_path / "sam_instance" / "a.png")
    assert inst.dtype == np.int32
    np.testing.assert_array_equal(inst, paint_masks([r["segmentation"] for r in records], (64, 64)))
    assert json.loads((tmp_path / "sam_instance" / "segment2d.json").read_text())["points_per_side"] == 2
