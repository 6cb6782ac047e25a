"""The two architecture options that natural images need (bench/RESULTS.md, black discs):
`decoder_norm_groups` (the decoder's GroupNorm no longer blows up sparse splat spots) and
`anchor_layout="fill"` (anchors over the whole image when M is not a square). Defaults keep the old models."""

import pytest
import torch

from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig
from gaussiantoken.tokenizer.encoder import CNNDecoder
from gaussiantoken.tokenizer.modeling import _anchor_grid
from gaussiantoken.tokenizer.render.reference import pixel_centers

torch.set_num_threads(1)


def _sparse_map():
    x = torch.zeros(1, 32, 32, 32)
    x[:, 1:] = 0.3 * torch.randn(1, 31, 32, 32, generator=torch.Generator().manual_seed(0))
    x[0, 0, 10:13, 20:23] = 0.3  # channel 0 is active under one small Gaussian only
    return x


def test_instance_norm_inflates_a_sparse_spot_and_one_group_does_not():
    x = _sparse_map()
    old = CNNDecoder(32, 32, 1, 32, 32).body[0].norm1  # one channel per group (the default)
    new = CNNDecoder(32, 32, 1, 32, 32, norm_groups=1).body[0].norm1
    assert old.num_groups == 32 and new.num_groups == 1
    with torch.no_grad():
        assert old(x)[0, 0, 11, 21] > 5.0  # the 3 x 3 spot divided by its tiny per-image std
        assert new(x)[0, 0, 11, 21].abs() < 1.5


def test_decoder_norm_groups_in_the_config():
    cfg = GaussianTokenizerConfig(image_size=16, num_gaussians=4, decoder_channels=8, decoder_norm_groups=2)
    model = GaussianTokenizer(cfg)
    norms = [m for m in model.decoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 2 for m in norms)
    legacy = GaussianTokenizer(GaussianTokenizerConfig(image_size=16, num_gaussians=4, decoder_channels=8))
    assert all(m.num_groups == 8 for m in legacy.decoder.modules() if isinstance(m, torch.nn.GroupNorm))
    with pytest.raises(ValueError, match="decoder_norm_groups"):
        GaussianTokenizerConfig(decoder_channels=32, decoder_norm_groups=3)


def test_fill_layout_covers_the_corner_that_square_leaves_empty():
    px = pixel_centers(32, 32)  # [1024, 2]
    # per-axis distance from each pixel to its nearest anchor: offsets reach 0.25 (offset_range) per axis
    far = {layout: (px[:, None] - _anchor_grid(32, layout)[None]).abs().amax(-1).min(-1).values.max()
           for layout in ("square", "fill")}
    assert far["fill"] < 0.25 < far["square"]  # 32 = 4 x 8 cells vs a 6 x 6 grid missing 4 cells
    assert torch.equal(_anchor_grid(36, "fill"), _anchor_grid(36, "square"))
    model = GaussianTokenizer(GaussianTokenizerConfig(image_size=16, num_gaussians=8, anchor_layout="fill",
                                                      position_mode="anchor_offset"))
    assert torch.equal(model.anchor_position.detach(), _anchor_grid(8, "fill"))
    with pytest.raises(ValueError, match="anchor_layout"):
        GaussianTokenizerConfig(anchor_layout="hex")


def test_photos_preset_and_recipe():
    from pathlib import Path

    from gaussiantoken.tokenizer.model_types import config_from_spec
    from gaussiantoken.tokenizer.train import load_config

    cfg = GaussianTokenizerConfig.preset("photos")  # 64 Gaussians x one token (geometry from the code)
    assert cfg.tokens_per_image == 64 and cfg.codebook_size == 1024 and cfg.decoder_norm_groups == 1
    assert cfg.anchor_layout == "fill" and cfg.geometry_slots == [] and cfg.num_gaussians == 64
    assert GaussianTokenizer(cfg).vocab_size == 1024  # the VQ's 640 bits per image
    assert GaussianTokenizerConfig.photos(num_gaussians=128).tokens_per_image == 128
    recipe = Path(__file__).resolve().parents[2] / "configs" / "tokenizer" / "photos.yaml"
    run = load_config(recipe)
    assert run.data["name"] == "photo_patches" and run.val_data["split"] == "test"
    assert config_from_spec(run.model).tokens_per_image == 64
    vq = load_config(recipe, ["model.type=grid_vq", "model.preset=vq64"])
    assert config_from_spec(vq.model).tokens_per_image == 64


def test_shapes_robust_recipe_quarter_pixel_offsets_and_mixed_renderers():
    from pathlib import Path

    from gaussiantoken.tokenizer.model_types import config_from_spec
    from gaussiantoken.tokenizer.train import load_config

    recipes = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"
    robust = config_from_spec(load_config(recipes / "shapes_robust.yaml").model)
    default = config_from_spec(load_config(recipes / "shapes.yaml").model)
    assert robust.position_bins == 32 and default.position_bins == 16
    assert robust.decoder_norm_groups == default.decoder_norm_groups == 1
    assert GaussianTokenizer(robust).vocab_size == 64 + 32 * 32 + 8 * 8 * 8 == 1600
    assert GaussianTokenizer(default).vocab_size == 64 + 16 * 16 + 8 * 8 * 8 == 832
    assert load_config(recipes / "shapes_robust.yaml").data["renderers"] == {"pixel": 0.5, "antialiased": 0.5}
