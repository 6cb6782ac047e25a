"""train-lm (HF Trainer + DeepSpeed ZeRO-2 on CPU): resume == uninterrupted, final dir loads, bad input fails
before any step, model.init_from continues a saved model (and refuses another), train.trainable trains only the
named parameters, and (slow) 2 processes == 1 process at the same global batch."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gaussiantoken.lm.train import LMRunConfig, check_config, train
from gaussiantoken.runtime.config import load_run_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"


def overrides(image_tokenizer_dir, codes_dir, text_tokenizer_dir, out, **extra):
    items = {
        "model.tokenizer": image_tokenizer_dir, "data.codes": codes_dir, "model.text_tokenizer": text_tokenizer_dir,
        "model.text_config.hidden_size": 64, "model.text_config.intermediate_size": 128,
        "model.text_config.num_hidden_layers": 2, "model.text_config.max_position_embeddings": 128,
        "train.per_device_batch_size": 4, "train.max_steps": 6, "train.logging_steps": 1, "train.warmup_steps": 0,
        "train.save_steps": 3, "train.report_to": "[]", "train.max_minutes": "null", "train.output_dir": out,
        "data.max_length": "null",
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def losses(history):
    return [h["loss"] for h in history if "loss" in h]


def test_resume_reproduces_uninterrupted_run(image_tokenizer_dir, codes_dir, text_tokenizer_dir, tmp_path):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.processing import GaussianTokenProcessor
    from gaussiantoken.tokenizer import GaussianTokenizer

    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    full = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "a")))
    first = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "b", **{"train.stop_at_step": 3})))
    assert first.stopped_early and first.global_step == 3
    resumed = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "b")))
    a, b = losses(full.log_history), losses(resumed.log_history)
    assert len(a) == 6 and len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    assert losses(first.log_history) == b[:3]
    # the final directory: model + processor load; the image tokenizer's weights are the original's, bit-exact
    model = GaussianTokenForCausalLM.from_pretrained(full.final_dir)
    proc = GaussianTokenProcessor.from_pretrained(full.final_dir)
    assert proc.image_token_offset == model.config.image_token_offset
    original = GaussianTokenizer.from_pretrained(image_tokenizer_dir).state_dict()
    assert all(torch.equal(v, original[k]) for k, v in model.image_tokenizer.state_dict().items())
    assert (full.final_dir / "train_config.yaml").is_file()


def test_bad_input_fails_before_training(image_tokenizer_dir, codes_dir, text_tokenizer_dir, tmp_path):
    import datasets

    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    missing_ds = overrides(*args, tmp_path / "c", **{"train.deepspeed": tmp_path / "nope.json"})
    with pytest.raises(FileNotFoundError, match="train.deepspeed"):
        check_config(load_run_config(LMRunConfig, CONFIG, missing_ds))
    with pytest.raises(ValueError, match="unknown task"):
        train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "d", **{"data.ratios": "{t2i: 1}"})))
    # a dataset without the needed columns
    no_vqa = tmp_path / "codes_no_vqa"
    datasets.load_from_disk(str(codes_dir / "merged")).remove_columns(["questions", "answers"]).save_to_disk(str(no_vqa))
    with pytest.raises(ValueError, match="questions"):
        train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "e", **{"data.codes": no_vqa})))
    # codes extracted by another tokenizer (vocabulary mismatch)
    other = tmp_path / "codes_other"
    shutil.copytree(codes_dir, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["vocab_size"] += 8
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "f", **{"data.codes": other})))
    # sequences longer than the context
    with pytest.raises(ValueError, match="context"):
        train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "g", **{"model.text_config.max_position_embeddings": 20})))
    assert not (tmp_path / "g" / "checkpoint-1").exists()


def _launch(world, batch, out, args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "gaussiantoken.lm.train", str(CONFIG),
               *overrides(*args, out, **{"train.per_device_batch_size": batch, "train.max_steps": 4, "train.save_steps": 4})]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs[0][-4000:]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    return losses(state["log_history"])


@pytest.mark.slow
def test_two_process_zero2_matches_one_process(image_tokenizer_dir, codes_dir, text_tokenizer_dir, tmp_path):
    """Global batch 8: one process x 8 vs two gloo processes x 4 under ZeRO-2; losses agree to 1e-5 over 4 steps.
    Measured about 45 s (1 process) + 95 s (2 processes) on a loaded 2-core machine."""
    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    one = _launch(1, 8, tmp_path / "one", args)
    two = _launch(2, 4, tmp_path / "two", args)
    assert len(one) == len(two) == 4
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-5, (one, two)


def test_clock_schedule_follows_the_budget_and_resumes_its_clock(image_tokenizer_dir, codes_dir, text_tokenizer_dir,
                                                                 tmp_path):
    """Under train.max_minutes the cosine follows the clock saved in scheduler.pt: a run resumed with 30 of its 60
    minutes spent trains at half the peak lr at step 5 of 1000 (a step schedule would give ~1.0), one resumed
    with all 60 spent trains one step and stops with its lr annealed to 0."""
    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    budget = {"train.max_minutes": 60, "train.max_steps": 1000, "train.learning_rate": 1e-3}
    first = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "a", **budget,
                                                                  **{"train.stop_at_step": 3})))
    assert first.global_step == 3
    ckpt = tmp_path / "a" / "checkpoint-3"
    state = torch.load(ckpt / "scheduler.pt", weights_only=True)
    assert 0.0 < state["elapsed_s"] < 600.0  # this run's seconds, saved with the checkpoint
    lrs = [h["learning_rate"] for h in first.log_history if "learning_rate" in h]
    assert min(lrs) > 0.99e-3  # 3 of 1000 steps and a few seconds of 60 min: the peak

    for spent_min in (30.0, 60.0):
        out = tmp_path / f"spent{spent_min}"
        shutil.copytree(tmp_path / "a", out)
        torch.save(dict(state, elapsed_s=60.0 * spent_min), out / "checkpoint-3" / "scheduler.pt")
        stop = {} if spent_min >= 60 else {"train.stop_at_step": 5}
        resumed = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, out, **budget, **stop)))
        logged = {h["step"]: h["learning_rate"] for h in resumed.log_history if "learning_rate" in h}
        # step 4 trains at the lr saved with checkpoint 3 (what the uninterrupted run would use)
        assert logged[4] > 0.99e-3, logged
        if spent_min < 60:
            assert 0.49e-3 <= logged[5] <= 0.5e-3, logged  # step 5 follows the clock, 30 of 60 min: half the peak
        else:
            assert resumed.stopped_early and resumed.global_step == 4  # the budget was spent: one step, then stop
            saved = torch.load(out / "checkpoint-4" / "scheduler.pt", weights_only=True)
            assert saved["elapsed_s"] > 3600.0 and saved["last_epoch"] == 4
            assert saved["_last_lr"][0] < 1e-9  # annealed: the next step (if resumed) would not move


def test_stable_fraction_holds_the_peak_then_anneals(image_tokenizer_dir, codes_dir, text_tokenizer_dir, tmp_path):
    """train.lr_stable_fraction=0.5 over 6 steps (no warm-up, no budget): the steps of the first half train at the
    peak rate, the rest follow a cosine over the second half (warmup-stable-decay); a plain cosine decays from
    the second step. The logged rate of step s is the one its update used (the schedule after s - 1 steps)."""
    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    peak = {"train.learning_rate": 1e-3, "train.save_steps": 100, "train.stop_at_step": 6}

    def logged(**extra):
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        result = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, out, **peak, **extra)))
        return [h["learning_rate"] / 1e-3 for h in result.log_history if "learning_rate" in h]

    assert logged(**{"train.lr_stable_fraction": 0.5}) == pytest.approx([1, 1, 1, 1, 0.75, 0.25])
    assert logged() == pytest.approx([1, 0.5 * (1 + math.cos(math.pi / 6)), 0.75, 0.5, 0.25,
                                      0.5 * (1 + math.cos(5 * math.pi / 6))])
    with pytest.raises(ValueError, match="lr_scheduler=cosine"):
        check_config(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "x", **{
            "train.lr_stable_fraction": 0.5, "train.lr_scheduler": "linear"})))


def test_clock_schedule_state_round_trip():
    from gaussiantoken.lm.schedule import ClockCosineLR

    def make(warmup=2, total=10):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
        return opt, ClockCosineLR(opt, warmup, total, budget_s=100.0)

    opt, sched = make()
    assert sched.get_last_lr() == [0.5]  # warm-up step 1 of 2
    for _ in range(2):
        opt.step(); sched.step()
    assert sched.get_last_lr() == [1.0]
    sched.elapsed_s = 50.0
    opt.step(); sched.step()  # step 3 of 10 is 1/8 of the decay, the clock 1/2: the clock wins
    assert abs(sched.get_last_lr()[0] - 0.5) < 1e-12
    # a resumed scheduler takes steps, lrs and the clock from the state, and its shape from its own config
    opt2, resumed = make(warmup=2, total=1000)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.last_epoch == 3 and resumed.elapsed_s == 50.0 and resumed.total_steps == 1000
    assert opt2.param_groups[0]["lr"] == sched.get_last_lr()[0]
    # the state of a plain step schedule (a run started without a budget) resumes with the clock at 0
    opt3, plain = make()
    lam = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), lambda s: 1.0)
    plain.load_state_dict(lam.state_dict())
    assert plain.elapsed_s == 0.0
    # and the reverse: HF's step schedule (LambdaLR) resumes from a clock schedule's state
    lam.load_state_dict(sched.state_dict())
    assert lam.last_epoch == 3
    with pytest.raises(ValueError, match="lacks"):
        plain.load_state_dict({"elapsed_s": 1.0})
    with pytest.raises(ValueError, match="budget"):
        ClockCosineLR(opt3, 0, 10, budget_s=0)


def test_sigterm_saves_a_checkpoint_and_exits_143(image_tokenizer_dir, codes_dir, text_tokenizer_dir, tmp_path):
    """The real command in a child process: SIGTERM mid-run -> a checkpoint at that step, no final model, exit
    status 143 (as train-tokenizer), no traceback."""
    import signal

    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "gaussiantoken", "train-lm", str(CONFIG),
           *overrides(*args, out, **{"train.max_steps": 1000, "train.save_steps": 1000})]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in proc.stdout:  # HF prints each step's log dict
        output.append(line)
        if "'loss'" in line:
            proc.send_signal(signal.SIGTERM)
            break
    output.append(proc.stdout.read())
    proc.wait(timeout=300)
    text = "".join(output)
    assert proc.returncode == 143, text[-3000:]
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "trainer_state.json").is_file()
    assert 1 <= int(checkpoints[0].name.split("-")[1]) < 1000
    assert not (out / "final").exists() and not (out / ".final-staging").exists()
    assert "stopped by a signal" in text and "Traceback" not in text


def test_bf16_setting_takes_cli_and_yaml_booleans(image_tokenizer_dir, codes_dir, text_tokenizer_dir, tmp_path):
    """train.bf16 accepts auto and booleans as the command line / YAML spell them (`train.bf16=true` parses as
    a YAML boolean); anything else is a one-line error naming the key."""
    from gaussiantoken.lm.train_build import _use_bf16

    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir, tmp_path / "o")
    for value, on_cpu, on_cuda in (("true", True, True), ("false", False, False), ("auto", False, True),
                                   ("True", True, True)):
        cfg = load_run_config(LMRunConfig, CONFIG, overrides(*args, **{"train.bf16": value}))
        check_config(cfg)
        assert (_use_bf16(cfg, on_cuda=False), _use_bf16(cfg, on_cuda=True)) == (on_cpu, on_cuda), value
    with pytest.raises(ValueError, match="train.bf16"):
        check_config(load_run_config(LMRunConfig, CONFIG, overrides(*args, **{"train.bf16": "maybe"})))


def test_init_from_continues_a_saved_model_and_refuses_another(image_tokenizer_dir, codes_dir, text_tokenizer_dir,
                                                               tmp_path):
    """model.init_from: a run starts from a saved LM's weights (a staged recipe); a model of another shape,
    text vocabulary or image tokenizer is refused with the key named, before any step."""
    from safetensors.torch import load_file

    from gaussiantoken.lm.train import build_model_and_processor
    from gaussiantoken.tokenizer import GaussianTokenizer

    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    first = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "a")))
    saved = load_file(first.final_dir / "model.safetensors")

    def config(out, **extra):
        return load_run_config(LMRunConfig, CONFIG, overrides(*args, out, **{"model.init_from": first.final_dir,
                                                                               **extra}))

    model, _ = build_model_and_processor(config(tmp_path / "b"))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    # training on: its first loss is the trained model's, well below a fresh start's
    fresh = losses(first.log_history)[0]
    continued = losses(train(config(tmp_path / "b", **{"train.max_steps": 2})).log_history)
    assert continued[0] < fresh - 0.5, (continued, fresh)

    with pytest.raises(ValueError, match="text_config must match"):
        build_model_and_processor(config(tmp_path / "c", **{"model.text_config.intermediate_size": 96}))
    with pytest.raises(ValueError, match="model.base_model"):
        check_config(config(tmp_path / "d", **{"model.base_model": tmp_path}))
    other_vocab = tmp_path / "other_vocab"
    shutil.copytree(text_tokenizer_dir, other_vocab)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(other_vocab)
    tok.add_tokens(["<extra_word>"])
    tok.save_pretrained(other_vocab)
    with pytest.raises(ValueError, match="another text vocabulary"):
        build_model_and_processor(config(tmp_path / "e", **{"model.text_tokenizer": other_vocab}))
    other_image = GaussianTokenizer.from_pretrained(image_tokenizer_dir)
    with torch.no_grad():
        next(other_image.parameters()).add_(0.1)
    other_image.save_pretrained(tmp_path / "other_image")
    with pytest.raises(ValueError, match="another image tokenizer"):
        build_model_and_processor(config(tmp_path / "f", **{"model.tokenizer": tmp_path / "other_image"}))


def test_trainable_patterns_train_only_the_named_parameters(image_tokenizer_dir, codes_dir, text_tokenizer_dir,
                                                            tmp_path):
    """train.trainable: after a run only the parameters one pattern matches differ from the start (here layer 0's
    attention, continuing a saved model); a pattern that matches nothing, or is no regular expression, is refused
    naming it, before any step."""
    from safetensors.torch import load_file

    from gaussiantoken.lm.train import build_model_and_processor

    args = (image_tokenizer_dir, codes_dir, text_tokenizer_dir)
    first = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "a", **{"train.max_steps": 2})))
    start = load_file(first.final_dir / "model.safetensors")
    only = "['layers.0.self_attn']"
    run = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "b", **{
        "model.init_from": first.final_dir, "train.max_steps": 2, "train.trainable": only})))
    end = load_file(run.final_dir / "model.safetensors")
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed == {f"language_model.model.layers.0.self_attn.{p}_proj.weight" for p in "qkvo"}, changed
    with pytest.raises(ValueError, match="'layers.9.mlp' matches no trainable parameter"):
        build_model_and_processor(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "c", **{
            "train.trainable": "['layers.0.self_attn', 'layers.9.mlp']"})))
    with pytest.raises(TypeError, match="train.trainable"):  # the type is checked with the config
        check_config(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "d", **{
            "train.trainable": "layers"})))
    for bad, match in (("['(unclosed']", "not a regular expression"), ("[]", "non-empty list"), ("[3]", "non-empty list")):
        with pytest.raises(ValueError, match=match):
            check_config(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "d", **{
                "train.trainable": bad})))
