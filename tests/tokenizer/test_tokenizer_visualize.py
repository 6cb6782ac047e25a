"""draw_gaussians: output size, ellipse geometry."""

import math

import pytest
import torch
from PIL import Image

from gaussiantoken.tokenizer import draw_gaussians
from gaussiantoken.tokenizer.visualize import ellipse_polygon


def test_output_size_and_drawn_pixels():
    img = Image.new("RGB", (16, 12), (0, 0, 0))
    g = {"means": torch.zeros(1, 2, 2), "scales": torch.full((1, 2, 2), 0.25), "rotations": torch.zeros(1, 2)}
    out = draw_gaussians(img, g, upscale=4, outline=(255, 255, 255))
    assert out.size == (64, 48) and out.mode == "RGB"
    assert out.getpixel((32, 24)) == (255, 255, 255)  # centre dot
    assert out.getpixel((0, 0)) == (0, 0, 0)
    t = draw_gaussians(torch.zeros(3, 8, 8), {k: v[0] for k, v in g.items()}, sigma=2, upscale=2)
    assert t.size == (16, 16)


def test_ellipse_polygon_axes():
    # s_x = 0.5 along the rotated axis theta = 90 degrees -> extends along image y
    pts = ellipse_polygon([0.0, 0.0], [0.5, 0.1], math.pi / 2, 1.0, 10, 10, 1, n=4)
    assert pts[0] == pytest.approx((5.0, 7.5))


def test_rejects_a_batch():
    g = {"means": torch.zeros(2, 1, 2), "scales": torch.ones(2, 1, 2), "rotations": torch.zeros(2, 1)}
    with pytest.raises(ValueError, match="ONE image"):
        draw_gaussians(Image.new("RGB", (4, 4)), g)
