"""What the tokenizer trainer and the reconstruction evaluation both make of a batch of reconstructions.

Owns `psnr_per_image` (PSNR in dB of each image, computed in float64: the one definition; the trainer's
`val/psnr` and eval's reconstruction metrics both use it, eval.image_metrics re-exports it), the image-pair
checks it shares with eval's SSIM (`prepare_image_pair`, `data_range_span`), and the sample grid
(`save_sample_grid`, `grid_upscale`): rows of originals | reconstructions | the Gaussians drawn over the original (`draw_gaussians`).
Light at import: torch, numpy and PIL load when a function is called.
"""

from __future__ import annotations

import io
import os
from pathlib import Path


def data_range_span(data_range) -> tuple[float, tuple[float, float] | None]:
    """(span, clamp bounds or None) of a `data_range`: a positive span (2.0 for images in [-1, 1], 1.0 for
    [0, 1]) or an explicit (low, high) pair, whose images are clamped to it; else a ValueError."""
    if isinstance(data_range, (tuple, list)):
        if len(data_range) != 2 or not data_range[1] > data_range[0]:
            raise ValueError(f"data_range must be (low, high) with high > low, got {data_range!r}")
        return float(data_range[1] - data_range[0]), (float(data_range[0]), float(data_range[1]))
    if not isinstance(data_range, (int, float)) or not data_range > 0:
        raise ValueError(f"data_range must be a positive span (2.0 for [-1, 1], 1.0 for [0, 1]), got {data_range!r}")
    return float(data_range), None


def prepare_image_pair(preds, target, data_range):
    """Checked float64 copies of two image batches [B, C, H, W] (equal shapes, floating point; clamped to a
    (low, high) `data_range`) and the range's span: -> (preds [B, C, H, W], target [B, C, H, W], span)."""
    import torch

    if not isinstance(preds, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("preds and target must be torch tensors")
    if preds.shape != target.shape or preds.dim() != 4:
        raise ValueError(f"preds and target must both be [B, C, H, W] of equal shape, got "
                         f"{tuple(preds.shape)} and {tuple(target.shape)}")
    if not preds.is_floating_point() or not target.is_floating_point():
        raise TypeError("preds and target must be floating-point images")
    span, bounds = data_range_span(data_range)
    preds, target = preds.detach().double(), target.detach().double()
    if bounds is not None:
        preds, target = preds.clamp(*bounds), target.clamp(*bounds)
    return preds, target, span


def psnr_per_image(preds, target, data_range: float | tuple[float, float] = 2.0, eps: float = 1e-10):
    """PSNR (dB) of each image: 10 log10(span^2 / mse_b), mse over C, H, W of image b, in float64.

    [B, C, H, W] x2 -> [B]. `data_range` is the pixels' span (2.0 for [-1, 1]) or a (low, high) pair
    (`data_range_span`); the mse is floored at `eps` so identical images give a finite value (106 dB for
    span 2). The one PSNR: the tokenizer trainer's `val/psnr` and eval's reconstruction metrics.
    """
    import torch

    preds, target, span = prepare_image_pair(preds, target, data_range)
    mse = (preds - target).pow(2).flatten(1).mean(dim=1)  # [B]
    return 10.0 * torch.log10(span**2 / mse.clamp_min(eps))


def grid_upscale(size: int) -> int:
    """Nearest-neighbour magnification of sample-grid cells: small images are drawn about 128 px wide."""
    return max(1, 128 // size)


def save_sample_grid(path: str | os.PathLike, originals, reconstructions, gaussians: dict | None) -> None:
    """Rows: originals | reconstructions | Gaussians drawn (`draw_gaussians`, 1-sigma ellipses over the
    original); cells magnified `grid_upscale(S)` times, 2 px white gaps; written as a PNG (atomically).

    originals, reconstructions: [N, 3, S, S] in [-1, 1]; gaussians: the model output's per-image fields
    ([N, M, ...] each) or None for no third row.
    """
    import numpy as np
    from PIL import Image

    from gaussiantoken.runtime.files import atomic_write_bytes

    from .visualize import draw_gaussians

    n, size = originals.shape[0], originals.shape[-1]
    up = grid_upscale(size)
    cell = size * up

    def to_pil(t):  # [3, S, S] in [-1, 1] -> PIL magnified
        arr = ((t.detach().float().cpu().clamp(-1, 1).permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        return Image.fromarray(arr).resize((cell, cell), Image.NEAREST)

    rows = [[to_pil(x) for x in originals], [to_pil(x) for x in reconstructions]]
    if gaussians is not None:
        rows.append([draw_gaussians(originals[i], {k: v[i : i + 1] for k, v in gaussians.items() if v is not None},
                                    upscale=up) for i in range(n)])
    pad = 2
    grid = Image.new("RGB", (n * (cell + pad) + pad, len(rows) * (cell + pad) + pad), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.convert("RGB").resize((cell, cell)), (pad + c * (cell + pad), pad + r * (cell + pad)))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
