"""Run-config parsing, overrides, atomic writes and stop flags (the runtime package)."""

import dataclasses
import os
import signal

import pytest

from gaussiantoken.runtime import config, files, stop


@dataclasses.dataclass
class Optim:
    lr: float = 1e-3
    steps: int = 10


@dataclasses.dataclass
class Run:
    name: str = "x"
    optim: Optim = dataclasses.field(default_factory=Optim)


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: a\noptim:\n  lr: 0.5\n")
    cfg = config.load_run_config(Run, path, ["optim.steps=7", "name=b"])
    assert cfg == Run(name="b", optim=Optim(lr=0.5, steps=7))


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lrr: 0.5\n")
    with pytest.raises(ValueError, match="optim.lrr"):
        config.load_run_config(Run, path)


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="malformed YAML"):
        config.load_run_config(Run, bad)
    with pytest.raises(FileNotFoundError):
        config.load_run_config(Run, tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="key=value"):
        config.load_run_config(Run, None, ["name"])


def test_atomic_directory_keeps_old_version_on_failure(tmp_path):
    final = tmp_path / "ckpt"
    with files.atomic_directory(final) as tmp:
        (tmp / "state").write_text("one")
    with pytest.raises(RuntimeError):
        with files.atomic_directory(final) as tmp:
            (tmp / "state").write_text("two (torn)")
            raise RuntimeError("killed mid-write")
    assert (final / "state").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_recover_directory_after_crash_between_renames(tmp_path):
    final = tmp_path / "ckpt"
    old = tmp_path / ".ckpt.old-123"
    old.mkdir()
    (old / "state").write_text("previous")
    files.recover_directory(final)
    assert (final / "state").read_text() == "previous"


def test_atomic_write_bytes_replaces(tmp_path):
    path = tmp_path / "f.bin"
    files.atomic_write_bytes(path, b"a")
    files.atomic_write_bytes(path, b"bb")
    assert path.read_bytes() == b"bb"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_stop_flag_catches_sigterm():
    flag = stop.StopFlag().install()
    try:
        signal.raise_signal(signal.SIGTERM)
        assert flag.requested and flag.signum == signal.SIGTERM
    finally:
        flag.restore()


def test_resolve_precision():
    from gaussiantoken.runtime.precision import cpu_has_native_bf16, resolve_precision

    native = cpu_has_native_bf16()
    assert isinstance(native, bool)
    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            flags = " ".join(line for line in fh if line.startswith("flags"))
    if flags:  # the probe agrees with what the kernel reports
        assert native == any(f in flags.split() for f in ("avx512_bf16", "amx_tile", "amx_bf16"))
    assert resolve_precision("auto", on_cuda=True) == "bf16"
    assert resolve_precision("auto", on_cuda=False) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", on_cuda=True) == "fp32" and resolve_precision("bf16", on_cuda=False) == "bf16"
    with pytest.raises(ValueError, match="'fp16'"):
        resolve_precision("fp16", on_cuda=False)
