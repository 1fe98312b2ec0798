import math

import pytest
import torch

from sdfseg.config import load_config, parse_overrides
from sdfseg.errors import SdfsegError


def test_overrides_nested_and_typed():
    cfg = load_config(None, ["train.iterations=7", "model.encoding.backend=torch", "data.image_size=[60, 80]",
                             "loss.reg=2e3", "data.path=some/where"])
    assert cfg.train.iterations == 7
    assert cfg.model.encoding.backend == "torch"
    assert cfg.data.image_size == [60, 80]
    assert cfg.loss.reg == 2000.0 and isinstance(cfg.loss.reg, float)
    assert cfg.data.path == "some/where"


def test_reference_defaults():
    cfg = load_config(None)
    w = cfg.loss
    assert (w.diff, w.onehot, w.reg, w.bg, w.fg) == (20.0, 0.5, 1e4, 0.2, 0.1)
    assert (w.rgb, w.eikonal, w.smooth, w.depth) == (1.0, 0.1, 0.005, 0.1)
    assert w.cluster_temperature == 1.0  # the paper's softmax
    assert load_config(None, ["loss.cluster_temperature=null"]).loss.cluster_temperature is None
    assert (cfg.train.lr, cfg.train.grid_lr) == (5e-4, 1e-2)


@pytest.mark.parametrize("item,needle", [
    ("train.nope=1", "train.nope"),
    ("train.iterations=abc", "train.iterations"),
    ("train.mode=panoptic", "train.mode"),
    ("model.encoding.backend=cuda", "model.encoding.backend"),
    ("noequals", "key=value"),
    ("render.vote_kernel=2", "render.vote_kernel"),
    ("render.vote_min_island=-1", "render.vote_min_island"),
    ("render.vote_object_share=0.3", "render.vote_object_share"),
    ("render.vote_max_gap=-0.1", "render.vote_max_gap"),
    ("render.vote_grid=-1", "render.vote_grid"),
    ("loss.cluster_temperature=0", "loss.cluster_temperature"),
])
def test_bad_keys_are_one_line_errors(item, needle):
    with pytest.raises(SdfsegError) as e:
        load_config(None, [item])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_yaml_files_load(tmp_path):
    for name in ("demo", "scannet", "replica", "demo_hierarchy"):
        cfg = load_config(f"confs/{name}.yaml")
        assert cfg.run.dir.startswith("runs/")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(SdfsegError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(SdfsegError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_parse_overrides():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_base_config_is_merged_under_the_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("train: {iterations: 50, rays: 64, label_rays: 32}\nmodel: {num_channels: 5}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\ntrain: {iterations: 9}\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.num_channels=7"])
    assert (cfg.train.iterations, cfg.train.rays, cfg.model.num_channels) == (9, 64, 7)
    (tmp_path / "loop.yaml").write_text("base: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(SdfsegError, match="cycle"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(SdfsegError, match="nowhere.yaml: config file not found .the base of"):
        load_config(tmp_path / "orphan.yaml")


def test_segmentation_warmup_only_delays_clustering():
    from sdfseg.data.scene import ClassInfo
    from sdfseg.training.objective import Objective

    classes = ClassInfo(num_classes=3, thing_ids=(2,), stuff_ids=(1,))

    def start(*overrides):
        cfg = load_config(None, ["train.segmentation_start=300", *overrides])
        return Objective(cfg, "metric", classes).segmentation_start
    assert start() == 300  # instance mode, clustering: free channels, geometry warm-up first
    assert start("train.mode=semantic") == 0
    assert start("train.method=supervised") == 0


def test_annealed_schedules_are_geometric():
    from sdfseg.core.model import SceneModel

    cfg = load_config(None, ["model.ownership_tau=0.04", "model.ownership_tau_final=0.01",
                             "model.beta_init=0.1", "model.beta_final=0.001", "model.num_channels=3",
                             "model.hidden_dim=8", "model.feature_dim=4", "model.color_hidden_dim=8"])
    model = SceneModel(cfg, 3)
    for progress, tau, beta in ((0.0, 0.04, 0.1), (0.5, 0.02, 0.01), (1.0, 0.01, 0.001), (2.0, 0.01, 0.001)):
        model.progress = progress
        assert model.ownership_tau() == pytest.approx(tau)
        assert float(model.beta()) == pytest.approx(beta)
    constant = SceneModel(load_config(None, ["model.ownership_tau=0.03", "model.num_channels=3"]), 3)
    constant.progress = 0.0
    assert constant.ownership_tau() == 0.03
    with pytest.raises(SdfsegError, match="model.ownership_tau_final': must be positive"):
        load_config(None, ["model.ownership_tau_final=0"])
    # render.beta: the renders after training use their own Laplace scale; None gives the trained one back
    model.use_renderer("volume", 17, 8, beta=0.0025)
    assert float(model.beta()) == pytest.approx(0.0025)
    model.use_renderer("volume", 17, 8)
    assert float(model.beta()) == pytest.approx(0.001)
    with pytest.raises(SdfsegError, match="render.beta': expected a Laplace scale > 0"):
        load_config(None, ["render.beta=0"])


@pytest.mark.parametrize("mode", ["full", "none", "raise"])
def test_ownership_opacity_and_the_owner_gradient(mode):
    """O_k = sum_i w_i softmax_k(-s_k,i / tau), by hand on one ray of two samples and two channels. The channel with
    the lowest SDF at a sample (the scene's surface there) gets the full gradient from O (``full``), none
    (``none``), or only its negative part, which raises it under descent (``raise``); its rival always gets its
    full gradient, and O itself is the same in every mode."""
    from sdfseg.core.model import SceneModel

    cfg = load_config(None, ["model.opacity=ownership", "model.ownership_tau=0.1", "model.num_channels=2",
                             f"model.ownership_owner_grad={mode}", "model.hidden_dim=8",
                             "model.feature_dim=4", "model.color_hidden_dim=8"])
    model = SceneModel(cfg, 2)
    sdf = torch.tensor([[[0.0, 0.1], [0.3, 0.1]]], requires_grad=True)  # [R=1, S=2, K=2]
    w = torch.tensor([[0.25, 0.75]])
    O = model._object_opacity(None, None, None, w, sdf)
    p1 = 1.0 / (1.0 + math.exp(-1.0))  # sample 1: channel 0 owns by 0.1 = one tau
    p2 = 1.0 / (1.0 + math.exp(-2.0))  # sample 2: channel 1 owns by 0.2
    assert O[0].tolist() == pytest.approx([0.25 * p1 + 0.75 * (1 - p2), 0.25 * (1 - p1) + 0.75 * p2], abs=1e-6)
    O[0, 1].backward()
    # d softmax_1 / d s_0 = p0 p1 / tau and d / d s_1 = -p0 p1 / tau (per sample, times its weight)
    a = 0.25 * p1 * (1 - p1) / 0.1  # sample 1
    b = 0.75 * p2 * (1 - p2) / 0.1  # sample 2
    # owners: sample 1 channel 0 (gradient +a: descent would lower it), sample 2 channel 1 (-b: raise it)
    owner1, owner2 = {"full": (a, -b), "none": (0.0, 0.0), "raise": (0.0, -b)}[mode]
    assert sdf.grad[0].flatten().tolist() == pytest.approx([owner1, -a, b, owner2], abs=1e-6)
    with pytest.raises(SdfsegError, match="ownership_owner_grad"):
        load_config(None, ["model.ownership_owner_grad=some"])


def test_offsets_detach_trunk_needs_scene_offsets():
    with pytest.raises(SdfsegError, match="model.offsets_detach_trunk': needs model.scene_offsets"):
        load_config(None, ["model.offsets_detach_trunk=true"])
    assert load_config(None, ["model.offsets_detach_trunk=true", "model.scene_offsets=true"]).model.offsets_detach_trunk


def test_object_mask_share_and_mesh_support_ranges():
    for bad in ("-0.1", "1.5"):
        with pytest.raises(SdfsegError, match=r"render.object_mask_share': expected a share in \[0, 1\]"):
            load_config(None, [f"render.object_mask_share={bad}"])
    assert load_config(None, ["render.object_mask_share=0.25"]).render.object_mask_share == 0.25
    with pytest.raises(SdfsegError, match=r"render.mesh_support': expected -1 \(off\) or voxels >= 0, got -2"):
        load_config(None, ["render.mesh_support=-2"])


def test_offset_grid_levels_needs_scene_offsets_and_is_its_own_network():
    with pytest.raises(SdfsegError, match="model.offset_grid_levels': needs model.scene_offsets"):
        load_config(None, ["model.offset_grid_levels=4"])
    with pytest.raises(SdfsegError, match="model.offset_grid_levels': not with model.offsets_detach_trunk"):
        load_config(None, ["model.offset_grid_levels=4", "model.scene_offsets=true", "model.offsets_detach_trunk=true"])
    with pytest.raises(SdfsegError, match="model.offset_grid_levels': must be >= 0"):
        load_config(None, ["model.offset_grid_levels=-1", "model.scene_offsets=true"])
    from sdfseg.core.model import SceneModel

    cfg = load_config(None, ["model.offset_grid_levels=4", "model.scene_offsets=true", "model.num_channels=3",
                             "model.hidden_dim=16", "model.feature_dim=4", "model.color_hidden_dim=8",
                             "model.encoding.backend=torch"])
    model = SceneModel(cfg, 3)
    grids = {id(p) for p in model.grid_parameters()}  # the offsets' grid trains at the grid learning rate
    assert id(model.sdf.offset_grid.table) in grids and id(model.sdf.grid.table) in grids
    assert not grids & {id(p) for p in model.other_parameters()}


def test_scene_offsets_object_opacity_leaves_the_scene_sdf_alone():
    """model.scene_offsets: the object opacities of rendered rays give the network's scene row (g) no gradient at
    all, the offset rows theirs; the scene SDF (min over channels) is g, the rendered depth follows it."""
    from sdfseg.core.model import SceneModel

    cfg = load_config(None, ["model.opacity=ownership", "model.num_channels=3", "model.scene_offsets=true",
                             "model.hidden_dim=16", "model.feature_dim=4", "model.color_hidden_dim=8",
                             "model.color_use_normal=false"])
    torch.manual_seed(0)
    model = SceneModel(cfg, 3)
    with torch.no_grad():  # offsets that vary in space: every channel owns some samples
        model.sdf.layers[-1].parametrizations.weight.original1[1:4].normal_(0, 0.3)
    origins = torch.zeros(16, 3)
    dirs = torch.nn.functional.normalize(torch.randn(16, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    out = model.render(origins, dirs, need_normals=False)
    assert out["sdf"].argmin(dim=-1).unique().numel() >= 2  # samples of more than one owner
    out["opacity"][:, 1].sum().backward()
    weight = model.sdf.layers[-1].parametrizations.weight.original1
    assert weight.grad[0].abs().max() == 0 and weight.grad[1:4].abs().max() > 0


def test_edge_rays_range():
    with pytest.raises(SdfsegError, match=r"train.edge_rays': at most train.rays - train.label_rays \(512\), got 600"):
        load_config(None, ["train.edge_rays=600"])
    with pytest.raises(SdfsegError, match=r"train.edge_rays': must be >= 0, got -1"):
        load_config(None, ["train.edge_rays=-1"])
    assert load_config(None, ["train.edge_rays=256"]).train.edge_rays == 256
    with pytest.raises(SdfsegError, match=r"train.depth_edge_rays': must be >= 0, got -1"):
        load_config(None, ["train.depth_edge_rays=-1"])
    assert load_config(None, ["train.depth_edge_rays=256"]).train.depth_edge_rays == 256
