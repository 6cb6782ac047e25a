"""bench/lm_quality.py end to end in a fresh process on the tiny models: trains on the stream to two curve
points (the second resumes the first), scores each, and writes one JSON row per point; --model scores only."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ("model.text_config.hidden_size=64,model.text_config.intermediate_size=128,"
        "model.text_config.num_hidden_layers=2,model.text_config.max_position_embeddings=128,"
        "train.per_device_batch_size=4,train.warmup_steps=0,data.stream_chunk=8,data.max_length=null")


def _env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED")}
    return {**env, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow  # about 70 s on a shared 2-core machine
def test_lm_quality_bench_curve_and_score_only(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(REPO / "bench" / "lm_quality.py"), "--tokenizer", str(image_tokenizer_dir),
           "--steps", "2,4", "--prompts", "2", "--eval-images", "2", "--keep", str(tmp_path / "runs"),
           "--json", str(out), "--run", f"tiny:{TINY},model.text_tokenizer={text_tokenizer_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["step"] for r in rows] == [2, 4] and rows[1]["rows"] == 16
    for r in rows:
        assert r["prompts"] == {"one": 2, "two_unseen": 2, "three_unseen": 2}
        assert all(0.0 <= r[k] <= 1.0 for k in ("t2i", "t2i_one", "t2i_two_unseen", "caption_exact", "vqa"))
    assert (tmp_path / "runs" / "tiny-s0" / "eval-4" / "text_to_image_samples.png").is_file()
    assert "tiny" in proc.stdout and "vqa per type" in proc.stdout
    model = tmp_path / "runs" / "tiny-s0" / "final"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "lm_quality.py"), "--model", str(model),
                           "--prompts", "2", "--eval-images", "2", "--temperature", "0.7"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from gaussiantoken.lm.sampling_defaults import T2I_GUIDANCE_SCALE

    assert f"T0.7/g{T2I_GUIDANCE_SCALE:g}/k1" in proc.stdout  # the row is named by its sampling (default guidance, one sample)
