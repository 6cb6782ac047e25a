"""bench/tokenizer_vs_vq.py end to end in a fresh process on a tiny budget: both tokenizers trained by the
real trainer, the table's rows (tokens, bits, metrics) and the picture. Slow (about a minute)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_rows_and_picture(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(REPO / "bench" / "tokenizer_vs_vq.py"), "--minutes", "0.05", "--budgets", "64",
           "--train-sets", "photos", "--kinds", "vq,gauss,gauss-cont,gauss-1tok", "--eval-samples", "40",
           "--feature-samples", "200", "--json", str(out), "--figure-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["model"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"vq", "gauss", "gauss-cont", "gauss-1tok"}
    assert rows["vq"]["tokens"] == rows["gauss"]["tokens"] == rows["gauss-1tok"]["tokens"] == 64
    assert rows["vq"]["bits"] == 64 * 10 and rows["gauss"]["bits"] == 32 * (10 + 16)
    assert rows["gauss-cont"]["bits"] == 32 * 10  # only the feature codes are tokens
    assert rows["gauss-1tok"]["bits"] == 64 * 10  # 64 Gaussians, one code each: the VQ's bits
    for r in rows.values():
        assert r["steps"] >= 1 and math.isfinite(r["psnr"]) and 0 <= r["dark_rate"] <= 1 and r["fid"] >= 0
    from PIL import Image

    picture = Image.open(tmp_path / "tokenizer_vs_vq_photos.png")  # 8 columns of 128 px cells, 2 px apart
    # rows: originals | vq | each Gaussian kind's reconstructions and its Gaussians drawn (3 kinds)
    assert picture.size == (8 * 130 + 2, (1 + 1 + 3 * 2) * 130 + 2)
