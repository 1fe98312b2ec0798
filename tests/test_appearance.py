"""The per-frame appearance embedding (model.appearance_dim): off by default (no parameter, same colours),
each frame's code changes its colours, untrained views take the training frames' mean code, and a run trains
the codes of the frames it sampled."""

import numpy as np
import pytest
import torch
from _helpers import DEVICE, TINY, demo_config, tiny_scene

from sdfseg.config import load_config
from sdfseg.core.model import SceneModel


def _rays(n=8):
    g = torch.Generator().manual_seed(0)
    o = torch.zeros(n, 3, device=DEVICE)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1).to(DEVICE)
    return o, d


def test_off_by_default():
    cfg = load_config(None, TINY)
    model = SceneModel(cfg, 5, num_frames=4)
    assert model.appearance is None and cfg.model.appearance_dim == 0
    assert model.color.layers[0].weight.shape[1] == 3 + 27 + 3 + cfg.model.feature_dim  # x, enc(d), n, feature


def test_codes_change_colour_and_untrained_views_take_the_mean():
    torch.manual_seed(0)
    cfg = load_config(None, TINY + ["model.appearance_dim=4"])
    model = SceneModel(cfg, 5, num_frames=3, train_frames=[0, 2]).to(DEVICE).eval()
    with torch.no_grad():
        model.appearance.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [5.0, 5, 5, 5], [0, 1.0, 0, 0]], device=DEVICE))
    o, d = _rays()
    render = lambda frame: model.render(o, d, need_normals=False, frame=frame)["rgb"]  # noqa: E731
    f0 = render(torch.zeros(8, dtype=torch.long, device=DEVICE))
    f2 = render(torch.full((8,), 2, dtype=torch.long, device=DEVICE))
    assert not torch.allclose(f0, f2)
    with torch.no_grad():  # the mean of frames 0 and 2 (frame 1 is a test frame): code (0.5, 0.5, 0, 0)
        model.appearance.weight[1] = torch.tensor([0.5, 0.5, 0.0, 0.0], device=DEVICE)
    assert torch.allclose(render(None), render(torch.ones(8, dtype=torch.long, device=DEVICE)), atol=1e-6)
    with pytest.raises(ValueError, match="appearance_dim"):
        SceneModel(cfg, 5)


def test_a_run_trains_the_codes_of_its_frames(tmp_path):
    from sdfseg.training.trainer import Trainer

    scene = tiny_scene(tmp_path / "scene")
    cfg = demo_config(TINY, scene, tmp_path / "run", "model.appearance_dim=4", "train.iterations=3",
                      "train.extra_views=0")
    trainer = Trainer(cfg)
    before = trainer.model.appearance.weight.detach().clone()
    trainer.fit()
    after = trainer.model.appearance.weight.detach()
    moved = (after - before).abs().sum(dim=1) > 0
    test = np.asarray(trainer.scene.split["test"])
    assert moved.any() and not moved[torch.as_tensor(test)].any()  # test frames are never sampled
