"""The tokenizer trainer's parts on their own, without a run (issue 15 item 2): one generator + discriminator
step on a tiny model, the loop state and its checkpoint / stop rules, the evaluation hooks, and the one PSNR."""

import json
import sys
from pathlib import Path

import pytest
import torch

from gaussiantoken.runtime.process_state import restored_process_state
from gaussiantoken.tokenizer.train_config import LossSettings, TrainSettings, model_config
from gaussiantoken.tokenizer.train_loop import LoopState, checkpoint_due, stop_reason

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_tokenizer_train import TINY_MODEL  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture()
def accelerator():
    from accelerate import Accelerator

    with restored_process_state():  # leaves no accelerate state behind for later tests
        yield Accelerator(cpu=True)


def tiny_images(n=4, seed=0):
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

    ds = make_dataset(n, seed=seed, image_size=16)
    return GaussianTokenizerImageProcessor(image_size=16)(images=list(ds["image"]), return_tensors="pt")["pixel_values"]


def tiny_parts(gan: bool):
    from gaussiantoken.tokenizer.discriminator import PatchDiscriminator
    from gaussiantoken.tokenizer.losses import LeCam
    from gaussiantoken.tokenizer.model_types import model_class_for
    from gaussiantoken.tokenizer.trainer_state import ModelEMA

    torch.manual_seed(0)
    arch = model_config(dict(TINY_MODEL))
    model = model_class_for(arch)(arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    parts = dict(model=model, opt=opt, sched=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
                 ema=ModelEMA(model, 0.9))
    if gan:
        disc = PatchDiscriminator(3, 8, 2, "group")
        d_opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
        parts.update(disc=disc, d_opt=d_opt, d_sched=torch.optim.lr_scheduler.LambdaLR(d_opt, lambda s: 1.0),
                     lecam=LeCam(0.999))
    return parts


def _changed(module, before):
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_generator_and_discriminator_steps(accelerator):
    from gaussiantoken.tokenizer.train_step import TokenizerStep

    p = tiny_parts(gan=True)
    step = TokenizerStep(accelerator, p["model"], p["opt"], p["sched"], p["ema"], LossSettings(gan_weight=0.1),
                         grad_clip=1.0, disc=p["disc"], d_opt=p["d_opt"], d_sched=p["d_sched"], lecam=p["lecam"])
    x = tiny_images()  # [4, 3, 16, 16]
    model0, disc0, ema0 = _snapshot(p["model"]), _snapshot(p["disc"]), _snapshot(p["ema"].module)

    o, loss, metrics = step(x, gan_on=False)  # before gan_start: the generator alone
    assert list(metrics) == ["pixel", "grad_norm"] and o.reconstruction.shape == x.shape
    assert loss.item() == pytest.approx(metrics["pixel"] + o.quantization_loss.item(), rel=1e-6)
    assert _changed(p["model"], model0) and _changed(p["ema"].module, ema0) and p["ema"].num_updates == 1
    assert not _changed(p["disc"], disc0)

    o, loss, metrics = step.generator(x, gan_on=True)  # the GAN term: no gradient reaches the discriminator
    assert list(metrics) == ["pixel", "g_loss", "gan_weight", "grad_norm"] and metrics["gan_weight"] == 0.1
    assert loss.item() == pytest.approx(metrics["pixel"] + o.quantization_loss.item() + 0.1 * metrics["g_loss"],
                                        rel=1e-5)
    assert all(q.grad is None for q in p["disc"].parameters()) and not _changed(p["disc"], disc0)
    assert all(q.requires_grad for q in p["disc"].parameters())  # switched back on
    d_metrics = step.discriminator(x, o.reconstruction)
    assert list(d_metrics) == ["d_loss", "lecam", "logits_real", "logits_fake"] and _changed(p["disc"], disc0)
    assert p["lecam"].state_dict()  # the LeCam averages moved too


def test_adaptive_gan_weight_and_lpips_terms(accelerator):
    from gaussiantoken.tokenizer.train_step import TokenizerStep, last_layer

    p = tiny_parts(gan=True)
    lpips = lambda a, b: (a - b).abs().mean(dim=(1, 2, 3))  # noqa: E731  (a stand-in perceptual distance [B])
    step = TokenizerStep(accelerator, p["model"], p["opt"], p["sched"], p["ema"],
                         LossSettings(gan_weight=0.1, adaptive_gan_weight=True, lpips_weight=0.5), grad_clip=0.0,
                         lpips=lpips, disc=p["disc"], d_opt=p["d_opt"], d_sched=p["d_sched"], lecam=p["lecam"])
    o, loss, metrics = step(tiny_images(), gan_on=True)
    assert "grad_norm" not in metrics  # grad_clip <= 0: no clipping
    assert list(metrics)[:4] == ["pixel", "lpips", "g_loss", "gan_weight"] and metrics["gan_weight"] != 0.1
    assert last_layer(p["model"]).dim() == 4


def test_loop_state_advances_epochs():
    s = LoopState(steps_per_epoch=3)
    for _ in range(7):
        s.advance()
    assert (s.step, s.epoch, s.position) == (7, 2, 1)
    s.checkpointed(12.5)
    assert s.has_checkpoint and s.checkpoint_at == 12.5


def test_checkpoint_and_stop_rules():
    t = TrainSettings(max_steps=100, checkpoint_every=10, checkpoint_minutes=1.0, stop_at_step=40)
    s = LoopState(steps_per_epoch=5, step=20)
    assert checkpoint_due(s, 0.0, t, None)  # every 10 steps
    s.step = 21
    assert not checkpoint_due(s, 0.0, t, None)  # no checkpoint yet, but not halfway either
    s.checkpointed(0.0)
    assert not checkpoint_due(s, 59.0, t, None) and checkpoint_due(s, 60.0, t, None)  # every minute
    fresh = LoopState(steps_per_epoch=5, step=50)  # halfway by steps, no checkpoint yet
    assert checkpoint_due(fresh, 0.0, TrainSettings(max_steps=100, checkpoint_minutes=None), None)
    fresh.step = 3  # halfway by the budget's clock
    assert checkpoint_due(fresh, 31.0, TrainSettings(max_steps=100, checkpoint_minutes=None), 60.0)
    assert not checkpoint_due(fresh, 29.0, TrainSettings(max_steps=100, checkpoint_minutes=None), 60.0)

    assert stop_reason(True, 0.0, None, t, 5) == "signal"
    assert stop_reason(False, 61.0, 60.0, t, 5) == "max_minutes"
    assert stop_reason(False, 60.0, 60.0, t, 5) == "max_steps"  # the budget is spent only past it
    assert stop_reason(False, 0.0, None, t, 40) == "stop_at_step"
    assert stop_reason(False, 0.0, None, TrainSettings(max_steps=40, stop_at_step=40), 40) == "max_steps"


def test_eval_hooks_validate_and_samples(accelerator, tmp_path):
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor
    from gaussiantoken.tokenizer.previews import psnr_per_image
    from gaussiantoken.tokenizer.train_data import ImageSet
    from gaussiantoken.tokenizer.train_hooks import EvalHooks, JsonLog

    p = tiny_parts(gan=False)
    processor = GaussianTokenizerImageProcessor(image_size=16)
    val = ImageSet(make_dataset(6, seed=5, image_size=16), processor, "image", False, 0)
    log = JsonLog(tmp_path / "logs" / "val.jsonl", True)
    ema = p["ema"].module
    hooks = EvalHooks(accelerator, ema, ema.vocab_size, tmp_path, val, val, batch_size=4, num_sample_images=3,
                      log=log)
    rng = torch.get_rng_state()
    metrics = hooks.validate(step=7)
    assert torch.equal(torch.get_rng_state(), rng)  # the training run's random stream is untouched
    x = val.batch(range(6))
    with torch.no_grad():
        o = ema(pixel_values=x)
    assert metrics["val/psnr"] == pytest.approx(float(psnr_per_image(o.reconstruction, x).mean()), abs=1e-9)
    assert 0 < metrics["val/codebook_usage"] <= 1 and metrics["val/vocab_usage"] == pytest.approx(
        o.ids.unique().numel() / ema.vocab_size)
    assert json.loads((tmp_path / "logs" / "val.jsonl").read_text()) == {"step": 7, **metrics}
    hooks.write_samples(step=7)
    from PIL import Image

    assert Image.open(tmp_path / "samples" / "step-00000007.png").size == (3 * 130 + 2, 3 * 130 + 2)
    log.write({"step": 9, "x": 1})
    with open(log.path, "a") as fh:
        fh.write('{"step": 10, "x"')  # torn by a kill
    log.truncate_after(8)
    assert [json.loads(ln)["step"] for ln in log.path.read_text().splitlines()] == [7]


def test_one_psnr_for_trainer_and_eval():
    from gaussiantoken.eval.image_metrics import psnr_per_image as eval_psnr
    from gaussiantoken.tokenizer.previews import psnr_per_image

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    assert torch.allclose(psnr_per_image(a, b), eval_psnr(a, b), rtol=0, atol=1e-12)
    assert torch.isfinite(psnr_per_image(a, a)).all()
    with pytest.raises(ValueError, match="equal shape"):
        psnr_per_image(a, b[:2])
