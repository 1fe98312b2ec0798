"""Sums of rows by index that give the same bits on every run, on the CPU and on CUDA.

On CUDA ``index_add`` adds in whatever order the threads arrive; the last-bit differences that
leaves are amplified by Adam (a near-zero gradient's sign decides its update), so a run resumed
from a checkpoint would not repeat the straight one. :func:`scatter_sum` is ``index_add`` on the
CPU (sequential there) and :func:`sorted_scatter_add` on CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sorted_scatter_add(idx: Tensor, rows: Tensor, n_rows: int) -> Tensor:
    """``zeros(n_rows, ...).index_add(0, idx, rows)`` without atomics: a stable sort of ``idx``, then
    one ordered sum per distinct row (``segment_reduce``). Differentiable in ``rows``."""
    order = torch.argsort(idx, stable=True)
    uniq, counts = torch.unique_consecutive(idx.index_select(0, order), return_counts=True)
    sums = torch.segment_reduce(rows.index_select(0, order), "sum", lengths=counts, axis=0, unsafe=True)
    out = rows.new_zeros((n_rows,) + rows.shape[1:])
    out[uniq] = sums
    return out


def scatter_sum(rows: Tensor, idx: Tensor, n_rows: int) -> Tensor:
    """``[n_rows, ...]``: the sum of the ``rows [N, ...]`` with ``idx [N] == r`` in row ``r``; the same
    bits on every run (``index_add`` on the CPU, :func:`sorted_scatter_add` on CUDA)."""
    if rows.is_cuda:
        return sorted_scatter_add(idx, rows, n_rows)
    return rows.new_zeros((n_rows,) + rows.shape[1:]).index_add(0, idx, rows)
