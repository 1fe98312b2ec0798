import math

import pytest
import torch
from _helpers import DEVICE

from sdfseg.core.fields.encodings import FrequencyEncoding, HashGridEncoding, level_resolutions, tcnn_available
from sdfseg.errors import SdfsegError


def small_grid(**kw):
    args = dict(n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4, max_resolution=32)
    args.update(kw)
    return HashGridEncoding(backend="torch", **args)


def test_level_resolutions_geometric():
    res = level_resolutions(16, 16, 2048)
    assert res[0] == 16 and res[-1] == 2048 and len(res) == 16
    growth = 2 ** (7 / 15)
    assert res[1] == math.floor(16 * growth) == 22
    assert level_resolutions(1, 8, 8) == [8]


def test_dense_and_hashed_levels_and_table_layout():
    enc = small_grid(log2_hashmap_size=12)  # resolutions 4, 8, 16, 32; table 4096 rows per level
    assert enc.resolution.tolist() == [4, 8, 16, 32]
    # dense levels are bit-packed: 5 and 9 vertices per axis need 3 and 4 bits -> 2^9, 2^12 rows;
    # 17 vertices would need 2^15 > 4096 rows -> hashed
    assert enc.n_dense == 2
    assert enc.multipliers[:2].tolist() == [[1, 8, 64], [1, 16, 256]]
    assert enc.multipliers[2].tolist() == [1, 2654435761, 805459861]
    # each level starts at a multiple of its own size
    assert enc.offsets.tolist() == [0, 4096, 8192, 12288]
    assert enc.table.shape == (16384, 2)
    assert enc.table.abs().max() <= 1e-4
    assert enc.out_dim == 8 and enc.backend == "torch"


def test_corner_indices_dense_and_hash_formula():
    enc = small_grid(log2_hashmap_size=12)
    corner = torch.tensor([[[3, 1, 2]] * 4])  # [P=1, L=4, 3]
    idx = enc._corner_indices(torch.stack([corner, corner + 1], dim=-1))[0]  # [L, 8]
    # dense level 0: x + 8 y + 64 z, corner (0,0,0) first and (1,1,1) last (x-major order)
    assert idx[0, 0].item() == 3 + 8 * 1 + 64 * 2
    assert idx[0, 7].item() == 4 + 8 * 2 + 64 * 3
    assert idx[0, 4].item() == 4 + 8 * 1 + 64 * 2  # corner (1, 0, 0)
    assert idx[1, 0].item() == 4096 + 3 + 16 * 1 + 256 * 2
    # hashed level 2: (x * 1) xor (y * 2654435761) xor (z * 805459861) mod 4096, + offset
    expect = ((3 * 1) ^ (1 * 2654435761) ^ (2 * 805459861)) % 4096
    assert idx[2, 0].item() == 8192 + expect
    expect_111 = ((4 * 1) ^ (2 * 2654435761) ^ (3 * 805459861)) % 4096
    assert idx[3, 7].item() == 12288 + expect_111


def test_dense_level_is_collision_free():
    enc = small_grid(log2_hashmap_size=12)
    v = torch.stack(torch.meshgrid(*[torch.arange(9)] * 3, indexing="ij"), -1).reshape(-1, 3)  # level 1 vertices
    corners = torch.stack([v, v], dim=-1)[:, None].expand(-1, 4, 3, 2)
    rows = enc._corner_indices(corners)[:, 1, 0]
    assert rows.unique().numel() == 9**3 and rows.min() >= 4096 and rows.max() < 8192


def test_trilinear_interpolation_reproduces_linear_function():
    enc = small_grid(n_levels=1, base_resolution=4, max_resolution=4, n_features_per_level=1)
    assert enc.n_dense == 1 and enc.table.shape == (512, 1)
    # table value at dense vertex (i, j, k) (row i + 8 j + 64 k) = i + 10 j + 100 k
    i, j, k = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), torch.arange(5.0), indexing="ij")
    flat = torch.zeros(512)
    flat[(i + 8 * j + 64 * k).long().flatten()] = (i + 10 * j + 100 * k).flatten()
    with torch.no_grad():
        enc.table.copy_(flat[:, None])
    x = torch.tensor([[0.0, 0.0, 0.0], [-1.0, -1.0, -1.0], [0.3, -0.55, 0.9], [1.0, 1.0, 1.0]])
    pos = (x + 1.0) / 2.0 * 4.0  # grid coordinates
    expect = pos[:, 0] + 10 * pos[:, 1] + 100 * pos[:, 2]
    assert torch.allclose(enc(x)[:, 0], expect, atol=1e-4)
    assert enc(x)[0, 0].item() == pytest.approx(2 + 20 + 200)


def test_jacobian_matches_autograd():
    torch.manual_seed(0)
    enc = small_grid()
    with torch.no_grad():
        enc.table.normal_()
    x = (torch.rand(40, 3) * 1.8 - 0.9).requires_grad_(True)
    value, jac = enc.forward_with_jacobian(x)
    assert torch.allclose(value, enc(x), atol=1e-6)
    rows = [torch.autograd.grad(value[:, d].sum(), x, retain_graph=True)[0] for d in range(enc.out_dim)]
    auto = torch.stack(rows, dim=-1).permute(1, 0, 2)  # [3, P, D]
    assert torch.allclose(jac, auto, atol=1e-4, rtol=1e-5)


def test_one_gather_gradient_touches_only_used_rows():
    torch.manual_seed(0)
    enc = small_grid()
    x = torch.rand(5, 3) * 2 - 1
    enc(x).sum().backward()  # bincount scatter
    touched = (enc.table.grad.abs().sum(-1) > 0).sum().item()
    assert 0 < touched <= 5 * 4 * 8
    # gradient of sum of outputs w.r.t. a row = sum of its interpolation weights; total = P * L
    assert enc.table.grad[:, 0].sum().item() == pytest.approx(5 * 4, rel=1e-5)
    # the create_graph path (index_add) gives the same gradient and is differentiable
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(enc(xg).sum(), enc.table, create_graph=True)
    assert torch.allclose(g, enc.table.grad) and g.requires_grad


def test_backend_selection_and_errors():
    enc = HashGridEncoding(n_levels=2, log2_hashmap_size=8, base_resolution=2, max_resolution=4, backend="auto")
    assert enc.backend == ("tcnn" if tcnn_available() else "torch")
    with pytest.raises(SdfsegError):
        HashGridEncoding(backend="cuda")
    if not tcnn_available():
        with pytest.raises(SdfsegError):
            HashGridEncoding(backend="tcnn")


@pytest.mark.skipif(not tcnn_available(), reason="needs tinycudann and CUDA")
def test_tcnn_backend_runs_on_gpu():
    enc = HashGridEncoding(n_levels=4, log2_hashmap_size=12, base_resolution=4, max_resolution=32, backend="tcnn")
    enc = enc.cuda()
    out = enc(torch.rand(64, 3, device="cuda") * 2 - 1)
    assert out.shape == (64, 8) and out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_on_gpu_matches_cpu():
    torch.manual_seed(0)
    enc = small_grid()
    x = torch.rand(100, 3) * 2 - 1
    ref = enc(x)
    assert torch.allclose(enc.cuda()(x.cuda()).cpu(), ref, atol=1e-6)


def test_frequency_encoding_values_and_jacobian():
    enc = FrequencyEncoding(2)
    assert enc.out_dim == 3 * (1 + 4) and FrequencyEncoding(6).out_dim == 39
    x = torch.tensor([[0.5, -1.0, 2.0]])
    out = enc(x)[0]
    assert out[:3].tolist() == [0.5, -1.0, 2.0]
    assert out[3].item() == pytest.approx(math.sin(0.5)) and out[6].item() == pytest.approx(math.cos(0.5))
    assert out[9 + 1].item() == pytest.approx(math.sin(-2.0)) and out[12 + 2].item() == pytest.approx(math.cos(4.0))
    xg = x.clone().requires_grad_(True)
    value, jac = enc.forward_with_jacobian(xg)
    rows = [torch.autograd.grad(value[:, d].sum(), xg, retain_graph=True)[0] for d in range(enc.out_dim)]
    assert torch.allclose(jac, torch.stack(rows, -1).permute(1, 0, 2), atol=1e-6)
    assert FrequencyEncoding(3, include_input=False).out_dim == 18


def test_sorted_scatter_add_sums_rows_by_index_in_a_fixed_order():
    from sdfseg.core.scatter import scatter_sum, sorted_scatter_add

    idx = torch.tensor([2, 0, 2, 4])
    rows = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [0.5, 0.25]])
    expect = torch.tensor([[2.0, 20.0], [0.0, 0.0], [4.0, 40.0], [0.0, 0.0], [0.5, 0.25], [0.0, 0.0]])
    assert torch.equal(sorted_scatter_add(idx, rows, 6), expect)
    g = torch.Generator().manual_seed(3)
    idx, rows = torch.randint(0, 300, (5000,), generator=g), torch.randn(5000, 2, generator=g)
    ref = torch.zeros(301, 2, dtype=torch.float64).index_add(0, idx, rows.double())
    assert torch.allclose(sorted_scatter_add(idx.to(DEVICE), rows.to(DEVICE), 301).cpu().double(), ref, atol=1e-5)
    assert torch.equal(scatter_sum(rows, idx, 301), torch.zeros(301, 2).index_add(0, idx, rows))  # CPU: index_add
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)  # differentiable: d/dx of sum_r w_r out_r = w_idx
    (sorted_scatter_add(torch.tensor([1, 0, 1]), x, 2) * torch.tensor([5.0, 7.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([7.0, 5.0, 7.0]))
