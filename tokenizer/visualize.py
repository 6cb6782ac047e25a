"""`draw_gaussians`: an image with each 2D Gaussian drawn as its k-sigma ellipse (PIL ImageDraw
polygon), upscaled for visibility. Coordinates follow the splat convention (docs/splatting.md)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

_PALETTE = [(255, 64, 64), (64, 255, 64), (64, 160, 255), (255, 220, 0), (255, 0, 255), (0, 255, 255), (255, 255, 255)]


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.dim() == 4 and image.shape[0] == 1:
            image = image[0]
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be [3, H, W] in [-1, 1], got shape {tuple(image.shape)}")
        arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(arr)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"image must be a PIL image, a tensor [3, H, W] or a uint8 array, got {type(image).__name__}")


def ellipse_polygon(mean, scale, theta, sigma: float, width: int, height: int, upscale: int, n: int = 32):
    """Points (in upscaled pixel coordinates) of the sigma-ellipse of one Gaussian."""
    pts = []
    c, s = math.cos(theta), math.sin(theta)
    for k in range(n):
        a = 2 * math.pi * k / n
        u, v = sigma * scale[0] * math.cos(a), sigma * scale[1] * math.sin(a)  # own axes, normalized units
        x, y = mean[0] + c * u - s * v, mean[1] + s * u + c * v  # R(theta) (u, v)
        pts.append(((x + 1) / 2 * width * upscale, (y + 1) / 2 * height * upscale))
    return pts


def draw_gaussians(
    image,
    gaussians: dict,
    sigma: float = 1.0,
    upscale: int = 8,
    outline=None,
    line_width: int = 1,
    draw_centres: bool = True,
) -> Image.Image:
    """Draw ONE image's Gaussians (means [M, 2], scales [M, 2], rotations [M]; a leading batch
    dimension of 1 is accepted) as sigma-ellipses on the image upscaled `upscale` times (nearest).
    Returns a PIL RGB image of size (W * upscale, H * upscale)."""
    if sigma not in (1, 2, 1.0, 2.0):
        raise ValueError(f"sigma must be 1 or 2, got {sigma!r}")
    if not isinstance(upscale, int) or upscale < 1:
        raise ValueError(f"upscale must be a positive int, got {upscale!r}")
    for key in ("means", "scales", "rotations"):
        if key not in gaussians:
            raise ValueError(f"gaussians is missing {key!r} (needs means, scales, rotations)")
    means = torch.as_tensor(gaussians["means"]).detach().float().cpu()
    scales = torch.as_tensor(gaussians["scales"]).detach().float().cpu()
    rotations = torch.as_tensor(gaussians["rotations"]).detach().float().cpu()
    if means.dim() == 3:
        if means.shape[0] != 1:
            raise ValueError(f"draw_gaussians takes the Gaussians of ONE image, got a batch of {means.shape[0]}")
        means, scales, rotations = means[0], scales[0], rotations[0]
    if means.dim() != 2 or means.shape[-1] != 2 or scales.shape != means.shape or rotations.shape != means.shape[:1]:
        raise ValueError(
            f"expected means [M, 2], scales [M, 2], rotations [M]; got {tuple(means.shape)}, "
            f"{tuple(scales.shape)}, {tuple(rotations.shape)}"
        )
    base = _to_pil(image)
    W, H = base.size
    canvas = base.resize((W * upscale, H * upscale), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for g in range(means.shape[0]):
        colour = outline or _PALETTE[g % len(_PALETTE)]
        pts = ellipse_polygon(means[g].tolist(), scales[g].tolist(), float(rotations[g]), sigma, W, H, upscale)
        draw.polygon(pts, outline=colour, width=line_width)
        if draw_centres:
            cx, cy = (means[g, 0] + 1) / 2 * W * upscale, (means[g, 1] + 1) / 2 * H * upscale
            draw.ellipse([cx - 1, cy - 1, cx + 1, cy + 1], fill=colour)
    return canvas


__all__ = ["draw_gaussians", "ellipse_polygon"]
