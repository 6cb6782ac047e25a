"""Where one stage-two training step's time goes on CPU, and whether torch.compile pays (issue 12 item 4).

Builds the LM backbone of a run config (default: configs/lm/shapes.yaml at the demo's width, 4 x 192) and
times, over sequences of the Shapes length (96 image tokens + ~25 text, padded to the batch's longest):
- `fwd`: forward with the loss; `bwd`: backward; `opt`: torch.optim.AdamW step + zero_grad (fused over
  all parameters, the update DeepSpeed ZeRO-2 does with one process);
- `plain`: the three together in a plain loop;
- `compiled`: the same loop with the backbone under `torch.compile` (first calls excluded: the compile itself
  is reported separately as `compile_s`);
- `trainer`: the real HF Trainer + DeepSpeed ZeRO-2 step (`bench/train_lm.py`'s path, same shapes), so
  `trainer - plain` is what the trainer and DeepSpeed add per step.
Medians over `--steps` timed steps after `--warmup`. Every variant runs at each `--threads` value in one
process, side by side, so ratios are comparable on a noisy machine. DeepSpeed's start-up sets torch's thread
count from OMP_NUM_THREADS (all cores when unset), so the `trainer` column runs at the threads it reports
(`trainer_threads`); measure one thread with OMP_NUM_THREADS=1:

    OMP_NUM_THREADS=1 python bench/lm_step_profile.py --threads 1 --steps 20
    python bench/lm_step_profile.py --threads 2 --steps 20
    python bench/lm_step_profile.py --threads 1 --no-compile model.text_config.hidden_size=256

Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from train_lm import image_vocab_size, tokenizer_config_for  # noqa: E402  (the sibling bench's helpers)

DEMO_WIDTH = ["model.text_config.hidden_size=192", "model.text_config.intermediate_size=512"]


def _batch(batch: int, seq_len: int, vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=g)  # [B, L]
    return ids, torch.ones_like(ids)


def time_plain(model, opt, batches, warmup: int) -> dict:
    """Median seconds of forward / backward / optimizer over `batches` (the first `warmup` not counted)."""
    parts = {"fwd": [], "bwd": [], "opt": []}
    for i, (ids, mask) in enumerate(batches):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if i >= warmup:
            parts["fwd"].append(t1 - t0)
            parts["bwd"].append(t2 - t1)
            parts["opt"].append(t3 - t2)
    out = {k: statistics.median(v) for k, v in parts.items()}
    out["plain"] = out["fwd"] + out["bwd"] + out["opt"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "lm" / "shapes.yaml"))
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts, each measured in turn")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=122, help="96 image tokens + a Shapes prompt, about")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-trainer", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the run config (default: the demo width)")
    args = p.parse_args(argv)

    from transformers import AutoModelForCausalLM

    from gaussiantoken.lm.configuration import as_text_config
    from gaussiantoken.lm.train import LMRunConfig, resolve_path
    from gaussiantoken.runtime.config import load_run_config

    cfg = load_run_config(LMRunConfig, resolve_path(args.config), args.overrides or DEMO_WIDTH)
    text_config = as_text_config(dict(cfg.model.text_config))
    vocab = cfg.model.text_vocab_size + image_vocab_size(tokenizer_config_for(cfg))
    text_config.vocab_size = vocab
    text_config._attn_implementation = cfg.model.attn_implementation
    n = args.warmup + args.steps
    batches = [_batch(args.batch_size, args.seq_len, vocab, seed) for seed in range(n)]
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(text_config, dtype=torch.float32).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.95))
        row = {"threads": threads, **time_plain(model, opt, batches, args.warmup)}
        if not args.no_compile:
            compiled = torch.compile(model)
            t0 = time.perf_counter()
            time_plain(compiled, opt, batches[:2], warmup=1)  # the compile (forward + backward graphs) + one step
            row["compile_s"] = time.perf_counter() - t0
            row["compiled"] = time_plain(compiled, opt, batches, args.warmup)["plain"]
        if not args.no_trainer:
            import train_lm

            import json
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "t.json"
                train_lm.main(["--config", args.config, "--batch-size", str(args.batch_size), "--seq-len",
                               str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup),
                               "--threads", str(threads), "--json", str(out), *(args.overrides or DEMO_WIDTH)])
                result = json.loads(out.read_text())
                row["trainer"] = result["median_step_s"]
                row["trainer_threads"] = result["device"]
        rows.append(row)
    cols = ["fwd", "bwd", "opt", "plain", "compiled", "compile_s", "trainer"]
    print(f"\nbatch {args.batch_size} x {args.seq_len} tokens, median ms per step ({args.steps} steps)")
    print(f"{'threads':>7} " + " ".join(f"{c:>10}" for c in cols) + f" {'rows/s(trainer)':>16}")
    for r in rows:
        vals = [f"{r[c] * 1e3:>10.1f}" if c in r and c != "compile_s" else (f"{r[c]:>9.1f}s" if c in r else f"{'-':>10}")
                for c in cols]
        rate = f"{args.batch_size / r['trainer']:>16.1f}" if "trainer" in r else f"{'-':>16}"
        print(f"{r['threads']:>7} " + " ".join(vals) + " " + rate + f"  {r.get('trainer_threads', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
