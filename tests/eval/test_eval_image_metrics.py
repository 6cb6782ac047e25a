"""Per-image PSNR, SSIM / MS-SSIM, the streaming accumulator and codebook statistics."""

import math

import numpy as np
import pytest
import torch

from gaussiantoken.eval.image_metrics import (ReconstructionMetrics, code_histogram, codebook_stats, ms_ssim,
                                              ms_ssim_min_size, ms_ssim_per_image, psnr, psnr_per_image, ssim,
                                              ssim_per_image)


def _pair_with_errors():
    target = torch.zeros(2, 3, 8, 8)
    preds = target.clone()
    preds[0] += 0.1  # mse 0.01
    preds[1] += 0.2  # mse 0.04
    return preds, target


def test_psnr_is_per_image_mean_not_batch_psnr():
    preds, target = _pair_with_errors()
    per = psnr_per_image(preds, target, data_range=2.0)
    assert per.tolist() == pytest.approx([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)], abs=1e-6)
    expected = (10 * math.log10(400) + 10 * math.log10(100)) / 2  # 23.0103
    batch_psnr = 10 * math.log10(4 / 0.025)  # the paper's batch-level number, 22.04
    assert psnr(preds, target, 2.0) == pytest.approx(expected, abs=1e-6)
    assert abs(psnr(preds, target, 2.0) - batch_psnr) > 0.9


def test_psnr_data_range_span_and_tuple_clamp():
    preds, target = _pair_with_errors()
    assert psnr(preds, target, 1.0) == pytest.approx((10 * math.log10(100) + 10 * math.log10(25)) / 2, abs=1e-6)
    # A (low, high) range clamps: values above 1 are cut, so an overshoot of 5 counts as 1.
    t = torch.full((1, 3, 4, 4), 0.0)
    p = torch.full((1, 3, 4, 4), 5.0)
    assert psnr(p, t, (0.0, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(psnr_per_image(t, t, 1.0)).all()
    with pytest.raises(ValueError, match="data_range"):
        psnr(p, t, -1.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(p, t[:, :2], 1.0)


def test_ssim_identity_and_skimage_parity():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 32, generator=g)
    preds = (target + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    assert ssim(target, target, 1.0) == pytest.approx(1.0, abs=1e-6)
    ours = ssim_per_image(preds, target, 1.0)
    ref = [skimage_metrics.structural_similarity(target[i].numpy(), preds[i].numpy(), channel_axis=0, data_range=1.0,
                                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
           for i in range(2)]
    assert 0.2 < float(ours.mean()) < 0.99
    # torchmetrics drops the window-size border, skimage crops (win-1)/2: same definition, small border difference.
    np.testing.assert_allclose(ours.numpy(), np.array(ref), atol=0.03)


def test_ms_ssim_skips_small_images_and_runs_on_large():
    assert ms_ssim_min_size() == 160
    small = torch.rand(2, 3, 32, 32)
    reason = ms_ssim(small, small, 1.0)
    assert isinstance(reason, str) and "32x32" in reason and "160" in reason
    with pytest.raises(ValueError, match="MS-SSIM skipped"):
        ms_ssim_per_image(small, small, 1.0)
    g = torch.Generator().manual_seed(1)
    big = torch.rand(2, 3, 176, 176, generator=g)
    assert ms_ssim(big, big, 1.0) == pytest.approx(1.0, abs=1e-5)
    noisy = (big + 0.2 * torch.randn(big.shape, generator=g)).clamp(0, 1)
    val = ms_ssim(noisy, big, 1.0)
    assert isinstance(val, float) and 0.0 < val < 0.99


def test_reconstruction_metrics_accumulates_per_image():
    g = torch.Generator().manual_seed(2)
    t1, t2 = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1, torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    p1, p2 = t1 + 0.05 * torch.randn(t1.shape, generator=g), t2 + 0.2 * torch.randn(t2.shape, generator=g)
    calls = []

    def fake_perceptual(x, y):  # checks that images arrive in [-1, 1] and returns per-image L1
        calls.append((float(x.min()), float(x.max())))
        return (x - y).abs().flatten(1).mean(1)

    acc = ReconstructionMetrics(data_range=2.0, perceptual=fake_perceptual)
    acc.update(p1, t1)
    acc.update(p2, t2)
    out = acc.compute()
    allp, allt = torch.cat([p1, p2]), torch.cat([t1, t2])
    assert out["num_images"] == 5
    assert out["psnr"] == pytest.approx(psnr(allp, allt, 2.0), rel=1e-6)
    assert out["ssim"] == pytest.approx(float(ssim_per_image(allp, allt, 2.0).mean()), rel=1e-5)
    assert out["lpips"] == pytest.approx(float((allp - allt).abs().flatten(1).mean(1).mean()), rel=1e-5)
    assert "ms_ssim" not in out and "16x16" in out["skipped"]["ms_ssim"]
    no_lpips = ReconstructionMetrics(data_range=2.0)
    no_lpips.update(p1, t1)
    assert "lpips" in no_lpips.compute()["skipped"]
    with pytest.raises(ValueError, match="before any update"):
        ReconstructionMetrics().compute()


def test_codebook_stats():
    stats = codebook_stats(torch.tensor([[0, 0], [1, 1]]), codebook_size=4)
    assert stats["usage"] == 0.5 and stats["used_codes"] == 2
    assert stats["entropy_bits"] == pytest.approx(1.0) and stats["perplexity"] == pytest.approx(2.0)
    uniform = codebook_stats(torch.arange(16).repeat(3), codebook_size=16)
    assert uniform["usage"] == 1.0 and uniform["perplexity"] == pytest.approx(16.0)
    # Skewed histogram: p = (3/4, 1/4) -> H = -(3/4 log2 3/4 + 1/4 log2 1/4).
    h = code_histogram(torch.tensor([2, 2, 2, 5]), 8)
    assert h.tolist() == [0, 0, 3, 0, 0, 1, 0, 0]
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert codebook_stats(h)["entropy_bits"] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        code_histogram(torch.tensor([8]), 8)
    with pytest.raises(TypeError):
        code_histogram(torch.tensor([0.5]), 8)
