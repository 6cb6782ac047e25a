"""`gaussiantoken demo`: the whole two-stage recipe on the built-in Shapes world, end to end.

Stages (each one's outputs land under OUT; a finished stage leaves `OUT/stages/<name>.json`, so a
rerun skips it, and an interrupted stage continues from its trainer's last checkpoint):

1. data        make the Shapes splits (train / held-out) and a sample grid
2. tokenizer   train the Gaussian tokenizer (configs/tokenizer/shapes.yaml)       -> OUT/tokenizer
3. codes       encode the training split into image token ids                     -> OUT/codes
4. text        train the sentencepiece text vocabulary                            -> OUT/text_tokenizer
5. lm          train the multimodal LM with DeepSpeed (configs/lm/shapes.yaml)    -> OUT/lm
6. vqa         with `--vqa-minutes M` (and in `--quick`): a VQA fine-tune of OUT/lm, a second checkpoint for
               answering questions (`VQA_STAGE`: VQA only, the lookup taught by train.referent_attention /
               referent_values; relations answered with both objects' positions written first,
               data.relation_positions)                                          -> OUT/lm_vqa
7. evaluate    reconstruction, text-to-image, captioning, VQA (configs/eval/shapes.yaml), then captioning and
               VQA again on the held-out scenes drawn by another renderer (anti-aliased edges, sub-pixel
               positions: `OTHER_RENDERER`, metrics `antialiased.*`); OUT/lm_vqa's VQA on both (`vqa_model.*`)
               -> OUT/metrics.json, OUT/report.md (+ grids and plots under OUT/eval, OUT/eval_antialiased)

The two training stages run their commands (`gaussiantoken train-tokenizer ...`, `gaussiantoken train-lm ...`)
in fresh processes, exactly as a user would (about 10 s of imports each; their output streams through).
SIGTERM/SIGINT to the demo are passed on: the trainer saves a checkpoint and exits 143, the demo exits 143 too,
and a rerun continues the stage from that checkpoint.

One writer: the demo holds OUT's run lock (a second demo into the same OUT exits with status 2, naming
the first); --out must be a folder.

Budgets: the default demo is sized for about 15 minutes on 2 CPU cores, `--quick` for about 3
(the CI smoke test), `--minutes N` for about N (the tokenizer keeps its 5 minutes, the LM gets the rest
less about 1.8 minutes for the other stages; `--vqa-minutes M` takes M, and about a minute for its evaluation, out
of them for the VQA stage). `--precision auto` (the default) trains both stages in bf16 where the
hardware computes it natively (GPUs; CPUs with AVX512-BF16 or AMX), else fp32 (`with_precision`: under bf16
the tokenizer keeps 70% of its minutes, about its fp32 steps, and the LM gets the rest). The LM trains on fresh Shapes scenes encoded on the fly
(`data.source=shapes_stream`, `lm.stream`: no scene repeats); the codes stage still shows the extract-codes
path that real datasets use. Text-to-image is scored on the structured held-out sets (one-object prompts
with new scenes, unseen two- and three-object compositions; `eval.text_to_image.prompt_sets`). Every stage reads the same YAML recipes a user would run by hand; the demo only
overrides paths, sizes, time budgets and precision (see `PLANS`, `with_precision`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
STAGES = ("data", "tokenizer", "codes", "text", "lm", "vqa", "evaluate")
# the LM's data: fresh scenes (lm.stream), text-to-image spans object-major (lm.object_layout: 0.44 / 0.32
# vs 0.18 text-to-image accuracy at 2,500 steps, two seeds; unseen two-object 0.54 / 0.30 vs 0.04; bench/RESULTS.md);
# canonical backgrounds (lm.canonical) measured no better than raw; (with grid input images, modelling them too,
# data.image_input_loss, lifted captions 0.50 / 0.51 -> 0.70 / 0.55 at 5,000 steps: dropped with object inputs, below);
# captioning targets in canonical order and
# input images' tokens tagged with their object group (data.caption_style=canonical, model.image_groups=3: captions
# exact at 2,500 steps 0.47 -> 0.70 with the equivariant tokenizer, and see bench/RESULTS.md for the demo tokenizer);
# input images read as the object-major spans of their groups, without loss on them (model.input_layout=objects,
# data.image_input_loss=false: at 2,500 steps, seeds 0 / 1, text-to-image 0.46 / 0.42 -> 0.73 / 0.66, captions exact
# 0.69 / 0.72 -> 0.83 / 0.87, VQA level; with the input loss kept, captions 0.88 / 0.93 but text-to-image 0.44 / 0.35;
# bench/RESULTS.md)
LM_DATA = ["data.source=shapes_stream", "data.t2i_layout=objects", "data.max_length=192", "data.image_input_loss=false",
           "data.caption_style=canonical", "model.image_groups=3", "model.input_layout=objects"]


@dataclass
class Plan:
    """Sizes and time budgets of one demo flavour."""

    train_samples: int
    tokenizer_minutes: float
    tokenizer_steps: int
    lm_minutes: float
    lm_steps: int
    lm_repeats: int
    eval_prompts: int
    eval_images: int
    eval_meteor: bool
    feature_net_samples: int
    extra_tokenizer: list[str] = field(default_factory=list)
    extra_lm: list[str] = field(default_factory=list)
    vqa_minutes: float = 0.0  # > 0: the VQA stage's minutes (its step cap stays out of reach: 400 a minute)


PLANS = {
    # the step caps are out of reach on CPU: both cosines follow their clocks and anneal by the end of the minutes
    # 5 + 7.7 minutes of training (3.5 + 9.2 under bf16) and the rest: runs 21-22 (9.5 bf16 LM minutes, a 100-scene
    # evaluation of 67 / 56 s) ended at 14.6 / 14.4; runs 24-25 (9.2 LM minutes; 300 scenes and the second renderer,
    # an evaluation of 75 / 66 s) at 14.5 / 14.3
    "default": Plan(train_samples=6000, tokenizer_minutes=5.0, tokenizer_steps=6000, lm_minutes=7.7,
                    lm_steps=6000, lm_repeats=4, eval_prompts=50, eval_images=300, eval_meteor=True,
                    feature_net_samples=1000,
                    # a narrower LM than configs/lm/shapes.yaml: about twice the steps in the same minutes
                    extra_lm=["model.text_config.hidden_size=192", "model.text_config.intermediate_size=512",
                              *LM_DATA]),
    "quick": Plan(train_samples=800, tokenizer_minutes=0.6, tokenizer_steps=150, lm_minutes=0.6,
                  lm_steps=60, lm_repeats=1, eval_prompts=8, eval_images=16, eval_meteor=False,
                  feature_net_samples=200, extra_tokenizer=["train.eval_every=100", "train.sample_every=100"],
                  extra_lm=[*LM_DATA, "data.stream_chunk=64"], vqa_minutes=0.3),
}
# the VQA stage: OUT/lm continued on VQA alone (fresh scenes: another stream seed), three questions per image,
# the lookup's two hops taught (lm.referent). Measured as a second stage from the LMs of demo runs 24 / 25 (bench/
# RESULTS.md, "a VQA stage after the demo's LM"): VQA 0.89 / 0.86 after 1,200 steps, 0.914 after 2,400; it erases
# text-to-image and captions, so it is a second checkpoint beside OUT/lm, not a replacement. Relations answered with
# both objects' positions first (data.relation_positions; "relations answered by writing both objects' positions
# first"): from demo run 26's LM, 2,400 steps, VQA 0.903 / 0.909 -> 0.940 / 0.938 (two seeds; relations at chance
# -> 0.73 / 0.71); demo run 28 (--minutes 40 --vqa-minutes 14): 0.932, anti-aliased 0.927
VQA_STAGE = ["data.ratios={text_to_image: 0, caption: 0, vqa: 1}", "data.vqa_turns=3", "data.relation_positions=true",
             "data.max_length=336",
             "train.learning_rate=5e-4", "train.referent_attention=0.3", "train.referent_values=0.3",
             "train.referent_attention_layers=[1, 3]", "model.attn_implementation=eager", "train.seed=1"]
VQA_STAGE_OVERHEAD_MINUTES = 1.0  # its trainer's start and its two evaluations (900 questions each)
OTHER_STAGES_MINUTES = 1.8  # data, codes, text vocabulary, evaluation, process starts: 1.2-1.35 in runs 21-22, ~10 s more since


def plan_for(quick: bool = False, minutes: float | None = None, vqa_minutes: float | None = None) -> tuple[str, Plan]:
    """(flavour, plan): `--quick`, the default, or the default with N minutes in all (the LM gets the rest, less
    `vqa_minutes` and the VQA stage's overhead when a VQA stage is asked for; it needs `minutes`)."""
    if vqa_minutes is not None and (quick or minutes is None):
        raise ValueError("--vqa-minutes is taken out of --minutes N: give both (the quick demo has its own VQA stage)")
    if vqa_minutes is not None and vqa_minutes <= 0:
        raise ValueError(f"--vqa-minutes must be positive, got {vqa_minutes:g}")
    if quick or minutes is None:
        return ("quick", PLANS["quick"]) if quick else ("default", PLANS["default"])
    base = PLANS["default"]
    vqa = vqa_minutes or 0.0
    lm_minutes = minutes - base.tokenizer_minutes - OTHER_STAGES_MINUTES - (vqa + VQA_STAGE_OVERHEAD_MINUTES if vqa else 0)
    if lm_minutes < 1.0:
        raise ValueError(f"--minutes {minutes:g} leaves the LM {lm_minutes:.1f} minutes; give at least "
                         f"{minutes - lm_minutes + 1:.0f}")
    flavour = f"minutes-{minutes:g}" + (f"-vqa-{vqa:g}" if vqa else "")
    return flavour, replace(base, lm_minutes=lm_minutes, lm_steps=max(base.lm_steps, int(400 * lm_minutes)),
                            vqa_minutes=vqa)


TRAIN_SEED, HELDOUT_SEED = 0, 1234
# 300 held-out scenes for captioning and VQA (900 questions): a rate near 0.9 has a standard error of 0.017 (0.03 on
# the 100 of runs up to 22, whose captions read 0.89 / 0.87 there and 0.913 / 0.913 on 300; bench/RESULTS.md)
OTHER_RENDERER = {"antialiased": 1.0}  # the third target: the same scenes, drawn anti-aliased at sub-pixel positions


BF16_TOKENIZER_SHARE = 0.7  # of the tokenizer's fp32 minutes, under bf16 (about its fp32 steps); the LM gets the rest


def with_precision(plan: Plan, precision: str, on_cuda: bool) -> Plan:
    """The plan with both trainers set to `precision` ("bf16" | "fp32", from `runtime.precision.resolve_precision`):
    the tokenizer's autocast (`train.mixed_precision`), the LM's DeepSpeed bf16 (`train.bf16`) and, for bf16 on
    CPU, eager attention (the step with sdpa gains 1.16x from bf16, with eager 1.50x against fp32 sdpa). Measured on the 2-core build
    machine (bench/RESULTS.md, 2026-12-06): the tokenizer makes 1.46x the steps in 5 minutes under bf16 (41.7 ->
    48.3 dB, exact scenes 0.996 -> 0.998), the LM 1.50x with level losses. So under bf16 the tokenizer keeps 70% of
    its minutes (about its fp32 steps) and the LM gets the rest."""
    bf16 = precision == "bf16"
    lm = [f"train.bf16={str(bf16).lower()}"] + (["model.attn_implementation=eager"] if bf16 and not on_cuda else [])
    tokenizer_minutes = round(plan.tokenizer_minutes * BF16_TOKENIZER_SHARE, 2) if bf16 else plan.tokenizer_minutes
    return replace(plan, tokenizer_minutes=tokenizer_minutes,
                   lm_minutes=round(plan.lm_minutes + plan.tokenizer_minutes - tokenizer_minutes, 2),
                   extra_tokenizer=[*plan.extra_tokenizer, f"train.mixed_precision={'bf16' if bf16 else 'no'}"],
                   extra_lm=[*plan.extra_lm, *lm])


# ----------------------------------------------------------------------------- stage bookkeeping
class Stages:
    """Completion records under OUT/stages: one JSON per finished stage (written atomically)."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)

    def done(self, name: str) -> dict | None:
        path = self.dir / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def finish(self, name: str, record: dict) -> None:
        from gaussiantoken.runtime.files import atomic_write_text

        atomic_write_text(self.dir / f"{name}.json", json.dumps(record, indent=2))


def _banner(index: int, name: str, text: str) -> None:
    print(f"\n[{index}/{len(STAGES)}] {name}: {text}", flush=True)


# ----------------------------------------------------------------------------- the stages
def stage_data(out: Path, plan: Plan) -> dict:
    from gaussiantoken.data import shapes
    from gaussiantoken.eval.report import save_image_grid

    train = shapes.make_dataset(plan.train_samples, seed=TRAIN_SEED)
    heldout = shapes.make_dataset(max(plan.eval_images, 64), seed=HELDOUT_SEED)
    import numpy as np

    images = [np.asarray(row["image"], dtype=np.float32) / 255.0 for row in train.select(range(16))]
    save_image_grid(images, out / "data_samples.png", nrow=8, captions=list(train["caption"][:16]))
    unique = len(set(train["caption"]))
    return {"train_samples": len(train), "train_seed": TRAIN_SEED, "heldout_seed": HELDOUT_SEED,
            "unique_train_captions": unique, "heldout_samples": len(heldout)}


class StageFailed(RuntimeError):
    """A stage's command exited with a non-zero status (its own one-line error is already on stderr)."""

    def __init__(self, stage: str, status: int):
        self.stage, self.status = stage, status
        why = "stopped by a signal (checkpoint saved; rerun to continue)" if status in (143, -2, -15) else "failed"
        super().__init__(f"stage {stage}: the command {why}, exit status {status}")


def run_command(stage: str, command: str, args: list[str], threads: int | None = None) -> dict:
    """Run `python -m gaussiantoken COMMAND ARGS... --summary FILE` in a fresh process, as a user would (its
    output streams through; SIGTERM/SIGINT are passed on: the trainer checkpoints and exits 143); returns
    the command's summary (`runtime.finalize.write_summary`). A non-zero exit raises `StageFailed`."""
    from gaussiantoken.runtime.child import run_child

    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="gaussiantoken-demo-") as tmp:
        summary = Path(tmp) / "summary.json"
        status = run_child([sys.executable, "-m", "gaussiantoken", command, *args, "--summary", str(summary)],
                           env=env)
        if status != 0:
            raise StageFailed(stage, status)
        return json.loads(summary.read_text())


def stage_tokenizer(out: Path, plan: Plan, threads: int | None = None) -> dict:
    run_dir = out / "runs" / "tokenizer"
    result = run_command("tokenizer", "train-tokenizer", [
        str(REPO_CONFIGS / "tokenizer" / "shapes.yaml"),
        f"train.output_dir={run_dir}",
        f"train.max_minutes={plan.tokenizer_minutes}",
        f"train.max_steps={plan.tokenizer_steps}",
        f"data.num_samples={plan.train_samples}",
        f"data.seed={TRAIN_SEED}",
        "train.resume=auto",
        *plan.extra_tokenizer,
    ], threads)
    if result["final_dir"] is None:
        raise RuntimeError(f"tokenizer training stopped ({result['stop_reason']}) without a final model")
    _replace_dir(Path(result["final_dir"]), out / "tokenizer")
    return {"steps": result["step"], "stop_reason": result["stop_reason"], "dir": str(out / "tokenizer"),
            **{k: v for k, v in result["last_metrics"].items() if isinstance(v, (int, float))}}


def stage_codes(out: Path, plan: Plan) -> dict:
    from gaussiantoken.data import shapes
    from gaussiantoken.lm.extract import extract_codes

    dataset = shapes.make_dataset(plan.train_samples, seed=TRAIN_SEED)
    codes = extract_codes(out / "tokenizer", dataset, out / "codes", batch_size=128)
    return {"rows": len(codes), "dir": str(out / "codes")}


def stage_text(out: Path, plan: Plan) -> dict:
    from gaussiantoken.lm.text_tokenizer import default_corpus, train_text_tokenizer

    tokenizer = train_text_tokenizer(default_corpus(num_samples=4000, seed=TRAIN_SEED), out_dir=out / "text_tokenizer")
    return {"vocab_size": len(tokenizer), "dir": str(out / "text_tokenizer")}


def _train_lm(stage: str, out: Path, run_dir: Path, minutes: float, steps: int, extra: list[str],
              threads: int | None) -> dict:
    """`gaussiantoken train-lm configs/lm/shapes.yaml` on the demo's tokenizer, vocabulary and codes, with a time
    budget and `extra` overrides; its summary."""
    return run_command(stage, "train-lm", [
        str(REPO_CONFIGS / "lm" / "shapes.yaml"),
        f"model.tokenizer={out / 'tokenizer'}",
        f"model.text_tokenizer={out / 'text_tokenizer'}",
        f"data.codes={out / 'codes'}",
        f"train.output_dir={run_dir}",
        f"train.max_minutes={minutes}",
        f"train.max_steps={steps}",
        f"train.deepspeed={REPO_CONFIGS / 'deepspeed' / 'zero2.json'}",
        "train.resume=auto",
        *extra,
    ], threads)


def stage_lm(out: Path, plan: Plan, threads: int | None = None) -> dict:
    result = _train_lm("lm", out, out / "runs" / "lm", plan.lm_minutes, plan.lm_steps,
                       [f"data.repeats={plan.lm_repeats}", *plan.extra_lm], threads)
    _replace_dir(Path(result["final_dir"]), out / "lm")
    return {"steps": result["global_step"], "stopped_early": result["stopped_early"], "dir": str(out / "lm"),
            "final_loss": result["final_loss"], "train_seconds": round(result["seconds"], 1)}


def stage_vqa(out: Path, plan: Plan, threads: int | None = None) -> dict:
    if plan.vqa_minutes <= 0:
        return {"skipped": "no VQA stage in this plan (--vqa-minutes)"}
    result = _train_lm("vqa", out, out / "runs" / "lm_vqa", plan.vqa_minutes, max(1, int(400 * plan.vqa_minutes)),
                       [*plan.extra_lm, f"model.init_from={out / 'lm'}", *VQA_STAGE], threads)
    _replace_dir(Path(result["final_dir"]), out / "lm_vqa")
    return {"steps": result["global_step"], "stopped_early": result["stopped_early"], "dir": str(out / "lm_vqa"),
            "final_loss": result["final_loss"], "train_seconds": round(result["seconds"], 1)}


def stage_evaluate(out: Path, plan: Plan) -> dict:
    from gaussiantoken.eval.run import evaluate, load_config

    train_spec = {"name": "shapes", "num_samples": plan.train_samples, "seed": TRAIN_SEED}
    heldout = {"name": "shapes", "num_samples": plan.eval_images, "seed": HELDOUT_SEED}
    cfg = load_config(REPO_CONFIGS / "eval" / "shapes.yaml", [
        f"model={out / 'lm'}",
        f"out={out / 'eval'}",
        f"reconstruction.data={json.dumps(heldout)}",
        f"captioning.data={json.dumps(heldout)}",
        f"vqa.data={json.dumps(heldout)}",
        f"captioning.meteor={str(plan.eval_meteor).lower()}",
        f"text_to_image.num_prompts={plan.eval_prompts}",
        "text_to_image.prompt_sets=true",
        f"text_to_image.exclude_data={json.dumps(train_spec)}",
        f"text_to_image.feature_net_train_samples={plan.feature_net_samples}",
    ])
    record = evaluate(cfg)
    other = {**heldout, "renderers": OTHER_RENDERER}
    other_cfg = load_config(REPO_CONFIGS / "eval" / "shapes.yaml", [
        f"model={out / 'lm'}", f"out={out / 'eval_antialiased'}", "tasks=[captioning,vqa]",
        f"captioning.data={json.dumps(other)}", f"vqa.data={json.dumps(other)}", "captioning.meteor=false",
    ])
    other_record = {f"antialiased.{k}": v for k, v in evaluate(other_cfg).items()}  # status, failures included
    if plan.vqa_minutes > 0:  # the VQA fine-tune (OUT/lm_vqa) answers the same questions on both renderers
        for prefix, data, where in (("vqa_model.", heldout, "eval_vqa"), ("vqa_model.antialiased.", other, "eval_vqa_antialiased")):
            vqa_cfg = load_config(REPO_CONFIGS / "eval" / "shapes.yaml", [
                f"model={out / 'lm_vqa'}", f"out={out / where}", "tasks=[vqa]", f"vqa.data={json.dumps(data)}"])
            other_record.update({f"{prefix}{k}": v for k, v in evaluate(vqa_cfg).items()})
    metrics = {**json.loads((out / "eval" / "metrics.json").read_text()), **other_record}
    if any(v != "complete" for k, v in other_record.items() if k.endswith("status")):
        metrics["status"] = record["status"] = "incomplete"  # a failed later evaluation makes the whole incomplete
    from gaussiantoken.runtime.files import atomic_write_text

    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return {k: v for k, v in {**record, **other_record}.items() if isinstance(v, (int, float, str))}


TRAINING_STAGES = ("tokenizer", "lm", "vqa")  # each runs its trainer's command in a fresh process
RUNNERS = {
    "data": stage_data,
    "vqa": stage_vqa,
    "tokenizer": stage_tokenizer,
    "codes": stage_codes,
    "text": stage_text,
    "lm": stage_lm,
    "evaluate": stage_evaluate,
}


def _replace_dir(src: Path, dst: Path) -> None:
    from gaussiantoken.runtime.files import atomic_directory

    with atomic_directory(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


# ----------------------------------------------------------------------------- entry point
def run_demo(out: str | os.PathLike = "runs/demo", *args, **kwargs) -> dict:
    """Run (or continue) the demo in folder `out` (arguments: `_run_demo`), holding `out`'s run lock: a second
    demo into the same folder fails at once naming the first; `out` must be a folder, not a file."""
    from gaussiantoken.runtime.run_lock import run_lock

    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file; the demo writes a folder")
    with run_lock(out, "demo"):
        return _run_demo(out, *args, **kwargs)


def _run_demo(out: str | os.PathLike = "runs/demo", quick: bool = False, threads: int | None = None,
             minutes: float | None = None, precision: str = "auto", vqa_minutes: float | None = None) -> dict:
    """Run (or continue) the demo; returns the final metrics dict."""
    import torch

    from gaussiantoken.runtime.precision import resolve_precision

    if threads:
        torch.set_num_threads(threads)
    on_cuda = torch.cuda.is_available()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    flavour, plan = plan_for(quick, minutes, vqa_minutes)
    stages = Stages(out)
    previous = stages.done("plan")
    if previous is not None and previous.get("flavour") != flavour:
        raise ValueError(f"{out} holds a {previous.get('flavour')!r} demo; use another --out for a {flavour!r} run")
    resolved = resolve_precision(precision, on_cuda)
    if previous is not None:  # a run continues in its own precision (demos before --precision: the trainers' auto)
        own = previous.get("precision", "bf16" if on_cuda else "fp32")
        if own != resolved and precision != "auto":
            raise ValueError(f"{out} holds a demo trained in {own}; continue it with --precision {own} (or auto) "
                             f"or use another --out for a {resolved} run")
        resolved = own
    precision = resolved
    plan = with_precision(plan, precision, on_cuda)
    stages.finish("plan", {"flavour": flavour, "precision": precision})
    print(f"demo: {flavour}, {precision} training", flush=True)
    timings: dict[str, float] = {}
    for index, name in enumerate(STAGES, 1):
        record = stages.done(name)
        if record is not None:
            _banner(index, name, "already complete, skipped")
            timings[name] = record.get("seconds", 0.0)
            continue
        _banner(index, name, "running")
        start = time.monotonic()
        record = RUNNERS[name](out, plan, threads) if name in TRAINING_STAGES else RUNNERS[name](out, plan)
        record["seconds"] = round(time.monotonic() - start, 1)
        timings[name] = record["seconds"]
        stages.finish(name, record)
    from gaussiantoken.runtime.files import atomic_write_text

    from gaussiantoken.pipelines.demo_report import summary_table, write_model_cards

    metrics = json.loads((out / "metrics.json").read_text())
    write_model_cards(out, metrics)
    table = summary_table(metrics, timings)
    report = (out / "eval" / "report.md").read_text(encoding="utf-8")
    report = report.replace("](", "](eval/")  # the eval report's image links, relative to OUT
    atomic_write_text(out / "report.md", f"{report}\n\n## Demo summary ({flavour}, {precision} training)\n\n{table}\n")
    print("\n" + table)
    models = "tokenizer/, lm/" + (", lm_vqa/" if plan.vqa_minutes > 0 else "")
    print(f"\nOutputs in {out}: report.md, metrics.json, {models} (each with a README.md model card)")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaussiantoken demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="a ~3-minute smoke run instead of the ~15-minute demo")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="about N minutes in all instead of ~15: the LM gets the extra time")
    parser.add_argument("--vqa-minutes", type=float, default=None,
                        help="with --minutes: M of them (and about one more) go to a VQA fine-tune of the LM, saved "
                             "beside it as OUT/lm_vqa")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="training precision of both stages (default auto: bf16 on GPUs and on CPUs that compute "
                             "bf16 natively, AVX512-BF16 or AMX; else fp32)")
    args = parser.parse_args(argv)
    if args.quick and args.minutes is not None:
        parser.error("--quick and --minutes exclude each other")
    try:
        run_demo(args.out, quick=args.quick, threads=args.threads, minutes=args.minutes, precision=args.precision,
                 vqa_minutes=args.vqa_minutes)
    except StageFailed as err:  # the stage's command has printed its own error
        print(f"gaussiantoken demo: {err}", file=sys.stderr)
        return 143 if err.status in (143, -2, -15) else (err.status if err.status > 0 else 1)
    except (ValueError, FileNotFoundError) as err:
        print(f"gaussiantoken demo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
