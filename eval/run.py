"""The evaluation harness: `gaussiantoken evaluate CONFIG.yaml [key=value ...] [--model DIR] [--out DIR]`.

Owns the run config (`EvalConfig` and one dataclass per task, filled from YAML by
`runtime.config.load_run_config`, `key=value` overrides with dotted keys) and `evaluate(config)`, which
runs the tasks the config names over one model directory and writes OUT/metrics.json (flat dotted keys,
e.g. reconstruction.psnr, text_to_image.accuracy, captioning.cider, vqa.accuracy) and OUT/report.md
through `eval.report.write_report`, plus sample grids and prediction files (COCO / VQA results format).

Tasks (runners live one per benchmark file): reconstruction (`eval.reconstruction.evaluate_tokenizer`),
text_to_image (`eval.text_to_image`), captioning (`eval.captioning.run_captioning`), vqa (`eval.vqa.run_vqa`).
A gaussiantoken_lm directory holds the image tokenizer too and allows every task; an image-tokenizer
directory allows only reconstruction. Captioning / VQA can also score an existing results file
(`predictions:`) without a model.

Failure handling: bad config / missing model dir -> a one-line error and exit code 2, nothing written; a
task that fails while running is recorded through write_report's `failed=` (its numbers are dropped,
status "incomplete", exit code 1); exit code 0 only when every task finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

from gaussiantoken.runtime.model_dirs import LM_KIND as LM_MODEL_TYPE  # the kinds are named once, there
from gaussiantoken.runtime.model_dirs import TOKENIZER_KIND as TOKENIZER_MODEL_TYPE

TASKS = ("reconstruction", "text_to_image", "captioning", "vqa")


def _shapes_spec(num_samples: int, seed: int = 1234) -> dict:
    return {"name": "shapes", "num_samples": num_samples, "seed": seed}


@dataclass
class ReconstructionTask:
    data: dict = field(default_factory=lambda: _shapes_spec(500))  # a data.loaders spec
    max_samples: int | None = None  # keep only the first N rows (real datasets)
    lpips_weights: str | None = None  # LPIPS safetensors file
    fid_weights: str | None = None  # ShapesFeatureNet dir or torch-fidelity Inception weights file
    position_tolerance: float = 1.5


@dataclass
class TextToImageTask:
    num_prompts: int = 200
    prompt_seed: int = 1234
    exclude_data: dict | None = None  # spec of the TRAINING dataset: its captions are never used as prompts
    # true: num_prompts per structured set (eval.text_to_image.prompt_sets: one-object with new scenes, unseen
    # two- and three-object compositions) -> text_to_image.accuracy_one / _two_unseen / _three_unseen
    prompt_sets: bool = False
    images_per_prompt: int = 1
    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    backend: str = "hf"
    fid: bool = True
    fid_real_samples: int = 500
    fid_real_seed: int = 4321
    feature_net: str | None = None  # ShapesFeatureNet dir; null: train one on the fly (saved to OUT/feature_net)
    feature_net_train_samples: int = 2000
    feature_net_epochs: int = 3
    inception_weights: str | None = None  # torch-fidelity Inception weights file (replaces the feature net)
    kid_subset_size: int = 100
    clip_weights: str | None = None  # local CLIP checkpoint dir -> CLIPScore
    grid_size: int = 16


@dataclass
class CaptioningTask:
    data: dict = field(default_factory=lambda: _shapes_spec(200))  # shapes or coco_captions spec
    max_samples: int | None = None
    predictions: str | None = None  # score this COCO results file [{image_id, caption}] instead of generating
    meteor: bool = True  # METEOR runs java (~18 s a call)
    max_new_tokens: int = 32


@dataclass
class VQATask:
    data: dict = field(default_factory=lambda: _shapes_spec(200))  # shapes or vqav2 spec
    max_samples: int | None = None
    predictions: str | None = None  # score this VQA results file [{question_id, answer}] instead of generating
    max_new_tokens: int = 8


@dataclass
class EvalConfig:
    model: str | None = None  # gaussiantoken_lm dir (all tasks) or image tokenizer dir (reconstruction only)
    out: str = "runs/eval"
    tasks: list = field(default_factory=lambda: list(TASKS))
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    seed: int = 0
    batch_size: int = 32
    num_threads: int | None = None  # torch.set_num_threads when set
    reconstruction: ReconstructionTask = field(default_factory=ReconstructionTask)
    text_to_image: TextToImageTask = field(default_factory=TextToImageTask)
    captioning: CaptioningTask = field(default_factory=CaptioningTask)
    vqa: VQATask = field(default_factory=VQATask)

    def __post_init__(self):
        validate_config(self)


def _check_type(value, kinds, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ValueError(f"config key {name!r} must be {getattr(kinds, '__name__', kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ValueError(f"config key {name!r} must be {getattr(kinds, '__name__', kinds)}"
                         f"{' or null' if optional else ''}, got {value!r}")


def _positive(value, name: str, optional: bool = False) -> None:
    _check_type(value, int, name, optional)
    if value is not None and value <= 0:
        raise ValueError(f"config key {name!r} must be positive, got {value}")


def _spec(value, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError(f"config key {name!r} must be a dataset spec mapping with a 'name' (e.g. "
                         f"{{name: shapes, num_samples: 200, seed: 1234}}), got {value!r}")


def validate_config(cfg: EvalConfig) -> None:
    """Type and range checks that name the offending key (YAML gives no types of its own)."""
    _check_type(cfg.model, str, "model", optional=True)
    _check_type(cfg.out, str, "out")
    if not isinstance(cfg.tasks, list) or not cfg.tasks:
        raise ValueError(f"config key 'tasks' must be a non-empty list of {list(TASKS)}, got {cfg.tasks!r}")
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown or len(set(cfg.tasks)) != len(cfg.tasks):
        raise ValueError(f"config key 'tasks': unknown or repeated task(s) {unknown or cfg.tasks}; choose from {list(TASKS)}")
    _check_type(cfg.device, str, "device")
    if not (cfg.device in ("cpu", "cuda", "auto") or cfg.device.startswith("cuda:")):
        raise ValueError(f"config key 'device' must be cpu, cuda, cuda:N or auto, got {cfg.device!r}")
    _check_type(cfg.seed, int, "seed")
    _positive(cfg.batch_size, "batch_size")
    _positive(cfg.num_threads, "num_threads", optional=True)
    r, t, c, v = cfg.reconstruction, cfg.text_to_image, cfg.captioning, cfg.vqa
    for name, task in (("reconstruction", r), ("captioning", c), ("vqa", v)):
        _spec(task.data, f"{name}.data")
        _positive(task.max_samples, f"{name}.max_samples", optional=True)
    for name in ("lpips_weights", "fid_weights"):
        _check_type(getattr(r, name), str, f"reconstruction.{name}", optional=True)
    _check_type(r.position_tolerance, (int, float), "reconstruction.position_tolerance")
    for name in ("num_prompts", "images_per_prompt", "fid_real_samples", "feature_net_train_samples",
                 "feature_net_epochs", "kid_subset_size"):
        _positive(getattr(t, name), f"text_to_image.{name}")
    _check_type(t.prompt_seed, int, "text_to_image.prompt_seed")
    _check_type(t.fid_real_seed, int, "text_to_image.fid_real_seed")
    _spec(t.exclude_data, "text_to_image.exclude_data", optional=True)
    _check_type(t.guidance_scale, (int, float), "text_to_image.guidance_scale")
    if t.guidance_scale < 1:
        raise ValueError(f"config key 'text_to_image.guidance_scale' must be >= 1, got {t.guidance_scale}")
    _check_type(t.temperature, (int, float), "text_to_image.temperature")
    _positive(t.top_k, "text_to_image.top_k", optional=True)
    _check_type(t.top_p, (int, float), "text_to_image.top_p", optional=True)
    _check_type(t.backend, str, "text_to_image.backend")
    _check_type(t.fid, bool, "text_to_image.fid")
    _check_type(t.prompt_sets, bool, "text_to_image.prompt_sets")
    _check_type(t.grid_size, int, "text_to_image.grid_size")
    for name in ("feature_net", "inception_weights", "clip_weights"):
        _check_type(getattr(t, name), str, f"text_to_image.{name}", optional=True)
    _check_type(c.meteor, bool, "captioning.meteor")
    for name, task in (("captioning", c), ("vqa", v)):
        _check_type(task.predictions, str, f"{name}.predictions", optional=True)
        _positive(task.max_new_tokens, f"{name}.max_new_tokens")


def load_config(path, overrides: list[str] | None = None) -> EvalConfig:
    """YAML + `key=value` overrides -> EvalConfig (ValueError/FileNotFoundError naming the problem)."""
    from gaussiantoken.runtime.config import load_run_config

    try:
        return load_run_config(EvalConfig, path, overrides or [])
    except TypeError as err:  # e.g. a scalar where a task mapping belongs
        raise ValueError(f"bad evaluation config {path}: {err}") from err


# ----------------------------------------------------------------------------- models and data


def model_dir_kind(path) -> str:
    """'gaussiantoken_lm' or 'gaussian_tokenizer' from the directory's config.json; clear errors otherwise
    (`runtime.model_dirs.check_model_dir`: missing path or config.json, malformed JSON, another kind)."""
    from gaussiantoken.runtime.model_dirs import check_model_dir

    if path is None:
        raise ValueError("no model directory: set `model:` in the config or pass --model DIR")
    return check_model_dir(path, (LM_MODEL_TYPE, TOKENIZER_MODEL_TYPE), "model directory")["model_type"]


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return name


class Models:
    """Loads what the tasks need once: the LM + processor, or the image tokenizer + image processor."""

    def __init__(self, path: str, kind: str, device: str):
        self.path, self.kind, self.device = path, kind, device
        self._lm = self._tokenizer = None

    def lm(self):
        if self.kind != LM_MODEL_TYPE:
            raise ValueError(f"{self.path} is an image tokenizer: only reconstruction can be evaluated")
        if self._lm is None:
            from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor

            model = GaussianTokenForCausalLM.from_pretrained(self.path).to(self.device).eval()
            self._lm = (model, GaussianTokenProcessor.from_pretrained(self.path))
        return self._lm

    def image_tokenizer(self):
        if self._tokenizer is None:
            from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

            tok = self.lm()[0].image_tokenizer if self.kind == LM_MODEL_TYPE else GaussianTokenizer.from_pretrained(self.path)
            self._tokenizer = (tok.to(self.device).eval(), GaussianTokenizerImageProcessor.from_pretrained(self.path))
        return self._tokenizer

    def image_size(self) -> int:
        return int(self.image_tokenizer()[0].config.image_size)


def load_data(spec: dict, image_size: int | None, max_samples: int | None = None):
    """A data.loaders dataset; Shapes specs get the model's image size unless they name one."""
    from gaussiantoken.data.loaders import load_dataset_from_config

    spec = dict(spec)
    if spec["name"] == "shapes" and "image_size" not in spec and image_size is not None:
        spec["image_size"] = image_size
    ds = load_dataset_from_config(spec)
    if max_samples is not None and len(ds) > max_samples:
        ds = ds.select(range(max_samples))
    if len(ds) == 0:
        raise ValueError(f"dataset {spec} is empty")
    return ds


# ----------------------------------------------------------------------------- the tasks


def _examples_section(title: str, header: tuple[str, ...], rows: list[tuple]):
    from .report import ReportSection

    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return ReportSection(title, "\n".join(lines))


def run_reconstruction(cfg: EvalConfig, models: Models) -> tuple[dict, list]:
    from .reconstruction import load_fid, evaluate_tokenizer

    task = cfg.reconstruction
    tok, image_processor = models.image_tokenizer()
    ds = load_data(task.data, models.image_size(), task.max_samples)
    lpips = fid = None
    if task.lpips_weights:
        from .perceptual import load_lpips

        lpips = load_lpips(task.lpips_weights, device=models.device)
    if task.fid_weights:
        fid = load_fid(task.fid_weights)
    metrics = evaluate_tokenizer(tok, image_processor, ds, cfg.batch_size, lpips=lpips, fid=fid,
                                 parse_scenes=task.data["name"] == "shapes" and "objects" in ds.column_names,
                                 position_tolerance=task.position_tolerance, device=models.device)
    return metrics, []


def text_to_image_prompts(cfg: EvalConfig, image_size: int, sets: bool = False):
    """The held-out Shapes prompt set of the config (training captions of `exclude_data` removed); with
    `sets` and text_to_image.prompt_sets, the structured sets {name: prompts} (else None) as well."""
    from .text_to_image import prompt_sets, shapes_prompts

    task = cfg.text_to_image
    exclude = None
    if task.exclude_data is not None:
        exclude = set(load_data(task.exclude_data, image_size)["caption"])
    if task.prompt_sets:
        groups = prompt_sets(task.num_prompts, seed=task.prompt_seed, exclude=exclude, image_size=image_size)
        prompts = [p for v in groups.values() for p in v]
        return (prompts, groups) if sets else prompts
    prompts = shapes_prompts(task.num_prompts, seed=task.prompt_seed, exclude=exclude, image_size=image_size)
    return (prompts, None) if sets else prompts


def run_text_to_image_task(cfg: EvalConfig, models: Models) -> tuple[dict, list]:
    from .text_to_image import run_text_to_image, shapes_feature_net

    task = cfg.text_to_image
    model, processor = models.lm()
    size = models.image_size()
    prompts, sets = text_to_image_prompts(cfg, size, sets=True)
    feature_net = None
    if task.fid and task.inception_weights is None:
        feature_net = shapes_feature_net(task.feature_net, task.feature_net_train_samples, task.feature_net_epochs,
                                         image_size=size, seed=cfg.seed,
                                         save_to=None if task.feature_net else os.path.join(cfg.out, "feature_net"))
    return run_text_to_image(
        model, processor, prompts, out_dir=cfg.out, images_per_prompt=task.images_per_prompt,
        guidance_scale=task.guidance_scale, temperature=task.temperature, top_k=task.top_k, top_p=task.top_p,
        batch_size=cfg.batch_size, seed=cfg.seed, fid=task.fid, fid_real_samples=task.fid_real_samples,
        fid_real_seed=task.fid_real_seed, feature_net=feature_net, inception_weights=task.inception_weights,
        kid_subset_size=task.kid_subset_size, clip_weights=task.clip_weights, grid_size=task.grid_size,
        backend=task.backend, sets=sets)


def _caption_references(spec: dict) -> dict | None:
    """COCO: references {image_id: [captions]} from the annotation file (validated by eval.readers);
    Shapes: None (the dataset's own captions and objects are the truth)."""
    if spec["name"] == "coco_captions":
        from .readers import read_coco_captions

        return read_coco_captions(spec["annotations_json"])
    return None


def run_captioning_task(cfg: EvalConfig, models: Models | None) -> tuple[dict, list]:
    from .captioning import ALL_METRICS, caption_scores, run_captioning, shapes_caption_accuracy
    from .readers import match_ids, read_caption_predictions
    from .report import write_json_atomic

    task = cfg.captioning
    metrics_set = tuple(m for m in ALL_METRICS if task.meteor or m != "meteor")
    spec = dict(task.data)
    if spec["name"] == "coco_captions":
        spec["per_image"] = True
    if spec["name"] not in ("shapes", "coco_captions"):
        raise ValueError(f"captioning.data: unsupported dataset {spec['name']!r} (use shapes or coco_captions)")
    size = models.image_size() if models is not None else None
    ds = load_data(spec, size, task.max_samples)
    references = _caption_references(spec)
    if task.predictions is not None:  # score a results file, no model
        predictions = read_caption_predictions(task.predictions)
        if references is None:  # Shapes: image ids are the row positions
            references = {i: [c] for i, c in enumerate(ds["caption"])}
        refs = match_ids(predictions, references, what="image_id")
        scores = caption_scores(predictions, refs, metrics_set)
        if spec["name"] == "shapes":
            objects = ds["objects"]
            scores.update(shapes_caption_accuracy([predictions[k] for k in refs], [objects[int(k)] for k in refs]))
        scores["num_images"] = len(predictions)
    else:
        model, processor = models.lm()
        scores, predictions = run_captioning(model, processor, ds, references=references, metrics=metrics_set,
                                             batch_size=cfg.batch_size, max_new_tokens=task.max_new_tokens)
        write_json_atomic(os.path.join(cfg.out, "captioning_predictions.json"),
                          [{"image_id": k, "caption": v} for k, v in predictions.items()])
    truth = (lambda k: ds["caption"][int(k)]) if spec["name"] == "shapes" else (lambda k: (references or {}).get(k, [""])[0])
    rows = [(k, v, truth(k)) for k, v in list(predictions.items())[:8]]
    return scores, [_examples_section("captioning examples", ("image", "prediction", "reference"), rows)]


def run_vqa_task(cfg: EvalConfig, models: Models | None) -> tuple[dict, list]:
    from .readers import match_ids, read_vqa_annotations, read_vqa_predictions
    from .report import write_json_atomic
    from .vqa import run_vqa, score_shapes_vqa, vqa_accuracy

    task = cfg.vqa
    spec = task.data
    if spec["name"] not in ("shapes", "vqav2"):
        raise ValueError(f"vqa.data: unsupported dataset {spec['name']!r} (use shapes or vqav2)")
    size = models.image_size() if models is not None else None
    ds = load_data(spec, size, task.max_samples)
    annotations = read_vqa_annotations(spec["annotations_json"]) if spec["name"] == "vqav2" else None
    if task.predictions is not None:
        predictions = read_vqa_predictions(task.predictions)
        if spec["name"] == "shapes":
            answers = {f"{r}_{k}": a for r, ans in enumerate(ds["answers"]) for k, a in enumerate(ans)}
            questions = {f"{r}_{k}": q for r, qs in enumerate(ds["questions"]) for k, q in enumerate(qs)}
            match_ids(predictions, answers, what="question_id")
            scores = score_shapes_vqa(predictions, answers, questions)
        else:
            anns = match_ids(predictions, annotations, what="question_id")
            result = vqa_accuracy(predictions, anns)
            scores = {"accuracy": result["overall"], "num_questions": result["num_questions"],
                      "per_answer_type": result["per_answer_type"]}
    else:
        model, processor = models.lm()
        scores, predictions = run_vqa(model, processor, ds, annotations=annotations, batch_size=cfg.batch_size,
                                      max_new_tokens=task.max_new_tokens)
        write_json_atomic(os.path.join(cfg.out, "vqa_predictions.json"),
                          [{"question_id": k, "answer": v} for k, v in predictions.items()])
    rows = [(k, v) for k, v in list(predictions.items())[:8]]
    return scores, [_examples_section("vqa examples", ("question_id", "answer"), rows)]


RUNNERS = {
    "reconstruction": run_reconstruction,
    "text_to_image": run_text_to_image_task,
    "captioning": run_captioning_task,
    "vqa": run_vqa_task,
}


def _needs_model(cfg: EvalConfig, task: str) -> bool:
    return not (task in ("captioning", "vqa") and getattr(cfg, task).predictions is not None)


def check_setup(cfg: EvalConfig) -> Models | None:
    """Fail fast (before any work) on a missing/wrong model dir or a task the model kind cannot run."""
    needs = [t for t in cfg.tasks if _needs_model(cfg, t)]
    if not needs and cfg.model is None:
        return None
    kind = model_dir_kind(cfg.model)
    if kind == TOKENIZER_MODEL_TYPE:
        lm_tasks = [t for t in needs if t != "reconstruction"]
        if lm_tasks:
            raise ValueError(f"{cfg.model} is an image tokenizer directory: only 'reconstruction' can be evaluated; "
                             f"tasks {lm_tasks} need a {LM_MODEL_TYPE} directory")
    for task in cfg.tasks:
        for key in ("predictions", "feature_net", "inception_weights", "clip_weights", "lpips_weights", "fid_weights"):
            path = getattr(getattr(cfg, task), key, None)
            if path is not None and not os.path.exists(path):
                raise FileNotFoundError(f"{task}.{key}: file not found: {path}")
    return Models(cfg.model, kind, _device(cfg.device))


def evaluate(cfg: EvalConfig, log=print) -> dict:
    """Run the configured tasks; write OUT/metrics.json + OUT/report.md; return the metrics record."""
    import torch

    from .report import write_report

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    models = check_setup(cfg)
    os.makedirs(cfg.out, exist_ok=True)
    metrics, sections, failed = {}, [], {}
    for task in cfg.tasks:
        torch.manual_seed(cfg.seed)
        start = time.perf_counter()
        log(f"evaluate: {task} ...")
        try:
            values, extra = RUNNERS[task](cfg, models)
        except Exception as err:  # noqa: BLE001 - one failing task must not lose the others; it is reported
            failed[task] = f"{type(err).__name__}: {err}"
            log(f"evaluate: {task} FAILED: {failed[task]}")
            traceback.print_exc(file=sys.stderr)
            continue
        values["seconds"] = round(time.perf_counter() - start, 3)
        metrics[task] = values
        sections += extra
        log(f"evaluate: {task} done in {values['seconds']:.1f} s")
    return write_report(cfg.out, metrics, sections, failed=failed, config=dataclasses.asdict(cfg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaussiantoken evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="evaluation YAML (configs/eval/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, dotted keys (text_to_image.num_prompts=50)")
    parser.add_argument("--model", default=None, help="model directory (overrides `model:`)")
    parser.add_argument("--out", default=None, help="output directory (overrides `out:`)")
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides)
    try:
        if args.model is not None:
            overrides.append(f"model={json.dumps(args.model)}")
        if args.out is not None:
            overrides.append(f"out={json.dumps(args.out)}")
        cfg = load_config(args.config, overrides)
        record = evaluate(cfg)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"gaussiantoken evaluate: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in record.items() if not k.startswith("config.")}, indent=2))
    return 0 if record["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
