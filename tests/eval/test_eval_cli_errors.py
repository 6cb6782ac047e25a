"""`python -m gaussiantoken evaluate` in a fresh process: bad input is one line on stderr naming the key, exit
status 2, no traceback and nothing written; a config that scores `predictions:` files runs without a model."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "gaussiantoken", "evaluate", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gaussiantoken evaluate: error:"), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in proc.stderr


DATA = "{name: shapes, num_samples: 2, seed: 9, image_size: 16}"


@pytest.fixture
def captions(tmp_path):
    """A COCO results file for the 2 Shapes scenes of DATA: their own captions (a perfect score)."""
    from gaussiantoken.data.shapes import make_dataset

    ds = make_dataset(2, seed=9, image_size=16)
    path = tmp_path / "caps.json"
    path.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in enumerate(ds["caption"])]))
    return path


def test_predictions_alone_are_scored_without_model(tmp_path, captions):
    (tmp_path / "e.yaml").write_text(f"tasks: [captioning]\ncaptioning:\n  predictions: {captions}\n"
                                     f"  meteor: false\n  data: {DATA}\n")
    proc = run_cli("e.yaml", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["captioning.exact_scene_accuracy"] == 1.0


@pytest.mark.parametrize("tasks, named", [
    ("[captioning, text_to_image]", "['text_to_image']"),  # one task needs the model, the other does not
    ("[captioning, reconstruction]", "['reconstruction']"),
])
def test_predictions_without_model_and_a_task_needing_it(tmp_path, captions, tasks, named):
    (tmp_path / "e.yaml").write_text(f"tasks: {tasks}\ncaptioning:\n  predictions: {captions}\n  meteor: false\n")
    proc = run_cli("e.yaml", "--out", "out", cwd=tmp_path)
    assert_one_line_error(proc, "no model directory", "'model'", named)
    assert "captioning" not in proc.stderr.split("need one")[0]  # the predictions task is not blamed
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", ["captioning", "vqa"])
def test_missing_predictions_file_without_model(tmp_path, task):
    """Before: no model -> the file check was skipped and the task failed at run time (traceback, exit 1)."""
    (tmp_path / "e.yaml").write_text(f"tasks: [{task}]\n{task}:\n  predictions: missing.json\n")
    proc = run_cli("e.yaml", "--out", "out", cwd=tmp_path)
    assert_one_line_error(proc, f"'{task}.predictions'", "missing.json")
    assert not (tmp_path / "out").exists()


SAMPLING_CASES = [  # (YAML value or override, the key named, what lm.logits.validate_sampling says)
    ("temperature=-0.5", "text_to_image.temperature", "finite number >= 0"),
    ("temperature=.nan", "text_to_image.temperature", "finite number >= 0"),
    ("temperature=.inf", "text_to_image.temperature", "finite number >= 0"),
    ("top_k=0", "text_to_image.top_k", "positive int"),
    ("top_k=2.5", "text_to_image.top_k", "positive int"),
    ("top_p=0", "text_to_image.top_p", "(0, 1]"),
    ("top_p=1.5", "text_to_image.top_p", "(0, 1]"),
    ("top_p=.nan", "text_to_image.top_p", "(0, 1]"),
    ("num_candidates=0", "text_to_image.num_candidates", "must be positive"),
]


@pytest.mark.parametrize("override, key, message", SAMPLING_CASES)
def test_loader_checks_sampling_with_the_generators_check(tmp_path, override, key, message):
    from gaussiantoken.eval.run import load_config

    path = tmp_path / "e.yaml"
    path.write_text("tasks: [text_to_image]\n")
    with pytest.raises(ValueError) as err:
        load_config(path, [f"text_to_image.{override}"])
    assert f"config key '{key}'" in str(err.value) and message in str(err.value)
    field, value = override.split("=")  # the same values in the YAML itself
    path.write_text(f"text_to_image:\n  {field}: {value}\n")
    with pytest.raises(ValueError, match=f"'{key}'"):
        load_config(path)


def test_loader_keeps_good_sampling_values(tmp_path):
    from gaussiantoken.eval.run import load_config

    path = tmp_path / "e.yaml"
    path.write_text("text_to_image: {temperature: 0, top_k: 5, top_p: 1}\n")
    cfg = load_config(path, ["text_to_image.temperature=0.7"]).text_to_image
    assert (cfg.temperature, cfg.top_k, cfg.top_p) == (0.7, 5, 1)
    assert load_config(path, ["text_to_image.top_k=null"]).text_to_image.top_k is None
    with pytest.raises(ValueError, match="'text_to_image.temperature' must be"):  # YAML true is no number
        load_config(path, ["text_to_image.temperature=true"])


@pytest.mark.parametrize("override, key, message", SAMPLING_CASES[::3])
def test_cli_bad_sampling_fails_before_any_model(tmp_path, override, key, message):
    """The model directory does not exist: the config error comes first, so no model was looked at."""
    (tmp_path / "e.yaml").write_text("tasks: [text_to_image]\n")
    proc = run_cli("e.yaml", f"text_to_image.{override}", "--model", "no_such_model", "--out", "out", cwd=tmp_path)
    assert_one_line_error(proc, f"'{key}'", message)
    assert "no_such_model" not in proc.stderr and not (tmp_path / "out").exists()
