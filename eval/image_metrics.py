"""Pixel-level image metrics and codebook statistics, shared by the reconstruction and generation runners.

Owns:
- `psnr`: PSNR computed per image (`psnr_per_image`, re-exported from tokenizer.previews: the one
  definition) and then averaged over images (the paper's code averaged the squared error over the whole
  batch first, which is a different, biased number).
- `ssim` / `ms_ssim`: structural similarity through torchmetrics' functional API, per image then
  averaged. MS-SSIM needs images larger than `ms_ssim_min_size(kernel_size, num_scales)` pixels on each
  side (160 for the standard 11-pixel Gaussian window and 5 scales); `ms_ssim` returns a skip reason
  instead of a number for smaller images (32x32 CIFAR/Shapes images never qualify).
- `ReconstructionMetrics`: a streaming accumulator of the per-image values over batches (PSNR, SSIM,
  MS-SSIM where the size allows, and an optional perceptual distance such as LPIPS).
- `code_histogram`, `codebook_stats`: codebook usage (fraction of codes used at least once), entropy
  (bits) and perplexity (2**entropy) of the code histogram.

Images are float tensors [B, C, H, W] whose values lie in `data_range`: either a span (2.0 for images
in [-1, 1], 1.0 for [0, 1]) or an explicit (low, high) pair, in which case inputs are clamped to it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from gaussiantoken.tokenizer.previews import data_range_span, prepare_image_pair, psnr_per_image  # the one PSNR

MSSSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # the standard 5-scale weights (Wang et al. 2003)


def psnr(preds: torch.Tensor, target: torch.Tensor, data_range: float | tuple[float, float] = 2.0) -> float:
    """Mean over images of the per-image PSNR (not the PSNR of the batch-averaged error)."""
    return float(psnr_per_image(preds, target, data_range).mean())


def ssim_per_image(preds: torch.Tensor, target: torch.Tensor, data_range: float | tuple[float, float] = 2.0,
                   kernel_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of each image (Gaussian window `kernel_size`, `sigma`). Returns [B]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    preds, target, span = prepare_image_pair(preds, target, data_range)
    if min(preds.shape[-2:]) < kernel_size:
        raise ValueError(f"images of size {tuple(preds.shape[-2:])} are smaller than the SSIM window {kernel_size}")
    return structural_similarity_index_measure(preds, target, data_range=span, kernel_size=kernel_size,
                                               sigma=sigma, reduction="none").float()


def ssim(preds: torch.Tensor, target: torch.Tensor, data_range: float | tuple[float, float] = 2.0) -> float:
    """Mean over images of the per-image SSIM."""
    return float(ssim_per_image(preds, target, data_range).mean())


def ms_ssim_min_size(kernel_size: int = 11, num_scales: int = len(MSSSIM_BETAS)) -> int:
    """Smallest side MS-SSIM accepts: strictly more than (kernel_size - 1) * 2**(num_scales - 1) pixels.

    Each of the num_scales - 1 downsamplings halves the image and the coarsest scale must still hold a
    full window. 11 / 5 scales -> 160 (so images need at least 161 pixels a side, e.g. 256x256).
    """
    return (kernel_size - 1) * 2 ** (num_scales - 1)


def ms_ssim_skip_reason(height: int, width: int, kernel_size: int = 11) -> str | None:
    """None when MS-SSIM can run on height x width images, else a human-readable reason."""
    need = ms_ssim_min_size(kernel_size)
    if min(height, width) > need:
        return None
    return (f"MS-SSIM skipped: images are {height}x{width}, but {len(MSSSIM_BETAS)} scales with an "
            f"{kernel_size}-pixel window need more than {need} pixels per side")


def ms_ssim_per_image(preds: torch.Tensor, target: torch.Tensor, data_range: float | tuple[float, float] = 2.0,
                      kernel_size: int = 11) -> torch.Tensor:
    """MS-SSIM of each image with the standard 5 scale weights. Returns [B]; ValueError if too small."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    preds, target, span = prepare_image_pair(preds, target, data_range)
    reason = ms_ssim_skip_reason(preds.shape[-2], preds.shape[-1], kernel_size)
    if reason is not None:
        raise ValueError(reason)
    out = multiscale_structural_similarity_index_measure(preds, target, data_range=span, kernel_size=kernel_size,
                                                         betas=MSSSIM_BETAS, reduction="none")
    return out.float()


def ms_ssim(preds: torch.Tensor, target: torch.Tensor,
            data_range: float | tuple[float, float] = 2.0) -> float | str:
    """Mean per-image MS-SSIM, or the skip reason (a str) when the images are too small."""
    reason = ms_ssim_skip_reason(preds.shape[-2], preds.shape[-1])
    if reason is not None:
        return reason
    return float(ms_ssim_per_image(preds, target, data_range).mean())


class ReconstructionMetrics:
    """Accumulates per-image PSNR / SSIM / MS-SSIM / perceptual distance over batches.

    `perceptual` is any callable (x, y) -> [B] distances on images in [-1, 1] (e.g. `PerceptualDistance`
    from `gaussiantoken.eval.perceptual`); images are mapped to [-1, 1] from `data_range` before it.
    `compute()` returns means over all images seen and a `skipped` dict {metric: reason}.
    """

    def __init__(self, data_range: float | tuple[float, float] = 2.0,
                 perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 perceptual_name: str = "lpips"):
        self.span, bounds = data_range_span(data_range)
        self.low = bounds[0] if bounds is not None else (-1.0 if self.span == 2.0 else 0.0)
        self.data_range = data_range
        self.perceptual, self.perceptual_name = perceptual, perceptual_name
        self.values: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], "ms_ssim": []}
        if perceptual is not None:
            self.values[perceptual_name] = []
        self.skipped: dict[str, str] = {}
        if perceptual is None:
            self.skipped[perceptual_name] = f"{perceptual_name} skipped: no perceptual network weights were given"

    @torch.no_grad()
    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of reconstructions `preds` and originals `target`, both [B, C, H, W]."""
        self.values["psnr"].append(psnr_per_image(preds, target, self.data_range))
        self.values["ssim"].append(ssim_per_image(preds, target, self.data_range))
        reason = ms_ssim_skip_reason(preds.shape[-2], preds.shape[-1])
        if reason is None:
            self.values["ms_ssim"].append(ms_ssim_per_image(preds, target, self.data_range))
        else:
            self.skipped["ms_ssim"] = reason
        if self.perceptual is not None:
            to_pm1 = lambda t: (t.float() - self.low) / self.span * 2.0 - 1.0  # noqa: E731
            self.values[self.perceptual_name].append(self.perceptual(to_pm1(preds), to_pm1(target)).flatten().float())

    def compute(self) -> dict:
        if not self.values["psnr"]:
            raise ValueError("ReconstructionMetrics.compute() called before any update()")
        out: dict = {"num_images": int(sum(v.numel() for v in self.values["psnr"]))}
        for name, vals in self.values.items():
            if vals and name not in self.skipped:
                out[name] = float(torch.cat(vals).mean())
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        return out


def code_histogram(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Counts of each code id in `codes` (any shape of integer ids in [0, codebook_size)). Returns [K]."""
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point():
        raise TypeError("codes must be an integer tensor of code ids")
    if codebook_size <= 0:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    flat = codes.detach().flatten().long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got range [{int(flat.min())}, {int(flat.max())}]")
    return torch.bincount(flat.cpu(), minlength=codebook_size)


def codebook_stats(counts_or_codes: torch.Tensor, codebook_size: int | None = None) -> dict:
    """Usage, entropy and perplexity of a code histogram.

    Pass either a histogram [K] (codebook_size None) or code ids plus `codebook_size`.
    usage = #codes with count > 0 / K; entropy_bits = -sum p log2 p; perplexity = 2**entropy_bits
    (K for a uniform histogram, 1 when a single code is used).
    """
    counts = counts_or_codes if codebook_size is None else code_histogram(counts_or_codes, codebook_size)
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError("counts must be a non-empty 1-D histogram")
    counts = counts.double()
    total = float(counts.sum())
    if total <= 0:
        raise ValueError("code histogram is empty: no codes were counted")
    p = counts[counts > 0] / total
    entropy = float(-(p * torch.log2(p)).sum())
    return {
        "usage": float((counts > 0).sum()) / counts.numel(),
        "used_codes": int((counts > 0).sum()),
        "entropy_bits": entropy,
        "perplexity": float(2.0**entropy),
        "max_entropy_bits": math.log2(counts.numel()),
    }
