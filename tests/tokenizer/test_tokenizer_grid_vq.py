"""The grid-VQ baseline (tokenizer/grid_vq.py) and the architecture switch (tokenizer/model_types.py):
the tokenizer contract (ids, round trip, layout), safetensors save/load, errors, training by the same
trainer (in process and by the CLI in a fresh process), and the continuous-geometry ablation."""

import subprocess
import sys

import pytest
import torch

from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig
from gaussiantoken.tokenizer.grid_vq import GridVQConfig, GridVQTokenizer
from gaussiantoken.tokenizer.model_types import config_from_spec, model_class_for

torch.set_num_threads(1)
TINY = dict(image_size=16, encoder_channels=8, codebook_size=16, codebook_dim=4, decoder_channels=8, kmeans_iters=2)


def _trained_once(config):
    torch.manual_seed(0)
    model = GridVQTokenizer(config)
    model.train()
    model(pixel_values=torch.rand(4, 3, config.image_size, config.image_size) * 2 - 1)  # k-means init + EMA
    return model.eval()


@pytest.mark.parametrize("grid", [[4, 4], [4, 8], [2, 16]])
def test_contract_and_exact_round_trip(grid):
    model = _trained_once(GridVQConfig(grid_size=grid, **TINY))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    ids = model.encode(x)
    assert ids.shape == (3, grid[0] * grid[1]) == (3, model.tokens_per_image) and ids.dtype == torch.long
    assert model.tokens_per_image == model.config.tokens_per_image
    assert [tuple(s) for s in model.token_layout] == [("feature", 0, 16)] and model.vocab_size == 16
    out = model(pixel_values=x)
    assert torch.equal(out.ids, ids) and out.gaussians is None
    assert torch.equal(model.decode(ids), out.reconstruction)  # bit for bit
    assert out.reconstruction.shape == x.shape and out.reconstruction.abs().max() <= 1


def test_ids_are_row_major_codes_of_the_grid():
    model = _trained_once(GridVQConfig(grid_size=[4, 8], **TINY))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = model._latents(x)  # [B, 4, 8, d]
    assert z.shape == (2, 4, 8, 4)
    codes = torch.cdist(z.reshape(-1, 4), model.quantizer.codebook).argmin(-1).view(2, 32)
    assert torch.equal(model.encode(x), codes)


def test_gradients_reach_the_encoder_and_training_changes_the_codebook():
    model = GridVQTokenizer(GridVQConfig(**TINY)).train()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = model(pixel_values=x)
    before = model.quantizer.codebook.clone()
    ((out.reconstruction - x).abs().mean() + out.quantization_loss).backward()
    assert model.encoder.body[0].weight.grad.abs().sum() > 0
    model(pixel_values=x)
    assert not torch.equal(before, model.quantizer.codebook)


def test_save_load_safetensors_and_wrong_type(tmp_path):
    model = _trained_once(GridVQConfig(grid_size=[4, 8], **TINY))
    model.save_pretrained(tmp_path / "vq")
    assert (tmp_path / "vq" / "model.safetensors").is_file()
    again = GridVQTokenizer.from_pretrained(tmp_path / "vq").eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(again.encode(x), model.encode(x))
    assert torch.equal(again.decode(model.encode(x)), model.decode(model.encode(x)))
    with pytest.raises(ValueError, match="grid_vq_tokenizer"):
        GaussianTokenizer.from_pretrained(tmp_path / "vq")
    GaussianTokenizer(GaussianTokenizerConfig(image_size=16, num_gaussians=4)).save_pretrained(tmp_path / "g")
    with pytest.raises(ValueError, match="gaussian_tokenizer"):
        GridVQTokenizer.from_pretrained(tmp_path / "g")


def test_bad_inputs_name_the_problem():
    model = _trained_once(GridVQConfig(**TINY))
    with pytest.raises(ValueError, match="grid_size"):
        GridVQConfig(grid_size=[3, 4])
    with pytest.raises(ValueError, match="grid_size"):
        GridVQConfig(image_size=32, grid_size=[12, 8])
    with pytest.raises(ValueError, match="out of range"):
        model.decode(torch.full((1, 64), 16))
    with pytest.raises(ValueError, match="shape"):
        model.decode(torch.zeros(1, 63, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.encode(torch.full((1, 3, 16, 16), 3.0))


def test_model_types_switch():
    cfg = config_from_spec({"type": "grid_vq", "preset": "vq128", "image_size": 32})
    assert isinstance(cfg, GridVQConfig) and cfg.grid_size == [8, 16] and cfg.tokens_per_image == 128
    assert model_class_for(cfg) is GridVQTokenizer
    assert model_class_for(config_from_spec({"preset": "shapes"})) is GaussianTokenizer
    with pytest.raises(ValueError, match="model.type"):
        config_from_spec({"type": "vqgan"})
    with pytest.raises(ValueError, match="model.num_gaussians"):
        config_from_spec({"type": "grid_vq", "num_gaussians": 4})
    with pytest.raises(ValueError, match="model.preset"):
        config_from_spec({"type": "grid_vq", "preset": "shapes"})


def test_trained_by_the_same_trainer(tmp_path):
    from gaussiantoken.tokenizer.train import load_config, read_losses, train

    overrides = ["model.type=grid_vq", "model.image_size=16", "model.grid_size=[4,4]", "model.encoder_channels=8",
                 "model.decoder_channels=8", "model.codebook_size=16", "model.codebook_dim=4",
                 "data={name: shapes, num_samples: 32, image_size: 16}",
                 "val_data={name: shapes, num_samples: 8, seed: 5, image_size: 16}",
                 f"train.output_dir={tmp_path}", "train.max_steps=30", "train.batch_size=8",
                 "train.learning_rate=3e-3", "train.log_with=none", "train.progress_bar=false",
                 "train.num_val_samples=8", "loss.pixel=l1+l2"]
    result = train(load_config(None, overrides))
    losses = read_losses(tmp_path)
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])
    model = GridVQTokenizer.from_pretrained(result.final_dir)
    assert model.tokens_per_image == 16 and "val/psnr" in result.last_metrics
    assert (tmp_path / "samples").is_dir()


def test_cli_trains_grid_vq_in_a_fresh_process(tmp_path):
    args = [sys.executable, "-m", "gaussiantoken.tokenizer.train", "configs/tokenizer/photos.yaml",
            "model.type=grid_vq", "model.preset=vq64", "model.encoder_channels=8", "model.decoder_channels=8",
            "model.codebook_size=16", "data.num_samples=48", "val_data.num_samples=8", "train.num_val_samples=8",
            "train.max_steps=2", "train.batch_size=8", f"train.output_dir={tmp_path}", "train.log_with=none",
            "train.progress_bar=false"]
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert GridVQTokenizer.from_pretrained(tmp_path / "final").config.grid_size == [8, 8]
    bad = subprocess.run(args[:4] + ["model.type=vqgan", f"train.output_dir={tmp_path}/x"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "model.type" in bad.stderr and "Traceback" not in bad.stderr


def test_continuous_geometry_ablation_renders_the_unquantized_geometry():
    torch.manual_seed(0)
    cfg = GaussianTokenizerConfig(image_size=16, num_gaussians=4, encoder_channels=8, hidden_size=16, num_heads=2,
                                  ffn_dim=16, num_decoder_layers=1, codebook_size=8, splat_channels=4,
                                  feature_mlp_hidden=8, decoder_channels=8, decoder_num_res_blocks=1,
                                  quantize_geometry=False)
    model = GaussianTokenizer(cfg)
    with torch.no_grad():
        for head in (model.scale_head, model.rotation_head, *model.xy_heads):
            head.weight.normal_(0, 0.5)
    model.train()(pixel_values=torch.rand(4, 3, 16, 16) * 2 - 1)
    model.eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    cont = model.encode_gaussians(x, quantized=False)
    quant = model.encode_gaussians(x, quantized=True)
    expected = model.decode_gaussians({**cont, "features": quant["features"]})
    out = model(pixel_values=x)
    assert torch.equal(out.reconstruction, expected)
    assert not torch.equal(out.reconstruction, model.decode(out.ids))  # the geometry tokens are lossy


def test_decoder_normalises_over_all_channels_by_default():
    norms = [m for m in GridVQTokenizer(GridVQConfig(**TINY)).decoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 1 for m in norms)
    legacy = GridVQTokenizer(GridVQConfig(decoder_norm_groups=None, **TINY)).decoder
    assert all(m.num_groups == m.num_channels for m in legacy.modules() if isinstance(m, torch.nn.GroupNorm))
    with pytest.raises(ValueError, match="decoder_norm_groups"):
        GridVQConfig(decoder_norm_groups=0)
