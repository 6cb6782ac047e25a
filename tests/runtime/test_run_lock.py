"""One writer per run directory, and checkpoints a kill cannot outrun (issue 14 items 2 and 3).

- `run_lock`: a second holder (same process or another) gets `RunLocked` naming the owner's pid and host;
  a lock file left by a dead process is taken over (with a message); a clean exit removes it.
- Two `train-tokenizer` runs into one output dir (real CLI processes, different seeds): the second exits
  with status 2 and one line naming the first's pid; the first runs on undisturbed (each step logged
  once, its seed in train_config.yaml) until SIGTERM stops it.
- The LM trainer, extract-codes and the demo refuse a locked directory before doing any work.
- Kill before the first scheduled checkpoint (checkpoint_every far beyond max_steps): the halfway
  checkpoint exists, and --resume from it reproduces the uninterrupted run's losses (1e-6).
- `train.checkpoint_minutes` checkpoints by wall time; `--resume` with nothing to resume starts fresh.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gaussiantoken.runtime.run_lock import LOCK_NAME, RunLocked, run_lock
from gaussiantoken.tokenizer.train import main, read_losses, train
from gaussiantoken.tokenizer.trainer_state import list_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_reliability import child_env, tiny_config, write_yaml  # noqa: E402

torch.set_num_threads(1)
STEPS = 12


def test_lock_is_exclusive_names_its_owner_and_is_removed(tmp_path):
    with run_lock(tmp_path / "run", "first") as lock:
        record = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["command"] == "first"
        with pytest.raises(RunLocked, match=rf"in use by pid {os.getpid()} on host .*first"):
            with run_lock(tmp_path / "run", "second"):
                pass
        assert lock is not None
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with run_lock(tmp_path / "run", "third"):  # free again
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                             "command": "train-tokenizer", "started": time.time() - 60}))
    with run_lock(run, "train-tokenizer"):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"stale lock of {run} left by pid {int(dead.stdout)}" in capsys.readouterr().err


def test_other_writers_refuse_a_locked_directory(tmp_path, image_tokenizer_dir):
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.lm.extract import extract_codes
    from gaussiantoken.lm.train import LMRunConfig
    from gaussiantoken.lm.train import train as train_lm
    from gaussiantoken.pipelines.demo import run_demo
    from gaussiantoken.runtime.config import load_run_config

    out = tmp_path / "out"
    (tmp_path / "codes").mkdir()
    cfg = load_run_config(LMRunConfig, None, [f"train.output_dir={out}", f"model.tokenizer={image_tokenizer_dir}",
                                              f"data.codes={tmp_path / 'codes'}", "train.deepspeed=null"])
    with run_lock(out, "someone"):
        with pytest.raises(RunLocked, match="in use by pid"):
            train_lm(cfg)
        with pytest.raises(RunLocked, match="in use by pid"):
            extract_codes(image_tokenizer_dir, make_dataset(2, seed=0, image_size=16), out, progress=False)
        with pytest.raises(RunLocked, match="in use by pid"):
            run_demo(out, quick=True)
        with pytest.raises(RunLocked, match="in use by pid"):
            train(tiny_config(out))
    assert sorted(p.name for p in out.iterdir()) == []  # nobody wrote anything


def _wait_for(predicate, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.02)
    return predicate()


def test_two_writers_second_exits_2_naming_the_first(tmp_path):
    out = tmp_path / "run"
    first_cfg = write_yaml(tiny_config(out, seed=3, max_steps=100_000, max_minutes=3.0), tmp_path / "a.yaml")  # long
    second_cfg = write_yaml(tiny_config(out, seed=4), tmp_path / "b.yaml")
    first = subprocess.Popen([sys.executable, "-m", "gaussiantoken", "train-tokenizer", str(first_cfg)], cwd=tmp_path,
                             env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: (out / LOCK_NAME).is_file(), first), "the first run never took the lock"
        second = subprocess.run([sys.executable, "-m", "gaussiantoken", "train-tokenizer", str(second_cfg)],
                                cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        lines = [ln for ln in second.stderr.splitlines() if "train-tokenizer:" in ln]
        assert len(lines) == 1 and f"is in use by pid {first.pid}" in lines[0], second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # still running, undisturbed
        first.send_signal(signal.SIGTERM)  # stop it: it checkpoints and exits 143
        assert first.wait(timeout=300) == 143, first.stderr.read()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
        first.stderr.close()
    steps = [json.loads(ln)["step"] for ln in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert len(steps) >= 1 and steps == list(range(1, len(steps) + 1))  # every step once, in order
    assert "seed: 3" in (out / "train_config.yaml").read_text()
    assert not (out / LOCK_NAME).exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    torch.set_num_threads(1)  # the children run with one thread; earlier tests (DeepSpeed's start-up) may have changed ours
    assert train(tiny_config(out, checkpoint_every=500)).step == STEPS
    return out


def test_kill_before_the_first_scheduled_checkpoint_then_resume_is_exact(reference, tmp_path):
    out = tmp_path / "run"
    cfg = write_yaml(tiny_config(out, checkpoint_every=500), tmp_path / "tiny.yaml")  # never reached by 12 steps
    proc = subprocess.Popen([sys.executable, "-m", "gaussiantoken", "train-tokenizer", str(cfg)], cwd=tmp_path,
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: bool(list_checkpoints(out)), proc), proc.stderr.read().decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert [p.name for p in list_checkpoints(out)] == [f"step-{STEPS // 2:08d}"]  # the halfway checkpoint
    assert not (out / "final").exists() and (out / LOCK_NAME).is_file()  # the dead run's lock is left behind
    torch.set_num_threads(1)  # as the killed child and the reference ran
    assert main([str(cfg), "--resume"]) == 0  # takes the stale lock over
    a, b = read_losses(reference), read_losses(out)
    assert len(a) == len(b) == STEPS and max(abs(x - y) for x, y in zip(a, b)) <= 1e-6


def test_checkpoints_on_a_time_interval(tmp_path):
    out = tmp_path / "run"
    ckpts = []
    train(tiny_config(out, checkpoint_every=0, checkpoint_minutes=1e-6, max_steps=4, keep_checkpoints=0),
          step_callback=lambda step, m: ckpts.append(len(list_checkpoints(out))))
    assert ckpts[1:] == [1, 2, 3]  # after steps 2, 3, 4: one more checkpoint each (the clock passed 60 us)
    assert [p.name for p in list_checkpoints(out)] == [f"step-{s:08d}" for s in (1, 2, 3, 4)]


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = write_yaml(tiny_config(out, max_steps=2, checkpoint_every=0), tmp_path / "tiny.yaml")
    assert main([str(cfg), "--resume"]) == 0
    assert "holds no checkpoint yet; starting a fresh run" in capsys.readouterr().out
    assert len(read_losses(out)) == 2 and (out / "final").is_dir()
