"""'Not supervised' (confidence 0: outside the room, frames a source does not cover) is masked out end
to end; 'low confidence' only weights a pixel (REFERENCE 2 and 8)."""

import numpy as np
import torch

from sdfseg.config import load_config
from sdfseg.data.rays import Batch, RaySampler, select_keyframes
from sdfseg.data.scene import ClassInfo, LabelSource, Scene
from sdfseg.methods.clustering.channels import mask_segments
from sdfseg.methods.clustering.ownership import mask_votes
from sdfseg.training.labels import training_labels
from sdfseg.training.objective import Objective

CLASSES = ClassInfo(num_classes=3, thing_ids=(2,), stuff_ids=(1,))


def _scene() -> Scene:
    n, h, w = 2, 4, 6
    inst = np.zeros((n, h, w), np.int32)
    inst[:, :, 3:] = 7
    sem = np.where(inst > 0, 2, 1).astype(np.int32)
    conf = np.full((n, h, w), 0.9, np.float32)
    conf[:, :, :2] = 0.0    # outside the room: not supervised
    conf[:, 0, 4] = 0.1     # a TTA confidence of 0, raised to 0.1 by the reader: low confidence
    return Scene(path=__import__("pathlib").Path("."), frame_names=["0", "1"], rgb=np.zeros((n, h, w, 3), np.float32),
                 c2w=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), intrinsics=np.tile(np.eye(3, dtype=np.float32),
                                                                                           (n, 1, 1)),
                 classes=CLASSES, split={"train": np.array([0, 1]), "test": np.array([1])},
                 labels={"m2f": LabelSource(instance=inst, semantic=sem, confidence=conf)})


def test_training_labels_mask_out_unsupervised_pixels_and_keep_low_confidence():
    for mode in ("instance", "semantic"):
        cfg = load_config(None, [f"train.mode={mode}"])
        tl = training_labels(_scene(), cfg, 5)
        assert (tl.labels[:, :, :2] == -1).all() if mode == "instance" else (tl.labels[:, :, :2] == 0).all()
        assert (tl.semantic[:, :, :2] == 0).all() and (tl.semantic[:, :, 2:] > 0).all()
        assert (tl.labels[:, :, 2:] >= 0).all() and tl.confidence[0, 0, 4] == np.float32(0.1)
        assert (tl.confidence[:, :, :2] == 0).all()  # not raised to 0.1 any more


def test_sampler_spends_no_label_rays_on_unsupervised_pixels():
    scene = _scene()
    tl = training_labels(scene, load_config(None), 5)
    s = RaySampler(scene, tl.labels, tl.semantic, tl.confidence, torch.device("cpu"), seed=0)
    pix = s.frame_pixels(0, 0, 200)
    assert (tl.labels[0].reshape(-1)[pix] >= 0).all() and len(pix) > 150
    assert list(select_keyframes(tl.labels, np.array([0, 1]), 1.0)) == [0, 1]


def _batch(label, view, sem):
    r = len(label)
    return Batch(origins=torch.zeros(r, 3), dirs=torch.zeros(r, 3), ray_scale=torch.ones(r), rgb=torch.zeros(r, 3),
                 frame=torch.zeros(r, dtype=torch.long), view=torch.tensor(view), label=torch.tensor(label),
                 semantic=torch.tensor(sem), confidence=torch.ones(r))


def test_clustering_losses_ignore_unsupervised_rays():
    cfg = load_config(None, ["train.segmentation_start=0", "loss.fgbg_sdf=1", "model.num_channels=4"])
    obj = Objective(cfg, "metric", CLASSES)
    g = torch.Generator().manual_seed(0)
    label, view, sem = [0, 0, 5, 5, 9, 9, 3, 3, 0], [0, 0, 0, 0, 0, 0, 1, 1, 1], [1, 1, 2, 2, 2, 2, 2, 2, 1]
    opacity, sdf, weights = torch.rand(9, 4, generator=g), torch.randn(9, 3, 4, generator=g), torch.rand(9, 3, generator=g)
    clean = {}
    obj._segmentation({"opacity": opacity, "sdf": sdf, "weights": weights}, _batch(label, view, sem), clean)
    extra = torch.rand(4, 4, generator=g) * 100  # unsupervised rays with absurd opacities, main and extra view
    noisy = {}
    obj._segmentation({"opacity": torch.cat([opacity, extra]), "sdf": torch.cat([sdf, torch.randn(4, 3, 4)]),
                       "weights": torch.cat([weights, torch.rand(4, 3)])},
                      _batch(label + [-1] * 4, view + [0, 0, 1, 1], sem + [0] * 4), noisy)
    assert set(clean) == set(noisy) == {"diff", "onehot", "reg", "fgbg", "fgbg_sdf", "cross_view"}
    for k in clean:
        assert torch.equal(clean[k], noisy[k]), k


def test_votes_of_unsupervised_rays_say_nothing():
    seg = mask_segments(np.array([0, 0, 1, 1]), torch.tensor([4, 0, -1, 4]))
    assert seg[1] == -1 and seg[2] == -2 and seg[0] >= 0 and seg[3] >= 0 and seg[0] != seg[3]
    vote = mask_votes(np.array([3, 0, 3, 3]), seg, 0.5)
    assert vote.tolist() == [3, 0, -1, 3]  # background votes background; unsupervised has no say
