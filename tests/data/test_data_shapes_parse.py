"""Shapes scene parser: exact on clean renders, robust to noise, colour shift and blur."""

import numpy as np
import pytest
import torch

from gaussiantoken.data import shapes
from gaussiantoken.data.shapes_parse import classify_shape, connected_components

torch.set_num_threads(1)


@pytest.mark.parametrize("s", [32, 64])
def test_parse_exact_on_1000_clean_renders(s):
    rng = np.random.default_rng(100 + s)
    scenes = [shapes.sample_scene(rng, s) for _ in range(1000)]
    images = shapes.render_batch(scenes, s)
    for scene, image in zip(scenes, images):
        assert shapes.parse_scene(image) == scene  # shape, color, size and exact centre, same order


def test_parse_accepts_pil_and_tensor():
    scene = [{"shape": "triangle", "color": "green", "size": "large", "x": 16.0, "y": 12.0}]
    img = shapes.render_scene(scene)
    assert shapes.parse_scene(img) == scene
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 127.5 - 1.0  # [3, H, W]
    assert shapes.parse_scene(t) == scene
    with pytest.raises(TypeError, match="image"):
        shapes.parse_scene([[1, 2, 3]])
    with pytest.raises(ValueError, match="uint8"):
        shapes.parse_scene(np.zeros((32, 32, 3), dtype=np.float32))


def _blur(x, sigma):
    r = np.arange(-3, 4)
    k = np.exp(-r ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    pad = np.pad(x, ((3, 3), (3, 3), (0, 0)), mode="edge")
    rows = sum(k[i] * pad[i:i + x.shape[0]] for i in range(7))  # [H, W+6, 3]
    return sum(k[i] * rows[:, i:i + x.shape[1]] for i in range(7))


def _same(parsed, scene):
    if len(parsed) != len(scene):
        return False
    return all(any(a["shape"] == b["shape"] and a["color"] == b["color"] and a["size"] == b["size"]
                   and abs(a["x"] - b["x"]) <= 1 and abs(a["y"] - b["y"]) <= 1 for b in parsed) for a in scene)


@pytest.mark.parametrize("s,sigma", [(32, 0.0), (32, 0.6), (64, 0.8)])
def test_parse_robust_to_noise_shift_blur(s, sigma):
    rng = np.random.default_rng(7)
    scenes = [shapes.sample_scene(rng, s) for _ in range(150)]
    images = shapes.render_batch(scenes, s).astype(np.float64)
    ok = 0
    for scene, image in zip(scenes, images):
        x = _blur(image, sigma) if sigma else image
        x = x + np.array([8.0, -6.0, 5.0]) + rng.normal(0.0, 8.0, x.shape)  # shift + noise std 8/255
        ok += _same(shapes.parse_scene(np.clip(np.round(x), 0, 255).astype(np.uint8)), scene)
    assert ok >= 147


def test_tiny_noise_components_ignored():
    scene = [{"shape": "square", "color": "yellow", "size": "small", "x": 8.0, "y": 8.0}]
    arr = shapes.render_array(scene, 32).copy()
    arr[25, 25] = shapes.COLORS["red"]
    arr[28, 3:5] = shapes.COLORS["blue"]
    assert shapes.parse_scene(arr) == scene


def test_connected_components_separates_same_color():
    idx = np.zeros((6, 8), dtype=np.int64)
    idx[0:2, 0:2] = 1
    idx[4:6, 5:8] = 1
    idx[0:3, 5] = 2
    lab = connected_components(idx)
    assert len(np.unique(lab[lab > 0])) == 3
    assert (lab[0:2, 0:2] == lab[0, 0]).all() and lab[0, 0] != lab[4, 5]


def test_classify_shape_hand_masks():
    square = np.ones((10, 10), bool)
    yy, xx = np.mgrid[0:10, 0:10] + 0.5
    circle = (xx - 5) ** 2 + (yy - 5) ** 2 <= 25
    triangle = np.abs(xx - 5) <= (yy + 0.5) / 2
    assert classify_shape(square) == "square"
    assert classify_shape(circle) == "circle"
    assert classify_shape(triangle) == "triangle"


def test_parse_exact_at_smallest_canvas():
    rng = np.random.default_rng(16)
    scenes = shapes.sample_scenes(rng, 300, 16)
    for scene, image in zip(scenes, shapes.render_batch(scenes, 16)):
        assert shapes.parse_scene(image) == scene
