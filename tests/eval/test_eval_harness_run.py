"""`gaussiantoken evaluate` end to end on tiny random models saved to disk: metrics.json + report.md with the
expected keys and values in range, prediction files scored without a model, clear errors for bad configs and
model dirs, and a failing task marking the report incomplete."""

import json

import pytest
import torch
import yaml

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, image_tokenizer_dir, text_tokenizer_dir, tiny_text_config):
    """(lm_dir, tokenizer_dir): the shared tiny random image tokenizer and a tiny Llama LM on it, saved."""
    from transformers import AutoTokenizer

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.processing import GaussianTokenProcessor

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    text_tokenizer = AutoTokenizer.from_pretrained(text_tokenizer_dir)
    lm = GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer_dir, text_config=dict(tiny_text_config))
    lm.save_pretrained(root / "lm")
    GaussianTokenProcessor.from_model_config(lm.config, text_tokenizer).save_pretrained(root / "lm")
    return root / "lm", image_tokenizer_dir


def _config(tmp_path, **changes) -> str:
    cfg = {
        "batch_size": 8,
        "reconstruction": {"data": {"name": "shapes", "num_samples": 6, "seed": 5}},
        "text_to_image": {"num_prompts": 5, "fid_real_samples": 8, "feature_net_train_samples": 16,
                          "feature_net_epochs": 1, "kid_subset_size": 4, "grid_size": 4,
                          "exclude_data": {"name": "shapes", "num_samples": 40, "seed": 0}},
        "captioning": {"data": {"name": "shapes", "num_samples": 3, "seed": 7}, "meteor": False, "max_new_tokens": 6},
        "vqa": {"data": {"name": "shapes", "num_samples": 2, "seed": 7}, "max_new_tokens": 3},
    }
    for key, value in changes.items():
        node = cfg
        *head, last = key.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_all_tasks_writes_metrics_and_report(model_dirs, tmp_path):
    from gaussiantoken.eval.run import main

    lm_dir, _ = model_dirs
    out = tmp_path / "out"
    assert main([_config(tmp_path), "--model", str(lm_dir), "--out", str(out), "seed=3"]) == 0
    m = _metrics(out)
    assert m["status"] == "complete" and not any(k.startswith("failed.") for k in m)
    assert m["config.seed"] == 3 and m["config.model"] == str(lm_dir)
    for key in ("reconstruction.psnr", "reconstruction.ssim", "text_to_image.accuracy", "captioning.bleu4",
                "captioning.cider", "captioning.rouge_l", "vqa.accuracy", "text_to_image.fid", "text_to_image.kid",
                "captioning.exact_scene_accuracy"):
        assert isinstance(m[key], float), key
    assert "captioning.meteor" not in m  # switched off
    assert 0.0 < m["reconstruction.psnr"] < 100.0 and -1.0 <= m["reconstruction.ssim"] <= 1.0
    for key in ("text_to_image.accuracy", "text_to_image.color", "text_to_image.count", "captioning.bleu4",
                "captioning.rouge_l", "captioning.exact_scene_accuracy", "vqa.accuracy"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["captioning.cider"] >= 0.0 and m["text_to_image.fid"] >= -1e-6
    assert m["text_to_image.num_images"] == 5 and m["captioning.num_images"] == 3
    assert m["vqa.num_questions"] == 6 and m["reconstruction.num_images"] == 6
    report = (out / "report.md").read_text()
    assert "**Status: complete.**" in report and "## text_to_image" in report and "## vqa" in report
    assert "NOT with Inception" in report and "text_to_image_samples.png" in report
    assert (out / "text_to_image_samples.png").is_file() and (out / "feature_net" / "config.json").is_file()
    preds = json.loads((out / "captioning_predictions.json").read_text())
    assert [p["image_id"] for p in preds] == [0, 1, 2] and all(isinstance(p["caption"], str) for p in preds)
    assert len(json.loads((out / "vqa_predictions.json").read_text())) == 6


def test_prediction_files_scored_without_model(tmp_path):
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.eval.run import main

    ds = make_dataset(4, seed=9, image_size=32)
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in enumerate(ds["caption"])]))
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps([{"question_id": f"{r}_{k}", "answer": a}
                                   for r, ans in enumerate(ds["answers"]) for k, a in enumerate(ans)]))
    data = {"name": "shapes", "num_samples": 4, "seed": 9, "image_size": 32}
    cfg = _config(tmp_path, tasks=["captioning", "vqa"], **{"captioning.data": data, "vqa.data": data,
                                                           "captioning.predictions": str(caps),
                                                           "vqa.predictions": str(answers)})
    out = tmp_path / "out"
    assert main([cfg, "--out", str(out)]) == 0
    m = _metrics(out)
    assert m["captioning.exact_scene_accuracy"] == 1.0 and m["vqa.accuracy"] == 1.0
    assert m["captioning.bleu4"] == pytest.approx(1.0, abs=1e-6)


def test_failing_task_marks_report_incomplete(model_dirs, tmp_path, capsys):
    from gaussiantoken.eval.run import main

    _, tok_dir = model_dirs
    bad_caps = tmp_path / "caps.json"
    bad_caps.write_text(json.dumps([{"image_id": 99, "caption": "a large red circle"}]))  # unknown id
    broken = tmp_path / "answers.json"
    broken.write_text('[{"question_id": "0_0", "answer": ')  # malformed JSON
    cfg = _config(tmp_path, tasks=["reconstruction", "captioning", "vqa"],
                  **{"captioning.predictions": str(bad_caps), "vqa.predictions": str(broken)})
    out = tmp_path / "out"
    assert main([cfg, "--model", str(tok_dir), "--out", str(out)]) == 1
    m = _metrics(out)
    assert m["status"] == "incomplete"
    assert "no reference image_id" in m["failed.captioning"] and "malformed JSON" in m["failed.vqa"]
    assert not any(k.startswith(("captioning.", "vqa.")) for k in m)  # no partial numbers
    assert isinstance(m["reconstruction.psnr"], float)  # the tokenizer-only dir evaluates reconstruction
    report = (out / "report.md").read_text()
    assert "INCOMPLETE" in report and "`captioning`" in report


@pytest.mark.parametrize("text, overrides, message", [
    ("tasks: [reconstruction\n", [], "malformed YAML"),
    ("batch_size: 8\n", ["bogus.key=1"], "unknown config key"),
    ("batch_size: -1\n", [], "'batch_size' must be positive"),
    ("tasks: [painting]\n", [], "unknown or repeated task"),
    ("text_to_image: 3\n", [], "text_to_image"),
    ("captioning: {data: 7}\n", [], "captioning.data"),
])
def test_malformed_config_gives_clear_error(tmp_path, capsys, text, overrides, message):
    from gaussiantoken.eval.run import main

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main([str(path), *overrides, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "metrics.json").exists()


def test_missing_model_dir_and_wrong_kind(model_dirs, tmp_path, capsys):
    from gaussiantoken.eval.run import main

    _, tok_dir = model_dirs
    cfg = _config(tmp_path)
    out = tmp_path / "out"
    assert main([cfg, "--model", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope: no such directory" in capsys.readouterr().err
    assert main([cfg, "--out", str(out)]) == 2
    assert "no model directory" in capsys.readouterr().err
    assert main([cfg, "--model", str(tok_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "only 'reconstruction'" in err and "text_to_image" in err
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()


@pytest.mark.slow
def test_meteor_switch_on(tmp_path):
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.eval.run import main

    ds = make_dataset(3, seed=9, image_size=32)
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in enumerate(ds["caption"])]))
    data = {"name": "shapes", "num_samples": 3, "seed": 9, "image_size": 32}
    cfg = _config(tmp_path, tasks=["captioning"], **{"captioning.data": data, "captioning.predictions": str(caps),
                                                     "captioning.meteor": True})
    assert main([cfg, "--out", str(tmp_path / "out")]) == 0
    assert _metrics(tmp_path / "out")["captioning.meteor"] == pytest.approx(1.0, abs=1e-3)


def _coco_vqa_files(tmp_path):
    """Two COCO images with captions, and VQAv2 questions/annotations on them."""
    from gaussiantoken.data.shapes import make_dataset

    ds = make_dataset(2, seed=4, image_size=16)
    images = tmp_path / "images"
    images.mkdir()
    for i, im in enumerate(ds["image"], start=1):
        im.save(images / f"COCO_val2014_{i:012d}.png")
    coco = {"images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.png"} for i in (1, 2)],
            "annotations": [{"image_id": i, "id": 10 * i + k, "caption": c}
                            for i, cap in ((1, ds["caption"][0]), (2, ds["caption"][1]))
                            for k, c in enumerate([cap, cap.replace("a ", "one ", 1)])]}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    questions = {"questions": [{"question_id": 100 + i, "image_id": i, "question": "how many objects are there?"}
                               for i in (1, 2)]}
    anns = {"annotations": [{"question_id": 100 + i, "image_id": i, "answer_type": "number", "question_type": "how many",
                             "answers": [{"answer": str(len(ds["objects"][i - 1]))}] * 10} for i in (1, 2)]}
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    (tmp_path / "annotations.json").write_text(json.dumps(anns))
    return ds, {"name": "coco_captions", "annotations_json": str(tmp_path / "captions.json"), "images_dir": str(images)}, \
        {"name": "vqav2", "questions_json": str(tmp_path / "questions.json"),
         "annotations_json": str(tmp_path / "annotations.json"), "images_dir": str(images)}


def test_coco_and_vqav2_files(model_dirs, tmp_path):
    from gaussiantoken.eval.run import main

    lm_dir, _ = model_dirs
    ds, coco, vqav2 = _coco_vqa_files(tmp_path)
    # Generation on COCO / VQAv2 files with the tiny LM: scores in range, predictions in the results formats.
    cfg = _config(tmp_path, tasks=["captioning", "vqa"], **{"captioning.data": coco, "vqa.data": vqav2})
    out = tmp_path / "gen"
    assert main([cfg, "--model", str(lm_dir), "--out", str(out)]) == 0
    m = _metrics(out)
    assert 0.0 <= m["captioning.bleu4"] <= 1.0 and 0.0 <= m["vqa.accuracy"] <= 1.0
    assert m["captioning.num_images"] == 2 and m["vqa.num_questions"] == 2
    assert "captioning.exact_scene_accuracy" not in m  # COCO has no scene truth
    assert sorted(p["question_id"] for p in json.loads((out / "vqa_predictions.json").read_text())) == [101, 102]
    # Results files: the true caption and a number word ("two" -> "2" under the VQAv2 normalisation) score 1.
    caps, answers = tmp_path / "caps.json", tmp_path / "answers.json"
    caps.write_text(json.dumps([{"image_id": i, "caption": ds["caption"][i - 1]} for i in (1, 2)]))
    words = {1: "one", 2: "two", 3: "three"}
    answers.write_text(json.dumps([{"question_id": 100 + i, "answer": words[len(ds["objects"][i - 1])]} for i in (1, 2)]))
    cfg = _config(tmp_path, tasks=["captioning", "vqa"], **{"captioning.data": coco, "vqa.data": vqav2,
                                                           "captioning.predictions": str(caps),
                                                           "vqa.predictions": str(answers)})
    assert main([cfg, "--out", str(tmp_path / "files")]) == 0
    m = _metrics(tmp_path / "files")
    assert m["vqa.accuracy"] == 1.0 and m["vqa.per_answer_type.number"] == 1.0
    assert m["captioning.bleu1"] == pytest.approx(1.0, abs=1e-6)
    # An empty prediction set is an error of that task, reported, never a number.
    caps.write_text("[]")
    assert main([cfg, "--out", str(tmp_path / "empty")]) == 1
    m = _metrics(tmp_path / "empty")
    assert "empty prediction set" in m["failed.captioning"] and "captioning.bleu1" not in m


def test_guidance_checked_once_for_config_and_generation(tmp_path, capsys):
    """The config's guidance_scale goes through lm.logits.check_guidance_scale: nan is a config error too."""
    from gaussiantoken.eval.run import main

    for value in ("0.5", ".nan", "true"):
        path = tmp_path / "g.yaml"
        path.write_text(f"text_to_image: {{guidance_scale: {value}}}\n")
        assert main([str(path), "--out", str(tmp_path / "out")]) == 2
        assert "'text_to_image.guidance_scale' must be a finite number >= 1" in capsys.readouterr().err


def test_a_new_benchmark_is_one_task_and_one_table_entry(tmp_path, monkeypatch, capsys):
    """A Task subclass with its config dataclass, put in eval.tasks.TASKS, is configured, validated, run and
    reported by the harness with no other change (here without a model: it scores nothing but its config)."""
    from dataclasses import dataclass

    import gaussiantoken.eval.run as run
    from gaussiantoken.eval.report import ReportSection
    from gaussiantoken.eval.tasks import TASKS, Task
    from gaussiantoken.eval.tasks.base import check_positive

    @dataclass
    class ToyConfig:
        value: int = 2

    class Toy(Task):
        name = "toy"
        config = ToyConfig
        needs_lm = False

        def needs_model(self, cfg):
            return False

        def validate(self, cfg):
            check_positive(cfg.value, self.key("value"))

        def run(self, cfg, ctx):
            return {"double": 2 * cfg.value, "seed": ctx.seed}, [ReportSection("toy notes", "a toy benchmark")]

    monkeypatch.setitem(TASKS, "toy", Toy())
    monkeypatch.setattr(run, "EvalConfig", run.config_class(TASKS))
    path = tmp_path / "toy.yaml"
    path.write_text("tasks: [toy]\ntoy: {value: 21}\n")
    out = tmp_path / "out"
    assert run.main([str(path), "--out", str(out), "seed=4"]) == 0
    m = _metrics(out)
    assert m["toy.double"] == 42 and m["toy.seed"] == 4 and m["config.toy.value"] == 21 and m["status"] == "complete"
    assert list(m).index("config.vqa.max_new_tokens") < list(m).index("config.toy.value")  # table order
    report = (out / "report.md").read_text()
    assert "## toy" in report and "a toy benchmark" in report
    assert run.main([str(path), "toy.value=-1", "--out", str(tmp_path / "bad")]) == 2
    assert "'toy.value' must be positive" in capsys.readouterr().err


def test_harness_names_no_benchmark():
    """eval/run.py branches on no task name: every benchmark-specific line lives in its eval/tasks/ file."""
    import ast
    from pathlib import Path

    from gaussiantoken.eval.tasks import TASKS

    tree = ast.parse((Path(__file__).resolve().parents[2] / "eval" / "run.py").read_text())
    used = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not used & set(TASKS), used & set(TASKS)


def test_best_of_k_in_the_harness_is_generate_images_choice(model_dirs, tmp_path):
    """text_to_image.num_candidates=K: the kept images are exactly generate_images(num_candidates=K)'s (same
    seed), scored; accuracy_single_sample scores every candidate."""
    from gaussiantoken.eval.run import main
    from gaussiantoken.eval.text_to_image import generate_best_of
    from gaussiantoken.lm.generation import generate_images
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.processing import GaussianTokenProcessor

    lm_dir, _ = model_dirs
    model = GaussianTokenForCausalLM.from_pretrained(lm_dir).eval()
    processor = GaussianTokenProcessor.from_pretrained(lm_dir)
    prompts = ["a large red circle", "a small blue square above a large green triangle"]
    kept, every = generate_best_of(model, processor, prompts, 3, batch_size=4, temperature=1.5, seed=2)
    assert kept.shape[0] == 2 and every.shape[0] == 6
    ids = generate_images(model, processor, prompts, num_candidates=3, batch_size=4, temperature=1.5,
                          generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(kept, model.decode_image_tokens(ids).float().clamp(-1, 1))
    out = tmp_path / "out"
    cfg = _config(tmp_path, tasks=["text_to_image"], **{"text_to_image.num_candidates": 3, "text_to_image.fid": False})
    assert main([cfg, "--model", str(lm_dir), "--out", str(out)]) == 0
    m = _metrics(out)
    assert m["text_to_image.num_candidates"] == 3 and m["text_to_image.num_images"] == 5
    assert 0.0 <= m["text_to_image.accuracy_single_sample"] <= 1.0
