"""The runtime parts both trainers share (issue 15 item 2): the run clock, `finalize`, the command contract
(exit statuses, one-line errors), the process state a run puts back, and a child command that gets stop
requests passed on."""

import dataclasses
import os
import signal
import sys
import threading
import time

import pytest

from gaussiantoken.runtime import clock as clock_module
from gaussiantoken.runtime.clock import RunClock
from gaussiantoken.runtime.entry import EXIT_SIGNAL, exit_status, one_line, run_command
from gaussiantoken.runtime.files import atomic_directory
from gaussiantoken.runtime.finalize import finalize, write_summary
from gaussiantoken.runtime.integrity import CheckpointError
from gaussiantoken.runtime.process_state import RUN_ENV, restored_process_state


@dataclasses.dataclass
class Cfg:
    lr: float = 1e-3
    name: str = "x"


def test_run_clock_counts_earlier_processes_and_the_budget(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(clock_module.time, "monotonic", lambda: now[0])
    clock = RunClock()
    clock.resume(30.0)  # a checkpoint's seconds
    now[0] = 110.0
    assert clock.local_s() == 40.0 and clock.elapsed_s == 30.0  # not agreed yet
    assert clock.agree(False) is False and clock.elapsed_s == 40.0
    assert clock.fraction(80.0) == 0.5 and clock.fraction(None) == 0.0
    assert not clock.over(40.0) and clock.over(39.0) and not clock.over(None)
    assert clock.agree(True) is True
    clock.restart()  # this process's part starts again; the offset stays
    assert clock.local_s() == 30.0


def test_finalize_writes_atomically_with_the_config(tmp_path):
    def write(tmp):
        (tmp / "weights.bin").write_bytes(b"new")

    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "weights.bin").write_bytes(b"old")
    waited = []
    final = finalize(tmp_path, write, Cfg(lr=2e-4), wait=lambda: waited.append(1))
    assert final == tmp_path / "final" and waited == [1]
    assert (final / "weights.bin").read_bytes() == b"new"
    assert "lr: 0.0002" in (final / "train_config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temporaries left

    def broken(tmp):
        (tmp / "weights.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        finalize(tmp_path, broken, Cfg())
    assert (final / "weights.bin").read_bytes() == b"new"  # the previous final is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    # not the main process: writes nothing, still waits
    assert finalize(tmp_path / "other", write, Cfg(), is_main=False) == tmp_path / "other" / "final"
    assert not (tmp_path / "other").exists()


def test_final_swap_cut_between_renames_is_repaired(tmp_path):
    """What the LM trainer's hand-rolled `.final-old` swap could not do: a kill between the two renames of
    `atomic_directory` leaves `.final.old-PID`, which the next finalize puts back before replacing it."""
    with atomic_directory(tmp_path / "final") as tmp:
        (tmp / "a").write_text("1")
    os.replace(tmp_path / "final", tmp_path / f".final.old-{os.getpid()}")  # the state after the first rename
    seen = []
    finalize(tmp_path, lambda tmp: seen.append((tmp_path / "final" / "a").read_text()), None)
    assert seen == ["1"]  # recovered before the new write began
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_write_summary(tmp_path):
    import json

    write_summary(tmp_path / "s.json", {"final_dir": tmp_path / "final", "loss": float("nan"), "m": {"a": 1.5}})
    assert json.loads((tmp_path / "s.json").read_text()) == {"final_dir": str(tmp_path / "final"), "loss": None,
                                                              "m": {"a": 1.5}}
    write_summary(None, {"x": 1})  # no file asked for: nothing


def test_run_command_statuses_and_one_line_errors(capsys):
    def bad_config():
        raise ValueError("malformed YAML in c.yaml: while parsing\n  in line 3\nexpected ':'")

    assert run_command("prog", bad_config, lambda c: 0) == 2
    err = capsys.readouterr().err
    assert err == "prog: config error: malformed YAML in c.yaml: while parsing in line 3 expected ':'\n"

    def damaged(cfg):
        raise CheckpointError("cannot resume from checkpoint ck: state.pt is truncated")

    assert run_command("prog", lambda: Cfg(), damaged) == 1
    assert capsys.readouterr().err.startswith("prog: checkpoint error: cannot resume from checkpoint ck")
    assert run_command("prog", lambda: Cfg(), lambda c: (_ for _ in ()).throw(FileNotFoundError("no data"))) == 2
    assert capsys.readouterr().err == "prog: error: no data\n"
    assert run_command("prog", lambda: Cfg(), lambda c: exit_status(True)) == EXIT_SIGNAL == 143
    assert run_command("prog", lambda: Cfg(), lambda c: exit_status(False)) == 0
    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        run_command("prog", lambda: Cfg(), lambda c: (_ for _ in ()).throw(RuntimeError("bug")))
    assert one_line(ValueError("a\n b")) == "a b"


def test_restored_process_state_puts_the_environment_back(monkeypatch):
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.setenv("RANK", "7")
    with restored_process_state():
        os.environ["MASTER_PORT"] = "12345"
        os.environ["RANK"] = "0"
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    assert "MASTER_PORT" not in os.environ and os.environ["RANK"] == "7"
    assert "ACCELERATE_USE_DEEPSPEED" in RUN_ENV and os.environ.get("ACCELERATE_USE_DEEPSPEED") is None


def test_restored_process_state_puts_torch_threads_back():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with restored_process_state():
            torch.set_num_threads(2)  # what DeepSpeed's start-up does with OMP_NUM_THREADS unset on 2 cores
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_restored_process_state_forgets_accelerate_state():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    with restored_process_state():
        Accelerator(cpu=True)
        assert AcceleratorState._shared_state
    assert not AcceleratorState._shared_state


CHILD = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
pathlib.Path(sys.argv[1]).write_text("ready")
time.sleep(60)
sys.exit(0)
"""


def test_run_child_passes_sigterm_on(tmp_path):
    """SIGTERM to the parent reaches the child (in its own session) once; the child's status comes back."""
    from gaussiantoken.runtime.child import run_child

    ready = tmp_path / "ready"
    before = signal.getsignal(signal.SIGTERM)

    def stop_when_ready():
        deadline = time.time() + 30
        while time.time() < deadline and not ready.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_ready, daemon=True).start()
    start = time.time()
    status = run_child([sys.executable, "-c", CHILD, str(ready)])
    assert status == 143 and time.time() - start < 30
    assert signal.getsignal(signal.SIGTERM) is before  # our handler is back
    assert run_child([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
