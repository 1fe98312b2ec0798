"""render.carve_margin: space the training views' sensor depth saw through is empty in the maps and meshes."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sdfseg.config import load_config
from sdfseg.core.carve import DepthCarve, map_carve, scene_carve
from sdfseg.core.model import SceneModel
from sdfseg.data.synthetic.cameras import look_at
from sdfseg.data.scene import Normalization
from sdfseg.errors import SdfsegError

K = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]], dtype=np.float32)  # a 2 x 2 image


def test_one_view_free_surface_behind_and_unseen():
    # a camera at the origin looking along +z; every pixel reads depth 2
    carve = DepthCarve(np.eye(4)[None], K[None], np.full((1, 2, 2), 2.0), margin=0.1, share=0.5, lift=0.05)
    x = torch.tensor([[0.0, 0.0, 1.0],     # 1 in front of the reading: seen through
                      [0.0, 0.0, 1.95],    # within the margin of it: on the surface
                      [0.0, 0.0, 3.0],     # behind it: unseen
                      [0.0, 0.0, -1.0],    # behind the camera
                      [5.0, 0.0, 1.0]])    # outside the image (u = 6)
    free, surface = carve.counts(x)
    assert free.tolist() == [1, 0, 0, 0, 0]
    assert surface.tolist() == [0, 1, 0, 0, 0]
    assert carve.free(x).tolist() == [True, False, False, False, False]
    # a pixel without a reading says nothing
    blind = DepthCarve(np.eye(4)[None], K[None], np.zeros((1, 2, 2)), margin=0.1, share=0.5, lift=0.05)
    assert blind.free(x).tolist() == [False] * 5


def test_the_share_of_views_that_see_through_a_point():
    # the point (0, 0, 1), 2 from view A at (-2, 0, 1) and 3 from view B at (3, 0, 1), both looking at it:
    # A reads depth 4 (sees through it), B reads 3 (sees it on its surface)
    target = np.array([0.0, 0.0, 1.0])
    c2w = np.stack([look_at(np.array([-2.0, 0.0, 1.0]), target), look_at(np.array([3.0, 0.0, 1.0]), target)])
    depth = np.stack([np.full((2, 2), 4.0), np.full((2, 2), 3.0)])
    x = torch.tensor([[0.0, 0.0, 1.0]])
    half = DepthCarve(c2w, np.stack([K, K]), depth, margin=0.1, share=0.5, lift=0.05)
    assert [c.tolist() for c in half.counts(x)] == [[1.0], [1.0]]
    assert half.free(x).tolist() == [True]       # 1 of 2 views >= 0.5
    most = DepthCarve(c2w, np.stack([K, K]), depth, margin=0.1, share=0.6, lift=0.05)
    assert most.free(x).tolist() == [False]      # 1 of 2 views < 0.6: a thin part some pixel centres miss


def test_carved_points_are_lifted_in_every_channel():
    carve = DepthCarve(np.eye(4)[None], K[None], np.full((1, 2, 2), 2.0), margin=0.1, share=0.5, lift=0.05)
    x = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.95]])
    sdf = torch.tensor([[-0.2, 0.01, 0.3], [-0.2, 0.01, 0.3]])
    out = carve(x, sdf)
    assert out[0].tolist() == pytest.approx([0.05, 0.05, 0.3])   # seen through: lifted, what lies above stays
    assert out[1].tolist() == pytest.approx([-0.2, 0.01, 0.3])   # on the surface: as it was


def test_scene_carve_margin_in_scene_units_and_no_dense_depth():
    scene = SimpleNamespace(depth=np.full((3, 2, 2), 1.0, np.float16), depth_kind="metric",
                            split={"train": np.array([0, 2]), "test": np.array([1])},
                            c2w=np.stack([np.eye(4, dtype=np.float32)] * 3), intrinsics=np.stack([K] * 3),
                            normalization=Normalization(scale=4.0))
    carve = scene_carve(scene, 0.2, 0.5, 0.01)
    assert carve.margin == pytest.approx(0.05)     # 0.2 m in a scene 4 m to the unit
    assert carve.depth.shape == (2, 2, 2)          # the training views only
    assert scene_carve(SimpleNamespace(**{**vars(scene), "depth_kind": "sparse"}), 0.2, 0.5, 0.01) is None
    assert scene_carve(SimpleNamespace(**{**vars(scene), "depth": None}), 0.2, 0.5, 0.01) is None


def test_the_model_renders_and_meshes_the_carved_sdf_but_trains_the_plain_one():
    cfg = load_config(None, ["model.num_channels=3", "model.hidden_dim=16", "model.feature_dim=4",
                             "model.color_hidden_dim=8", "model.beta_init=0.01", "model.beta_final=0.01",
                             "render.carve_margin=0.1"])
    model = SceneModel(cfg, 3).eval()
    scene = SimpleNamespace(depth=np.full((1, 2, 2), 0.8, np.float16), depth_kind="metric",
                            split={"train": np.array([0])}, c2w=np.eye(4, dtype=np.float32)[None],
                            intrinsics=K[None], normalization=Normalization(scale=1.0))
    carve = map_carve(model, scene, cfg.render)
    assert carve.lift == pytest.approx(0.04)      # 4 Laplace scales of the trained density (render.beta null)
    x = torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, 0.75]])   # seen through; on the surface
    with torch.no_grad():
        plain = model.sdf(x)[0]
        model.use_renderer("volume", 17, 8, carve=carve)
        carved = model.sdf(x)[0]
        scene_sdf = model.scene_sdf(x)
    assert torch.equal(carved, torch.where(torch.tensor([[True], [False]]), plain.clamp(min=0.04), plain))
    assert scene_sdf[0].item() >= 0.04
    trained, _, _ = model.sdf.sdf_and_grad(x, create_graph=False)
    assert torch.allclose(trained, plain, atol=1e-6)   # the training path never carves
    model.use_renderer("volume", 17, 8)
    with torch.no_grad():
        assert torch.equal(model.sdf(x)[0], plain)
    cfg.render.carve_margin = 0.0
    assert map_carve(model, scene, cfg.render) is None


def test_carve_config_check():
    r = load_config(None, []).render
    assert r.carve_margin == 0.0 and r.carve_share == 0.5
    with pytest.raises(SdfsegError, match="render.carve_margin': expected a depth margin >= 0"):
        load_config(None, ["render.carve_margin=-0.01"])
    with pytest.raises(SdfsegError, match=r"render.carve_share': expected a share in \(0, 1\]"):
        load_config(None, ["render.carve_share=0"])
