"""`gaussiantoken eval-tokenizer` (eval.reconstruction): scene matching by hand, and the CLI's metrics
on a saved tiny tokenizer checked against direct computations."""

import json

import pytest
import torch
from safetensors.torch import save_file

from gaussiantoken.eval.reconstruction import main, scene_match

torch.set_num_threads(1)


def test_scene_match_hand_cases():
    a = {"shape": "circle", "color": "red", "size": "small", "x": 4.0, "y": 5.0}
    b = {"shape": "square", "color": "blue", "size": "large", "x": 20.0, "y": 20.0}
    assert scene_match([b, a], [a, b]) == (True, True)  # order does not matter
    moved = dict(a, x=6.0)
    assert scene_match([moved, b], [a, b], tolerance=1.5) == (False, True)
    assert scene_match([moved, b], [a, b], tolerance=2.0) == (True, True)
    assert scene_match([dict(a, color="green"), b], [a, b]) == (False, False)
    assert scene_match([a], [a, b]) == (False, False)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig, GaussianTokenizerImageProcessor

    torch.manual_seed(0)
    config = GaussianTokenizerConfig(
        image_size=16, encoder_channels=8, encoder_channel_mult=[1, 2], encoder_out_channels=16, num_feature_levels=2,
        hidden_size=16, num_heads=2, num_points=2, ffn_dim=32, num_decoder_layers=1, num_gaussians=8,
        codebook_size=16, codebook_dim=4, position_bins=16, scale_bins=4, rotation_bins=4, scale_min=1 / 16,
        splat_channels=4, feature_mlp_hidden=16, decoder_channels=8, decoder_num_res_blocks=1)
    path = tmp_path_factory.mktemp("tok")
    GaussianTokenizer(config).save_pretrained(path)
    GaussianTokenizerImageProcessor(image_size=16).save_pretrained(path)
    return path


def test_eval_tokenizer_cli_metrics(tiny_model_dir, tmp_path, capsys):
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

    out = tmp_path / "eval"
    assert main([str(tiny_model_dir), "--data", "shapes", "--num-samples", "6", "--seed", "7", "--batch-size", "4",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(capsys.readouterr().out) == metrics
    assert (out / "samples.png").is_file()
    model = GaussianTokenizer.from_pretrained(tiny_model_dir).eval()
    processor = GaussianTokenizerImageProcessor.from_pretrained(tiny_model_dir)
    ds = make_dataset(6, seed=7, image_size=16)
    x = processor(images=list(ds["image"]), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ids = model.encode(x)
        rec = model.decode(ids).clamp(-1, 1)
    psnr = 10 * torch.log10(4.0 / (rec - x).pow(2).flatten(1).mean(1))  # per image, then the mean
    assert metrics["psnr"] == pytest.approx(float(psnr.mean()), abs=1e-4)
    assert metrics["num_images"] == 6 and metrics["tokens_per_image"] == model.tokens_per_image == 8 * 3
    codes = ids[:, 0::3]  # the feature slot of every Gaussian
    assert metrics["codebook_used_codes"] == codes.unique().numel()
    assert metrics["codebook_usage"] == pytest.approx(codes.unique().numel() / 16)
    assert metrics["vocab_usage"] == pytest.approx(ids.unique().numel() / model.vocab_size)
    assert 0.0 <= metrics["scene_exact_rate"] <= metrics["scene_attribute_rate"] <= 1.0
    assert -1.0 <= metrics["ssim"] <= 1.0 and "lpips" not in metrics and "rfid" not in metrics


def test_eval_tokenizer_lpips_and_errors(tiny_model_dir, tmp_path, capsys):
    from gaussiantoken.tokenizer.losses import LPIPS

    torch.manual_seed(0)
    net = LPIPS("vgg")  # AlexNet needs more than 16 px
    for p in net.parameters():
        torch.nn.init.normal_(p, 0.0, 0.05)
        if p.dim() == 4 and p.shape[0] == 1:
            p.data.abs_()  # LPIPS heads are non-negative
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "lpips.safetensors"))
    assert main([str(tiny_model_dir), "--num-samples", "4", "--lpips-weights", str(tmp_path / "lpips.safetensors")]) == 0
    assert json.loads(capsys.readouterr().out)["lpips"] >= 0.0
    assert main([str(tmp_path / "nope"), "--num-samples", "2"]) == 2
    assert main([str(tiny_model_dir), "--data", "cifar100"]) == 2  # needs --data-root
    assert "--data-root" in capsys.readouterr().err
