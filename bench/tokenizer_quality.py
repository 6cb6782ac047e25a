"""Tokenizer quality bench: the real training recipe for a fixed time budget, then held-out metrics.

Each run is `gaussiantoken train-tokenizer RECIPE key=value ... train.max_minutes=M` (the same trainer,
in this process) followed by the `eval-tokenizer` metrics on a held-out Shapes seed: tokens per image,
vocabulary size, steps reached, per-image PSNR, the exact-scene rate of the reconstructions
(`parse_scene`), and the share of feature codes used. One table row per run:

    python bench/tokenizer_quality.py --minutes 5 --run shapes \
        --run "m24:model.num_gaussians=24" --run "offset:model.position_mode=anchor_offset,model.position_bins=8"

A run is NAME or NAME:key=value,key=value (trainer overrides, dotted keys as on the command line; a
value with commas inside brackets, e.g. model.encoder_channel_mult=[1,2], is kept whole). `--recipe`
picks the YAML (default configs/tokenizer/shapes.yaml). `--json out.json` writes the rows (with the
overrides, s/step and wall times) and `--keep DIR` keeps each run's output directory.

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


def split_overrides(text: str) -> list[str]:
    """'a=1,b=[1,2],c=x' -> ['a=1', 'b=[1,2]', 'c=x'] (commas inside brackets stay)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [o.strip() for o in out if o.strip()]


def run_one(name: str, overrides: list[str], args, out_dir: Path) -> dict:
    import torch

    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.eval.reconstruction import evaluate_tokenizer
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor
    from gaussiantoken.tokenizer.train import load_config, train

    settings = [f"train.output_dir={out_dir}", f"train.max_minutes={args.minutes}", "train.progress_bar=false",
                "train.log_with=none", *overrides]
    config = load_config(args.recipe, settings)
    start = time.time()
    result = train(config)
    train_s = time.time() - start
    model = GaussianTokenizer.from_pretrained(result.final_dir)
    processor = GaussianTokenizerImageProcessor.from_pretrained(result.final_dir)
    held_out = make_dataset(args.eval_samples, seed=args.eval_seed, image_size=model.config.image_size,
                            num_questions=0)
    torch.manual_seed(0)
    metrics = evaluate_tokenizer(model, processor, held_out, parse_scenes=True)
    return {
        "name": name, "overrides": overrides, "tokens": model.tokens_per_image, "vocab": model.vocab_size,
        "params": sum(p.numel() for p in model.parameters()), "steps": result.step,
        "s_per_step": train_s / max(1, result.step), "train_s": train_s, "psnr": metrics["psnr"],
        "ssim": metrics["ssim"], "parse": metrics["scene_exact_rate"], "usage": metrics["codebook_usage"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=None, help="NAME[:key=value,...] (repeatable)")
    p.add_argument("--recipe", default=str(REPO / "configs" / "tokenizer" / "shapes.yaml"))
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per run (train.max_minutes)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--eval-seed", type=int, default=12345, help="held-out Shapes seed (training uses 0)")
    p.add_argument("--json", default="", help="write the rows here")
    p.add_argument("--keep", default="", help="keep each run's output directory under this folder")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    header = (f"{'run':<16} {'tok/img':>7} {'vocab':>6} {'params':>8} {'steps':>6} {'s/step':>6} {'PSNR':>6} "
              f"{'SSIM':>6} {'parse':>6} {'usage':>6}")
    print(header, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for spec in args.run or ["shapes"]:
            name, _, rest = spec.partition(":")
            row = run_one(name, split_overrides(rest), args, root / name)
            rows.append(row)
            print(f"{row['name']:<16} {row['tokens']:>7} {row['vocab']:>6} {row['params']:>8} {row['steps']:>6} "
                  f"{row['s_per_step']:>6.3f} {row['psnr']:>6.2f} {row['ssim']:>6.3f} {row['parse']:>6.3f} "
                  f"{row['usage']:>6.3f}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
