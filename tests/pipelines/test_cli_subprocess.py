"""Every `gaussiantoken` command in a fresh interpreter (`python -m gaussiantoken ...`), as a user runs it.

An in-process test can pass where a real run fails (an import cycle that another import already resolved,
registration done by an earlier test), so each command here starts from a new process: generate, caption,
ask, eval-tokenizer, train-text-tokenizer, extract-codes, evaluate and the dispatcher's help. (train-tokenizer,
train-lm and demo run as subprocesses in tests/test_run_lock.py, tests/test_reliability.py and
tests/pipelines/test_demo.py.)
"""

import json
import os
import subprocess
import sys

from PIL import Image


def run_cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "gaussiantoken", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    return proc


def test_help_lists_every_command():
    from gaussiantoken.pipelines.cli import COMMANDS

    out = ok(run_cli("--help")).stdout
    assert all(name in out for name in COMMANDS)
    bad = run_cli("no-such-command")
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_generate_then_caption_and_ask_in_fresh_processes(tiny_lm_dir, tmp_path):
    grid = tmp_path / "grid.png"
    ok(run_cli("generate", "a large red circle", "--model", tiny_lm_dir, "--out", grid, "--num-images", 2,
               "--seed", 3, "--device", "cpu"))
    assert Image.open(grid).size == (32, 16)  # 2 x 1 grid of 16 x 16 images
    best = tmp_path / "best.png"  # each image the best of 3 samples (lm.rerank)
    ok(run_cli("generate", "a large red circle", "--model", tiny_lm_dir, "--out", best, "--num-images", 2,
               "--candidates", 3, "--seed", 3, "--device", "cpu"))
    assert Image.open(best).size == (32, 16)
    Image.open(grid).crop((0, 0, 16, 16)).save(tmp_path / "one.png")
    caption = ok(run_cli("caption", tmp_path / "one.png", "--model", tiny_lm_dir, "--device", "cpu",
                         "--max-new-tokens", 4))
    assert len(caption.stdout.splitlines()) == 1  # the caption (a random model: any text)
    caption = ok(run_cli("caption", tmp_path / "one.png", "--model", tiny_lm_dir, "--device", "cpu"))
    assert len(caption.stdout.splitlines()) == 1  # no length asked: what the tiny model's context leaves
    answer = ok(run_cli("ask", tmp_path / "one.png", "what color is the circle?", "--model", tiny_lm_dir,
                        "--device", "cpu", "--max-new-tokens", 3))
    assert len(answer.stdout.splitlines()) == 1
    # the default length: the model's (96), cut to what this tiny model's 96-token context leaves
    answer = ok(run_cli("ask", tmp_path / "one.png", "what color is the circle?", "--model", tiny_lm_dir,
                        "--device", "cpu"))
    assert answer.returncode == 0 and len(answer.stdout.splitlines()) == 1


def test_caption_through_python_dash_m_package(tiny_lm_dir, tmp_path):
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "red.png")
    proc = ok(run_cli("caption", tmp_path / "red.png", "--model", tiny_lm_dir, "--device", "cpu",
                      "--max-new-tokens", 3))
    assert len(proc.stdout.splitlines()) == 1


def test_eval_tokenizer_train_text_tokenizer_extract_codes(image_tokenizer_dir, tmp_path):
    metrics = json.loads(ok(run_cli("eval-tokenizer", image_tokenizer_dir, "--num-samples", 4, "--batch-size", 4))
                         .stdout)
    assert metrics["data"] == "shapes" and 0.0 < metrics["psnr"] < 100.0
    (tmp_path / "corpus.txt").write_text("\n".join(["a red circle", "a blue square", "two green triangles"] * 20))
    ok(run_cli("train-text-tokenizer", "--out", tmp_path / "text", "--text-file", tmp_path / "corpus.txt",
               "--vocab-size", 280))
    assert (tmp_path / "text" / "tokenizer.json").is_file()
    ok(run_cli("extract-codes", "--tokenizer", image_tokenizer_dir, "--num-samples", 6, "--out", tmp_path / "codes",
               "--batch-size", 4, "--shard-size", 4, "--device", "cpu"))
    meta = json.loads((tmp_path / "codes" / "meta.json").read_text())
    assert meta["num_rows"] == 6 and meta["num_shards"] == 2 and (tmp_path / "codes" / "merged").is_dir()
    assert not (tmp_path / "codes" / ".gaussiantoken.lock").exists()


def test_evaluate_scores_prediction_files(tmp_path):
    from gaussiantoken.data.shapes import make_dataset

    ds = make_dataset(3, seed=9, image_size=32)
    (tmp_path / "caps.json").write_text(json.dumps([{"image_id": i, "caption": c} for i, c in enumerate(ds["caption"])]))
    data = {"name": "shapes", "num_samples": 3, "seed": 9, "image_size": 32}
    (tmp_path / "eval.yaml").write_text(json.dumps({"tasks": ["captioning"], "captioning": {
        "data": data, "predictions": str(tmp_path / "caps.json"), "meteor": False}}))
    ok(run_cli("evaluate", tmp_path / "eval.yaml", "--out", tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["captioning.exact_scene_accuracy"] == 1.0
