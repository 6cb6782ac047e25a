"""bench/lm_step_profile.py runs as a user runs it and prints its step-time table (fwd + bwd + opt = plain)."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_step_profile_table_adds_up():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "bench" / "lm_step_profile.py"), "--threads", "1", "--steps", "2", "--warmup", "1",
           "--batch-size", "2", "--seq-len", "16", "--no-compile", "--no-trainer",
           "model.text_config.hidden_size=32", "model.text_config.intermediate_size=64",
           "model.text_config.num_hidden_layers=1", "model.text_config.num_attention_heads=2",
           "model.text_config.num_key_value_heads=2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    row = [line for line in out.stdout.splitlines() if re.match(r"\s+1\s+\d", line)]
    assert len(row) == 1, out.stdout
    fwd, bwd, opt, plain = (float(v) for v in row[0].split()[1:5])
    assert min(fwd, bwd, opt) > 0
    assert abs(fwd + bwd + opt - plain) < 0.2  # medians of the parts, summed (ms, printed to 0.1)
