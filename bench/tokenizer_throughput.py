"""Tokenizer throughput: images per second of `encode` (pixels -> ids) and `decode` (ids -> pixels).

    python bench/tokenizer_throughput.py [MODEL_DIR] [--preset shapes] [--batch-size 64] [--iters 10]
        [--device cpu|cuda] [--threads 2] [--dtype float32|bfloat16] [--json out.json]

Without MODEL_DIR a randomly initialised model of `--preset` is timed (speed does not depend on the
weights). Each measurement: `--warmup` untimed calls, then the median over `--iters` timed calls
(CUDA synchronised), reported as images/s and ms/batch. On CUDA, bf16 runs under autocast.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch


def _timed(fn, iters: int, warmup: int, device: str) -> float:
    """Median seconds of one call of fn()."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", nargs="?", default=None)
    p.add_argument("--preset", default="shapes", help="GaussianTokenizerConfig preset when no MODEL_DIR")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig

    torch.manual_seed(0)
    if args.model_dir:
        model = GaussianTokenizer.from_pretrained(args.model_dir)
    else:
        model = GaussianTokenizer(GaussianTokenizerConfig.preset(args.preset))
    model = model.to(args.device).eval()
    size = model.config.image_size
    x = torch.rand(args.batch_size, 3, size, size, device=args.device) * 2 - 1  # [B, 3, S, S]
    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16,
                              enabled=args.dtype == "bfloat16")
    with torch.no_grad(), autocast:
        ids = model.encode(x)  # [B, T]
        enc = _timed(lambda: model.encode(x), args.iters, args.warmup, args.device)
        dec = _timed(lambda: model.decode(ids), args.iters, args.warmup, args.device)
    row = {
        "model": args.model_dir or f"preset:{args.preset} (random init)",
        "device": args.device, "dtype": args.dtype, "threads": args.threads, "batch_size": args.batch_size,
        "image_size": size, "tokens_per_image": model.tokens_per_image,
        "encode_images_per_s": args.batch_size / enc, "encode_ms_per_batch": 1000 * enc,
        "decode_images_per_s": args.batch_size / dec, "decode_ms_per_batch": 1000 * dec,
    }
    print(json.dumps(row, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(row, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
