"""End-to-end smoke tests of training on a tiny synthetic scene (CPU, a few iterations)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import DEVICE, ROOT
from _helpers import TINY as BASE_TINY
from _helpers import demo_config, tiny_scene

from sdfseg.config import load_config
from sdfseg.core.ownership import OwnershipGrid
from sdfseg.errors import SdfsegError
from sdfseg.io import read_label_png
from sdfseg.training.pipeline import finish, load_channel_table, load_run
from sdfseg.training.trainer import Trainer

TINY = BASE_TINY + ["render.chunk=512", "render.mesh_resolution=24", "train.log_every=1",
                    "train.segmentation_start=0"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tiny_scene(tmp_path_factory.mktemp("smoke") / "scene")


def _cfg(scene_dir, run_dir, *extra):
    return demo_config(TINY, scene_dir, run_dir, "train.iterations=2", *extra)


def test_two_iterations_end_to_end(scene_dir, tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(scene_dir, run)
    trainer = Trainer(cfg)
    p0 = [p.detach().clone() for p in trainer.model.parameters()]
    stats = trainer.fit(progress=False)
    assert trainer.step == 2 and np.isfinite(stats["total"])
    assert any(not torch.equal(a, b) for a, b in zip(p0, trainer.model.parameters()))
    metrics = finish(trainer, progress=False)
    for key in ("pq", "sq", "rq", "miou", "ea"):
        assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["pq"] == metrics["pq"] and saved["baseline"] is not None
    test_names = json.loads((scene_dir / "splits.json").read_text())["test"]
    for name in test_names:
        inst = read_label_png(run / "test" / "instance" / f"{name}.png")
        assert inst.shape == (24, 32)
        assert (run / "test" / "rgb" / f"{name}.png").exists()
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "last.pt").exists()
    assert list((run / "tb").iterdir())
    channels = json.loads((run / "channels.json").read_text())["channels"]
    assert len(channels) == 5 and channels[0]["object"] is False
    assert (run / "meshes" / "scene_by_object.ply").exists()
    assert "gt_comparison" in json.loads((run / "meshes" / "mesh_metrics.json").read_text())


def test_ownership_vote_moves_owners_not_surface(scene_dir, tmp_path):
    run = tmp_path / "run"
    # the plain channels: after two steps with model.scene_offsets no sampled point of this tiny scene changes
    # owner (the vote's effect with it is measured by the quality benchmark)
    trainer = Trainer(_cfg(scene_dir, run, "render.vote_grid=16", "render.vote_rays=512",
                           "render.export_mesh=false", "model.scene_offsets=false",
                           "model.offset_grid_levels=0"))
    trainer.fit(progress=False)
    finish(trainer, progress=False)
    grid = OwnershipGrid.load(run / "ownership.npz")
    assert grid.resolution == 16 and int((grid.target >= 0).sum()) > 0
    x = torch.rand(4096, 3, device=DEVICE) * 1.6 - 0.8
    with torch.no_grad():
        edited, raw = trainer.model.channel_sdf(x)[0], trainer.model.sdf(x)[0]
    assert torch.equal(edited.min(dim=1).values, raw.min(dim=1).values)  # same surface ...
    assert not torch.equal(edited, raw)  # ... other owners
    trainer.cfg.render.vote_max_gap = 0.02  # geometry gate: saved with the grid, applied by the renders
    finish(trainer, progress=False)
    gated = OwnershipGrid.load(run / "ownership.npz")
    table = load_channel_table(run)
    with torch.no_grad():
        expected = gated.apply(x, raw, torch.as_tensor(table.instance))
        assert gated.max_gap == 0.02 and torch.equal(trainer.model.channel_sdf(x)[0], expected)
    trainer.cfg.render.vote_grid = 0
    finish(trainer, progress=False)  # off again: no stale grid for extract_mesh to pick up
    assert not (run / "ownership.npz").exists() and trainer.model.channel_edit is None


@pytest.mark.parametrize("extra", [(), ("sampler.use_depth=false", "sampler.grid_resolution=17",
                                          "sampler.grid_update_every=3")], ids=["depth", "sdf-grid"])
def test_resume_continues_from_saved_step(scene_dir, tmp_path, extra):
    straight = Trainer(_cfg(scene_dir, tmp_path / "a", "train.iterations=4", *extra))
    straight.fit(progress=False)

    killed = Trainer(_cfg(scene_dir, tmp_path / "b", "train.iterations=4", *extra))
    killed.train_step()
    killed.train_step()
    killed.save_checkpoint()  # the run is killed after its step-2 checkpoint
    resumed = Trainer(_cfg(scene_dir, tmp_path / "b", "train.iterations=4", *extra))
    resumed.fit(resume=True, progress=False)
    assert resumed.step == 4
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    if extra:  # the grid of the model's own SDF is training state: saved, restored, refreshed at step 3
        assert straight.model.sample_grid is not None and bool(resumed.model.sample_grid.valid)
        assert torch.equal(straight.model.sample_grid.values, resumed.model.sample_grid.values)
    else:
        assert straight.model.sample_grid is None  # sensor depth: no grid
    reloaded = load_run(tmp_path / "b")
    assert reloaded.step == 4


def test_clustering_options_train(scene_dir, tmp_path):
    """loss.cluster_confidence, model.scene_offsets and each model.ownership_owner_grad train steps with the
    clustering terms on;
    an ownership_owner_grad changes only gradients, so its first step's one-hot term is the plain recipe's
    (same seed)."""
    base = ["model.opacity=ownership", "train.segmentation_start=0"]
    plain = Trainer(_cfg(scene_dir, tmp_path / "plain", *base)).train_step()
    for i, extra in enumerate((["loss.cluster_confidence=true"], ["model.ownership_owner_grad=raise"],
                               ["model.ownership_owner_grad=none"], ["model.scene_offsets=true"])):
        t = Trainer(_cfg(scene_dir, tmp_path / f"opt{i}", *base, *extra))
        s = t.train_step()
        assert np.isfinite(s["total"]) and "onehot" in s and "fgbg" in s
        if "model.ownership_owner_grad" in extra[0]:  # forward values untouched
            assert s["onehot"] == pytest.approx(plain["onehot"], rel=1e-6)
        assert np.isfinite(t.train_step()["total"])


def test_supervised_and_semantic_modes_run(scene_dir, tmp_path):
    for extra in (["train.method=supervised", "train.oracle_labels=true"], ["train.mode=semantic"]):
        t = Trainer(_cfg(scene_dir, tmp_path / extra[0].split("=")[1], *extra))
        s = t.train_step()
        assert np.isfinite(s["total"])
        assert ("supervised" in s) == ("train.method=supervised" in extra)


def test_missing_data_folder_is_one_line_error(tmp_path):
    cfg = load_config(ROOT / "confs" / "scannet.yaml", [f"data.path={tmp_path / 'none'}"])
    with pytest.raises(SdfsegError, match="not found.*demo"):
        Trainer(cfg)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(ROOT / "confs" / "scannet.yaml"),
                        "--set", f"data.path={tmp_path / 'none'}"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: data.path") and len(r.stderr.strip().splitlines()) == 1


def test_demo_config_generates_only_at_its_own_path(tmp_path, monkeypatch):
    """confs/demo.yaml generates its synthetic scene at data.synthetic.path only: a missing data.path elsewhere
    (a typo, or a config based on the demo's) is a one-line error that names it, with nothing generated."""
    typo = tmp_path / "my_scen"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(ROOT / "confs" / "demo.yaml"),
                        "--set", f"data.path={typo}", f"run.dir={tmp_path / 'run'}"], capture_output=True, text=True)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: data.path") and str(typo) in err
    assert not typo.exists() and not (tmp_path / "run" / "checkpoints").exists()
    # at its own path (here: data.synthetic.path set to the missing folder) the scene is generated
    import sdfseg.data.synthetic as synthetic

    made = []
    monkeypatch.setattr(synthetic, "generate_scene", lambda path, **kw: made.append(Path(path)) or tiny_scene(path))
    from sdfseg.training.trainer import load_training_scene

    own = tmp_path / "demo_here"
    cfg = load_config(ROOT / "confs" / "demo.yaml", [f"data.path={own}", f"data.synthetic.path={own}"])
    scene = load_training_scene(cfg)
    assert made == [own] and scene.num_frames == 10


def test_semantic_grid_and_class_balance(scene_dir, tmp_path):
    """model.semantic_grid_levels gives the semantic head its own hash grid (trained at the grid learning rate,
    beside the geometry feature); loss.semantic_balance weights its cross-entropy by the classes' labelled
    pixels. Off (0), the model has the head of before (same parameter names and shapes), so runs written
    before the options load."""
    from sdfseg.training.trainer import semantic_pixel_counts

    plain = Trainer(_cfg(scene_dir, tmp_path / "plain", "model.semantic_grid_levels=0", "loss.semantic_balance=0"))
    assert plain.model.semantic_grid is None and plain.objective.semantic_weights is None
    assert not any(k.startswith("semantic_grid") for k in plain.model.state_dict())
    f = plain.cfg.model.feature_dim
    assert plain.model.semantic[0].in_features == f

    t = Trainer(_cfg(scene_dir, tmp_path / "sem", "model.semantic_grid_levels=3", "loss.semantic_balance=0.5"))
    grid = {id(p) for p in t.model.semantic_grid.parameters()}
    assert grid and grid <= {id(p) for p in t.optimizer.param_groups[0]["params"]}  # the grid lr group
    assert not grid & {id(p) for p in t.model.other_parameters()}
    assert t.model.semantic[0].in_features == f + 3 * 2
    counts = semantic_pixel_counts(t.labels.semantic, t.scene)
    assert counts[0] == 0 and counts.sum() > 0
    frac = counts / counts.sum()
    w = t.objective.semantic_weights.double()
    assert torch.allclose((torch.as_tensor(frac) * w).sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6)
    present = np.flatnonzero(counts)
    rare, common = present[np.argmin(counts[present])], present[np.argmax(counts[present])]
    assert w[rare] > w[common] and w[0] == 0
    before = [p.detach().clone() for p in t.model.semantic_grid.parameters()]
    s = t.train_step()
    assert np.isfinite(s["total"]) and s["semantic_head"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.semantic_grid.parameters()))


def test_semantic_head_can_stop_at_the_geometry_feature(scene_dir, tmp_path):
    """With model.semantic_detach_geometry the head's loss gives the SDF network no gradient."""
    t = Trainer(_cfg(scene_dir, tmp_path / "det", "model.semantic_detach_geometry=true", "model.semantic_grid_levels=2"))
    feat = torch.randn(5, t.cfg.model.feature_dim, requires_grad=True)
    x = torch.rand(5, 3, requires_grad=True)
    t.model.semantic_logits(feat, x).sum().backward()
    assert feat.grad is None and x.grad is None
    assert all(p.grad is not None for p in t.model.semantic.parameters())
    t.model.cfg.model.semantic_detach_geometry = False
    t.model.semantic_logits(feat, x).sum().backward()
    assert feat.grad is not None and x.grad is None
