"""Hierarchical feature head on the SDF backbone: config, rendering, sampling, loss glue, trainer wiring."""

import numpy as np
import pytest
import torch
from _helpers import DEVICE, HEAD
from _helpers import TINY as BASE_TINY
from _helpers import demo_config, tiny_scene

from sdfseg.config import load_config
from sdfseg.core.model import SceneModel
from sdfseg.data.masks import MaskSet
from sdfseg.data.rays import Batch
from sdfseg.errors import SdfsegError
from sdfseg.methods.hierarchy.supervision import FeatureLoss, FeatureSupervision, frame_hierarchy, resize_maskset
from sdfseg.training.trainer import Trainer

TINY = BASE_TINY + ["render.chunk=512", "train.log_every=1", "train.segmentation_start=0"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tiny_scene(tmp_path_factory.mktemp("feat") / "scene")


def _cfg(scene_dir, run_dir, *extra):
    return demo_config(TINY, scene_dir, run_dir, "train.iterations=2", *extra)


def test_config_section_defaults_and_errors():
    f = load_config(None).features
    assert (f.enabled, f.dim, f.detach_geometry, f.mask_source, f.loss.kind, f.loss.decay) == (
        False, 16, True, "sim", "contrastive", 0.5)
    assert load_config(None, ["features.loss.decay=0"]).features.loss.decay == 0.0
    for item, key in [("features.loss.kind=both", "features.loss.kind"), ("features.rays=0", "features.rays"),
                      ("features.loss.decay=-1", "features.loss.decay"), ("features.nope=1", "features.nope")]:
        with pytest.raises(SdfsegError, match=key.replace(".", r"\.")):
            load_config(None, [item])


def _toy_rays(n: int = 32):
    """Rays from the origin: the first half looks at +x (patch 0), the second half at -x (patch 1)."""
    g = torch.Generator().manual_seed(0)
    d = torch.tensor([1.0, 0.0, 0.0]).repeat(n, 1) + 0.05 * torch.randn(n, 3, generator=g)
    d[n // 2:, 0] *= -1.0
    d = d / d.norm(dim=-1, keepdim=True)
    return torch.zeros(n, 3), d


def test_render_features_shapes_and_detached_backbone():
    cfg = load_config(None, TINY + HEAD)
    torch.manual_seed(0)
    model = SceneModel(cfg, 5).to(DEVICE)
    o, d = (t.to(DEVICE) for t in _toy_rays())
    out = model.render_features(o, d)
    assert out["features"].shape == (32, 16) and out["depth"].shape == (32,) and out["weights"].shape[0] == 32
    np.testing.assert_allclose(out["acc"].detach().cpu(), out["weights"].detach().sum(-1).cpu(), rtol=1e-6)
    out["features"].sum().backward()
    assert all(p.grad is None for p in model.sdf.parameters())            # geometry detached
    assert all(p.grad is not None for p in model.feature_parameters() + model.feature_grid_parameters())
    joint = SceneModel(load_config(None, TINY + HEAD + ["features.detach_geometry=false"]), 5).to(DEVICE)
    joint.render_features(o, d)["features"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in joint.sdf.parameters())
    assert model.point_features(o[:3] + d[:3]).shape == (3, 16)


def test_disabled_head_leaves_the_model_unchanged():
    plain = SceneModel(load_config(None, TINY), 5)
    assert plain.features is None and plain.feature_parameters() == []
    assert not any(k.startswith("features.") for k in plain.state_dict())
    head = SceneModel(load_config(None, TINY + HEAD), 5)
    n_head = sum(p.numel() for p in head.feature_parameters() + head.feature_grid_parameters())
    assert sum(p.numel() for p in head.parameters()) == sum(p.numel() for p in plain.parameters()) + n_head
    assert len(head.other_parameters()) == len(plain.other_parameters())


def two_patch_hierarchy():
    """8x8 image: left mask (cols 0-3), right mask (cols 4-7) -> patches 0 (left), 1 (right)."""
    m = np.zeros((2, 8, 8), bool)
    m[0, :, :4] = True
    m[1, :, 4:] = True
    return frame_hierarchy(MaskSet.from_masks(m, 8, 8), ultrametric=True)


def test_loss_decreases_on_two_patch_toy():
    cfg = load_config(None, TINY + HEAD + ["features.loss.norm_weight=0.1", "features.loss.weight=1"])
    torch.manual_seed(0)
    model = SceneModel(cfg, 5)
    o, d = _toy_rays()
    fh = two_patch_hierarchy()
    patch = torch.tensor([0] * 16 + [1] * 16)
    pixel = torch.stack([torch.arange(32) % 8, torch.where(patch == 0, 1, 6)], dim=1)
    batch = Batch(origins=o, dirs=d, ray_scale=torch.ones(32), rgb=torch.zeros(32, 3), frame=torch.zeros(32).long(),
                  view=torch.zeros(32).long(), label=torch.zeros(32).long(), semantic=torch.zeros(32).long(),
                  confidence=torch.ones(32), patch=patch, pixel=pixel)
    sdf_before = [p.detach().clone() for p in model.sdf.parameters()]
    opt = torch.optim.Adam(model.feature_parameters() + model.feature_grid_parameters(), lr=1e-2)
    loss_fn = FeatureLoss(cfg.features)
    history = []
    for _ in range(15):
        losses = loss_fn(model.render_features(o, d)["features"], batch, fh)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(float(total.detach()))
    assert set(losses) == {"feat_contrastive", "feat_norm"}
    assert history[-1] < 0.5 * history[0]
    f = torch.nn.functional.normalize(model.render_features(o, d)["features"].detach(), dim=-1)
    cos = f @ f.T
    assert cos[:16, :16].mean() > 0.9 and cos[:16, 16:].mean() < cos[:16, :16].mean() - 0.5
    assert all(torch.equal(a, b) for a, b in zip(sdf_before, model.sdf.parameters()))
    ultra = FeatureLoss(load_config(None, HEAD + ["features.loss.kind=ultrametric"]).features)
    u = ultra(model.render_features(o, d)["features"], batch, fh)
    assert set(u) == {"feat_ultrametric", "feat_norm"} and torch.isfinite(u["feat_ultrametric"])


def test_patch_balanced_sampling_and_resize():
    fh = two_patch_hierarchy()
    np.testing.assert_array_equal(fh.order[:4], [0, 1, 2, 3])             # patch 0 pixels first, raster order
    np.testing.assert_array_equal(fh.starts, [0, 32])
    np.testing.assert_array_equal(fh.parents, [-1, -1])
    sup = FeatureSupervision.__new__(FeatureSupervision)
    sup.cfg = load_config(None, HEAD).features
    sup.rng = np.random.default_rng(0)
    pix = sup._patch_pixels(fh, 12)                                      # 2 patches -> 6 pixels each
    pm = fh.hier.patch_map.ravel()
    np.testing.assert_array_equal(np.bincount(pm[pix]), [6, 6])
    m = MaskSet.from_masks([np.eye(4, dtype=bool)], 4, 4)
    small = resize_maskset(m, (2, 2))
    np.testing.assert_array_equal(small.mask(0), [[True, False], [False, True]])


def test_trainer_wires_the_head(scene_dir, tmp_path):
    plain = Trainer(_cfg(scene_dir, tmp_path / "a"))
    s_plain = plain.train_step()       # torch's random stream is global: step before building the next trainer
    head = Trainer(_cfg(scene_dir, tmp_path / "b", *HEAD))
    s_head = head.train_step()
    assert plain.feature_sup is None
    assert len(head.optimizer.param_groups) == len(plain.optimizer.param_groups) + 2   # head MLP + head grid
    assert head.feature_sup.memory_bytes() > 0 and set(head.feature_sup.frames) <= set(head.sampler.frames.tolist())
    # the first step's backbone losses do not depend on the head (it renders its own rays afterwards)
    for key in ("rgb", "depth", "diff", "onehot", "reg", "fgbg", "eikonal"):
        assert s_plain[key] == pytest.approx(s_head[key], rel=1e-6)
    assert "feat_contrastive" in s_head and "feat_norm" in s_head and "feat_norm" not in s_plain
    fb = head.feature_sup.sample(int(head.sampler.frames[0]))
    f = int(fb.frame[0])
    assert (fb.frame == f).all() and fb.patch.shape == (fb.origins.shape[0],)
    pm = head.feature_sup.hierarchy(f).hier.patch_map
    np.testing.assert_array_equal(fb.patch.cpu().numpy(), pm[fb.pixel[:, 0].cpu().numpy(), fb.pixel[:, 1].cpu().numpy()])
    head.save_checkpoint()
    assert "feature_rng" in torch.load(head.checkpoint_path, weights_only=False)
