"""Multi-scale deformable attention (Deformable-DETR style) in plain PyTorch with `F.grid_sample`,
and the two transformer layers built on it: the deformable encoder layer (every feature-map cell
queries the multi-scale maps) and the Gaussian layer (each Gaussian query cross-attends the maps,
then an FFN).

Coordinates follow the splat convention: reference points are (x, y) in [-1, 1] with pixel centres at
(2j+1)/W - 1 (`grid_sample(align_corners=False)`). Sampling offsets are predicted in pixels of each
level and converted to normalized units by 2 / W_l, 2 / H_l.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiScaleDeformableAttention(nn.Module):
    """Per query: for each head, level and point, a predicted offset around the reference point and a
    softmax (over levels x points) attention weight; values are bilinearly sampled with grid_sample."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.num_levels, self.num_points = dim, num_heads, num_levels, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # offsets start on a ring of directions, point k at distance k+1 pixels (as in Deformable DETR)
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)  # [nH, 2]
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        for k in range(self.num_points):
            grid[:, :, k, :] *= k + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def sampling_locations(self, query, reference_points, shapes):
        """Normalized sampling locations [B, Q, nH, L, P, 2] and attention weights [B, Q, nH, L, P]."""
        B, Q, _ = query.shape
        nH, L, P = self.num_heads, self.num_levels, self.num_points
        offsets = self.sampling_offsets(query).view(B, Q, nH, L, P, 2)  # pixels of each level
        sizes = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)  # [L, 2]
        loc = reference_points.view(B, Q, 1, 1, 1, 2) + offsets * (2.0 / sizes).view(1, 1, 1, L, 1, 2)
        weights = self.attention_weights(query).view(B, Q, nH, L * P).softmax(-1).view(B, Q, nH, L, P)
        return loc, weights

    def forward(
        self,
        query: torch.Tensor,  # [B, Q, D]
        reference_points: torch.Tensor,  # [B, Q, 2] (x, y) in [-1, 1]
        values: list[torch.Tensor],  # L x [B, D, H_l, W_l]
    ) -> torch.Tensor:  # [B, Q, D]
        B, Q, D = query.shape
        nH, L, P = self.num_heads, self.num_levels, self.num_points
        if len(values) != L:
            raise ValueError(f"expected {L} value levels, got {len(values)}")
        shapes = [tuple(v.shape[-2:]) for v in values]
        loc, weights = self.sampling_locations(query, reference_points, shapes)
        out = query.new_zeros(B * nH, D // nH, Q, P)
        for lvl, v in enumerate(values):
            H, W = v.shape[-2:]
            v = self.value_proj(v.flatten(2).transpose(1, 2))  # [B, H*W, D]
            v = v.view(B, H * W, nH, D // nH).permute(0, 2, 3, 1).reshape(B * nH, D // nH, H, W)
            grid = loc[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(B * nH, Q, P, 2)
            sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            w = weights[:, :, :, lvl].permute(0, 2, 1, 3).reshape(B * nH, 1, Q, P)
            out = out + sampled * w  # [B*nH, Dh, Q, P]
        out = out.sum(-1).view(B, nH, D // nH, Q).permute(0, 3, 1, 2).reshape(B, Q, D)
        return self.output_proj(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def sine_embedding(xy: torch.Tensor, dim: int, temperature: float = 100.0) -> torch.Tensor:
    """Sinusoidal embedding of (x, y) in [-1, 1]: [..., 2] -> [..., dim] (dim divisible by 4)."""
    n = dim // 4
    freqs = temperature ** (-torch.arange(n, device=xy.device, dtype=xy.dtype) / max(1, n))  # [n]
    ang = (xy.unsqueeze(-1) + 1.0) * math.pi * freqs * 8.0  # [..., 2, n]
    emb = torch.cat([ang.sin(), ang.cos()], -1).flatten(-2)  # [..., 4n]
    if emb.shape[-1] < dim:
        emb = F.pad(emb, (0, dim - emb.shape[-1]))
    return emb


class DeformableEncoderLayer(nn.Module):
    """Pre-norm: x + MSDeformAttn(norm(x) + pos, own centre, maps) then x + FFN(norm(x))."""

    def __init__(self, dim, num_heads, num_levels, num_points, ffn_dim):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiScaleDeformableAttention(dim, num_heads, num_levels, num_points)
        self.ffn = FeedForward(dim, ffn_dim)

    def forward(self, tokens, pos, reference_points, shapes):  # tokens [B, N, D] (all levels flattened)
        normed = self.norm1(tokens)
        tokens = tokens + self.attn(normed + pos, reference_points, split_levels(normed, shapes))
        return tokens + self.ffn(self.norm2(tokens))


class GaussianLayer(nn.Module):
    """One Gaussian refinement stage's attention part: cross-attention from the Gaussian queries to
    the maps at the Gaussians' current centres, then an FFN (pre-norm, residual)."""

    def __init__(self, dim, num_heads, num_levels, num_points, ffn_dim):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiScaleDeformableAttention(dim, num_heads, num_levels, num_points)
        self.ffn = FeedForward(dim, ffn_dim)

    def forward(self, queries, pos, reference_points, maps):  # queries [B, M, D]
        queries = queries + self.attn(self.norm1(queries) + pos, reference_points, maps)
        return queries + self.ffn(self.norm2(queries))


def level_centres(shapes, device, dtype) -> torch.Tensor:
    """Pixel centres of every level, flattened in level order: [N, 2] (x, y)."""
    from .render.reference import pixel_centers

    return torch.cat([pixel_centers(h, w, device=device, dtype=dtype) for h, w in shapes], 0)


def flatten_levels(maps: list[torch.Tensor]) -> torch.Tensor:  # L x [B, D, H, W] -> [B, N, D]
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)


def split_levels(tokens: torch.Tensor, shapes) -> list[torch.Tensor]:  # [B, N, D] -> L x [B, D, H, W]
    out, start = [], 0
    for h, w in shapes:
        out.append(tokens[:, start : start + h * w].transpose(1, 2).reshape(tokens.shape[0], -1, h, w))
        start += h * w
    return out


__all__ = [
    "MultiScaleDeformableAttention", "DeformableEncoderLayer", "GaussianLayer", "FeedForward",
    "sine_embedding", "level_centres", "flatten_levels", "split_levels",
]
