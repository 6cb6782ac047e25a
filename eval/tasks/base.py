"""The small shared base of the evaluation benchmarks: what a benchmark is to the harness (`Task`), what
every benchmark gets to run with (`RunContext`: the models, loaded once, the output folder, batch size and
seed), and the helpers they share (dataset loading, config checks that name the key, example tables).

A benchmark is one file in eval/tasks/ holding its config dataclass and a `Task` subclass:

    @dataclass
    class MyBenchConfig:          # the YAML section `my_bench:` of an evaluation config
        data: dict = ...
    class MyBench(Task):
        name = "my_bench"         # the task name in `tasks:` and the metrics.json prefix
        config = MyBenchConfig
        def validate(self, cfg): ...              # check_* helpers below: errors name `my_bench.<key>`
        def run(self, cfg, ctx) -> (metrics dict, [ReportSection])

plus one entry in the table of `eval/tasks/__init__.py`. The harness (`eval/run.py`) does the rest: the
config section, the model-kind and file checks before any work, seeding, timing, failure isolation,
metrics.json and report.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gaussiantoken.runtime.model_dirs import LM_KIND


class Task:
    """One benchmark of the harness. Subclasses set `name` and `config` and implement `validate` / `run`."""

    name: ClassVar[str]
    config: ClassVar[type]  # the dataclass of the task's config section
    needs_lm: ClassVar[bool] = True  # False: an image-tokenizer directory is enough
    path_keys: ClassVar[tuple[str, ...]] = ()  # config keys naming files that must exist before any work

    def needs_model(self, cfg) -> bool:
        """Whether this run of the task needs the model directory (scoring a results file does not)."""
        return True

    def validate(self, cfg) -> None:
        """Type and range checks of the task's config section (ValueError naming `<name>.<key>`)."""

    def run(self, cfg, ctx: "RunContext") -> tuple[dict, list]:
        """Evaluate -> ({metric: value} nested as wanted, [eval.report.ReportSection])."""
        raise NotImplementedError

    def key(self, name: str) -> str:
        return f"{self.name}.{name}"


@dataclass
class RunContext:
    """What every task runs with: the models (None when no task needs one), OUT, batch size and seed."""

    models: "Models | None"
    out: str
    batch_size: int
    seed: int


class Models:
    """Loads what the tasks need once: the LM + processor, or the image tokenizer + image processor."""

    def __init__(self, path: str, kind: str, device: str):
        self.path, self.kind, self.device = path, kind, device
        self._lm = self._tokenizer = None

    def lm(self):
        if self.kind != LM_KIND:
            raise ValueError(f"{self.path} is an image tokenizer: only reconstruction can be evaluated")
        if self._lm is None:
            from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor

            model = GaussianTokenForCausalLM.from_pretrained(self.path).to(self.device).eval()
            self._lm = (model, GaussianTokenProcessor.from_pretrained(self.path))
        return self._lm

    def image_tokenizer(self):
        if self._tokenizer is None:
            from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

            tok = self.lm()[0].image_tokenizer if self.kind == LM_KIND else GaussianTokenizer.from_pretrained(self.path)
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


def shapes_spec(num_samples: int, seed: int = 1234) -> dict:
    """The default data spec of a task: held-out Shapes scenes (training uses seed 0)."""
    return {"name": "shapes", "num_samples": num_samples, "seed": seed}


def examples_section(title: str, header: tuple[str, ...], rows: list[tuple]):
    """A report.md section with a markdown table of examples (predictions beside their references)."""
    from gaussiantoken.eval.report import ReportSection

    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return ReportSection(title, "\n".join(lines))


# ----------------------------------------------------------------------------- config checks (YAML has no types)


def check_type(value, kinds, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ValueError(f"config key {name!r} must be {getattr(kinds, '__name__', kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ValueError(f"config key {name!r} must be {getattr(kinds, '__name__', kinds)}"
                         f"{' or null' if optional else ''}, got {value!r}")


def check_positive(value, name: str, optional: bool = False) -> None:
    check_type(value, int, name, optional)
    if value is not None and value <= 0:
        raise ValueError(f"config key {name!r} must be positive, got {value}")


def check_spec(value, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError(f"config key {name!r} must be a dataset spec mapping with a 'name' (e.g. "
                         f"{{name: shapes, num_samples: 200, seed: 1234}}), got {value!r}")


def check_dataset(task: Task, spec: dict, allowed: tuple[str, ...]) -> None:
    if spec["name"] not in allowed:
        raise ValueError(f"{task.key('data')}: unsupported dataset {spec['name']!r} (use {' or '.join(allowed)})")


__all__ = ["Task", "RunContext", "Models", "load_data", "shapes_spec", "examples_section",
           "check_type", "check_positive", "check_spec", "check_dataset"]
