"""Image processor: any PIL mode/size -> [B, 3, S, S] in [-1, 1]; postprocess; save/load."""

import numpy as np
import pytest
import torch
from PIL import Image

from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor


def test_modes_and_sizes():
    p = GaussianTokenizerImageProcessor(image_size=16)
    pal = Image.new("P", (20, 10))
    pal.putpalette([0, 0, 255] * 256)
    images = [
        Image.new("L", (40, 60), 255),
        Image.new("RGBA", (16, 16), (255, 0, 0, 0)),  # fully transparent -> black
        pal,
        Image.new("RGB", (16, 16), (255, 0, 0)),
        np.full((5, 7), 255, np.uint8),
    ]
    px = p(images, return_tensors="pt")["pixel_values"]
    assert px.shape == (5, 3, 16, 16) and px.dtype == torch.float32
    torch.testing.assert_close(px[0], torch.ones(3, 16, 16))  # grayscale replicated
    torch.testing.assert_close(px[1], -torch.ones(3, 16, 16))
    torch.testing.assert_close(px[2][2], torch.ones(16, 16))  # palette blue
    torch.testing.assert_close(px[3][:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


def test_centre_crop_keeps_the_middle():
    img = np.zeros((16, 48, 3), np.uint8)
    img[:, 16:32] = 255  # white middle third
    px = GaussianTokenizerImageProcessor(image_size=16)(Image.fromarray(img))["pixel_values"]
    assert px.shape == (1, 3, 16, 16)
    assert px.min() > 0.99


def test_postprocess_round_trip_and_save(tmp_path):
    p = GaussianTokenizerImageProcessor(image_size=8)
    arr = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    px = p(Image.fromarray(arr))["pixel_values"]
    assert np.array_equal(p.postprocess(px, "np")[0], arr)
    assert np.array_equal(np.asarray(p.postprocess(px, "pil")[0]), arr)
    assert torch.equal(p.postprocess(px * 3, "pt"), (px * 3).clamp(-1, 1))
    p.save_pretrained(tmp_path)
    q = GaussianTokenizerImageProcessor.from_pretrained(tmp_path)
    assert isinstance(q, GaussianTokenizerImageProcessor) and q.image_size == 8


def test_bad_inputs():
    p = GaussianTokenizerImageProcessor(image_size=8)
    with pytest.raises(ValueError, match="non-empty"):
        p([])
    with pytest.raises(TypeError, match=r"images\[0\]"):
        p(["not an image"])
    with pytest.raises(ValueError, match="uint8"):
        p(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="output_type"):
        p.postprocess(torch.zeros(1, 3, 8, 8), "jpeg")
    with pytest.raises(ValueError, match="image_size"):
        GaussianTokenizerImageProcessor(image_size=0)


def test_a_datasets_column_of_images_is_a_batch():
    import datasets

    images = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    ds = datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image())
    proc = GaussianTokenizerImageProcessor(image_size=8)
    from_column = proc(ds["image"], return_tensors="pt").pixel_values  # [2, 3, 8, 8]
    from_list = proc(images, return_tensors="pt").pixel_values
    assert from_column.shape == (2, 3, 8, 8)
    assert torch.equal(from_column, from_list)
