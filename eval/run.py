"""The evaluation harness: `gaussiantoken evaluate CONFIG.yaml [key=value ...] [--model DIR] [--out DIR]`.

Owns the run config (`EvalConfig`: the run-wide settings of `EvalSettings` plus one section per benchmark,
built from the table `eval.tasks.TASKS`; filled from YAML by `runtime.config.load_run_config`, `key=value`
overrides with dotted keys) and `evaluate(config)`, which checks the model directory and the files the
config names before any work, runs the tasks the config names over one model directory and writes
OUT/metrics.json (flat dotted keys, e.g. reconstruction.psnr, text_to_image.accuracy, captioning.cider,
vqa.accuracy) and OUT/report.md through `eval.report.write_report`, plus what the tasks write (sample grids,
prediction files in the COCO / VQA results formats).

The benchmarks are one file each in eval/tasks/ (reconstruction, text_to_image, captioning, vqa), on the
small base of `eval/tasks/base.py`; this module knows none of them by name. A gaussiantoken_lm directory
allows every task; an image-tokenizer directory only the tasks that do not need the LM (reconstruction).
Captioning / VQA can also score an existing results file (`predictions:`) without a model.

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

from .tasks import TASKS, RunContext
from .tasks.base import Models, check_positive, check_type


@dataclass
class EvalSettings:
    """The run-wide settings of an evaluation config (the task sections are added from `TASKS`)."""

    model: str | None = None  # gaussiantoken_lm dir (all tasks) or image tokenizer dir (reconstruction only)
    out: str = "runs/eval"
    tasks: list = field(default_factory=lambda: list(TASKS))
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    seed: int = 0
    batch_size: int = 32
    num_threads: int | None = None  # torch.set_num_threads when set

    def __post_init__(self):
        validate_config(self)


def config_class(tasks: dict) -> type:
    """The config dataclass of a task table: EvalSettings, then one section `name: task.config` per task
    (in table order, which is also the order of metrics.json and of the report's configuration)."""
    return dataclasses.make_dataclass(
        "EvalConfig", [(name, task.config, field(default_factory=task.config)) for name, task in tasks.items()],
        bases=(EvalSettings,),
        namespace={"__module__": __name__,
                   "__doc__": "An evaluation config: EvalSettings + one section per task of eval.tasks.TASKS."})


EvalConfig = config_class(TASKS)


def validate_config(cfg) -> None:
    """Type and range checks that name the offending key (YAML gives no types of its own): the run-wide
    settings, then each task's section (`Task.validate`)."""
    check_type(cfg.model, str, "model", optional=True)
    check_type(cfg.out, str, "out")
    names = list(TASKS)
    if not isinstance(cfg.tasks, list) or not cfg.tasks:
        raise ValueError(f"config key 'tasks' must be a non-empty list of {names}, got {cfg.tasks!r}")
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown or len(set(cfg.tasks)) != len(cfg.tasks):
        raise ValueError(f"config key 'tasks': unknown or repeated task(s) {unknown or cfg.tasks}; choose from {names}")
    check_type(cfg.device, str, "device")
    if not (cfg.device in ("cpu", "cuda", "auto") or cfg.device.startswith("cuda:")):
        raise ValueError(f"config key 'device' must be cpu, cuda, cuda:N or auto, got {cfg.device!r}")
    check_type(cfg.seed, int, "seed")
    check_positive(cfg.batch_size, "batch_size")
    check_positive(cfg.num_threads, "num_threads", optional=True)
    for name, task in TASKS.items():
        if hasattr(cfg, name):
            task.validate(getattr(cfg, name))


def load_config(path, overrides: list[str] | None = None):
    """YAML + `key=value` overrides -> EvalConfig (ValueError/FileNotFoundError naming the problem)."""
    from gaussiantoken.runtime.config import load_run_config

    try:
        return load_run_config(EvalConfig, path, overrides or [])
    except TypeError as err:  # e.g. a scalar where a task mapping belongs
        raise ValueError(f"bad evaluation config {path}: {err}") from err


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


def check_setup(cfg) -> Models | None:
    """Fail fast (before any work) on a missing file named by a task's `path_keys` (with or without a model),
    a missing/wrong model dir, or a task the model kind cannot run. Without a model only the tasks that
    score a results file run; any other task is named in the error."""
    for task in cfg.tasks:
        for key in TASKS[task].path_keys:
            path = getattr(getattr(cfg, task), key)
            if path is not None and not os.path.exists(path):
                raise FileNotFoundError(f"config key '{task}.{key}': file not found: {path}")
    needs = [t for t in cfg.tasks if TASKS[t].needs_model(getattr(cfg, t))]
    if not needs and cfg.model is None:
        return None
    if cfg.model is None:
        raise ValueError(f"no model directory (config key 'model' is not set): tasks {needs} need one; set "
                         f"`model:` or pass --model DIR (a task scoring an existing results file needs none)")
    kind = model_dir_kind(cfg.model)
    if kind == TOKENIZER_MODEL_TYPE:
        lm_tasks = [t for t in needs if TASKS[t].needs_lm]
        if lm_tasks:
            allowed = ", ".join(repr(name) for name, task in TASKS.items() if not task.needs_lm)
            raise ValueError(f"{cfg.model} is an image tokenizer directory: only {allowed} can be evaluated; "
                             f"tasks {lm_tasks} need a {LM_MODEL_TYPE} directory")
    return Models(cfg.model, kind, _device(cfg.device))


def evaluate(cfg, log=print) -> dict:
    """Run the configured tasks; write OUT/metrics.json + OUT/report.md; return the metrics record."""
    import torch

    from .report import write_report

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    ctx = RunContext(models=check_setup(cfg), out=cfg.out, batch_size=cfg.batch_size, seed=cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    metrics, sections, failed = {}, [], {}
    for task in cfg.tasks:
        torch.manual_seed(cfg.seed)
        start = time.perf_counter()
        log(f"evaluate: {task} ...")
        try:
            values, extra = TASKS[task].run(getattr(cfg, task), ctx)
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
