import numpy as np
import torch

from sdfseg.data.rays import RaySampler, pixel_rays, remap_instance_ids, select_keyframes
from sdfseg.data.scene import ClassInfo, Scene
from sdfseg.training.labels import rank_ids_per_frame


def _scene(n=4, h=6, w=8):
    rgb = np.random.default_rng(0).random((n, h, w, 3)).astype(np.float32)
    c2w = np.repeat(np.eye(4, dtype=np.float32)[None], n, 0)
    K = np.repeat(np.array([[4.0, 0, 4.0], [0, 4.0, 3.0], [0, 0, 1]], np.float32)[None], n, 0)
    return Scene(path=".", frame_names=[f"{i}" for i in range(n)], rgb=rgb, c2w=c2w, intrinsics=K,
                 classes=ClassInfo(3, (2,), (1,)), split={"train": np.arange(n), "test": np.arange(0)})


def test_pixel_rays_centre_and_scale():
    c2w = torch.eye(4)[None].repeat(2, 1, 1)
    c2w[1, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    K = torch.tensor([[2.0, 0, 1.0], [0, 2.0, 1.0], [0, 0, 1]])[None].repeat(2, 1, 1)
    o, d, s = pixel_rays(c2w, K, torch.tensor([0, 1]), torch.tensor([0, 1]))
    # pixel (0,0): centre (0.5, 0.5) -> x = y = -0.25; pixel (1,1) centre (1.5, 1.5) -> +0.25
    expect0 = torch.tensor([-0.25, -0.25, 1.0])
    assert torch.allclose(d[0], expect0 / expect0.norm())
    assert torch.allclose(s[0], expect0.norm())
    assert torch.allclose(o[1], torch.tensor([1.0, 2.0, 3.0]))


def test_remap_keeps_partition_and_zero():
    inst = np.array([[[0, 3, 3], [5, 5, 0]], [[3, 3, 0], [0, 0, 9]]])
    out = remap_instance_ids(inst, np.random.default_rng(1))
    assert ((out == 0) == (inst == 0)).all()
    for f in range(2):
        for a in np.unique(inst[f]):
            vals = np.unique(out[f][inst[f] == a])
            assert len(vals) == 1
    assert len(np.unique(out[0][inst[0] > 0])) == 2


def test_keyframes_pick_frames_with_most_labels():
    labels = np.zeros((5, 2, 2), dtype=np.int64)
    labels[3] = [[1, 2], [3, 4]]
    labels[1] = [[1, 2], [0, 0]]
    assert list(select_keyframes(labels, np.arange(5), 0.2)) == [3]
    assert list(select_keyframes(labels, np.arange(5), 0.4)) == [3, 1]


def test_label_comprehensive_sampling_covers_every_label():
    scene = _scene()
    labels = np.zeros((4, 6, 8), dtype=np.int64)
    labels[:, 0, 0] = 7  # a one-pixel label must still get a ray
    labels[:, 2:, :] = 3
    sem = np.ones_like(labels)
    s = RaySampler(scene, labels, sem, None, torch.device("cpu"), seed=0)
    pix = s.frame_pixels(0, n_random=0, n_label=100)
    got = labels[0].reshape(-1)[pix]
    assert set(np.unique(got)) == {0, 3, 7}
    assert (got == 7).sum() >= 1
    # allocation proportional to area: label 3 covers 32/48 of the frame
    assert abs((got == 3).sum() - round(100 * 32 / 48)) <= 1
    b = s.sample(16, 16, extra_views=2, extra_rays=5)
    assert b.origins.shape[0] == b.label.shape[0] == 16 + len(pix[:0]) + b.label.shape[0] - 16
    assert int((b.view > 0).sum()) == 10
    # extra views prefer foreground (non-zero) pixels
    assert (b.label[b.view > 0] != 0).all()


def test_rank_ids_per_frame_orders_by_area():
    a = np.array([[[0, 5, 5, 9], [9, 9, 0, 7]]])
    assert rank_ids_per_frame(a).tolist() == [[[0, 2, 2, 1], [1, 1, 0, 3]]]
