"""LM quality bench: the real stage-two trainer (`gaussiantoken train-lm`) for given steps or minutes, scored
with the eval harness at points along the way (a learning curve).

Each run is `train-lm configs/lm/shapes.yaml key=value ...` (the same trainer, in this process) on a trained
image tokenizer, by default on the fresh-scene stream (`data.source=shapes_stream`, `lm.stream`). The run is
cut at each `--steps` point with `train.stop_at_step` (the schedule follows the last point, so only the last
point is annealed; a resumed segment continues exactly) and the model of that point is scored:
- text-to-image accuracy on the structured held-out sets (`eval.text_to_image.prompt_sets`): one-object
  prompts with new scenes, unseen two-object and unseen three-object compositions, and all; the
  sub-scores color / shape / size / count / relation over all;
- captioning exact-scene accuracy and VQA accuracy per question type, on held-out scenes (seed 12345);
against steps, training rows (sequences seen; x ~120 tokens each) and training minutes. One table row per point:

    python bench/lm_quality.py --tokenizer runs/tokenizer-shapes/final --steps 400,800 --threads 1 \
        --run base --run "lr3e-3:train.learning_rate=3e-3" --seeds 0,1

A run is NAME or NAME:key=value,key=value (trainer overrides; commas inside brackets/braces stay).
`--minutes M` instead trains each run for M minutes (one point). `--model DIR` scores a trained LM directory
without training (e.g. to compare sampling settings: `--temperature`, `--guidance`, `--candidates` K: best of K samples,
`lm.rerank`). `--json out.json` writes the rows,
`--prompt-seed S` draws validation prompt sets and sampling (choose sampling settings there, report on the
default 1234). `--keep DIR` keeps the run directories (and each point's sample grid, captioned with what the parser read).
Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from tokenizer_quality import split_overrides  # noqa: E402  (the sibling bench's run-spec parser)

from gaussiantoken.lm.sampling_defaults import T2I_GUIDANCE_SCALE, T2I_TEMPERATURE  # noqa: E402

SETS = ("one", "two_unseen", "three_unseen")


def score_point(final_dir: str, args, out_dir: Path | None) -> dict:
    """Held-out scores of the LM in `final_dir` (see the module docstring)."""
    import torch

    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.eval.captioning import run_captioning
    from gaussiantoken.eval.report import save_image_grid
    from gaussiantoken.eval.text_to_image import (generate_best_of, generate_for_prompts, parsed_description,
                                                  prompt_sets, score_prompt_sets, score_text_to_image)
    from gaussiantoken.eval.vqa import run_vqa
    from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor

    model = GaussianTokenForCausalLM.from_pretrained(final_dir).eval()
    processor = GaussianTokenProcessor.from_pretrained(final_dir)
    size = int(model.config.tokenizer_config.image_size)
    sets = prompt_sets(args.prompts, seed=args.prompt_seed, image_size=size)
    prompts = [p for name in SETS for p in sets[name]]
    sampling = dict(guidance_scale=args.guidance, temperature=args.temperature, batch_size=64,
                    seed=0 if args.prompt_seed == 1234 else args.prompt_seed, backend=args.backend)
    single = None
    if args.candidates > 1:  # best of K (lm.rerank); the candidates give the one-sample accuracy too
        pixels, every = generate_best_of(model, processor, prompts, args.candidates, **sampling)
        single = score_text_to_image(every, [p for p in prompts for _ in range(args.candidates)])["accuracy"]
    else:
        pixels = generate_for_prompts(model, processor, prompts, **sampling)
    scores = score_prompt_sets(pixels, sets)
    if out_dir is not None:  # a few of each set, captioned with the prompt and what the parser read
        pick, start = [], 0
        for name in SETS:
            pick += list(range(start, start + min(8, len(sets[name]))))
            start += len(sets[name])
        save_image_grid(pixels[pick], out_dir / "text_to_image_samples.png", nrow=8, value_range=(-1.0, 1.0),
                        captions=[f"{prompts[i]} -> read {parsed_description(pixels[i])}" for i in pick])
    held_out = make_dataset(args.eval_images, seed=12345, image_size=size)
    cap, _ = run_captioning(model, processor, held_out, metrics=("bleu",), batch_size=64)
    vqa, _ = run_vqa(model, processor, held_out, batch_size=64)
    torch.set_grad_enabled(True)
    a = scores["all"]
    return {"t2i": a["accuracy"], **{f"t2i_{k}": scores[k]["accuracy"] for k in SETS}, "t2i_single_sample": single,
            "candidates": args.candidates,
            **{k: a[k] for k in ("color", "shape", "size", "count", "relation")},
            "caption_exact": cap["exact_scene_accuracy"], "vqa": vqa["accuracy"],
            "vqa_types": vqa["per_question_type"], "prompts": {k: len(v) for k, v in sets.items()}}


def run_one(name: str, seed: int, overrides: list[str], args, run_dir: Path) -> list[dict]:
    from gaussiantoken.lm.train import LMRunConfig, train
    from gaussiantoken.runtime.config import load_run_config

    points = [None] if args.minutes else sorted(int(s) for s in args.steps.split(","))
    base = [f"model.tokenizer={args.tokenizer}", f"train.output_dir={run_dir}", f"train.seed={seed}",
            "train.report_to=[]", "train.resume=auto", "train.save_total_limit=1", "train.logging_steps=50"]
    if args.source == "stream":
        base.append("data.source=shapes_stream")
    else:
        base += ["data.source=codes", f"data.codes={args.source}"]
    if args.minutes:
        base += [f"train.max_minutes={args.minutes}", "train.max_steps=100000", "train.save_steps=100000"]
    else:
        base += [f"train.max_steps={points[-1]}", "train.max_minutes=null", f"train.save_steps={points[-1]}"]
    rows, train_s = [], 0.0
    for point in points:
        extra = [] if point is None or point == points[-1] else [f"train.stop_at_step={point}"]
        cfg = load_run_config(LMRunConfig, args.recipe, [*base, *overrides, *extra])
        start = time.time()
        result = train(cfg)
        train_s += time.time() - start
        losses = [h["loss"] for h in result.log_history if "loss" in h]
        point_dir = run_dir / f"eval-{result.global_step}"
        point_dir.mkdir(parents=True, exist_ok=True)
        start = time.time()
        scores = score_point(str(result.final_dir), args, point_dir)
        rows.append({"name": name, "seed": seed, "overrides": overrides, "step": result.global_step,
                     "rows": result.global_step * cfg.train.per_device_batch_size * cfg.train.gradient_accumulation_steps,
                     "train_min": train_s / 60.0, "eval_s": time.time() - start,
                     "loss": losses[-1] if losses else None, **scores})
        print_row(rows[-1])
    return rows


HEADER = (f"{'run':<14} {'seed':>4} {'step':>6} {'min':>5} {'loss':>6} {'t2i':>5} {'one':>5} {'two':>5} {'three':>5} "
          f"{'col':>5} {'shape':>5} {'size':>5} {'count':>5} {'rel':>5} {'cap':>5} {'vqa':>5}  vqa per type")


def print_row(r: dict) -> None:
    types = " ".join(f"{k}={v:.2f}" for k, v in sorted(r["vqa_types"].items()))
    loss = f"{r['loss']:.3f}" if r["loss"] is not None else "-"
    rel = f"{r['relation']:.2f}" if r["relation"] is not None else "-"
    print(f"{r['name']:<14} {r['seed']:>4} {r['step']:>6} {r['train_min']:>5.1f} {loss:>6} {r['t2i']:>5.2f} "
          f"{r['t2i_one']:>5.2f} {r['t2i_two_unseen']:>5.2f} {r['t2i_three_unseen']:>5.2f} {r['color']:>5.2f} "
          f"{r['shape']:>5.2f} {r['size']:>5.2f} {r['count']:>5.2f} {rel:>5} {r['caption_exact']:>5.2f} "
          f"{r['vqa']:>5.2f}  {types}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default=None, help="trained GaussianTokenizer directory (for training runs)")
    p.add_argument("--model", default=None, help="score this trained LM directory only (no training)")
    p.add_argument("--run", action="append", default=None, help="NAME[:key=value,...] (repeatable)")
    p.add_argument("--recipe", default=str(REPO / "configs" / "lm" / "shapes.yaml"))
    p.add_argument("--source", default="stream", help="stream (fresh Shapes scenes) or an extract-codes dir")
    p.add_argument("--steps", default="400", help="comma-separated curve points (steps); the last is the run's end")
    p.add_argument("--minutes", type=float, default=None, help="train each run this long instead (one point)")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prompts", type=int, default=50, help="prompts per held-out set (one-object: at most 42)")
    p.add_argument("--eval-images", type=int, default=100, help="held-out scenes for captioning and VQA")
    p.add_argument("--prompt-seed", type=int, default=1234,
                   help="seed of the held-out prompt sets and their sampling (1234: the reported test sets; another "
                        "seed gives validation sets, e.g. to choose --temperature / --guidance)")
    p.add_argument("--guidance", type=float, default=T2I_GUIDANCE_SCALE)
    p.add_argument("--temperature", type=float, default=T2I_TEMPERATURE)
    p.add_argument("--candidates", type=int, default=1, help="text-to-image: best of this many samples (lm.rerank)")
    p.add_argument("--backend", default="hf", help="generation backend (hf | static | compiled)")
    p.add_argument("--json", default="", help="write the rows here")
    p.add_argument("--keep", default="", help="keep each run's directory (and sample grids) under this folder")
    args = p.parse_args(argv)
    if args.model is None and (args.tokenizer is None or not os.path.isdir(args.tokenizer)):
        p.error(f"--tokenizer {args.tokenizer} is not a directory (or give --model DIR to score only)")

    import torch

    torch.set_num_threads(args.threads)
    print(HEADER, flush=True)
    if args.model is not None:
        if not os.path.isdir(args.model):
            p.error(f"--model {args.model} is not a directory")
        start = time.time()
        row = {"name": f"T{args.temperature:g}/g{args.guidance:g}/k{args.candidates}", "seed": 0, "overrides": [], "step": 0,
               "rows": 0, "train_min": 0.0, "loss": None, **score_point(args.model, args, None),
               "eval_s": 0.0, "model": args.model}
        row["eval_s"] = time.time() - start
        print_row(row)
        if args.json:
            Path(args.json).write_text(json.dumps([row], indent=2) + "\n")
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for spec in args.run or ["base"]:
            name, _, rest = spec.partition(":")
            for seed in (int(s) for s in args.seeds.split(",")):
                rows += run_one(name, seed, split_overrides(rest), args, root / f"{name}-s{seed}")
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
