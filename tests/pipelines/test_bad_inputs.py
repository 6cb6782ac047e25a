"""Issue 14's bad inputs, table-driven: each gives a clear error naming the file, key or value, or the right
result. The API cases run in this process; the CLI cases each in a fresh `python -m gaussiantoken`
process, which must exit with status 2, print one `error:` line containing the expected words, and no
traceback. (Two writers and kills: tests/test_run_lock.py; 2 processes: tests/tokenizer/test_tokenizer_train_ddp.py.)
"""

import json
import os
import pickle
import shutil
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the trainer's tiny run config
from test_reliability import tiny_config, write_yaml  # noqa: E402

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- damaged model directories
def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def dirs(tiny_lm_dir, tmp_path_factory):
    """name -> directory: the tiny LM damaged in each way of issue 14 item 12/13, and its image tokenizer."""
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    root = tmp_path_factory.mktemp("bad_dirs")

    def copy(name):
        return shutil.copytree(tiny_lm_dir, root / name)

    (copy("no_config") / "config.json").unlink()
    _edit_json(copy("lm_num_gaussians") / "config.json", lambda d: d["tokenizer_config"].update(num_gaussians=7))
    _edit_json(copy("no_model_type") / "config.json", lambda d: d.pop("model_type"))
    (copy("no_tokenizer_json") / "tokenizer.json").unlink()
    GaussianTokenForCausalLM.from_pretrained(tiny_lm_dir).image_tokenizer.save_pretrained(root / "tokenizer")
    shutil.copytree(root / "tokenizer", root / "tok_num_gaussians")
    _edit_json(root / "tok_num_gaussians" / "config.json", lambda d: d.update(num_gaussians=7))
    png = root / "truncated.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 3])  # cut inside the pixel data
    out = {p.name: p for p in root.iterdir()}
    out["missing"] = root / "does-not-exist"
    out["lm"] = tiny_lm_dir
    return out


# ----------------------------------------------------------------------------- API cases
def _splat(**change):
    from gaussiantoken.tokenizer.render import splat

    B, M, C = 1, 3, 2
    args = dict(means=torch.zeros(B, M, 2), scales=torch.full((B, M, 2), 0.1), rotations=torch.zeros(B, M),
                features=torch.ones(B, M, C), height=8, width=8, opacities=None)
    args.update(change)
    return splat(**args)


def _load_lm(dirs, name):
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    return GaussianTokenForCausalLM.from_pretrained(str(dirs[name]))


def _t2i(dirs, name, **call):
    from transformers import pipeline

    pipe = pipeline("text-to-image", model=str(dirs[name]), device="cpu")
    return pipe("a red circle", **call) if call else pipe


def _captioning(dirs, image):
    from transformers import pipeline

    return pipeline("gaussiantoken-captioning", model=str(dirs["lm"]), device="cpu")(image)


def _tokenizer_config(tmp_path, *overrides):
    from gaussiantoken.tokenizer.train import load_config

    return load_config(_tiny_yaml(tmp_path), list(overrides))


def _lm_config(tmp_path, image_tokenizer_dir, *overrides):
    from gaussiantoken.lm.train import LMRunConfig, check_config
    from gaussiantoken.runtime.config import load_run_config

    (tmp_path / "codes").mkdir(exist_ok=True)
    cfg = load_run_config(LMRunConfig, None, [f"model.tokenizer={image_tokenizer_dir}",
                                              f"data.codes={tmp_path / 'codes'}", *overrides])
    check_config(cfg)


def _bad_pickle(tmp_path):
    from gaussiantoken.data.loaders import load_cifar100

    base = tmp_path / "cifar-100-python"
    base.mkdir()
    (base / "test").write_bytes(pickle.dumps({b"data": os.system}))  # what a hostile file would carry
    (base / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"a"]}))
    return load_cifar100(tmp_path, split="test")


API_CASES = [  # (id, call(dirs, tmp_path, image_tokenizer_dir), exception, words in the message)
    ("splat-zero-scales", lambda d, t, i: _splat(scales=torch.zeros(1, 3, 2)), ValueError, "scales must be > 0"),
    ("splat-negative-scales", lambda d, t, i: _splat(scales=torch.full((1, 3, 2), -0.1)), ValueError, "scales must be > 0"),
    ("splat-nan-scales", lambda d, t, i: _splat(scales=torch.full((1, 3, 2), float("nan"))), ValueError, "scales"),
    ("splat-nan-means", lambda d, t, i: _splat(means=torch.full((1, 3, 2), float("nan"))), ValueError, "means contains NaN"),
    ("splat-inf-means", lambda d, t, i: _splat(means=torch.full((1, 3, 2), float("inf"))), ValueError, "means contains NaN or inf"),
    ("splat-nan-opacities", lambda d, t, i: _splat(opacities=torch.full((1, 3), float("nan"))), ValueError, "opacities"),
    ("splat-too-large", lambda d, t, i: _splat(height=100_000, width=100_000), MemoryError, "GiB"),
    ("image-0x0", lambda d, t, i: _processor()(Image.new("RGB", (0, 0))), ValueError, r"empty \(0x0 pixels\)"),
    ("image-nan-tensor", lambda d, t, i: _processor()(torch.full((3, 16, 16), float("nan"))), ValueError, "NaN"),
    ("image-nan-F-mode", lambda d, t, i: _processor()(Image.fromarray(np.full((4, 4), np.nan, np.float32))),
     ValueError, "NaN"),
    ("image-truncated-png", lambda d, t, i: _read(d["truncated.png"]), ValueError, "truncated.png"),
    ("caption-pipeline-truncated-png", lambda d, t, i: _captioning(d, str(d["truncated.png"])), ValueError,
     "could not read an image from .*truncated.png"),
    ("t2i-guidance-inf", lambda d, t, i: _t2i(d, "lm", guidance_scale=float("inf")), ValueError, "guidance_scale"),
    ("t2i-guidance-nan", lambda d, t, i: _t2i(d, "lm", guidance_scale=float("nan")), ValueError, "guidance_scale"),
    ("lm-no-config", lambda d, t, i: _load_lm(d, "no_config"), ValueError, "no_config has no config.json"),
    ("lm-edited-num-gaussians", lambda d, t, i: _load_lm(d, "lm_num_gaussians"), ValueError,
     "lm_num_gaussians/config.json does not describe a valid"),
    ("lm-no-model-type", lambda d, t, i: _load_lm(d, "no_model_type"), ValueError, "has no 'model_type' key"),
    ("lm-missing-path", lambda d, t, i: _load_lm(d, "missing"), ValueError, "does-not-exist: no such directory"),
    ("lm-given-tokenizer-dir", lambda d, t, i: _load_lm(d, "tokenizer"), ValueError,
     "holds a 'gaussian_tokenizer' .*expected 'gaussiantoken_lm'"),
    ("tokenizer-edited-num-gaussians", lambda d, t, i: _load_tokenizer(d["tok_num_gaussians"]), ValueError,
     "does not fit .*config.json"),
    ("t2i-tokenizer-dir", lambda d, t, i: _t2i(d, "tokenizer"), Exception, "^[^\n]*holds a 'gaussian_tokenizer'"),
    ("t2i-lm-without-tokenizer-json", lambda d, t, i: _t2i(d, "no_tokenizer_json"), Exception,
     "^[^\n]*has no tokenizer.json"),
    ("tokenizer-lr-nan", lambda d, t, i: _tokenizer_config(t, "train.learning_rate=nan"), ValueError,
     "'train.learning_rate' must be a finite number"),
    ("lm-batch-size-abc", lambda d, t, i: _lm_config(t, i, "train.per_device_batch_size=abc"), TypeError,
     "'train.per_device_batch_size' must be int, got 'abc'"),
    ("lm-lr-nan", lambda d, t, i: _lm_config(t, i, "train.learning_rate=.nan"), ValueError, "finite"),
    ("extract-empty", lambda d, t, i: _extract_empty(t, i), ValueError, "empty"),
    ("cifar-hostile-pickle", lambda d, t, i: _bad_pickle(t), ValueError, "refusing to load"),
]


def _processor():
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

    return GaussianTokenizerImageProcessor(image_size=16)


def _read(path):
    from gaussiantoken.tokenizer.image_processing import load_image_file

    return load_image_file(path)


def _load_tokenizer(path):
    from gaussiantoken.tokenizer import GaussianTokenizer

    return GaussianTokenizer.from_pretrained(str(path))


def _extract_empty(tmp_path, image_tokenizer_dir):
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.lm.extract import extract_codes

    try:
        extract_codes(image_tokenizer_dir, make_dataset(0, seed=0, image_size=16), tmp_path / "codes", progress=False)
    finally:
        assert not (tmp_path / "codes").exists()  # nothing written


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_input_api(case, dirs, tmp_path, image_tokenizer_dir):
    _, call, exc, words = case
    with pytest.raises(exc, match=words):
        call(dirs, tmp_path, image_tokenizer_dir)


# ----------------------------------------------------------------------------- right results where there were wrong ones
def test_splat_zero_gaussians_is_zeros_and_validate_switch():
    out = _splat(means=torch.zeros(2, 0, 2), scales=torch.zeros(2, 0, 2), rotations=torch.zeros(2, 0),
                 features=torch.ones(2, 0, 3))
    assert out.shape == (2, 3, 8, 8) and not out.any()
    # validate=False skips the value checks (the CUDA default; documented): the garbage goes through
    assert torch.isnan(_splat(means=torch.full((1, 3, 2), float("nan")), validate=False)).all()


def test_float_pil_images_are_scaled_not_black():
    proc = _processor()
    ramp = np.linspace(0.0, 1.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    assert Image.fromarray(ramp).mode == "F"
    as_float = proc(Image.fromarray(ramp))["pixel_values"]
    as_uint8 = proc(Image.fromarray(np.round(ramp * 255).astype(np.uint8)))["pixel_values"]
    assert torch.equal(as_float, as_uint8) and as_float.max() == 1.0
    sixteen = Image.fromarray((ramp * 65535).astype(np.uint16))
    assert sixteen.mode.startswith("I;16")
    sixteen = proc(sixteen)["pixel_values"]
    assert (sixteen - as_uint8).abs().max() <= 2 / 127.5  # 16-bit scaled by 1/257 (rounding differs by 1 level)


def test_encode_accepts_float64(dirs):
    tok = _load_tokenizer(dirs["tokenizer"]).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(tok.encode(x.double()), tok.encode(x))


def test_no_logits_processor_leaves_a_row_all_minus_inf():
    from gaussiantoken.lm.generation import ClassifierFreeGuidanceLogitsProcessor, SamplingLogitsProcessor

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 50, generator=g) * 30  # [cond; uncond] x 2
    allowed = torch.zeros(50, dtype=torch.bool)
    allowed[10:20] = True
    guided = ClassifierFreeGuidanceLogitsProcessor(1e38)(None, scores)  # overflows without the clamp
    masked = guided.masked_fill(~allowed, float("-inf"))  # the grammar's mask
    assert torch.isfinite(masked.amax(-1)).all()
    for temperature in (1e-30, 1.0):
        tokens = SamplingLogitsProcessor(temperature=temperature, generator=g, paired=True)(None, masked).argmax(-1)
        assert allowed[tokens].all()


# ----------------------------------------------------------------------------- CLI cases (fresh processes)
def _cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "gaussiantoken", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _tiny_yaml(tmp_path):
    return write_yaml(tiny_config(tmp_path / "run"), tmp_path / "tiny.yaml")


LM_YAML = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "lm", "shapes.yaml")

CLI_CASES = [  # (id, args(dirs, tmp_path, image_tokenizer_dir), words in the one error line)
    ("generate-tokenizer-dir", lambda d, t, i: ["generate", "x", "--model", d["tokenizer"], "--out", t / "g.png"],
     "holds a 'gaussian_tokenizer'"),
    ("generate-missing-dir", lambda d, t, i: ["generate", "x", "--model", d["missing"], "--out", t / "g.png"],
     "no such directory"),
    ("generate-no-config", lambda d, t, i: ["generate", "x", "--model", d["no_config"], "--out", t / "g.png"],
     "has no config.json"),
    ("generate-edited-num-gaussians", lambda d, t, i: ["generate", "x", "--model", d["lm_num_gaussians"], "--out",
                                                       t / "g.png"], "config.json does not describe a valid"),
    ("generate-no-model-type", lambda d, t, i: ["generate", "x", "--model", d["no_model_type"], "--out", t / "g.png"],
     "has no 'model_type' key"),
    ("generate-no-tokenizer-json", lambda d, t, i: ["generate", "x", "--model", d["no_tokenizer_json"], "--out",
                                                    t / "g.png"], "has no tokenizer.json"),
    ("generate-guidance-inf", lambda d, t, i: ["generate", "x", "--model", d["lm"], "--out", t / "g.png", "--guidance",
                                               "inf", "--device", "cpu"], "guidance_scale must be a finite number"),
    ("generate-candidates-zero", lambda d, t, i: ["generate", "x", "--model", d["lm"], "--out", t / "g.png",
                                                  "--candidates", "0", "--device", "cpu"], "num_candidates must be"),
    ("generate-out-is-a-dir", lambda d, t, i: ["generate", "x", "--model", d["lm"], "--out", t], "is a directory"),
    ("caption-truncated-png", lambda d, t, i: ["caption", d["truncated.png"], "--model", d["lm"], "--device", "cpu"],
     "truncated.png"),
    ("ask-missing-image", lambda d, t, i: ["ask", t / "nope.png", "what?", "--model", d["lm"]], "nope.png"),
    ("train-tokenizer-unknown-data", lambda d, t, i: ["train-tokenizer", _tiny_yaml(t), "data.name=nosuchdata"],
     "unknown dataset name 'nosuchdata'"),
    ("train-tokenizer-lr-nan", lambda d, t, i: ["train-tokenizer", _tiny_yaml(t), "train.learning_rate=nan"],
     "'train.learning_rate' must be a finite number"),
    ("train-lm-batch-abc", lambda d, t, i: ["train-lm", LM_YAML, "train.per_device_batch_size=abc"],
     "'train.per_device_batch_size' must be int"),
    ("train-lm-init-from-tokenizer", lambda d, t, i: ["train-lm", LM_YAML, f"model.tokenizer={i}",
                                                      "data.source=shapes_stream",
                                                      f"model.init_from={d['tokenizer']}"],
     "model.init_from"),
    ("train-lm-stable-fraction-one", lambda d, t, i: ["train-lm", LM_YAML, f"model.tokenizer={i}",
                                                      "data.source=shapes_stream", "train.lr_stable_fraction=1"],
     "train.lr_stable_fraction must be in [0, 1)"),
    ("train-lm-referent-needs-eager", lambda d, t, i: ["train-lm", LM_YAML, f"model.tokenizer={i}",
                                                      "data.source=shapes_stream", "data.t2i_layout=objects",
                                                      "model.image_groups=3", "model.input_layout=objects",
                                                      "train.referent_attention=0.3"],
     "needs model.attn_implementation=eager"),
    ("train-lm-referent-values-need-object-inputs", lambda d, t, i: ["train-lm", LM_YAML, f"model.tokenizer={i}",
                                                                     "data.source=shapes_stream",
                                                                     "train.referent_values=0.3"],
     "train.referent_values teaches the lookup"),
    ("train-lm-trainable-matches-nothing", lambda d, t, i: ["train-lm", LM_YAML, f"model.tokenizer={i}",
                                                            "data.source=shapes_stream", "train.trainable=['layers.9.mlp']"],
     "'layers.9.mlp' matches no trainable parameter"),
    ("extract-codes-zero-samples", lambda d, t, i: ["extract-codes", "--tokenizer", i, "--num-samples", 0, "--out",
                                                    t / "codes"], "--num-samples must be positive"),
    ("extract-codes-garbage-yaml", lambda d, t, i: ["extract-codes", "--tokenizer", i, "--data", _garbage(t), "--out",
                                                    t / "codes"], "garbage.yaml"),
    ("extract-codes-out-is-a-file", lambda d, t, i: ["extract-codes", "--tokenizer", i, "--num-samples", 2, "--out",
                                                     _a_file(t)], "is a file"),
    ("extract-codes-tokenizer-is-lm", lambda d, t, i: ["extract-codes", "--tokenizer", d["lm"], "--out", t / "codes"],
     "holds a 'gaussiantoken_lm'"),
    ("demo-out-is-a-file", lambda d, t, i: ["demo", "--out", _a_file(t)], "is a file"),
    ("train-text-tokenizer-missing-file", lambda d, t, i: ["train-text-tokenizer", "--out", t / "tt", "--text-file",
                                                           t / "missing.txt"], "missing.txt"),
]


def _garbage(tmp_path):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(b"\x00\xff{[: not yaml ::\n\t- ]")
    return path


def _a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_cli(case, dirs, tmp_path, image_tokenizer_dir):
    _, args, words = case
    proc = _cli(*args(dirs, tmp_path, image_tokenizer_dir), cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and words in errors[0], proc.stderr[-3000:]
    assert not (tmp_path / "codes").exists()  # extract-codes wrote nothing
