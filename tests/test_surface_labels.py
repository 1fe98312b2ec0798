"""render.labels: surface: a pixel's labels from what its ray meets first, not from the opacity it gathers."""

import numpy as np
import pytest
import torch

from sdfseg.config import load_config
from sdfseg.core.model import SceneModel
from sdfseg.errors import SdfsegError
from sdfseg.methods.base import Method


def _wall_and_ball():
    """Channel 0: a wall at x = 0.5; channel 1: a ball of radius 0.2 at the origin; beta 0.05."""
    cfg = load_config(None, ["model.num_channels=2", "model.hidden_dim=8", "model.feature_dim=4",
                             "model.color_hidden_dim=8", "model.beta_init=0.05", "model.beta_final=0.05"])
    model = SceneModel(cfg, 2)

    class WallAndBall(torch.nn.Module):
        def forward(self, x):
            return torch.stack([0.5 - x[:, 0], x.norm(dim=-1) - 0.2], dim=-1), torch.zeros(x.shape[0], 4)

    model.sdf = WallAndBall()
    return model


def test_a_grazing_ray_shows_what_it_meets():
    model = _wall_and_ball().eval()
    # rays along +x from x = -0.9: one through the ball, one passing 1 cm beside it, one past it
    origins = torch.tensor([[-0.9, 0.1, 0.0], [-0.9, 0.21, 0.0], [-0.9, 0.45, 0.0]])
    dirs = torch.tensor([[1.0, 0.0, 0.0]] * 3)
    samples = torch.linspace(0.0, 1.6, 321).expand(3, -1).contiguous()
    with torch.no_grad():
        out = model.render(origins, dirs, need_normals=False, create_graph=False, samples=samples)
    volume = out["opacity"].argmax(dim=-1)
    # the ray 1 cm beside the ball gathers most of its opacity from the ball's density ...
    assert volume.tolist() == [1, 1, 0]
    assert out["opacity"][1, 1].item() > 0.5
    # ... but meets the wall: its first sample inside the scene surface is the wall's (x = 0.5 -> t = 1.4)
    assert out["surface_owner"].tolist() == [1, 0, 0]
    first_inside = (out["sdf"].min(dim=-1).values <= 0).float().argmax(dim=1)
    assert samples[1, first_inside[1]].item() == pytest.approx(1.4)
    # a ray that meets nothing has no surface owner
    with torch.no_grad():
        away = model.render(torch.tensor([[-0.9, 0.0, 0.0]]), torch.tensor([[-1.0, 0.0, 0.0]]), need_normals=False,
                            create_graph=False, samples=torch.linspace(0.0, 0.05, 5)[None])
    assert away["surface_owner"].tolist() == [-1]


def test_method_owner_reads_the_surface_owner_where_there_is_one():
    m = Method(load_config(None, []))
    opacity = torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    assert m.owner({"opacity": opacity}).tolist() == [1, 0, 1]
    assert m.owner({"opacity": opacity, "surface_owner": torch.tensor([0, 1, -1])}).tolist() == [0, 1, 1]


def test_labels_config_check():
    assert load_config(None, ["render.labels=surface"]).render.labels == "surface"
    with pytest.raises(SdfsegError, match="render.labels"):
        load_config(None, ["render.labels=first"])


def test_pixel_labels_and_the_semantic_veto():
    from sdfseg.methods.outputs import ChannelTable, pixel_labels

    # channels: 0 background, 1 a chair (class 5, instance 1); stuff classes 1 (wall) and 2 (floor)
    table = ChannelTable(is_object=np.array([False, True]), classes=np.array([0, 5]))
    owner = np.array([1, 1, 0, 1])
    logits = np.zeros((4, 6))
    logits[0, [2, 5]] = [1.0, 3.0]   # chair above floor: the chair
    logits[1, [2, 5]] = [3.0, 1.0]   # floor above chair: floor, vetoed
    logits[2, [1, 2]] = [2.0, 1.0]   # background ray: the best stuff class, wall
    logits[3, [1, 5]] = [2.0, 2.0]   # a tie keeps the object
    inst, sem = pixel_labels(owner, logits, table, (1, 2))
    assert inst.tolist() == [1, 1, 0, 1] and sem.tolist() == [5, 5, 1, 5]
    inst, sem = pixel_labels(owner, logits, table, (1, 2), veto=True)
    assert inst.tolist() == [1, 0, 0, 1] and sem.tolist() == [5, 2, 1, 5]
    # no semantic head: background rays get class 0, the veto has nothing to read
    inst, sem = pixel_labels(owner, None, table, (1, 2), veto=True)
    assert inst.tolist() == [1, 1, 0, 1] and sem.tolist() == [5, 5, 0, 5]


def test_a_sharper_render_beta_gives_a_grazing_ray_to_what_it_meets():
    # the ray 1 cm beside the ball: trained beta 0.05 gives it to the ball (above, 0.90 of its opacity);
    # render.beta = 0.001 (the Laplace density 50x sharper: 1 cm is 10 betas) leaves the ball's halo
    # nearly empty, and the ray shows the wall
    model = _wall_and_ball().eval()
    origins = torch.tensor([[-0.9, 0.0, 0.0], [-0.9, 0.21, 0.0]])
    dirs = torch.tensor([[1.0, 0.0, 0.0]] * 2)
    samples = torch.linspace(0.0, 1.6, 3201).expand(2, -1).contiguous()
    model.use_renderer("volume", 17, 8, beta=0.001)
    with torch.no_grad():
        out = model.render(origins, dirs, need_normals=False, create_graph=False, samples=samples)
    assert out["opacity"].argmax(dim=-1).tolist() == [1, 0]
    assert out["opacity"][1, 1].item() < 0.01
    assert out["depth"][0].item() == pytest.approx(0.7, abs=0.01)   # the ball's front at x = -0.2
    assert out["depth"][1].item() == pytest.approx(1.4, abs=0.02)   # the wall at x = 0.5
