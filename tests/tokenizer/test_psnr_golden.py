"""One PSNR for the tokenizer trainer (`tokenizer.previews.psnr_per_image`, its `val/psnr`) and the evaluation
(`eval.image_metrics.psnr_per_image`, a re-export): both call sites give the numbers recorded from the two
separate definitions before they were merged (same inputs, float64 values compared to 1e-12 dB)."""

import pytest
import torch

GOLDEN = {  # case -> per-image PSNR (dB), recorded from both pre-merge definitions (they agreed)
    "f32": [25.885920690929094, 25.892534862634555, 26.68153201701655],
    "f64_span1": [7.365993575700114, 8.8969765925884],
    "same": [106.02059991327963] * 3,  # identical images: the mse floor eps=1e-10 at span 2
    "f16": [31.905338584604944, 31.91359626073002, 32.70137977459732],
    "int_span": [25.885920690929094, 25.892534862634555, 26.68153201701655],
}
TUPLE_GOLDEN = [19.289149221332064, 19.28611807926146, 19.075843999723677]  # eval's (low, high) clamp


def _cases():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1  # [3, 3, 8, 8] in [-1, 1]
    b = (a + 0.1 * torch.randn(3, 3, 8, 8, generator=g)).clamp(-1, 1)
    c = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    d = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    cases = {"f32": (a, b, 2.0), "f64_span1": (c, d, 1.0), "same": (a, a, 2.0),
             "f16": ((a * 0.5).half(), (b * 0.5).half(), 2.0), "int_span": (a, b, 2)}
    return cases, a, b


@pytest.mark.parametrize("where", ["tokenizer", "eval"])
def test_both_call_sites_give_the_recorded_numbers(where):
    if where == "tokenizer":
        from gaussiantoken.tokenizer.previews import psnr_per_image
    else:
        from gaussiantoken.eval.image_metrics import psnr_per_image
    cases, a, b = _cases()
    for name, (x, y, span) in cases.items():
        got = psnr_per_image(x, y, span)
        assert got.dtype == torch.float64 and got.shape == (x.shape[0],)
        assert got.tolist() == pytest.approx(GOLDEN[name], rel=0, abs=1e-12), name
    assert psnr_per_image(a * 1.5, b, (-1.0, 1.0)).tolist() == pytest.approx(TUPLE_GOLDEN, rel=0, abs=1e-12)


def test_one_definition():
    from gaussiantoken.eval import image_metrics
    from gaussiantoken.tokenizer import previews

    assert image_metrics.psnr_per_image is previews.psnr_per_image
    assert "def psnr_per_image" not in open(image_metrics.__file__).read()
