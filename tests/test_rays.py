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


def test_edge_pixels_hand_worked():
    from sdfseg.data.rays import edge_pixels

    # depth: a near block (1.0) in the two right columns of a 3 x 4 frame against a far wall (2.0); one pixel
    # without depth (0) beside the wall and a 3% wobble (below the 5% jump) on the wall
    depth = np.array([[2.0, 2.0, 1.0, 1.0],
                      [2.06, 2.0, 1.0, 1.0],
                      [0.0, 2.0, 1.0, 1.0]], np.float32)
    got = edge_pixels(depth, None).reshape(-1).tolist()
    assert got == [1, 2, 5, 6, 9, 10]  # both sides of the jump, nothing at the wobble or the missing depth
    # labels: one label change between rows 0 and 1 of column 0; -1 (unsupervised) makes no edge
    labels = np.array([[4, 4, 4, 4], [5, 4, 4, -1], [5, 4, 4, 4]])
    assert edge_pixels(None, labels).tolist() == [0, 1, 4, 5, 8, 9]  # 8-neighbours of the two 5s
    assert edge_pixels(depth, labels).tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert edge_pixels(None, np.full((3, 4), 2)).size == 0


def test_edge_rays_replace_uniform_rays():
    scene = _scene()
    depth = np.full((4, 6, 8), 2.0, np.float32)
    depth[:, :, 4:] = 1.0  # a depth edge between columns 3 and 4
    scene.depth = depth
    labels = np.zeros((4, 6, 8), dtype=np.int64)
    s = RaySampler(scene, labels, labels, None, torch.device("cpu"), seed=0, edge_rays=30)
    b = s.sample(40, 0)
    assert b.origins.shape[0] == 40  # the edge rays are part of the uniform ones, after them
    # x / z = (u + 0.5 - 4) / 4: the edge pixels are columns 3 and 4 (x = -0.125, 0.125)
    x = (b.dirs[10:, 0] / b.dirs[10:, 2]).numpy()
    assert np.allclose(np.abs(x), 0.125) and {-0.125, 0.125} == set(np.round(x, 3).tolist())
    flat = RaySampler(scene, labels, labels, None, torch.device("cpu"), seed=0)
    assert flat.sample(40, 0).origins.shape[0] == 40
    scene.depth = np.full((4, 6, 8), 2.0, np.float32)  # no edges: every ray uniform
    assert RaySampler(scene, labels, labels, None, torch.device("cpu"), seed=0, edge_rays=30).sample(40, 0) \
        .origins.shape[0] == 40


def test_depth_edge_rays_are_extra_and_geometry_only():
    scene = _scene()
    depth = np.full((4, 6, 8), 2.0, np.float32)
    depth[:, :, 4:] = 1.0  # a depth edge between columns 3 and 4
    scene.depth = depth
    labels = np.full((4, 6, 8), 3, dtype=np.int64)
    semantic = np.full((4, 6, 8), 5, dtype=np.int64)
    s = RaySampler(scene, labels, semantic, None, torch.device("cpu"), seed=0, depth_edge_rays=12)
    b = s.sample(40, 0, extra_views=1, extra_rays=4)
    assert b.origins.shape[0] == 40 + 12 + 4 and int((b.view == 0).sum()) == 52
    # the main frame's last 12 rays go through columns 3 and 4 and carry no label and no class
    x = (b.dirs[40:52, 0] / b.dirs[40:52, 2]).numpy()
    assert {-0.125, 0.125} == set(np.round(x, 3).tolist())
    assert (b.label[40:52] == -1).all() and (b.semantic[40:52] == 0).all()
    assert (b.label[:40] == 3).all() and (b.semantic[:40] == 5).all() and (b.label[52:] == 3).all()
    # off, or a scene without depth edges: the same rays as without the option
    plain = RaySampler(scene, labels, semantic, None, torch.device("cpu"), seed=0).sample(40, 0, extra_views=1,
                                                                                       extra_rays=4)
    assert plain.origins.shape[0] == 44
    scene.depth = np.full((4, 6, 8), 2.0, np.float32)
    flat = RaySampler(scene, labels, semantic, None, torch.device("cpu"), seed=0, depth_edge_rays=12)
    assert torch.equal(flat.sample(40, 0, extra_views=1, extra_rays=4).origins, plain.origins)
