"""The reference splatting backend: vectorized PyTorch, chunked over pixels, differentiable by autograd.

This file is the specification of `splat` (DESIGN.md section 3); every other backend is tested
against it. For pixel centre p and Gaussian g with mean mu, axis scales (s_x, s_y), rotation theta:

    u, v   = R(theta)^T (p - mu)              (the offset in the Gaussian's own axes)
    m^2    = (u / s_x)^2 + (v / s_y)^2        (= d^T Sigma^-1 d)
    alpha  = o * exp(-m^2 / 2), set to 0 where alpha < 1/255
    out[b, :, i, j] = sum_g alpha_g(p_ij) * f_g

Memory bound: the pixels are processed in chunks such that one chunk's [B, M, P_chunk] intermediates
hold at most `max_elements` (default 2**22) elements each; when gradients are needed, each chunk
is checkpointed so autograd keeps only the inputs and recomputes one chunk at a time in backward.
Peak extra memory is therefore about 8 * max_elements * itemsize (about 128 MiB in fp32) plus the
output, whatever B, M, H and W are.
"""

from __future__ import annotations


import torch
from torch.utils.checkpoint import checkpoint

ALPHA_CUTOFF = 1.0 / 255.0
DEFAULT_MAX_ELEMENTS = 1 << 22


def pixel_centers(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel centres in normalized coordinates, row-major: [H*W, 2] as (x, y) (align_corners=False)."""
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1  # [H]
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1  # [W]
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # [H*W, 2]


def _splat_chunk(
    pix: torch.Tensor,  # [P, 2]
    means: torch.Tensor,  # [B, M, 2]
    inv_sx: torch.Tensor,  # [B, M]
    inv_sy: torch.Tensor,  # [B, M]
    cos: torch.Tensor,  # [B, M]
    sin: torch.Tensor,  # [B, M]
    opacities: torch.Tensor,  # [B, M]
    features: torch.Tensor,  # [B, M, C]
) -> torch.Tensor:  # [B, C, P]
    dx = pix[:, 0].view(1, 1, -1) - means[..., 0:1]  # [B, M, P]
    dy = pix[:, 1].view(1, 1, -1) - means[..., 1:2]  # [B, M, P]
    u = (cos.unsqueeze(-1) * dx + sin.unsqueeze(-1) * dy) * inv_sx.unsqueeze(-1)  # [B, M, P]
    v = (cos.unsqueeze(-1) * dy - sin.unsqueeze(-1) * dx) * inv_sy.unsqueeze(-1)  # [B, M, P]
    alpha = opacities.unsqueeze(-1) * torch.exp(-0.5 * (u * u + v * v))  # [B, M, P]
    alpha = torch.where(alpha >= ALPHA_CUTOFF, alpha, torch.zeros((), dtype=alpha.dtype, device=alpha.device))
    return torch.bmm(features.transpose(1, 2), alpha)  # [B, C, P]


def splat_reference(
    means: torch.Tensor,  # [B, M, 2]
    scales: torch.Tensor,  # [B, M, 2]
    rotations: torch.Tensor,  # [B, M]
    features: torch.Tensor,  # [B, M, C]
    height: int,
    width: int,
    opacities: torch.Tensor | None = None,  # [B, M]
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:  # [B, C, H, W]
    """Render Gaussians by the plain-sum rule. Inputs are assumed validated (see `render.splat`).

    Computes in float32 at least (float64 stays float64); the result has the features' dtype.
    """
    out_dtype = features.dtype
    dtype = torch.promote_types(torch.promote_types(means.dtype, features.dtype), torch.float32)
    B, M, C = features.shape
    device = features.device
    if opacities is None:
        opacities = torch.ones(B, M, device=device, dtype=dtype)
    means, scales, rotations, features, opacities = (
        t.to(dtype) for t in (means, scales, rotations, features, opacities)
    )
    inv_sx, inv_sy = 1.0 / scales[..., 0], 1.0 / scales[..., 1]  # [B, M] each
    cos, sin = torch.cos(rotations), torch.sin(rotations)  # [B, M] each
    pix = pixel_centers(height, width, device=device, dtype=dtype)  # [P, 2]
    P = height * width
    chunk = max(1, min(P, max_elements // max(1, B * max(M, C))))
    args = (means, inv_sx, inv_sy, cos, sin, opacities, features)
    if chunk >= P:
        out = _splat_chunk(pix, *args)  # [B, C, P]
    else:
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in args)
        pieces = []
        for start in range(0, P, chunk):
            p = pix[start : start + chunk]
            if needs_grad:
                pieces.append(checkpoint(_splat_chunk, p, *args, use_reentrant=False))
            else:
                pieces.append(_splat_chunk(p, *args))
        out = torch.cat(pieces, dim=-1)  # [B, C, P]
    return out.view(B, C, height, width).to(out_dtype)


def splat_dense(means, scales, rotations, features, height, width, opacities=None) -> torch.Tensor:
    """The un-chunked formula (all [B, M, H*W] intermediates at once); used by the benchmark only."""
    return splat_reference(means, scales, rotations, features, height, width, opacities, max_elements=1 << 62)


def cutoff_radius(opacities: torch.Tensor) -> torch.Tensor:
    """Mahalanobis radius beyond which alpha < 1/255: sqrt(2 ln(255 o)); 0 where o <= 1/255."""
    return torch.sqrt(2.0 * torch.log(torch.clamp(opacities * 255.0, min=1.0)))


__all__ = ["ALPHA_CUTOFF", "pixel_centers", "splat_reference", "splat_dense", "cutoff_radius"]
