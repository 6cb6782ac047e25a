"""The main job: `gaussiantoken demo --quick` end to end (the CI smoke test), then a rerun that skips."""

import json
import os
import shutil
import subprocess
import sys

import pytest

KEYS = ("reconstruction.psnr", "reconstruction.ssim", "text_to_image.accuracy", "captioning.bleu4",
        "captioning.cider", "captioning.rouge_l", "vqa.accuracy")


def _child_env() -> dict:
    # a fresh single-process run: drop any torch.distributed rendezvous that earlier in-process tests
    # set in this interpreter (their MASTER_PORT is still bound by this process's process group)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED")}
    env.update(OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "gaussiantoken", "demo", "--quick", "--out", str(out)],
                          env=_child_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_writes_report_metrics_and_loadable_models(demo_dir):
    out, stdout = demo_dir
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    for key in KEYS:
        assert isinstance(metrics[key], float), key
    assert 0.0 <= metrics["text_to_image.accuracy"] <= 1.0 and 0.0 <= metrics["vqa.accuracy"] <= 1.0
    # captioning and VQA again on the same held-out scenes drawn by the anti-aliased renderer
    assert metrics["antialiased.status"] == "complete"
    assert metrics["antialiased.captioning.num_images"] == metrics["captioning.num_images"]
    assert 0.0 <= metrics["antialiased.captioning.exact_scene_accuracy"] <= 1.0
    assert metrics["antialiased.vqa.num_questions"] == metrics["vqa.num_questions"]
    assert "antialiased.text_to_image.accuracy" not in metrics and (out / "eval_antialiased" / "report.md").is_file()
    report = (out / "report.md").read_text()
    assert "Demo summary" in report and "reconstruction PSNR" in report
    assert "| text-to-image compositional accuracy" in stdout  # the printed summary table
    assert "| captioning, the scenes drawn by another renderer" in stdout.replace("|   ", "| ")
    assert list((out / "eval").glob("*.png")), "the report has image grids"

    import torch
    import transformers

    import gaussiantoken  # noqa: F401  (registers the text-to-image task)
    from gaussiantoken.lm import GaussianTokenForCausalLM
    from gaussiantoken.tokenizer import GaussianTokenizer

    tokenizer = GaussianTokenizer.from_pretrained(out / "tokenizer")
    lm = GaussianTokenForCausalLM.from_pretrained(out / "lm")
    assert lm.config.tokens_per_image == tokenizer.tokens_per_image
    pipe = transformers.pipeline("text-to-image", model=str(out / "lm"))
    images = pipe("a large red circle", generator=torch.Generator().manual_seed(0), num_images_per_prompt=2)
    assert len(images) == 2 and images[0].size == (32, 32)
    # the VQA stage: OUT/lm continued on VQA alone, scored on both renderers; its answers come through the stock task
    vqa_stage = json.loads((out / "stages" / "vqa.json").read_text())
    assert vqa_stage["steps"] >= 1 and vqa_stage["dir"] == str(out / "lm_vqa")
    for prefix in ("vqa_model.", "vqa_model.antialiased."):
        assert metrics[f"{prefix}status"] == "complete"
        assert metrics[f"{prefix}vqa.num_questions"] == metrics["vqa.num_questions"]
        assert 0.0 <= metrics[f"{prefix}vqa.accuracy"] <= 1.0
    assert "| VQA accuracy, the VQA fine-tune (lm_vqa)" in stdout
    lm_vqa = GaussianTokenForCausalLM.from_pretrained(out / "lm_vqa")
    differ = [k for k, v in lm_vqa.state_dict().items() if not torch.equal(v, lm.state_dict()[k])]
    assert differ and all(not k.startswith("image_tokenizer.") for k in differ)  # trained on; same image tokenizer
    answer = transformers.pipeline("image-text-to-text", model=str(out / "lm_vqa"))(
        images=images[0], text="how many objects are there?")
    assert isinstance(answer[0]["generated_text"], str)


def test_demo_rerun_skips_finished_stages(demo_dir):
    out, _ = demo_dir
    before = (out / "metrics.json").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "gaussiantoken", "demo", "--quick", "--out", str(out)],
                          env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("already complete, skipped") == 7
    assert (out / "metrics.json").read_bytes() == before


def test_demo_refuses_to_mix_flavours(demo_dir):
    out, _ = demo_dir
    proc = subprocess.run([sys.executable, "-m", "gaussiantoken", "demo", "--out", str(out)],
                          env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "quick" in proc.stderr


def test_demo_trains_in_the_resolved_precision_and_keeps_it(demo_dir):
    """--precision auto resolves once (bf16 on CPUs with native bf16, else fp32: runtime.precision), both trainers
    get it (their saved recipes say so), a rerun asking for the other precision is refused (exit 2), and a demo
    folder from before --precision (no precision in its plan) continues in fp32, the trainers' CPU default."""
    import yaml

    from gaussiantoken.runtime.precision import resolve_precision

    out, stdout = demo_dir
    want = resolve_precision("auto", on_cuda=False)
    assert json.loads((out / "stages" / "plan.json").read_text())["precision"] == want
    assert f"{want} training" in stdout and f"{want} training" in (out / "report.md").read_text()
    tok = yaml.safe_load((out / "tokenizer" / "train_config.yaml").read_text())
    lm = yaml.safe_load((out / "lm" / "train_config.yaml").read_text())
    assert tok["train"]["mixed_precision"] == ("bf16" if want == "bf16" else "no")
    assert str(lm["train"]["bf16"]).lower() == str(want == "bf16").lower()
    assert lm["model"]["attn_implementation"] == ("eager" if want == "bf16" else "sdpa")
    other = "fp32" if want == "bf16" else "bf16"
    proc = subprocess.run([sys.executable, "-m", "gaussiantoken", "demo", "--quick", "--out", str(out), "--precision",
                           other], env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and f"trained in {want}" in proc.stderr and "Traceback" not in proc.stderr
    legacy = out.parent / (out.name + "_legacy")  # a copy whose plan predates --precision: every stage done
    shutil.copytree(out, legacy)
    (legacy / "stages" / "plan.json").write_text(json.dumps({"flavour": "quick"}))
    proc = subprocess.run([sys.executable, "-m", "gaussiantoken", "demo", "--quick", "--out", str(legacy)],
                          env=_child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "quick, fp32 training" in proc.stdout, proc.stderr[-2000:]
    assert json.loads((legacy / "stages" / "plan.json").read_text())["precision"] == "fp32"


def test_demo_writes_hub_model_cards(demo_dir):
    import yaml

    out, _ = demo_dir
    metrics = json.loads((out / "metrics.json").read_text())
    for sub, tag, prefixes in (("tokenizer", "image-feature-extraction", {"reconstruction"}),
                               ("lm", "image-text-to-text", {"reconstruction", "text_to_image", "captioning", "vqa"})):
        card = (out / sub / "README.md").read_text()
        meta = yaml.safe_load(card.split("---")[1])
        assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == tag and "gaussiantoken" in meta["tags"]
        results = meta["model-index"][0]["results"]
        got = {r["task"]["type"]: {m["type"]: m["value"] for m in r["metrics"]} for r in results}
        assert len(results) == len(prefixes)
        assert got["image-to-image"]["psnr"] == round(metrics["reconstruction.psnr"], 4)
        assert "## Training recipe" in card and "```yaml" in card and "import gaussiantoken" in card
        assert (out / sub / "samples.png").is_file() and "![samples](samples.png)" in card
