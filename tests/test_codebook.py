"""Unified-Lift's codebook method (``train.method: codebook``): its terms on hand-worked cases, and a run
of it end to end on the tiny scene."""

import json
import math

import numpy as np
import pytest
import torch
from _helpers import TINY, demo_config, tiny_scene

from sdfseg.errors import SdfsegError
from sdfseg.methods.codebook import losses as cb
from sdfseg.training.pipeline import finish, load_run
from sdfseg.training.trainer import Trainer


def test_area_aware_mapping_sums_probabilities_without_dividing_by_area():
    """Mask 0 (10 rays, P = .6/.3/.1) and mask 1 (1 ray, P = .9/0/.1). Summed: mask 0 -> code 0 (6) with
    mask 1 -> code 2 (0.1) is 6.1, against 3.9 for the swap. Divided by area (eq. 3) the swap would win
    (0.3 + 0.9 = 1.2 against 0.7): the large mask keeps its code."""
    probs = torch.tensor([[0.6, 0.3, 0.1]] * 10 + [[0.9, 0.0, 0.1]])
    mask = torch.tensor([0] * 10 + [1])
    assert cb.area_aware_mapping(probs, mask, 2).tolist() == [0, 2]
    with pytest.raises(ValueError, match="3 masks in one frame but only 2 codes"):
        cb.area_aware_mapping(torch.full((3, 2), 0.5), torch.tensor([0, 1, 2]), 3)


def test_uncertainty_contrastive_and_association_terms_by_hand():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([0, 0, 1])
    # centroids (1, 0) and (0, 1): each ray's own centroid scores 1, the other 0
    w = cb.uncertainty(f, mask, 2)
    assert torch.allclose(w, torch.full((3,), 1.0 / (math.e + 1.0)))
    assert math.isclose(float(cb.contrastive_loss(f, mask, 2)), math.log(1.0 + 1.0 / math.e), rel_tol=1e-6)
    codebook = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    feats = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    ce, concen = cb.association_terms(feats, codebook, torch.tensor([1, 1]), torch.tensor([True, False]))
    # ray 0 only: logits (2, 0), target 1 -> log(e^2 + 1); unit feature (1, 0) vs code (0, 2): 1 + 2
    assert math.isclose(float(ce), math.log(math.e ** 2 + 1.0), rel_tol=1e-6)
    assert math.isclose(float(concen), 3.0, rel_tol=1e-6)
    ce, concen = cb.association_terms(feats, codebook, torch.tensor([1, 1]), torch.tensor([False, False]))
    assert float(ce) == 0.0 and float(concen) == 0.0


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tiny_scene(tmp_path_factory.mktemp("codebook") / "scene")


def _cfg(scene_dir, run, *extra):
    return demo_config(TINY, scene_dir, run, "train.method=codebook", "codebook.size=16", "codebook.dim=8",
                       "codebook.grid_levels=2", "codebook.grid_max_resolution=32", "codebook.hidden=16",
                       "codebook.mesh_resolution=33", "render.chunk=512", "render.mesh_resolution=24",
                       "train.segmentation_start=0", "codebook.filter_start=0.5", *extra)


def test_codebook_run_trains_resumes_and_finishes(scene_dir, tmp_path):
    """One scene SDF, the head and codebook in their own optimiser groups; the filter starts half-way; a
    killed-and-resumed run ends with the weights of an uninterrupted one; the finished run writes maps
    whose instance ids are codes, and a mesh per object code; a clustering config refuses its checkpoint."""
    straight = Trainer(_cfg(scene_dir, tmp_path / "a", "train.iterations=6"))
    assert straight.k == 1 and straight.model.heads["codes"].codebook.shape == (16, 8)
    head = {id(p) for p in straight.model.heads.parameters()}
    groups = [g for g in straight.optimizer.param_groups if any(id(p) in head for p in g["params"])]
    assert len(groups) == 2 and all(all(id(p) in head for p in g["params"]) for g in groups)
    code0 = straight.model.heads["codes"].codebook.detach().clone()
    stats = straight.fit(progress=False)
    assert {"code_ce", "code_concentration", "code_contrastive"} <= set(stats) and np.isfinite(stats["total"])
    assert not torch.equal(code0, straight.model.heads["codes"].codebook)

    half = Trainer(_cfg(scene_dir, tmp_path / "b", "train.iterations=6"))
    for _ in range(3):
        half.train_step()
    half.save_checkpoint()
    resumed = Trainer(_cfg(scene_dir, tmp_path / "b", "train.iterations=6"))
    resumed.fit(resume=True, progress=False)
    for (n, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        if torch.is_tensor(a):
            assert torch.equal(a, b), n

    metrics = finish(straight, progress=False)
    assert metrics["pq"] is not None
    rows = json.loads((tmp_path / "a" / "channels.json").read_text())["channels"]
    assert len(rows) == 16  # one row per code
    assert (tmp_path / "a" / "meshes" / "scene_by_object.ply").exists()
    assert load_run(tmp_path / "a").method.name == "codebook"

    state = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert state["method_name"] == "codebook"
    other = Trainer(demo_config(TINY, scene_dir, tmp_path / "a", "train.iterations=6"))
    with pytest.raises(SdfsegError, match="trained with train.method 'codebook', the config gives 'clustering'"):
        other.load_checkpoint()


def test_code_grid_labels_the_solid_from_its_surface(scene_dir, tmp_path):
    """Every vertex of the mesh grid gets a code; near the surface it is the head's own argmax."""
    t = Trainer(_cfg(scene_dir, tmp_path / "r", "train.iterations=2"))
    t.fit(progress=False)
    label, radius = t.method.code_grid(t.model, 17)
    assert label.shape == (17, 17, 17) and radius == 1.0
    assert int(label.min()) >= 0 and int(label.max()) < 16
