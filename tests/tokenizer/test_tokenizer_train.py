"""The tokenizer trainer on a tiny config (16x16 Shapes, 8 Gaussians): exact resume, SIGTERM, atomic
checkpoints, config errors, the max_minutes stop, the final save_pretrained directory and sample grids."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gaussiantoken.tokenizer.train import (
    TokenizerRunConfig,
    load_config,
    main,
    read_losses,
    train,
)
from gaussiantoken.tokenizer.trainer_state import list_checkpoints

torch.set_num_threads(1)

TINY_MODEL = dict(
    image_size=16, encoder_channels=8, encoder_channel_mult=[1, 2], encoder_num_res_blocks=1,
    encoder_out_channels=16, num_feature_levels=2, hidden_size=16, num_heads=2, num_points=2, ffn_dim=32,
    num_encoder_layers=1, num_decoder_layers=1, num_gaussians=8, codebook_size=16, codebook_dim=4,
    kmeans_iters=2, position_bins=16, scale_bins=4, rotation_bins=4, scale_min=1.0 / 16.0,
    splat_channels=4, feature_mlp_hidden=16, render_size=16, decoder_channels=8, decoder_num_res_blocks=1,
)


def tiny_config(output_dir, **train_overrides) -> TokenizerRunConfig:
    data = {"name": "shapes", "num_samples": 24, "seed": 0, "image_size": 16}
    cfg = {
        "model": dict(TINY_MODEL),
        "data": data,
        "val_data": {"name": "shapes", "num_samples": 8, "seed": 5, "image_size": 16},
        "train": dict(output_dir=str(output_dir), batch_size=4, max_steps=6, learning_rate=1e-3, warmup_steps=2,
                      ema_decay=0.9, log_every=1, log_with="none", progress_bar=False, num_val_samples=8,
                      num_sample_images=4, seed=3),
        # GAN from step 2 so that resumes cross both the generator-only and the GAN phase
        "loss": dict(gan_weight=0.1, gan_start_step=2, lecam_weight=0.05, disc_channels=8, disc_layers=2),
    }
    cfg["train"].update(train_overrides)
    from gaussiantoken.runtime.config import from_dict

    return from_dict(TokenizerRunConfig, cfg)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    result = train(tiny_config(out, sample_every=3))
    return out, result


def _assert_same_history(a, b):
    for key in ("loss", "pixel", "quantization", "codebook_usage", "d_loss", "lecam"):
        la, lb = _gan_values(a, key), _gan_values(b, key)
        assert len(la) == len(lb) > 0 and la == pytest.approx(lb, abs=1e-6, rel=0), key


def _gan_values(out, key):
    lines = [json.loads(ln) for ln in (Path(out) / "logs" / "train.jsonl").read_text().splitlines()]
    return [r.get(key) for r in sorted(lines, key=lambda r: r["step"]) if key in r]


def _assert_same_final(a, b):
    wa = load_file(str(Path(a) / "final" / "model.safetensors"))
    wb = load_file(str(Path(b) / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6, rtol=0), k


def test_straight_run_outputs(straight_run):
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

    out, result = straight_run
    assert result.step == 6 and result.stop_reason == "max_steps"
    assert len(read_losses(out)) == 6 and len(_gan_values(out, "d_loss")) == 4  # GAN from step 2 (0-based)
    final = out / "final"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "train_config.yaml"):
        assert (final / name).is_file(), name
    model = GaussianTokenizer.from_pretrained(final)
    ema = load_file(str(list_checkpoints(out)[-1] / "ema.safetensors"))
    for k, v in model.state_dict().items():  # the final model IS the EMA of the last checkpoint
        assert torch.equal(v, ema[k]), k
    assert GaussianTokenizerImageProcessor.from_pretrained(final) is not None
    # samples: 3 rows (originals | reconstructions | Gaussians) x 4 columns of 16 px magnified 8x, pad 2
    import numpy as np
    from PIL import Image

    grid = np.asarray(Image.open(out / "samples" / "step-00000003.png"))
    assert grid.shape == (3 * 130 + 2, 4 * 130 + 2, 3)
    from gaussiantoken.data.shapes import make_dataset

    first = np.asarray(make_dataset(8, seed=5, image_size=16)[0]["image"].convert("RGB"))  # first val image
    assert np.array_equal(grid[2:130:8, 2:130:8], first)  # row 0, column 0: the original, magnified
    val = [json.loads(ln) for ln in (out / "logs" / "val.jsonl").read_text().splitlines()]
    assert val[-1]["step"] == 6 and val[-1]["val/psnr"] > 0 and 0 < val[-1]["val/codebook_usage"] <= 1


def test_resume_is_exact(straight_run, tmp_path):
    straight, _ = straight_run
    first = train(tiny_config(tmp_path, stop_at_step=3))
    assert first.stop_reason == "stop_at_step" and first.final_dir is None
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003"]
    with pytest.raises(ValueError, match="--resume"):  # resume: false never silently restarts over a checkpoint
        train(tiny_config(tmp_path, resume=False))
    assert TokenizerRunConfig().train.resume == "auto"  # the default, as in train-lm: a rerun continues
    second = train(tiny_config(tmp_path))
    assert second.step == 6 and second.stop_reason == "max_steps"
    _assert_same_history(straight, tmp_path)
    _assert_same_final(straight, tmp_path)


def test_sigterm_checkpoints_then_resumes(straight_run, tmp_path):
    straight, _ = straight_run

    def send_sigterm(step, metrics):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    stopped = train(tiny_config(tmp_path, checkpoint_every=1), step_callback=send_sigterm)
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert stopped.stop_reason == "signal" and stopped.step == 2 and stopped.final_dir is None
    assert list_checkpoints(tmp_path)[-1].name == "step-00000002"
    resumed = train(tiny_config(tmp_path, resume="auto"))
    assert resumed.step == 6
    _assert_same_history(straight, tmp_path)


def test_checkpoint_is_complete_or_absent(tmp_path, monkeypatch):
    import safetensors.torch as st

    real_save = st.save_model
    calls = {"n": 0}

    def flaky_save(model, filename, *a, **k):
        if filename.endswith("ema.safetensors"):
            calls["n"] += 1
            if calls["n"] == 2:  # die in the middle of the second checkpoint
                raise OSError("disk full")
        return real_save(model, filename, *a, **k)

    monkeypatch.setattr(st, "save_model", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        train(tiny_config(tmp_path, checkpoint_every=2))
    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in ckpts] == ["step-00000002"]
    assert sorted(p.name for p in ckpts[0].iterdir()) == sorted(
        ["model.safetensors", "ema.safetensors", "discriminator.safetensors", "lecam.safetensors", "state.pt",
         "train_config.yaml"])
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the torn temporary directory was removed
    monkeypatch.setattr(st, "save_model", real_save)
    resumed = train(tiny_config(tmp_path, max_steps=4), resume=True)  # the complete one resumes fine
    assert resumed.step == 4


def test_max_minutes_stops_with_final_save(tmp_path):
    result = train(tiny_config(tmp_path, max_steps=1000, max_minutes=1e-9))
    assert result.stop_reason == "max_minutes" and result.step == 1
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert list_checkpoints(tmp_path)[-1].name == "step-00000001"


class _FakeClock:
    """time.monotonic for the trainer: advances `tick` seconds after each training step."""

    def __init__(self, tick: float):
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        return self.now

    def step(self, step, metrics) -> None:
        self.now += self.tick


def test_time_budget_drives_the_schedule_and_resumes_the_clock(tmp_path, monkeypatch):
    """With train.max_minutes the cosine ends at min_lr_ratio when the budget does (not at max_steps),
    and a resumed run continues the clock it saved, so its schedule and stop match one run's."""
    from gaussiantoken.runtime.schedule import warmup_cosine

    import gaussiantoken.runtime.clock as clock_module

    settings = dict(max_steps=1000, max_minutes=1.0, warmup_steps=2, min_lr_ratio=0.1)
    clock = _FakeClock(tick=10.0)  # the clock reads 10 s after step 1, 60 s (the budget) after step 6
    monkeypatch.setattr(clock_module.time, "monotonic", clock)
    one = train(tiny_config(tmp_path / "one", **settings), step_callback=clock.step)
    assert one.stop_reason == "max_minutes" and one.step == 7  # 70 s > 60 s after step 7
    lrs = _gan_values(tmp_path / "one", "lr")  # after step s: the lr of step s + 1, from the clock after step s - 1
    want = [1e-3 * warmup_cosine(s, 2, 1000, 0.1, time_fraction=10.0 * (s - 1) / 60.0) for s in range(1, 8)]
    assert lrs == pytest.approx(want, rel=1e-6)
    assert lrs[6] == pytest.approx(1e-4) and lrs[3] > 2e-4  # at the budget's end the schedule is at its end
    state = torch.load(list_checkpoints(tmp_path / "one")[-1] / "state.pt", weights_only=True)
    assert state["elapsed_s"] == pytest.approx(70.0)

    clock.now = 1000.0
    part = train(tiny_config(tmp_path / "two", stop_at_step=3, **settings), step_callback=clock.step)
    assert part.stop_reason == "stop_at_step"
    clock.now = 5000.0  # a later process: its own clock starts anywhere, the saved 30 s carry over
    rest = train(tiny_config(tmp_path / "two", **settings), resume=True, step_callback=clock.step)
    assert rest.stop_reason == "max_minutes" and rest.step == 7
    _assert_same_history(tmp_path / "one", tmp_path / "two")
    assert _gan_values(tmp_path / "two", "lr") == pytest.approx(lrs, rel=1e-6)


def test_config_errors_are_clear(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batch_size: 4\n  learning_rate: 2e-4\n")
    cfg = load_config(path, ["model.image_size=16", "model.encoder_channel_mult=[1,2]"])
    assert cfg.train.learning_rate == pytest.approx(2e-4)  # YAML reads 2e-4 as a string: coerced
    with pytest.raises(ValueError, match="train.bacth_size"):
        load_config(path, ["train.bacth_size=3"])
    with pytest.raises(TypeError, match="train.batch_size"):
        load_config(path, ["train.batch_size=four"])
    with pytest.raises(TypeError, match="train.adam_betas"):
        load_config(path, ["train.adam_betas=0.5"])
    with pytest.raises(ValueError, match="model.num_gausians"):
        load_config(path, ["model.num_gausians=8"])
    with pytest.raises(ValueError, match="loss.lpips_weights"):
        load_config(path, ["loss.lpips_weight=1.0"])
    with pytest.raises(ValueError, match="train.resume"):
        load_config(path, ["train.resume=sometimes"])
    assert main([str(path), "train.max_steps=-1"]) == 2
    assert "train.max_steps" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["shapes", "cifar100", "mini_imagenet", "imagenet"])
def test_shipped_configs_parse(name):
    root = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"
    cfg = load_config(root / f"{name}.yaml", ["loss.lpips_weight=0"])
    assert cfg.data["name"] in ("shapes", "cifar100", "mini_imagenet", "imagenet")
    if name == "imagenet":
        assert cfg.train.adam_betas == [0.5, 0.9] and cfg.train.learning_rate == pytest.approx(2e-4)
        assert cfg.train.ema_decay == 0.999 and cfg.loss.gan_weight == 0.1 and cfg.loss.gan_start_epoch == 5
        assert cfg.loss.lecam_weight == 0.05 and cfg.loss.pixel == "l1"


@pytest.mark.slow
def test_cli_process_sigterm_then_resume(tmp_path):
    """The real command in a child process: SIGTERM mid-run -> checkpoint + exit 143; --resume finishes."""
    import subprocess
    import sys
    import time

    import yaml

    cfg = tiny_config(tmp_path / "run", max_steps=400, checkpoint_every=0)
    import dataclasses

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    proc = subprocess.Popen([sys.executable, "-m", "gaussiantoken.tokenizer.train", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = tmp_path / "run" / "logs" / "train.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    ckpt = list_checkpoints(tmp_path / "run")[-1]
    stopped_at = int(ckpt.name.split("-")[1])
    assert 2 <= stopped_at < 400 and not (tmp_path / "run" / "final").exists()
    assert main([str(path), "train.max_steps=" + str(stopped_at + 2), "--resume"]) == 0
    assert read_losses(tmp_path / "run")[-1] is not None and len(read_losses(tmp_path / "run")) == stopped_at + 2
