"""Tokenizer training losses on hand-computed cases: pixel, hinge, non-saturating, LeCam, adaptive
weight, LPIPS (formula, weight loading, key layouts), PatchGAN shapes; trainer helpers (schedule, EMA,
data order, RNG round trip)."""

import math
import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gaussiantoken.tokenizer.discriminator import PatchDiscriminator
from gaussiantoken.tokenizer.losses import (
    LPIPS,
    LeCam,
    adaptive_gan_weight,
    hinge_d_loss,
    load_lpips,
    non_saturating_g_loss,
    pixel_loss,
)
from gaussiantoken.tokenizer.trainer_state import (
    ModelEMA,
    batches_for,
    capture_rng,
    epoch_order,
    restore_rng,
)
from gaussiantoken.runtime.schedule import warmup_cosine


def test_pixel_loss_hand_values():
    a = torch.tensor([1.0, -1.0, 0.5, 0.0]).view(1, 1, 2, 2)
    b = torch.tensor([0.0, 0.0, 0.5, 2.0]).view(1, 1, 2, 2)
    assert pixel_loss(a, b, "l1").item() == pytest.approx((1 + 1 + 0 + 2) / 4)
    assert pixel_loss(a, b, "l2").item() == pytest.approx((1 + 1 + 0 + 4) / 4)
    assert pixel_loss(a, b, "l1+l2").item() == pytest.approx(1.0 + 1.5)
    with pytest.raises(ValueError, match="l1"):
        pixel_loss(a, b, "huber")
    with pytest.raises(ValueError, match="shape"):
        pixel_loss(a, b[..., :1], "l1")


def test_hinge_d_loss_hand_value():
    real = torch.tensor([2.0, 0.5])  # relu(1 - r): 0, 0.5 -> mean 0.25
    fake = torch.tensor([-2.0, 0.5])  # relu(1 + f): 0, 1.5 -> mean 0.75
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.75))
    # a perfect discriminator (margins met) has zero loss
    assert hinge_d_loss(torch.full((3,), 5.0), torch.full((3,), -5.0)).item() == 0.0


def test_non_saturating_generator_term():
    assert non_saturating_g_loss(torch.zeros(4)).item() == pytest.approx(math.log(2))
    x = torch.tensor([math.log(3.0), -math.log(3.0)])  # -log sigmoid: log(4/3), log 4
    assert non_saturating_g_loss(x).item() == pytest.approx(0.5 * (math.log(4 / 3) + math.log(4)))
    # gradient of the non-saturating term stays large when D is confident the sample is fake
    z = torch.tensor([-10.0], requires_grad=True)
    non_saturating_g_loss(z).backward()
    assert z.grad.item() == pytest.approx(-1.0, abs=1e-4)


def test_lecam_regulariser_and_ema():
    lecam = LeCam(decay=0.9)
    lecam.ema_real.fill_(1.0)
    lecam.ema_fake.fill_(-1.0)
    lecam.initialized.fill_(True)
    real = torch.tensor([0.5, -2.0])  # relu(r - ema_fake) = 1.5, 0 -> squares 2.25, 0 -> mean 1.125
    fake = torch.tensor([2.0, 0.0])  # relu(ema_real - f) = 0, 1 -> mean 0.5
    assert lecam(real, fake).item() == pytest.approx(1.125 + 0.5)
    lecam.update(real, fake)  # means -0.75 and 1.0
    assert lecam.ema_real.item() == pytest.approx(0.9 * 1.0 + 0.1 * -0.75)
    assert lecam.ema_fake.item() == pytest.approx(0.9 * -1.0 + 0.1 * 1.0)
    fresh = LeCam(0.999)
    fresh.update(torch.tensor([3.0]), torch.tensor([-4.0]))  # first update starts at the batch means
    assert (fresh.ema_real.item(), fresh.ema_fake.item()) == (3.0, -4.0)
    assert set(fresh.state_dict()) == {"ema_real", "ema_fake", "initialized"}
    with pytest.raises(ValueError, match="decay"):
        LeCam(1.0)


def test_adaptive_gan_weight_is_gradient_norm_ratio():
    w = torch.tensor([2.0, -1.0], requires_grad=True)
    rec = (3.0 * w).sum()  # grad (3, 3), norm 3 sqrt 2
    g = (0.5 * w * w).sum()  # grad w = (2, -1), norm sqrt 5
    expected = 3 * math.sqrt(2) / (math.sqrt(5) + 1e-4)
    assert adaptive_gan_weight(rec, g, w).item() == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- LPIPS
def _random_lpips_file(tmp_path, net, names="native"):
    """A random LPIPS (non-negative heads) saved in one key layout: native, lpips package or torchvision."""
    torch.manual_seed(0)
    model = LPIPS(net)
    for p in model.parameters():
        torch.nn.init.normal_(p, 0.0, 0.05)
        if p.dim() == 4 and p.shape[0] == 1:  # linear heads are non-negative in LPIPS
            p.data.abs_()
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    if names != "native":
        ends = model.feature_net.stage_ends
        renamed = {}
        for key, value in state.items():
            kind, idx, *rest = key.removeprefix("feature_net.").split(".")
            if kind == "weights":  # head l: [1, C_l, 1, 1]
                renamed[f"lin{idx}.model.1.weight" if names == "lpips" else f"lin{idx}.weight"] = value
            elif names == "lpips":  # stage k holds torchvision indices [ends[k-2], ends[k-1])
                k = 1 + sum(1 for e in ends if int(idx) >= e)
                renamed[f"net.slice{k}.{idx}.{rest[0]}"] = value
            else:
                renamed[f"features.{idx}.{rest[0]}"] = value
        state = renamed
        if names == "lpips":  # the package's input-scaling constants, ignored by the loader
            state["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    path = tmp_path / f"lpips_{net}_{names}.safetensors"
    save_file(state, str(path))
    return model, path


@pytest.mark.parametrize("net,names", [("alex", "native"), ("vgg", "lpips")])
def test_lpips_loads_and_matches_formula(tmp_path, net, names):
    model, path = _random_lpips_file(tmp_path, net, names)
    loaded = load_lpips(path)
    assert loaded.net_name == net and not any(p.requires_grad for p in loaded.parameters())
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    d = loaded(x, y)
    assert d.shape == (2,)
    assert torch.allclose(d, model(x, y), atol=1e-6)
    assert torch.allclose(loaded(x, x), torch.zeros(2), atol=1e-7)
    assert torch.allclose(d, loaded(y, x), atol=1e-6)  # symmetric
    # the formula by hand from the five stage features and the [1, C, 1, 1] heads
    fx, fy = loaded.features(x), loaded.features(y)
    assert [f.shape[1] for f in fx] == list(loaded.feature_net.channels)
    manual = torch.zeros(2)
    for k, (a, b) in enumerate(zip(fx, fy)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = loaded.weights[k].view(1, -1, 1, 1)
        manual += ((a - b) ** 2 * w).sum(1).mean(dim=(1, 2))
    assert torch.allclose(d, manual, atol=1e-6)
    with pytest.raises(ValueError, match="net='alex'"):
        load_lpips(path, net="alex" if net == "vgg" else "vgg")


def test_lpips_torchvision_names_and_errors(tmp_path):
    model, path = _random_lpips_file(tmp_path, "alex", names="torchvision")
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(load_lpips(path, net="alex")(x, y), model(x, y), atol=1e-6)
    broken = {k: v for k, v in model.state_dict().items() if k != "weights.4"}
    save_file({k: v.contiguous() for k, v in broken.items()}, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match="lin4"):
        load_lpips(tmp_path / "broken.safetensors")
    negative = {k: (-v if k == "weights.0" else v).contiguous() for k, v in model.state_dict().items()}
    save_file(negative, str(tmp_path / "negative.safetensors"))
    with pytest.raises(ValueError, match="non-negative"):
        load_lpips(tmp_path / "negative.safetensors")
    extra = dict(model.state_dict(), **{"head.bias": torch.zeros(1)})
    save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="head.bias"):
        load_lpips(tmp_path / "extra.safetensors")
    with pytest.raises(FileNotFoundError):
        load_lpips(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="LPIPS net"):
        LPIPS("resnet")
    with pytest.raises(ValueError, match="3, H, W"):
        model(x[:, :1], y[:, :1])


def test_lpips_is_one_implementation_shared_with_eval():
    from gaussiantoken.tokenizer import perceptual

    eval_perceptual = pytest.importorskip("gaussiantoken.eval.perceptual")
    for name in ("PerceptualDistance", "VGG16Features", "AlexNetFeatures", "LPIPS", "load_lpips"):
        assert getattr(eval_perceptual, name) is getattr(perceptual, name)
    assert LPIPS is perceptual.LPIPS and load_lpips is perceptual.load_lpips
    assert issubclass(LPIPS, perceptual.PerceptualDistance)


def test_patch_discriminator_shapes():
    d = PatchDiscriminator(channels=8, num_layers=2)
    assert d(torch.randn(2, 3, 16, 16)).shape == (2, 1, 2, 2) and d.output_size(16) == 2
    assert PatchDiscriminator(channels=8, num_layers=3).output_size(256) == 30  # pix2pix 70x70 PatchGAN
    with pytest.raises(ValueError, match="too small"):
        PatchDiscriminator(channels=8, num_layers=3)(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(norm="layer")


# ----------------------------------------------------------------------------- trainer helpers
def test_warmup_cosine_values():
    f = lambda s: warmup_cosine(s, warmup_steps=4, total_steps=14, min_ratio=0.1)  # noqa: E731
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    # a time budget: the cosine follows whichever of steps and clock is further along
    g = lambda s, tf: warmup_cosine(s, warmup_steps=4, total_steps=14, min_ratio=0.1, time_fraction=tf)  # noqa: E731
    assert g(2, 0.9) == pytest.approx(0.75)  # warm-up is by steps
    assert g(5, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert g(9, 0.2) == pytest.approx(f(9))  # the steps are further along
    assert g(5, 1.0) == pytest.approx(0.1) and g(5, 3.0) == pytest.approx(0.1)
    # a stable phase (warmup-stable-decay): the first 40% of the 10 steps after warm-up hold the peak, the cosine
    # runs over the other 6 steps and follows the clock the same way
    h = lambda s, tf=0.0: warmup_cosine(s, 4, 14, 0.1, time_fraction=tf, stable_fraction=0.4)  # noqa: E731
    assert [h(s) for s in range(9)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert h(11) == pytest.approx(0.1 + 0.9 * 0.5) and h(14) == pytest.approx(0.1)
    assert h(5, 0.7) == pytest.approx(0.1 + 0.9 * 0.5) and h(5, 0.3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="stable_fraction"):
        warmup_cosine(5, 4, 14, stable_fraction=1.0)


def test_model_ema_hand_values():
    model = torch.nn.BatchNorm1d(2)
    ema = ModelEMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(7.0)
    ema.update(model)  # 0.5 * 1 + 0.5 * 3 = 2; buffers copied
    assert torch.equal(ema.module.weight, torch.full((2,), 2.0))
    assert torch.equal(ema.module.running_mean, torch.full((2,), 7.0))
    assert not ema.module.weight.requires_grad
    warm = ModelEMA(model, decay=0.999)
    assert warm.current_decay() == pytest.approx(1 / 10)  # (1 + 0) / (10 + 0) before the first update
    with pytest.raises(ValueError, match="ema_decay"):
        ModelEMA(model, decay=1.5)


def test_data_order_is_a_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 2))
    assert not torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 1))
    full = batches_for(50, 4, 2, 0, seed=1, epoch=0) + batches_for(50, 4, 2, 1, seed=1, epoch=0)
    flat = [i for b in full for i in b]
    assert len(flat) == 48 and len(set(flat)) == 48  # 6 global batches of 8, disjoint across processes
    assert batches_for(50, 4, 2, 1, seed=1, epoch=0, start=2) == batches_for(50, 4, 2, 1, seed=1, epoch=0)[2:]


def test_rng_capture_restore_round_trip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    state = capture_rng()
    torch.save(state, tmp_path / "rng.pt")
    first = (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(3))
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    second = (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(3))
    assert first[:3] == second[:3] and torch.equal(first[3], second[3])
