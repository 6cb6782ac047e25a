"""The reference splatting backend: vectorized PyTorch, chunked, with an analytic backward.

This file is the specification of `splat` (docs/splatting.md); every other backend is tested
against it. For pixel centre p and Gaussian g with mean mu, axis scales (s_x, s_y), rotation theta:

    u, v   = R(theta)^T (p - mu)              (the offset in the Gaussian's own axes)
    m^2    = (u / s_x)^2 + (v / s_y)^2        (= d^T Sigma^-1 d)
    alpha  = o * exp(-m^2 / 2), set to 0 where alpha < 1/255
    out[b, :, i, j] = sum_g alpha_g(p_ij) * f_g

Memory bound: when the [B, M, H*W] intermediates would exceed `max_elements` (default 2**22)
elements, the work is split into chunks (whole images, else rows of one image, else columns of one
row) of at most `max_elements` elements each; when gradients are needed, each chunk is
checkpointed so autograd keeps only the inputs and recomputes one chunk at a time in backward.
Problems within the bound run in one piece, without checkpointing (no recompute in backward).
Peak extra memory is therefore about 8 * max_elements * itemsize (about 128 MiB in fp32) plus the
output, whatever B, M, H and W are.

Speed (CPU): the offset is separable on the pixel grid (`_alpha`), the exponent is clamped so no
denormals reach exp, and `_SplatBlock` differentiates the [b, M, Hc, Wc] part by hand (its formulas
in its docstring; tests check it against autograd through `_alpha` and by gradcheck); the small
per-Gaussian part (means, scales, rotations -> the separable coefficients) stays with autograd.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

ALPHA_CUTOFF = 1.0 / 255.0
DEFAULT_MAX_ELEMENTS = 1 << 22


def pixel_centers(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel centres in normalized coordinates, row-major: [H*W, 2] as (x, y) (align_corners=False)."""
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1  # [H]
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1  # [W]
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # [H*W, 2]


# exp(-0.5 m^2) is evaluated with the exponent clamped at -EXP_FLOOR: exp(-80) = 1.8e-35 is still a
# normal float32, so no denormals ever reach the slow paths of exp and mul on CPUs, and the clamp
# changes nothing visible (alpha = o * 1.8e-35 is far below the cutoff unless o > 2e32; where the
# clamp is active alpha is cut to 0, so its gradient is 0 either way).
EXP_FLOOR = 80.0


def _cutoff_threshold(dtype: torch.dtype) -> float:
    """The largest value of `dtype` below ALPHA_CUTOFF: `threshold(alpha, t, 0)` keeps alpha >= cutoff."""
    cut = torch.tensor(ALPHA_CUTOFF, dtype=dtype)
    return torch.nextafter(cut, torch.tensor(-math.inf, dtype=dtype)).item()


def _alpha(
    U1: torch.Tensor,  # [b, M, Wc] cos/s_x * dx
    U2: torch.Tensor,  # [b, M, Hc] sin/s_x * dy
    V1: torch.Tensor,  # [b, M, Hc] cos/s_y * dy
    V2: torch.Tensor,  # [b, M, Wc] sin/s_y * dx
    opacities: torch.Tensor,  # [b, M]
    threshold: float,
) -> tuple[torch.Tensor, ...]:  # alpha, u, v, e: [b, M, Hc, Wc] each
    """The formula of the module docstring on a pixel rectangle. The offset is separable on the
    pixel grid, u = U1[j] + U2[i] and v = V1[i] - V2[j], so only the sums, squares, exp and cutoff
    run at full [b, M, Hc, Wc] size."""
    u = U1.unsqueeze(-2) + U2.unsqueeze(-1)  # [b, M, Hc, Wc]
    v = V1.unsqueeze(-1) - V2.unsqueeze(-2)  # [b, M, Hc, Wc]
    m2 = torch.addcmul(u * u, v, v)  # u^2 + v^2
    e = torch.clamp(m2.mul_(-0.5), min=-EXP_FLOOR).exp_()  # exp(-m^2 / 2)
    alpha = torch.threshold(e * opacities[..., None, None], threshold, 0.0)  # 0 where alpha < cutoff
    return alpha, u, v, e


class _SplatBlock(torch.autograd.Function):
    """out = f^T alpha on a pixel rectangle, with the analytic backward (about half the work of
    autograd through `_alpha`): with g = dL/dalpha where alpha was kept (bmm of f and dL/dout),
        dL/df = alpha dL/dout^T,  dL/do = sum_p g e,  dL/du = -g alpha u,  dL/dv = -g alpha v,
    summed over the pixel axis that U1, U2, V1, V2 are broadcast along. (Where the exponent clamp
    is active alpha is cut unless o > 2e32, so the clamp's zero derivative never matters.)
    First derivatives only (double backward raises)."""

    @staticmethod
    def forward(ctx, U1, U2, V1, V2, opacities, features, threshold):
        alpha, u, v, e = _alpha(U1, U2, V1, V2, opacities, threshold)
        ctx.save_for_backward(u, v, e, alpha, opacities, features)
        b, M, C = features.shape
        out = torch.bmm(features.transpose(1, 2), alpha.view(b, M, -1))  # [b, C, Hc*Wc]
        return out.view(b, C, U2.shape[-1], U1.shape[-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # grad_out: [b, C, Hc, Wc]
        u, v, e, alpha, opacities, features = ctx.saved_tensors
        b, M, C = features.shape
        G = grad_out.reshape(b, C, -1)  # [b, C, P]
        need = ctx.needs_input_grad
        g_f = torch.bmm(alpha.view(b, M, -1), G.transpose(1, 2)) if need[5] else None  # [b, M, C]
        if not any(need[:5]):
            return None, None, None, None, None, g_f, None
        g = torch.ops.aten.threshold_backward(torch.bmm(features, G).view_as(alpha), alpha, 0.0)  # [b, M, Hc, Wc]
        g_o = (g * e).sum((-2, -1)) if need[4] else None  # [b, M]
        ga = g.mul_(alpha)  # = -dL/dq, q = m^2 / 2
        gu = ga * u  # -dL/du
        gv = ga.mul_(v)  # -dL/dv
        return -gu.sum(-2), -gu.sum(-1), -gv.sum(-1), gv.sum(-2), g_o, g_f, None


def _splat_block(
    xs: torch.Tensor,  # [Wc] pixel-centre x of this block's columns
    ys: torch.Tensor,  # [Hc] pixel-centre y of this block's rows
    means: torch.Tensor,  # [b, M, 2]
    coef: torch.Tensor,  # [b, M, 4] (cos/s_x, sin/s_x, cos/s_y, sin/s_y)
    opacities: torch.Tensor,  # [b, M]
    features: torch.Tensor,  # [b, M, C]
    threshold: float,
) -> torch.Tensor:  # [b, C, Hc, Wc]
    """One rectangle of pixels for a range of images."""
    dx = xs - means[..., 0:1]  # [b, M, Wc]
    dy = ys - means[..., 1:2]  # [b, M, Hc]
    a, bq, cq, dq = (c.unsqueeze(-1) for c in coef.unbind(-1))  # [b, M, 1] each
    return _SplatBlock.apply(a * dx, bq * dy, cq * dy, dq * dx, opacities, features, threshold)


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

    Computes in float32 at least (float64 stays float64), autocast off inside (under bf16 autocast the
    bmm would otherwise run in bf16 and hand backward mixed dtypes); the result has the features' dtype.
    """
    with torch.autocast(features.device.type, enabled=False):
        return _splat_reference(means, scales, rotations, features, height, width, opacities, max_elements)


def _splat_reference(means, scales, rotations, features, height, width, opacities, max_elements):
    """`splat_reference` with autocast off."""
    out_dtype = features.dtype
    dtype = torch.promote_types(torch.promote_types(means.dtype, features.dtype), torch.float32)
    B, M, C = features.shape
    device = features.device
    if opacities is None:
        opacities = torch.ones(B, M, device=device, dtype=dtype)
    means, scales, rotations, features, opacities = (
        t if t.dtype == dtype else t.to(dtype) for t in (means, scales, rotations, features, opacities)
    )
    inv_s = 1.0 / scales  # [B, M, 2]
    cos, sin = torch.cos(rotations), torch.sin(rotations)  # [B, M] each
    coef = torch.stack([cos, sin], -1).repeat(1, 1, 2) * inv_s.repeat_interleave(2, -1)  # [B, M, 4]
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1  # [H]
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1  # [W]
    threshold = _cutoff_threshold(dtype)
    # chunks: whole images while they fit, else rows of one image, else columns of one row
    unit = max(M, C, 1)  # elements per pixel per image of the largest intermediate
    if B * unit * height * width <= max_elements:
        return _splat_block(xs, ys, means, coef, opacities, features, threshold).to(out_dtype)
    nb = max(1, min(B, max_elements // (unit * height * width)))
    nr = height if nb > 1 else max(1, min(height, max_elements // (unit * width)))
    nc = width if nr > 1 or nb > 1 else max(1, min(width, max_elements // unit))
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means, coef, opacities, features))
    images = []
    for b0 in range(0, B, nb):
        sl = slice(b0, b0 + nb)
        args = (means[sl], coef[sl], opacities[sl], features[sl], threshold)
        rows = []
        for r0 in range(0, height, nr):
            cols = []
            for c0 in range(0, width, nc):
                block = (xs[c0 : c0 + nc], ys[r0 : r0 + nr], *args)
                if needs_grad:
                    cols.append(checkpoint(_splat_block, *block, use_reentrant=False))
                else:
                    cols.append(_splat_block(*block))
            rows.append(torch.cat(cols, dim=-1) if len(cols) > 1 else cols[0])
        images.append(torch.cat(rows, dim=-2) if len(rows) > 1 else rows[0])
    out = torch.cat(images, dim=0) if len(images) > 1 else images[0]  # [B, C, H, W]
    return out.to(out_dtype)


def splat_dense(means, scales, rotations, features, height, width, opacities=None) -> torch.Tensor:
    """The un-chunked formula (all [B, M, H*W] intermediates at once); used by the benchmark only."""
    return splat_reference(means, scales, rotations, features, height, width, opacities, max_elements=1 << 62)


def cutoff_radius(opacities: torch.Tensor) -> torch.Tensor:
    """Mahalanobis radius beyond which alpha < 1/255: sqrt(2 ln(255 o)); 0 where o <= 1/255."""
    return torch.sqrt(2.0 * torch.log(torch.clamp(opacities * 255.0, min=1.0)))


__all__ = ["ALPHA_CUTOFF", "pixel_centers", "splat_reference", "splat_dense", "cutoff_radius"]
