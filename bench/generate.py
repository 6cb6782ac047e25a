"""Benchmark of image generation (lm/generation.py): images/s, tokens/s, and overheads.

CPU (default): a Shapes-sized model (random weights: Llama 6 x 256, the Shapes tokenizer preset's
layout, 32 Gaussians x 3 slots = 96 tokens/image) at --batch images:
  plain       backbone.generate, greedy, no processors, 2 x batch rows (the CFG batch) - a plain forward
  ours-hf     generate_images path: CFG + grammar + top-k sampling through model.generate
  ours-static the same tokens from our StaticCache decode loop
  and the overhead ratio ours / plain per token at equal batch (target <= 1.3x).
--device cuda: a ~400M Llama (24 x 1024, random weights, bf16) at batch 64 (128 rows with CFG):
  default     transformers' default generate (dynamic cache, eager) + our processors
  hf-static   model.generate with cache_implementation="static" (+ its own auto-compile)
  compiled    our fast path: StaticCache loop, decode step in torch.compile(mode="reduce-overhead")
  and the speed-up over default (target >= 10x). All rows: same sampling settings, guidance 3.

    python bench/generate.py [--device cpu|cuda] [--batch N] [--num-gaussians M] [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gaussiantoken.lm.generation import ImageGrammar, sample_image_tokens

PRESETS = {
    "shapes": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4,
                   num_key_value_heads=4),
    "400m": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16),
}
TEXT_VOCAB = 384


def build(preset: str, num_gaussians: int, device: str, dtype):
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig

    tok = GaussianTokenizer(GaussianTokenizerConfig.shapes(num_gaussians=num_gaussians, kmeans_init=False))
    grammar = ImageGrammar(tok.token_layout, TEXT_VOCAB, tok.tokens_per_image, eoi_token_id=5)
    config = LlamaConfig(vocab_size=TEXT_VOCAB + tok.vocab_size, max_position_embeddings=1024, pad_token_id=3,
                         bos_token_id=1, eos_token_id=2, **PRESETS[preset])
    torch.manual_seed(0)
    lm = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    n_params = sum(p.numel() for p in lm.parameters())
    return lm, grammar, n_params


def prompts(batch: int):
    g = torch.Generator().manual_seed(0)
    cond = [[1] + torch.randint(10, TEXT_VOCAB, (int(n),), generator=g).tolist() + [4]
            for n in torch.randint(6, 14, (batch,), generator=g)]
    return cond, [[1, 4]] * batch


def timed(fn, repeats: int, device: str) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=None, help="images per batch (cpu 8, cuda 64)")
    p.add_argument("--num-gaussians", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-hf-static", action="store_true", help="cuda: skip the hf-static row (saves its compile)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    batch = args.batch or (64 if cuda else 8)
    lm, grammar, n_params = build("400m" if cuda else "shapes", args.num_gaussians, args.device,
                                  torch.bfloat16 if cuda else torch.float32)
    cond, uncond = prompts(batch)
    steps = grammar.tokens_per_image + 1
    sampling = dict(guidance_scale=3.0, temperature=1.0, top_k=100)

    def ours(backend, cache=None):
        return lambda: sample_image_tokens(lm, grammar, cond, uncond, generator=torch.Generator(args.device)
                                           .manual_seed(0), backend=backend, cache_implementation=cache, **sampling)

    def plain():
        from gaussiantoken.lm.generation import left_pad

        ids, mask = left_pad(cond + uncond, 3, args.device)
        lm.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=steps, min_new_tokens=steps,
                    eos_token_id=None, pad_token_id=3)

    rows = {}
    if cuda:
        cases = [("default", ours("hf")), ("hf-static", ours("hf", "static")), ("compiled", ours("compiled"))]
        cases = [c for c in cases if not (args.no_hf_static and c[0] == "hf-static")]
    else:
        cases = [("plain", plain), ("ours-hf", ours("hf")), ("ours-static", ours("static"))]
    for name, fn in cases:
        start = time.perf_counter()
        fn()  # warm-up (and compilation)
        warmup = time.perf_counter() - start
        seconds = timed(fn, args.repeats, args.device)
        rows[name] = dict(seconds=seconds, images_per_s=batch / seconds, tokens_per_s=batch * steps / seconds,
                          ms_per_step=1000 * seconds / steps, first_call_s=warmup)
    base = "default" if cuda else "plain"
    for r in rows.values():
        r["relative_time"] = r["seconds"] / rows[base]["seconds"]
    result = dict(device=args.device, backbone_params=n_params, batch_images=batch, rows_with_cfg=2 * batch,
                  tokens_per_image=grammar.tokens_per_image, sampling=sampling, results=rows)
    if cuda:
        result["speedup_compiled_vs_default"] = rows["default"]["seconds"] / rows["compiled"]["seconds"]
        result["gpu"] = torch.cuda.get_device_name()
    else:
        result["overhead_ours_hf_vs_plain"] = rows["ours-hf"]["relative_time"]
        result["overhead_ours_static_vs_plain"] = rows["ours-static"]["relative_time"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.device}: backbone {n_params / 1e6:.0f}M params, {batch} images/batch ({2 * batch} rows with CFG), "
          f"{grammar.tokens_per_image} tokens/image")
    print(f"{'path':<12} {'s/batch':>9} {'images/s':>10} {'tokens/s':>10} {'ms/step':>9} {'x base':>8}")
    for name, r in rows.items():
        print(f"{name:<12} {r['seconds']:>9.3f} {r['images_per_s']:>10.2f} {r['tokens_per_s']:>10.1f} "
              f"{r['ms_per_step']:>9.2f} {r['relative_time']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
