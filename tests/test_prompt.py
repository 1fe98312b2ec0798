"""SANeRF-HQ's prompted object field (``tools/prompt.py``): projection, the simulated prompted segmenter,
the ray-pair term by hand, and the tool end to end on a tiny trained run."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from _helpers import ROOT, TINY, demo_config, scene_pixel, tiny_scene

from sdfseg.methods.prompt.field import SimulatedPromptSegmenter, gt_object_clicks, mask_scores, pair_loss, project
from sdfseg.training.pipeline import finish
from sdfseg.training.trainer import Trainer


def test_pair_loss_by_hand():
    """One 2x2 patch: rays 0 and 1 have one colour, 2 and 3 others far from everything (similarity ~0).
    Only the pair (0, 1) counts: exp(0) |1 - 0| = 1, summed over both orders, over 4 * 3 ordered pairs."""
    prob = torch.tensor([1.0, 0.0, 1.0, 0.0])
    rgb = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert math.isclose(float(pair_loss(prob, rgb, 1, 2, 0.1)), 2.0 / 12.0, rel_tol=1e-4)
    assert float(pair_loss(torch.tensor([1.0, 1.0, 0.0, 0.0]), rgb, 1, 2, 0.1)) < 1e-6


def test_mask_scores_count_iou_only_where_the_object_is():
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    pred = np.zeros((4, 4), bool)
    pred[:2, :3] = True
    iou, acc = mask_scores(pred, gt)
    assert iou == 4 / 6 and acc == 14 / 16
    iou, acc = mask_scores(pred, np.zeros((4, 4), bool))
    assert math.isnan(iou) and acc == 10 / 16


def test_simulated_segmenter_answers_the_clicked_object():
    gt = np.zeros((1, 12, 12), np.int32)
    gt[0, 2:8, 2:6] = 3   # the clicked object
    gt[0, 2:8, 6:10] = 4  # touching it
    sim = SimulatedPromptSegmenter(gt, seed=0, merge_rate=0.0, miss_rate=0.0)
    m = sim(0, None, [(3, 4)], [])
    core = np.zeros((12, 12), bool)
    core[3:7, 3:5] = True
    grown = np.zeros((12, 12), bool)
    grown[1:9, 1:7] = True
    assert (m & core).sum() == core.sum() and not (m & ~grown).any()
    merged = SimulatedPromptSegmenter(gt, seed=0, merge_rate=1.0, miss_rate=0.0)
    assert merged(0, None, [(3, 4)], []).sum() > m.sum()  # the neighbour joined
    assert not merged(0, None, [(3, 4)], [(8, 4)])[2:8, 7:9].any()  # ... unless a negative click is on it
    assert sim(0, None, [(0, 0)], []) is None  # a click on the background: no answer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prompt")
    scene = tiny_scene(tmp / "scene")
    cfg = demo_config(TINY, scene, tmp / "run", "train.iterations=30", "train.segmentation_start=0",
                      "render.chunk=512", "render.mesh_resolution=24", "render.grid_resolution=33")
    t = Trainer(cfg, progress=False)
    t.fit(progress=False)
    finish(t, progress=False)
    return t


def test_projection_and_gt_clicks(trained):
    s = trained.scene
    x = s.normalization.to_world(np.array([[0.05, -0.1, 0.02]]))
    for i in (0, 3):
        u, v, dist = project(s, i, s.normalization.to_normalized(x))
        want = scene_pixel(s, i, x[0])
        if u[0] >= 0:
            assert (u[0], v[0]) == (int(np.floor(want[0] + 0.5)), int(np.floor(want[1] + 0.5)))
            assert math.isclose(dist[0], float(np.linalg.norm(s.normalization.to_normalized(x)[0] - s.c2w[i][:3, 3])))
    scene = trained.scene
    from sdfseg.runs import open_run

    run = open_run(trained.run_dir, "cpu", gt_frames="all")
    clicks = gt_object_clicks(run.scene)
    assert clicks and all(int(run.scene.gt.instance[i][v, u]) == k for k, i, u, v in clicks)
    assert scene.num_frames == run.scene.num_frames


def test_prompt_tool_end_to_end(trained):
    from sdfseg.runs import open_run

    run = open_run(trained.run_dir, "cpu", gt_frames="all")
    k, i, u, v = gt_object_clicks(run.scene)[0]
    name = run.scene.frame_names[i]
    tool = [sys.executable, str(ROOT / "tools" / "prompt.py"), str(trained.run_dir)]
    r = subprocess.run(tool + ["--click", name, str(u), str(v), "--iterations", "20", "--mesh-resolution", "24",
                               "--no-progress", "--name", "p"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = trained.run_dir / "prompts" / "p"
    test_names = json.loads((trained.scene.path / "splits.json").read_text())["test"]
    assert all((out / "masks" / f"{n}.png").exists() for n in test_names)
    info = json.loads((out / "prompt.json").read_text())
    assert info["segmenter"] == "sim" and info["train_views_with_masks"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["gt_object"] == k and 0.0 <= m["field"]["accuracy"] <= 1.0 and "raw_masks" in m
    bad = subprocess.run(tool + ["--click", name, "999", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "outside the" in bad.stderr
    none = subprocess.run(tool, capture_output=True, text=True)
    assert none.returncode == 2 and "give a prompt" in none.stderr


def test_sam_prompt_segmenter_passes_the_clicks_and_keeps_the_best_mask(tmp_path, monkeypatch):
    """segment-anything's predictor contract, with a stand-in package (no weights here): pixel centres as
    (x, y) coordinates, labels 1 / 0 for positive / negative clicks, the mask of the highest score."""
    import types

    from torch import nn

    from sdfseg.methods.prompt.field import SamPromptSegmenter, make_prompt_segmenter

    calls = {}

    class Predictor:
        def __init__(self, model):
            calls["model"] = model

        def set_image(self, image):
            calls["image"] = image.shape

        def predict(self, point_coords, point_labels, multimask_output):
            calls["points"], calls["labels"] = point_coords.tolist(), point_labels.tolist()
            masks = np.zeros((3, 4, 5), bool)
            masks[1, 0, 0] = True
            return masks, np.array([0.1, 0.9, 0.5]), None

    fake = types.SimpleNamespace(sam_model_registry={"vit_h": lambda: nn.Linear(2, 2)}, SamPredictor=Predictor)
    monkeypatch.setitem(sys.modules, "segment_anything", fake)
    ckpt = tmp_path / "sam.pth"
    torch.save(nn.Linear(2, 2).state_dict(), ckpt)
    seg = SamPromptSegmenter(str(ckpt), device="cpu")
    m = seg(0, np.zeros((4, 5, 3), np.uint8), [(1, 2)], [(3, 0)])
    assert calls["points"] == [[1.5, 2.5], [3.5, 0.5]] and calls["labels"] == [1, 0] and calls["image"] == (4, 5, 3)
    assert m.sum() == 1 and m[0, 0]
    with pytest.raises(Exception, match="--sam-checkpoint: .*not found"):
        make_prompt_segmenter("sam", None, str(tmp_path / "none.pth"))
