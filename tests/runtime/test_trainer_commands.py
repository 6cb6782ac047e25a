"""Both training commands keep one contract (issue 15 item 2): a bad config is one line naming the key and exit
status 2, in a fresh process (`python -m gaussiantoken train-lm|train-tokenizer bad.yaml`); YAML's "2e-4" is
the float the field declares in both; both resume by default (`train.resume: auto`)."""

import os
import subprocess
import sys

import pytest


def run_cli(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "gaussiantoken", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["train-lm", "train-tokenizer"])
@pytest.mark.parametrize("yaml_text, key", [
    ("train:\n  learning_rat: 1e-3\n", "train.learning_rat"),  # a misspelt key
    ("train:\n  max_steps: many\n", "train.max_steps"),        # a wrong type
    ("train:\n  max_steps: [1\n", "malformed YAML"),           # not YAML at all (a multi-line parser message)
])
def test_bad_config_is_one_line_and_exit_2(command, yaml_text, key, tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml_text)
    proc = run_cli(command, tmp_path / "bad.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: config error:") and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_both_trainers_coerce_yaml_floats_and_resume_by_default(tmp_path, image_tokenizer_dir):
    from gaussiantoken.lm.train import LMRunConfig, load_config as load_lm
    from gaussiantoken.tokenizer.train import TokenizerRunConfig, load_config as load_tokenizer

    (tmp_path / "c.yaml").write_text("train:\n  learning_rate: 2e-4\n")  # YAML 1.1 reads 2e-4 as a string
    lm = load_lm(tmp_path / "c.yaml", [f"model.tokenizer={image_tokenizer_dir}", "data.source=shapes_stream"])
    tok = load_tokenizer(tmp_path / "c.yaml")
    assert isinstance(lm.train.learning_rate, float) and lm.train.learning_rate == pytest.approx(2e-4)
    assert isinstance(tok.train.learning_rate, float) and tok.train.learning_rate == pytest.approx(2e-4)
    assert LMRunConfig().train.resume == TokenizerRunConfig().train.resume == "auto"
