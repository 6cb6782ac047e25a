"""Process-group agreement: `agree_max` (clock and stop requests agree across ranks, so every rank stops at the
same step) and `dist_sum_` / `dist_cat` (running statistics over the global batch). No-ops with one process;
torch is imported only when called."""

from __future__ import annotations

from typing import Any


def agree_max(values: list[float], device: Any = "cpu") -> list[float]:
    """The element-wise max of `values` over all processes (one float64 all-reduce; as given with one
    process): how trainers agree on the clock and on stop requests, so every rank stops at the same step."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def _world():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def dist_sum_(tensor):
    """Sum `tensor` over all processes in place (a no-op with one process); returns it. For statistics that
    must equal one process's over the global batch (the EMA codebook's counts and sums)."""
    dist = _world()
    if dist is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def dist_cat(tensor):
    """Concatenate `tensor` [N, ...] (same N on every process) over processes in rank order: [world*N, ...]
    (`tensor` itself with one process). Rank order is the global batch order of `batches_for`."""
    dist = _world()
    if dist is None:
        return tensor
    import torch

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
