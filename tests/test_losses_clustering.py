import math

import pytest
import torch

from sdfseg.core.losses import object_distinction_loss
from sdfseg.errors import SdfsegError
from sdfseg.methods.clustering import losses as C

SQRT2 = math.sqrt(2.0)


def test_cluster_centres_arbitrary_labels():
    P = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]])
    y = torch.tensor([7, -3, 7, 100000])
    mu, labels, counts = C.cluster_centres(P, y)
    assert labels.tolist() == [-3, 7, 100000] and counts.tolist() == [1, 2, 1]
    assert torch.allclose(mu, torch.tensor([[0.0, 1.0], [0.75, 0.25], [0.2, 0.8]]))
    Pg = P.clone().requires_grad_(True)
    C.cluster_centres(Pg, y)[0][1, 0].backward()
    assert Pg.grad[:, 0].tolist() == [0.5, 0.0, 0.5, 0.0]


def test_cluster_centres_per_view_and_confidence():
    P = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.6, 0.4]])
    y = torch.tensor([1, 1, 1, 2])
    view = torch.tensor([0, 1, 1, 1])
    mu, labels, counts = C.cluster_centres_per_view(P, y, view)
    assert labels.tolist() == [1, 1, 2] and counts.tolist() == [1, 2, 1]
    assert torch.allclose(mu, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.4]]))
    conf = C.cluster_confidence(torch.tensor([0.0, 0.5, 1.0, 0.3]), y)
    assert conf.tolist() == pytest.approx([(0.1 + 0.5 + 1.0) / 3, 0.3])


def test_differentiation_loss_normalisation():
    two_vertices = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # distance sqrt(2); eq. 4 divides the single pair by N (N - 1) = 2
    assert C.differentiation_loss(two_vertices).item() == pytest.approx(-SQRT2 / 2)
    three_vertices = torch.eye(3)
    assert C.differentiation_loss(three_vertices).item() == pytest.approx(-3 * SQRT2 / 6)
    same = torch.full((2, 3), 1.0 / 3.0, requires_grad=True)
    loss = C.differentiation_loss(same)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(same.grad).all()
    assert C.differentiation_loss(torch.rand(1, 4)).item() == 0.0
    # from opacities: saturated softmax of two labels lands on two vertices
    O = torch.tensor([[50.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    mu, _, _ = C.cluster_centres(torch.softmax(O, -1), torch.tensor([4, 4, 9]))
    assert C.differentiation_loss(mu).item() == pytest.approx(-SQRT2 / 2, rel=1e-6)


def test_onehot_loss():
    O = torch.tensor([[0.8, 0.2], [0.1, 0.3]])
    # targets [1, 0] and [0, 1]: squared errors 0.04, 0.04, 0.01, 0.49
    assert C.onehot_loss(O, torch.tensor([True, True])).item() == pytest.approx(0.58 / 4)
    assert C.onehot_loss(O, torch.tensor([True, False])).item() == pytest.approx(0.04)
    assert C.onehot_loss(O, torch.tensor([False, False])).item() == 0.0


def test_regularisation_loss():
    uniform = torch.full((3, 4), 0.25)
    assert C.regularisation_loss(uniform, torch.tensor([1, 2, 2])).item() == 0.0
    P = torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    y = torch.tensor([0, 5, 6])
    # Var([1, 0]) = ((0.5)^2 + (0.5)^2) / 2 = 0.25; label 0 is skipped: mean(0, 0.25)
    assert C.regularisation_loss(P, y).item() == pytest.approx(0.125)
    assert C.regularisation_loss(P, y, bg_label=None).item() == pytest.approx(0.5 / 3)
    assert C.regularisation_loss(P[:1], y[:1]).item() == 0.0  # only background


def test_fg_bg_loss():
    O = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    bg, fg = C.fg_bg_loss(O, torch.tensor([0, 3, 4]))
    assert bg.item() == pytest.approx(0.1) and fg.item() == pytest.approx(0.3)
    bg, fg = C.fg_bg_loss(O, torch.tensor([3, 3, 4]))
    assert bg.item() == 0.0 and fg.item() == pytest.approx(0.5)


def test_confidence_weighted_clustering_terms():
    """loss.cluster_confidence: rays weighted by their labels' confidence in the centres, one-hot and fg-bg."""
    P = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    y = torch.tensor([7, 7, 3])
    wt = torch.tensor([0.75, 0.25, 0.4])
    mu, labels, counts = C.cluster_centres(P, y, wt)
    assert labels.tolist() == [3, 7] and counts.tolist() == [1, 2]
    assert torch.allclose(mu, torch.tensor([[0.5, 0.5], [0.75, 0.25]]))  # (0.75 [1, 0] + 0.25 [0, 1]) / 1
    O = torch.tensor([[0.8, 0.2], [0.1, 0.3]])
    # per-ray squared errors averaged over K: 0.04 and 0.25; weights 3 : 1
    assert C.onehot_loss(O, torch.tensor([True, True]), torch.tensor([0.6, 0.2])).item() == pytest.approx(
        (0.6 * 0.04 + 0.2 * 0.25) / 0.8)
    O = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    bg, fg = C.fg_bg_loss(O, torch.tensor([0, 3, 4]), weight=torch.tensor([0.5, 0.1, 0.3]))
    assert bg.item() == pytest.approx(0.1) and fg.item() == pytest.approx((0.1 * 0.2 + 0.3 * 0.4) / 0.4)
    # equal weights give the unweighted terms
    ones = torch.ones(3)
    assert C.fg_bg_loss(O, torch.tensor([0, 3, 4]), weight=ones)[1].item() == pytest.approx(0.3)
    assert torch.allclose(C.cluster_centres(P, y, ones)[0], C.cluster_centres(P, y)[0])


def test_fg_bg_sdf_loss_hand_computed():
    # ray 0 is background: sample 0 is owned by channel 0 with gap 0.1 (no loss), sample 1 by channel 2
    # (gap -0.15 -> 0.02 + 0.15); ray 1 is an object the background channel owns (gap 0.2 -> 0.22, 0 -> 0.02)
    sdf = torch.tensor([[[0.0, 0.1, 0.3], [0.2, 0.05, 0.4]],
                        [[0.0, 0.3, 0.2], [0.1, 0.1, 0.5]]], requires_grad=True)
    w = torch.tensor([[0.5, 0.5], [0.8, 0.2]])
    bg, fg = C.fg_bg_sdf_loss(sdf, w, torch.tensor([0, 5]), margin=0.02)
    assert bg.item() == pytest.approx(0.5 * 0.17)
    assert fg.item() == pytest.approx(0.8 * 0.22 + 0.2 * 0.02)
    fg.backward()
    # descending raises the background channel and lowers the closest object channel (not the others)
    assert sdf.grad[1].flatten().tolist() == pytest.approx([-0.8, 0.0, 0.8, -0.2, 0.2, 0.0])
    assert sdf.grad[0].abs().sum().item() == 0.0
    none_bg, _ = C.fg_bg_sdf_loss(sdf, w, torch.tensor([3, 5]), margin=0.02)
    assert none_bg.item() == 0.0


def test_semantic_loss():
    mu = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([1, 2, 0])
    conf = torch.tensor([0.5, 1.0, 1.0])
    # label 1: ||(0.5, -0.5, 0)|| = sqrt(0.5), times 0.5; label 2: 0; label 0 ignored
    assert C.semantic_loss(mu, labels, conf).item() == pytest.approx(0.5 * math.sqrt(0.5) / 2)
    assert C.semantic_loss(mu, labels).item() == pytest.approx(math.sqrt(0.5) / 2)
    with pytest.raises(SdfsegError):
        C.semantic_loss(mu, torch.tensor([1, 3, 0]))


def test_cross_view_loss():
    mu_a, sem_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 2])
    mu_b, sem_b = torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([1, 2])
    # pairs with different semantics: (a0, b1) at sqrt(0.5) and (a1, b0) at sqrt(2)
    total = math.sqrt(0.5) + SQRT2
    assert C.cross_view_loss(mu_a, sem_a, mu_b, sem_b).item() == pytest.approx(math.exp(-total))
    assert C.cross_view_loss(mu_a, sem_a, mu_b, sem_b, reduction="mean").item() == pytest.approx(math.exp(-total / 2))
    same = torch.tensor([1, 1])
    assert C.cross_view_loss(mu_a, same, mu_b, same).item() == 1.0


def test_object_distinction_loss():
    sdf = torch.tensor([[-0.1, 0.05, 0.3], [0.2, 0.4, 0.5]], requires_grad=True)
    # point 0: min -0.1; k=1: relu(-0.05 + 0.1) = 0.05, k=2: 0; point 1: all zero -> mean 0.025
    loss = object_distinction_loss(sdf)
    assert loss.item() == pytest.approx(0.025)
    loss.backward()
    assert sdf.grad[0].tolist() == [0.0, -0.5, 0.0]  # s_min is detached


def test_supervised_opacity_loss():
    O = torch.tensor([[0.9, 0.1]])
    assert C.supervised_opacity_loss(O, torch.tensor([0])).item() == pytest.approx(-math.log(0.9), rel=1e-5)
    assert C.supervised_opacity_loss(O, torch.tensor([[1.0, 0.0]]), kind="l1").item() == pytest.approx(0.1)
    with pytest.raises(SdfsegError):
        C.supervised_opacity_loss(O, torch.tensor([0]), kind="mse")


def test_cluster_temperature_scales_with_channels():
    # the paper's softmax (T = 1) up to K = 10; beyond, 1/T = 1 + ln((K - 1) / 9)
    assert C.cluster_temperature(10, None) == 1.0
    assert C.cluster_temperature(4, None) == 1.0
    assert C.cluster_temperature(50, None) == pytest.approx(1.0 / (1.0 + math.log(49 / 9)))
    assert C.cluster_temperature(50, 0.5) == 0.5
    with pytest.raises(SdfsegError, match="cluster_temperature"):
        C.cluster_temperature(50, 0.0)
    # with the scaled temperature a one-hot opacity gives the same top probability at K = 50 as at K = 10
    for k in (10, 20, 50):
        O = torch.zeros(1, k)
        O[0, 3] = 1.0
        P = C.cluster_probabilities(O, C.cluster_temperature(k, None))
        assert float(P[0, 3]) == pytest.approx(math.e / (math.e + 9))
        assert float(P.sum()) == pytest.approx(1.0)
    # hand-worked: softmax([1, 0, 0] / 0.5) = (e^2, 1, 1) / (e^2 + 2)
    P = C.cluster_probabilities(torch.tensor([[1.0, 0.0, 0.0]]), 0.5)
    e2 = math.exp(2.0)
    assert torch.allclose(P, torch.tensor([[e2, 1.0, 1.0]]) / (e2 + 2), atol=1e-6)


def test_semantic_class_weights_hand_worked():
    """Counts [0, 75, 25], balance 0.5: raw weights 0, 1/sqrt(0.75), 1/sqrt(0.25) = 0, 1.1547, 2; the
    pixel-weighted mean 0.75 * 1.1547 + 0.25 * 2 = 1.3660 scales them to 0, 0.8453, 1.4641."""
    from sdfseg.training.objective import semantic_class_weights

    assert semantic_class_weights([0, 75, 25], 0.0) is None
    w = semantic_class_weights([0, 75, 25], 0.5)
    assert torch.allclose(w, torch.tensor([0.0, 0.8453, 1.4641]), atol=1e-4)
    w1 = semantic_class_weights([10, 30, 60], 1.0)  # inverse frequency: every class weighs the same in total
    assert torch.allclose(w1 * torch.tensor([0.1, 0.3, 0.6]), torch.full((3,), 1 / 3), atol=1e-6)
