"""Benchmark of stage-two training throughput: tokens/s and model-FLOPs utilisation (MFU).

Runs the same HF Trainer + DeepSpeed path as `gaussiantoken train-lm` on the LM backbone of a run config
(`model.text_config`), over synthetic token sequences (uniform random ids over the full text + image
vocabulary, labels = inputs; the frozen image tokenizer is not used in training since codes are
precomputed), and times the optimizer steps after a warm-up.

    python bench/train_lm.py                                   # CPU, configs/lm/shapes.yaml, fp32
    python bench/train_lm.py --device cuda --config configs/lm/gpu_400m.yaml   # ZeRO-2, bf16, 16 x 1024
    python bench/train_lm.py --precision bf16 model.attn_implementation=eager  # CPU bf16 (AVX512-BF16 / AMX)
    python bench/train_lm.py ... --json bench/results/train_lm.json

MFU = 6 * N * tokens/s / peak, N = trainable parameters of the backbone (embeddings included; the
non-embedding count is printed too), peak = 989e12 FLOP/s (H100/H200 SXM dense bf16) on CUDA; on CPU
no MFU is reported. Attention FLOPs are not counted (6N only), so MFU is a slight underestimate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
PEAK_BF16_DENSE = 989e12  # H100/H200 SXM dense bf16 FLOP/s


def image_vocab_size(tokenizer_config) -> int:
    """Local image vocabulary of a GaussianTokenizerConfig (built on the meta device: no memory, no init)."""
    from gaussiantoken.tokenizer import GaussianTokenizer

    with torch.device("meta"):
        return int(GaussianTokenizer(tokenizer_config).vocab_size)


def tokenizer_config_for(cfg):
    """The image tokenizer's config: from model.tokenizer when it exists, else the matching preset."""
    from gaussiantoken.tokenizer import GaussianTokenizerConfig

    path = REPO / cfg.model.tokenizer if not os.path.isabs(cfg.model.tokenizer) else Path(cfg.model.tokenizer)
    if (path / "config.json").is_file():
        return GaussianTokenizerConfig.from_pretrained(path)
    preset = "imagenet" if "imagenet" in cfg.model.tokenizer else "shapes"
    return GaussianTokenizerConfig.preset(preset)


class SyntheticTokens(torch.utils.data.Dataset):
    def __init__(self, num: int, seq_len: int, vocab: int, seed: int = 0):
        self.num, self.seq_len, self.vocab, self.seed = num, seq_len, vocab, seed

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        ids = torch.randint(0, self.vocab, (self.seq_len,), generator=g)  # [L]
        return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/lm/shapes.yaml"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="per device (default: the config's)")
    parser.add_argument("--seq-len", type=int, default=None, help="default: the config's max_position_embeddings")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--deepspeed", default=None, help="DeepSpeed JSON (default: the config's train.deepspeed)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                        help="training precision (default: bf16 on CUDA, fp32 on CPU); bf16 on CPU is DeepSpeed's bf16 "
                             "mode, fast where the CPU has AVX512-BF16 or AMX (add model.attn_implementation=eager)")
    parser.add_argument("--json", default=None)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run config")
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from gaussiantoken.lm.configuration import as_text_config
    from gaussiantoken.lm.train import LMRunConfig, avoid_cpu_op_builds, ensure_distributed_env, resolve_path
    from gaussiantoken.runtime.config import load_run_config

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA GPU is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_run_config(LMRunConfig, resolve_path(args.config), args.overrides)
    ensure_distributed_env()
    on_cuda = args.device == "cuda"
    ds_config = resolve_path(args.deepspeed or cfg.train.deepspeed) if (args.deepspeed or cfg.train.deepspeed) else None
    if ds_config and not on_cuda:
        avoid_cpu_op_builds()
    text_config = as_text_config(dict(cfg.model.text_config))
    vocab = cfg.model.text_vocab_size + image_vocab_size(tokenizer_config_for(cfg))
    text_config.vocab_size = vocab
    seq_len = args.seq_len or cfg.data.max_length or text_config.max_position_embeddings
    batch = args.batch_size or cfg.train.per_device_batch_size
    steps = args.steps or (20 if on_cuda else 5)
    bf16 = on_cuda if args.precision is None else args.precision == "bf16"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    text_config._attn_implementation = cfg.model.attn_implementation
    model = AutoModelForCausalLM.from_config(text_config, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_embed = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if on_cuda:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if on_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_train_lm_{os.getpid()}"
    targs = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch, max_steps=args.warmup + steps,
        learning_rate=1e-4, bf16=bf16, deepspeed=ds_config, report_to="none", use_cpu=not on_cuda,
        save_strategy="no", logging_steps=10_000, disable_tqdm=True, remove_unused_columns=False,
        dataloader_num_workers=2 if on_cuda else 0, gradient_checkpointing=cfg.train.gradient_checkpointing,
    )
    data = SyntheticTokens(batch * world * (args.warmup + steps), seq_len, vocab)
    trainer = Trainer(model=model, args=targs, train_dataset=data, callbacks=[Timer()])
    trainer.train()
    timed = times[args.warmup:]
    step_s = sorted(timed)[len(timed) // 2]
    tokens_per_s = batch * world * seq_len / step_s
    result = {
        "config": str(args.config), "device": torch.cuda.get_device_name() if on_cuda else f"cpu ({torch.get_num_threads()} threads)",
        "deepspeed": ds_config, "precision": "bf16" if bf16 else "fp32",
        "attn_implementation": cfg.model.attn_implementation, "world_size": world,
        "params": n_params, "params_non_embedding": n_params - n_embed, "vocab_size": vocab,
        "batch_per_device": batch, "seq_len": seq_len, "timed_steps": len(timed), "median_step_s": step_s,
        "tokens_per_s": tokens_per_s,
        "mfu": (6 * n_params * tokens_per_s / world / PEAK_BF16_DENSE) if on_cuda else None,
        "peak_flops_per_gpu": PEAK_BF16_DENSE if on_cuda else None,
    }
    if trainer.is_world_process_zero():
        rows = [
            ("config", result["config"]), ("device", result["device"]), ("deepspeed", result["deepspeed"]),
            ("precision", f"{result['precision']} ({result['attn_implementation']} attention)"), ("processes", world),
            ("params (non-emb.)", f"{n_params / 1e6:.1f}M ({(n_params - n_embed) / 1e6:.1f}M)"),
            ("batch x seq", f"{batch} x {seq_len} per device"), ("median step", f"{step_s * 1e3:.1f} ms"),
            ("tokens/s", f"{tokens_per_s:,.0f}"),
            ("MFU", f"{result['mfu'] * 100:.1f}% of {PEAK_BF16_DENSE / 1e12:.0f} TFLOP/s per GPU" if on_cuda else "n/a (CPU)"),
        ]
        width = max(len(k) for k, _ in rows)
        print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2))
    import shutil

    shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
