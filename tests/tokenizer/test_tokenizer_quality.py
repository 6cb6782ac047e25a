"""Quality target of the shapes recipe (issue #3 item 8), slow: 5 minutes of training on 2 CPU
threads must give >= 28 dB per-image PSNR, >= 98% exact scene parses and >= 80% code usage on a
held-out seed at <= 128 tokens per image. Run on a quiet machine: `python -m pytest -m slow -k quality`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_shapes_recipe_meets_quality_target(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(REPO / "bench" / "tokenizer_quality.py"), "--minutes", "5", "--threads", "2",
           "--run", "shapes", "--json", str(out)]
    subprocess.run(cmd, check=True, cwd=REPO, timeout=1200)
    row = json.loads(out.read_text())[0]
    assert row["tokens"] <= 128
    assert row["psnr"] >= 28.0, row
    assert row["parse"] >= 0.98, row
    assert row["usage"] >= 0.80, row
