"""Reliability of both trainers and of the model loaders (issue #7 item 5).

- The tokenizer trainer SIGKILLed (real CLI child process) right after a checkpoint appears, then resumed
  with --resume, logs the same per-step losses as an uninterrupted run (to 1e-6).
- A process SIGKILLed inside `atomic_directory` leaves the previous checkpoint intact; the torn temporary is
  ignored by the checkpoint listing and removed by the next run, which resumes exactly.
- Truncated/corrupted files give a `CheckpointError` (a ValueError) naming the file: safetensors weights and
  config.json of a saved GaussianTokenizer and of a saved GaussianTokenForCausalLM, a tokenizer-trainer
  checkpoint met by --resume (exit status 1, the damaged and the previous checkpoint named), an LM
  trainer checkpoint met by resume.
- The LM trainer (HF Trainer + DeepSpeed ZeRO-2, CPU) SIGKILLed after its first checkpoint, with a torn
  later checkpoint left behind, resumes (train.resume: auto) to the same logged losses (to 1e-5, the
  tolerance of the LM resume test).
"""

import dataclasses
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from gaussiantoken.runtime.integrity import CheckpointError, check_pretrained_dir, check_safetensors_file, check_torch_file
from gaussiantoken.runtime.config import from_dict
from gaussiantoken.tokenizer.train import TokenizerRunConfig, main, read_losses, train
from gaussiantoken.tokenizer.trainer_state import list_checkpoints

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TOTAL_STEPS = 12  # every tokenizer run here follows the same 12-step schedule

# the trainer's own tiny test model (tests/tokenizer/test_tokenizer_train.py): 16x16 images, 8 Gaussians
TINY_MODEL = dict(
    image_size=16, encoder_channels=8, encoder_channel_mult=[1, 2], encoder_num_res_blocks=1,
    encoder_out_channels=16, num_feature_levels=2, hidden_size=16, num_heads=2, num_points=2, ffn_dim=32,
    num_encoder_layers=1, num_decoder_layers=1, num_gaussians=8, codebook_size=16, codebook_dim=4,
    kmeans_iters=2, position_bins=16, scale_bins=4, rotation_bins=4, scale_min=1.0 / 16.0,
    splat_channels=4, feature_mlp_hidden=16, render_size=16, decoder_channels=8, decoder_num_res_blocks=1,
)


def tiny_config(output_dir, **train_overrides) -> TokenizerRunConfig:
    cfg = {
        "model": dict(TINY_MODEL),
        "data": {"name": "shapes", "num_samples": 24, "seed": 0, "image_size": 16},
        "val_data": None,
        "train": dict(output_dir=str(output_dir), batch_size=4, max_steps=TOTAL_STEPS, learning_rate=1e-3,
                      warmup_steps=2, ema_decay=0.9, log_every=1, log_with="none", progress_bar=False,
                      num_sample_images=2, checkpoint_every=2, seed=3),
        # GAN from step 2: resumes restore the discriminator, LeCam averages and both optimizers too
        "loss": dict(gan_weight=0.1, gan_start_step=2, lecam_weight=0.05, disc_channels=8, disc_layers=2),
    }
    cfg["train"].update(train_overrides)
    return from_dict(TokenizerRunConfig, cfg)


def write_yaml(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    return path


def child_env(**extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)


def history(out, key="loss"):
    """Per-step values of `key` from OUTPUT/logs/train.jsonl (steps without it skipped), in step order."""
    lines = [json.loads(ln) for ln in (Path(out) / "logs" / "train.jsonl").read_text().splitlines()]
    return [r[key] for r in sorted(lines, key=lambda r: r["step"]) if key in r]


def assert_same_history(reference, out, tol=1e-6):
    assert history(out) == read_losses(out)
    for key in ("loss", "pixel", "quantization", "d_loss", "lecam"):
        a, b = history(reference, key), history(out, key)
        assert len(a) == len(b) > 0, key
        assert max(abs(x - y) for x, y in zip(a, b)) <= tol, (key, a, b)


@pytest.fixture(scope="module", autouse=True)
def one_thread_everywhere():
    """The in-process runs compute at one thread, as the child processes do (`child_env`): a run's start-up sets
    torch's thread count from OMP_NUM_THREADS, so a parent started with OMP_NUM_THREADS=2 would otherwise reduce
    its floats in another order than the children and the exact-resume comparisons differ by ~1e-6."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("MKL_NUM_THREADS", "1")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted 12-step run (in this process)."""
    out = tmp_path_factory.mktemp("reference")
    result = train(tiny_config(out))
    assert result.step == TOTAL_STEPS and len(history(out)) == TOTAL_STEPS
    return out


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    """A run stopped at step 4: checkpoints step-2 and step-4 (copy it before changing it)."""
    out = tmp_path_factory.mktemp("split")
    result = train(tiny_config(out, stop_at_step=4))
    assert result.stop_reason == "stop_at_step"
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002", "step-00000004"]
    return out


def copy_run(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


# ----------------------------------------------------------------------------- 1. SIGKILL + --resume
def test_tokenizer_sigkill_after_checkpoint_then_resume_is_exact(reference_run, tmp_path):
    out = tmp_path / "run"
    path = write_yaml(tiny_config(out), tmp_path / "tiny.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "gaussiantoken.tokenizer.train", str(path)], cwd=tmp_path,
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list_checkpoints(out) and proc.poll() is None:
            time.sleep(0.02)
        assert list_checkpoints(out), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no ckpt"
        proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: as if the node died
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    killed_at = int(list_checkpoints(out)[-1].name.split("-")[1])
    assert 2 <= killed_at < TOTAL_STEPS and not (out / "final").exists()
    assert len(history(out)) >= killed_at  # the log ran at least up to the checkpoint (maybe past it)
    assert main([str(path), "--resume"]) == 0  # the real CLI entry, with --resume
    assert len(history(out)) == TOTAL_STEPS
    assert_same_history(reference_run, out, tol=1e-6)
    assert (out / "final" / "model.safetensors").is_file()


def test_resume_drops_a_log_line_torn_by_the_kill(reference_run, split_run, tmp_path):
    out = copy_run(split_run, tmp_path / "run")
    log = out / "logs" / "train.jsonl"
    with open(log, "a") as fh:  # a SIGKILL while appending step 5's line
        fh.write('{"step": 5, "loss": 0.12')
    assert train(tiny_config(out), resume=True).step == TOTAL_STEPS
    assert_same_history(reference_run, out)


# ----------------------------------------------------------------------------- 2. kill during a checkpoint write
KILLED_WRITER = r"""
import shutil, sys, time
from pathlib import Path
from gaussiantoken.runtime.files import atomic_directory
src, final = Path(sys.argv[1]), Path(sys.argv[2])
with atomic_directory(final) as tmp:
    shutil.copy(src / "model.safetensors", tmp / "model.safetensors")
    data = (src / "ema.safetensors").read_bytes()
    (tmp / "ema.safetensors").write_bytes(data[: len(data) // 2])  # half written
    print("writing", flush=True)
    time.sleep(120)
"""


def _kill_inside_atomic_directory(src: Path, final: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(src), str(final)], env=child_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_kill_during_checkpoint_write_keeps_previous_and_resume_cleans(reference_run, split_run, tmp_path):
    out = copy_run(split_run, tmp_path / "run")
    ckpts = out / "checkpoints"
    before = {p.name: p.read_bytes() for p in (ckpts / "step-00000004").iterdir()}
    # a writer of a new checkpoint (step 5: never written by this schedule) and one replacing step-4 in place
    _kill_inside_atomic_directory(ckpts / "step-00000004", ckpts / "step-00000005")
    _kill_inside_atomic_directory(ckpts / "step-00000004", ckpts / "step-00000004")
    leftovers = sorted(p.name for p in ckpts.iterdir() if p.name.startswith("."))
    assert len(leftovers) == 2 and all(".tmp-" in n for n in leftovers), leftovers
    # the listing ignores the torn temporaries; step-4 is byte-identical and loads
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002", "step-00000004"]
    assert {p.name: p.read_bytes() for p in (ckpts / "step-00000004").iterdir()} == before
    for name in ("model.safetensors", "ema.safetensors", "discriminator.safetensors", "lecam.safetensors"):
        check_safetensors_file(ckpts / "step-00000004" / name)
    check_torch_file(ckpts / "step-00000004" / "state.pt")
    # resume: from step 4, the temporaries are removed at start, the result equals the uninterrupted run
    seen = []
    result = train(tiny_config(out), resume=True,
                   step_callback=lambda step, m: seen.append(sorted(p.name for p in ckpts.glob(".*"))))
    assert result.step == TOTAL_STEPS and seen[0] == []
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]
    assert_same_history(reference_run, out)


def test_kill_between_the_renames_restores_the_old_version(split_run, tmp_path):
    """atomic_directory replacing a dir: killed after moving the old one aside, before the new one lands."""
    out = copy_run(split_run, tmp_path / "run")
    ckpts = out / "checkpoints"
    os.replace(ckpts / "step-00000004", ckpts / ".step-00000004.old-12345")
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002"]
    from gaussiantoken.tokenizer.trainer_state import clean_checkpoint_temporaries

    clean_checkpoint_temporaries(out)
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002", "step-00000004"]
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- 3. corrupted files
def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    data[8 : 8 + min(n, 40)] = b"#" * min(n, 40)  # the JSON header no longer parses
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def saved_tokenizer(tmp_path_factory):
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig

    torch.manual_seed(0)
    model = GaussianTokenizer(GaussianTokenizerConfig(**TINY_MODEL)).eval()
    path = tmp_path_factory.mktemp("tokenizer") / "tok"
    model.save_pretrained(path)
    return path


def test_safetensors_check_on_intact_and_damaged_files(saved_tokenizer, tmp_path):
    from safetensors.torch import load_file

    weights = saved_tokenizer / "model.safetensors"
    header = check_safetensors_file(weights)
    assert set(header) - {"__metadata__"} == set(load_file(str(weights)))  # intact: same tensors as the library
    bad = tmp_path / "model.safetensors"
    for damage, words in ((lambda p: _truncate(p, 0.9), "truncated"), (lambda p: _truncate(p, 0.0005), "header"),
                          (_garble_header, "JSON header"), (lambda p: p.write_bytes(p.read_bytes() + b"xx"),
                                                            "unexpected bytes")):
        shutil.copy(weights, bad)
        damage(bad)
        with pytest.raises(CheckpointError, match="truncated or corrupted") as err:
            check_safetensors_file(bad)
        assert str(bad) in str(err.value) and words in str(err.value)
    with pytest.raises(CheckpointError, match="missing"):
        check_safetensors_file(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_tokenizer_from_pretrained_names_damaged_weights(saved_tokenizer, tmp_path, damage):
    from gaussiantoken.tokenizer import GaussianTokenizer

    path = shutil.copytree(saved_tokenizer, tmp_path / "tok")
    (_truncate if damage == "truncate" else _garble_header)(path / "model.safetensors")
    with pytest.raises(ValueError, match="truncated or corrupted") as err:
        GaussianTokenizer.from_pretrained(path)
    assert str(path / "model.safetensors") in str(err.value)


def test_tokenizer_from_pretrained_names_malformed_config(saved_tokenizer, tmp_path):
    from gaussiantoken.tokenizer import GaussianTokenizer

    path = shutil.copytree(saved_tokenizer, tmp_path / "tok")
    text = (path / "config.json").read_text()
    (path / "config.json").write_text(text[: len(text) // 2])  # cut mid-object
    with pytest.raises(ValueError, match="malformed JSON") as err:
        GaussianTokenizer.from_pretrained(path)
    assert str(path / "config.json") in str(err.value)


def _corrupt_state(ckpt: Path) -> None:
    _truncate(ckpt / "state.pt", 0.6)


def test_resume_from_corrupted_checkpoint_is_a_clear_error(reference_run, split_run, tmp_path, capsys):
    """Policy: no silent fallback. --resume exits 1 naming the damaged checkpoint, its file and the previous
    checkpoint; after moving the damaged one aside, the resume from the previous one is exact."""
    out = copy_run(split_run, tmp_path / "run")
    path = write_yaml(tiny_config(out), tmp_path / "tiny.yaml")
    ckpts = out / "checkpoints"
    _corrupt_state(ckpts / "step-00000004")
    assert main([str(path), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "checkpoint error" in err and str(ckpts / "step-00000004" / "state.pt") in err
    assert "truncated or corrupted" in err and str(ckpts / "step-00000002") in err
    assert "Traceback" not in err
    # a corrupted weights file is caught too (the in-process API raises CheckpointError, a ValueError)
    shutil.copy(ckpts / "step-00000002" / "state.pt", ckpts / "step-00000004" / "state.pt")
    _garble_header(ckpts / "step-00000004" / "ema.safetensors")
    with pytest.raises(ValueError, match="ema.safetensors is truncated or corrupted"):
        train(tiny_config(out), resume=True)
    assert len(history(out)) == 4  # nothing was trained or logged by the refused resumes
    shutil.move(ckpts / "step-00000004", tmp_path / "damaged-step-4")
    assert main([str(path), "--resume"]) == 0
    assert_same_history(reference_run, out)


# ----------------------------------------------------------------------------- LM fixtures
TOKENIZER_KWARGS = dict(  # the LM tests' tiny image tokenizer: 4 Gaussians -> 12 tokens per image
    image_size=16, encoder_channels=8, encoder_channel_mult=[1, 2], hidden_size=32, num_heads=4, ffn_dim=32,
    num_decoder_layers=1, num_gaussians=4, codebook_size=16, position_bins=8, scale_bins=4, rotation_bins=4,
    splat_channels=8, feature_mlp_hidden=16, decoder_channels=8, decoder_num_res_blocks=1,
)


@pytest.fixture(scope="module")
def lm_parts(tmp_path_factory):
    """(image tokenizer dir, text tokenizer dir, extract-codes dir) for a tiny LM."""
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.lm.extract import extract_codes
    from gaussiantoken.lm.text_tokenizer import default_corpus, train_text_tokenizer
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig, GaussianTokenizerImageProcessor

    root = tmp_path_factory.mktemp("lm_parts")
    torch.manual_seed(0)
    GaussianTokenizer(GaussianTokenizerConfig(**TOKENIZER_KWARGS)).eval().save_pretrained(root / "image_tokenizer")
    GaussianTokenizerImageProcessor(image_size=16).save_pretrained(root / "image_tokenizer")
    train_text_tokenizer(default_corpus(200, seed=1, image_size=16), vocab_size=320, out_dir=root / "text_tokenizer")
    extract_codes(root / "image_tokenizer", make_dataset(24, seed=3, image_size=16), root / "codes", batch_size=8,
                  shard_size=10, progress=False)
    return root / "image_tokenizer", root / "text_tokenizer", root / "codes"


@pytest.fixture(scope="module")
def saved_lm(lm_parts, tmp_path_factory):
    from transformers import AutoTokenizer

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    image_dir, text_dir, _ = lm_parts
    torch.manual_seed(0)
    model = GaussianTokenForCausalLM.from_parts(AutoTokenizer.from_pretrained(text_dir), image_dir, text_config=dict(
        model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False))
    path = tmp_path_factory.mktemp("lm") / "lm"
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_lm_from_pretrained_names_damaged_weights(saved_lm, tmp_path, damage):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    assert check_pretrained_dir(saved_lm)["model_type"] == "gaussiantoken_lm"  # the intact dir passes
    path = shutil.copytree(saved_lm, tmp_path / "lm")
    (_truncate if damage == "truncate" else _garble_header)(path / "model.safetensors")
    with pytest.raises(ValueError, match="truncated or corrupted") as err:
        GaussianTokenForCausalLM.from_pretrained(path)
    assert str(path / "model.safetensors") in str(err.value)


def test_lm_from_pretrained_names_malformed_config(saved_lm, tmp_path):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    path = shutil.copytree(saved_lm, tmp_path / "lm")
    (path / "config.json").write_text('{"model_type": "gaussiantoken_lm", ')
    with pytest.raises(ValueError, match="malformed JSON") as err:
        GaussianTokenForCausalLM.from_pretrained(path)
    assert str(path / "config.json") in str(err.value)


# ----------------------------------------------------------------------------- 4. LM trainer SIGKILL + resume
LM_CONFIG = REPO / "configs" / "lm" / "shapes.yaml"
LM_STEPS, LM_SAVE = 12, 3


def lm_overrides(parts, out) -> list[str]:
    image_dir, text_dir, codes = parts
    items = {
        "model.tokenizer": image_dir, "data.codes": codes, "model.text_tokenizer": text_dir,
        "model.text_config.hidden_size": 64, "model.text_config.intermediate_size": 128,
        "model.text_config.num_hidden_layers": 2, "model.text_config.max_position_embeddings": 128,
        "train.per_device_batch_size": 4, "train.max_steps": LM_STEPS, "train.logging_steps": 1,
        "train.warmup_steps": 0, "train.save_steps": LM_SAVE, "train.save_total_limit": 10, "train.report_to": "[]",
        "train.max_minutes": "null", "train.output_dir": out, "data.max_length": "null",
    }
    return [f"{k}={v}" for k, v in items.items()]


def _lm_losses(log_history):
    return [h["loss"] for h in log_history if "loss" in h]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lm_trainer_sigkill_then_resume_auto_is_exact(lm_parts, tmp_path):
    from gaussiantoken.lm.train import LMRunConfig, resolve_resume
    from gaussiantoken.runtime.config import load_run_config

    def cfg(out):
        return load_run_config(LMRunConfig, LM_CONFIG, lm_overrides(lm_parts, out))

    def run_child(run_out):  # each run in its own process: a fresh torch.distributed/DeepSpeed state
        env = child_env(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=str(_free_port()))
        return subprocess.run([sys.executable, "-m", "gaussiantoken.lm.train", str(LM_CONFIG),
                               *lm_overrides(lm_parts, run_out)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    def logged_losses(run_out):
        state = json.loads((run_out / f"checkpoint-{LM_STEPS}" / "trainer_state.json").read_text())
        return _lm_losses(state["log_history"])

    done = run_child(tmp_path / "reference")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "run"
    env = child_env(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    proc = subprocess.Popen([sys.executable, "-m", "gaussiantoken.lm.train", str(LM_CONFIG),
                             *lm_overrides(lm_parts, out)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    first = out / f"checkpoint-{LM_SAVE}" / "trainer_state.json"  # the Trainer writes it last
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not first.is_file() and proc.poll() is None:
            time.sleep(0.02)
        assert first.is_file(), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no ckpt"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert not (out / "final").exists()
    complete = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")
                      if (p / "trainer_state.json").is_file())
    assert complete and complete[-1] < LM_STEPS
    # a checkpoint torn by the kill (the Trainer saves in place): weights half written, no trainer_state.json
    torn = out / f"checkpoint-{complete[-1] + LM_SAVE}"
    if not torn.exists():
        torn.mkdir()
        data = (out / f"checkpoint-{complete[-1]}" / "model.safetensors").read_bytes()
        (torn / "model.safetensors").write_bytes(data[: len(data) // 3])
    assert not (torn / "trainer_state.json").exists()
    with pytest.warns(RuntimeWarning, match="incomplete checkpoint"):
        assert resolve_resume(cfg(out)) == str(out / f"checkpoint-{complete[-1]}")
    # a damaged complete checkpoint is refused by name (checked on a copy)
    damaged = shutil.copytree(out, tmp_path / "damaged")
    shards = sorted((damaged / f"checkpoint-{complete[-1]}").glob("global_step*/*optim_states.pt"))
    assert shards
    _truncate(shards[0], 0.5)
    with pytest.raises(CheckpointError, match="optim_states.pt is truncated or corrupted") as err, \
            pytest.warns(RuntimeWarning, match="incomplete checkpoint"):
        resolve_resume(cfg(damaged))
    assert f"checkpoint-{complete[-1]}" in str(err.value)
    # resume (train.resume: auto, the default): same logged losses as the uninterrupted run
    resumed = run_child(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "incomplete checkpoint" in resumed.stderr
    a, b = logged_losses(tmp_path / "reference"), logged_losses(out)
    assert len(a) == len(b) == LM_STEPS
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    assert (torn / "trainer_state.json").is_file()  # the torn checkpoint was rewritten by the resumed run
    assert (out / "final" / "model.safetensors").is_file()
