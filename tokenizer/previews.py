"""What the tokenizer trainer and the reconstruction evaluation both make of a batch of reconstructions.

Owns `psnr_per_image` (PSNR in dB of each image, computed in float64: the one definition; the trainer's
`val/psnr` and `eval-tokenizer` both use it) and the sample grid (`save_sample_grid`, `grid_upscale`):
rows of originals | reconstructions | the Gaussians drawn over the original (`draw_gaussians`).
Light at import: torch, numpy and PIL load when a function is called.
"""

from __future__ import annotations

import io
import os
from pathlib import Path


def psnr_per_image(recon, target, data_range: float = 2.0, eps: float = 1e-10):
    """PSNR (dB) of each image: 10 log10(data_range^2 / mse_b), mse over C, H, W of image b, in float64.

    [B, C, H, W] x2 -> [B]. `data_range` is the pixels' span (2.0 for [-1, 1]); the mse is floored at `eps`
    so identical images give a finite value (106 dB for span 2).
    """
    if recon.shape != target.shape or recon.dim() != 4:
        raise ValueError(f"recon and target must both be [B, C, H, W] of equal shape, got "
                         f"{tuple(recon.shape)} and {tuple(target.shape)}")
    mse = (recon.detach().double() - target.detach().double()).pow(2).flatten(1).mean(1)  # [B]
    return 10.0 * (float(data_range) ** 2 / mse.clamp_min(eps)).log10()


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
