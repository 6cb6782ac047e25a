"""Shapes tokenizer robustness bench (issue 16, item 5): reconstruction on Shapes drawn by other renderers.

Scores Shapes tokenizers on held-out scenes (seed 12345, never used in training) drawn four ways:
- `shapes`: our renderer (hard, pixel-snapped edges; `data.shapes.make_dataset`);
- `aa`: anti-aliased edges at sub-pixel centres (`data.shapes_antialiased.make_antialiased_dataset`,
  supersample 8, jitter 0.5 px: the set of bench/tokenizer_vs_vq.py);
- `aa-noise`: the same renderer plus Gaussian colour noise of std 0.02 x 255 per channel and pixel
  (`data.shapes_mixed.make_mixed_dataset`);
- `aa-wide`: anti-aliased with parameters no recipe trains on (supersample 4, jitter 1.0 px).
The scorer is `eval.reconstruction.evaluate_tokenizer` (what `gaussiantoken eval-tokenizer` and
bench/tokenizer_quality.py report): per-image PSNR, SSIM, and the exact-scene rate (the Shapes parser
reads the reconstruction; same objects, shapes, colours, sizes, centres within 1.5 px of the true,
moved centres).

Models are either trained here, at equal steps (`train.max_steps`, no clock), or given as saved dirs:

    OMP_NUM_THREADS=1 python bench/tokenizer_robustness.py --threads 1 --steps 2000 --seeds 0,1 \
        --run default --run "mixed:data.renderers.pixel=0.5,data.renderers.antialiased=0.5,data.color_noise=0.02"
    OMP_NUM_THREADS=1 python bench/tokenizer_robustness.py --threads 1 --model default-s0=/tmp/rob/default-s0/final

A run is NAME or NAME:key=value,... (trainer overrides on `--recipe`, default configs/tokenizer/shapes.yaml;
commas inside brackets stay). `--json out.json` writes one row per (model, set); `--keep DIR` keeps runs.
Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL_SEED = 12345
SETS = ("shapes", "aa", "aa-noise", "aa-wide")


def split_overrides(text: str) -> list[str]:
    """'a=1,b=[1,2],c=x' -> ['a=1', 'b=[1,2]', 'c=x'] (commas inside brackets stay)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [o.strip() for o in out if o.strip()]


def held_out(name: str, n: int, image_size: int = 32):
    """The held-out Shapes set `name` (module docstring), n scenes of seed EVAL_SEED."""
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.data.shapes_antialiased import make_antialiased_dataset
    from gaussiantoken.data.shapes_mixed import make_mixed_dataset

    if name == "shapes":
        return make_dataset(n, seed=EVAL_SEED, image_size=image_size, num_questions=0)
    if name == "aa":
        return make_antialiased_dataset(n, seed=EVAL_SEED, image_size=image_size)
    if name == "aa-noise":
        return make_mixed_dataset(n, seed=EVAL_SEED, image_size=image_size, num_questions=0,
                                  renderers={"antialiased": 1}, color_noise=0.02)
    if name == "aa-wide":
        return make_antialiased_dataset(n, seed=EVAL_SEED, image_size=image_size, supersample=4, jitter=1.0)
    raise ValueError(f"unknown held-out set {name!r}; expected one of {SETS}")


def score(model_dir: str | Path, sets: dict) -> dict:
    """{set name: {psnr, ssim, exact, attributes}} of the saved tokenizer at model_dir."""
    import torch

    from gaussiantoken.eval.reconstruction import evaluate_tokenizer
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

    model = GaussianTokenizer.from_pretrained(model_dir).eval()
    processor = GaussianTokenizerImageProcessor.from_pretrained(model_dir)
    out = {}
    for name, ds in sets.items():
        torch.manual_seed(0)
        m = evaluate_tokenizer(model, processor, ds, parse_scenes=True)
        out[name] = {"psnr": m["psnr"], "ssim": m["ssim"], "exact": m["scene_exact_rate"],
                     "attributes": m["scene_attribute_rate"]}
    return out


def train_one(recipe: str, overrides: list[str], steps: int, seed: int, out_dir: Path):
    from gaussiantoken.tokenizer.train import load_config, train

    settings = [f"train.output_dir={out_dir}", f"train.max_steps={steps}", f"train.seed={seed}",
                "train.progress_bar=false", "train.log_with=none", "train.sample_every=0", "train.eval_every=0",
                *overrides]
    result = train(load_config(recipe, settings))
    if result.final_dir is None:
        raise RuntimeError(f"training {out_dir} stopped ({result.stop_reason}) without a final model")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=[], help="NAME[:key=value,...] to train (repeatable)")
    p.add_argument("--model", action="append", default=[], help="NAME=DIR of a saved tokenizer to score")
    p.add_argument("--recipe", default=str(REPO / "configs" / "tokenizer" / "shapes.yaml"))
    p.add_argument("--steps", type=int, default=2000, help="train.max_steps of every trained run")
    p.add_argument("--seeds", default="0", help="training seeds (train.seed), comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--json", default="")
    p.add_argument("--keep", default="", help="keep each trained run's output directory under this folder")
    args = p.parse_args(argv)
    sets_wanted = [s for s in args.sets.split(",") if s]
    bad = [s for s in sets_wanted if s not in SETS]
    models = [m.partition("=") for m in args.model]
    if bad or any(not d for _, _, d in models) or args.steps <= 0 or args.eval_samples <= 0 or not (args.run or models):
        p.error(f"need --run or --model NAME=DIR, --steps/--eval-samples > 0, --sets from {SETS}")

    import torch

    torch.set_num_threads(args.threads)
    sets = {s: held_out(s, args.eval_samples) for s in sets_wanted}
    print(f"{'model':<18} {'steps':>6} " + " ".join(f"{s + ' dB/exact':>18}" for s in sets), flush=True)
    rows = []

    def report(name: str, model_dir, steps, seed, extra: dict):
        scores = score(model_dir, sets)
        for s, m in scores.items():
            rows.append({"model": name, "set": s, "steps": steps, "seed": seed, **extra, **m})
        print(f"{name:<18} {str(steps):>6} " + " ".join(f"{m['psnr']:>11.2f} / {m['exact']:.3f}"
                                                         for m in scores.values()), flush=True)
        if args.json:
            from gaussiantoken.runtime.files import atomic_write_text

            atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")

    from gaussiantoken.data.shapes import parse_scene
    from gaussiantoken.eval.reconstruction import scene_match

    ceiling = {s: sum(scene_match(parse_scene(im), objs)[0] for im, objs in zip(ds["image"], ds["objects"])) / len(ds)
               for s, ds in sets.items()}  # the parser on the held-out images themselves
    rows.append({"model": "originals", "exact_by_set": ceiling})
    print(f"{'originals (parser)':<18} {'':>6} " + " ".join(f"{'':>11}   {v:.3f}" for v in ceiling.values()), flush=True)
    for name, _, model_dir in models:
        report(name, model_dir, None, None, {"dir": model_dir})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for spec in args.run:
                name, _, rest = spec.partition(":")
                overrides = split_overrides(rest)
                start = time.time()
                result = train_one(args.recipe, overrides, args.steps, seed, root / f"{name}-s{seed}")
                report(f"{name}-s{seed}", result.final_dir, result.step, seed,
                       {"overrides": overrides, "train_s": time.time() - start})
    return 0


if __name__ == "__main__":
    sys.exit(main())
