"""Benchmark of the evaluation harness: time to evaluate N (default 1,000) Shapes text-to-image prompts.

Stages, each timed on its own (the `gaussiantoken evaluate` text_to_image task runs exactly these):
  load       GaussianTokenForCausalLM + processor from the model directory
  prompts    held-out prompts (sample_prompts minus the captions of a 4,000-scene training set)
  generate   batched generate_images (CFG, grammar, sampling) -> LM ids
  decode     model.decode_image_tokens -> pixels
  score      parse_scene + scene_matches_caption (GenEval-style exact scoring)
  fid        ShapesFeatureNet training (--feature-net-epochs on 2,000 scenes) + FID/KID vs 500 real renders
Without a trained model, `--make-model DIR` first saves a random Shapes-sized LM (the default Shapes tokenizer,
32 Gaussians x 3 = 96 tokens/image, and configs/lm/shapes.yaml's 4 x 256 Llama) to DIR and times that
(its images are noise: only the timings mean anything).

    python bench/evaluate.py MODEL_DIR [--num-prompts 1000] [--batch-size 64] [--threads N] [--no-fid] [--json]
    python bench/evaluate.py --make-model /tmp/lm-random [...]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def make_random_model(out_dir: str) -> str:
    """Save a random Shapes-sized gaussiantoken_lm to out_dir (for timing only)."""
    import yaml

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.processing import GaussianTokenProcessor
    from gaussiantoken.lm.text_tokenizer import default_corpus, train_text_tokenizer
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerConfig, GaussianTokenizerImageProcessor

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "configs", "lm", "shapes.yaml")) as fh:
        lm_cfg = yaml.safe_load(fh)["model"]
    torch.manual_seed(0)
    tok_dir = os.path.join(out_dir, "tokenizer")
    tok = GaussianTokenizer(GaussianTokenizerConfig.shapes(kmeans_init=False)).eval()
    tok.save_pretrained(tok_dir)
    GaussianTokenizerImageProcessor(image_size=tok.config.image_size).save_pretrained(tok_dir)
    text = train_text_tokenizer(default_corpus(1000, seed=1), vocab_size=lm_cfg["text_vocab_size"])
    lm = GaussianTokenForCausalLM.from_parts(text, tok_dir, text_config=dict(lm_cfg["text_config"]))
    lm_dir = os.path.join(out_dir, "lm")
    lm.save_pretrained(lm_dir)
    GaussianTokenProcessor.from_model_config(lm.config, text).save_pretrained(lm_dir)
    return lm_dir


def run(model_dir: str, num_prompts: int, batch_size: int, fid: bool, feature_net_epochs: int) -> dict:
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.eval.text_to_image import (
        distribution_metrics,
        real_shapes_images,
        score_text_to_image,
        shapes_feature_net,
        shapes_prompts,
    )
    from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor
    from gaussiantoken.lm.generation import generate_images

    times = {}
    t = time.perf_counter()
    model = GaussianTokenForCausalLM.from_pretrained(model_dir).eval()
    processor = GaussianTokenProcessor.from_pretrained(model_dir)
    size = model.config.tokenizer_config.image_size
    times["load"] = time.perf_counter() - t

    t = time.perf_counter()
    exclude = set(make_dataset(4000, seed=0, image_size=size)["caption"])
    prompts = shapes_prompts(num_prompts, seed=1234, exclude=exclude, image_size=size)
    times["prompts"] = time.perf_counter() - t

    t = time.perf_counter()
    ids = generate_images(model, processor, prompts, guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
                          batch_size=batch_size, num_candidates=1)  # [N, T]: one sample each (the timed unit)
    times["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.no_grad():
        pixels = torch.cat([model.decode_image_tokens(ids[s:s + batch_size]).float().clamp(-1, 1)
                            for s in range(0, ids.shape[0], batch_size)])  # [N, 3, S, S]
    times["decode"] = time.perf_counter() - t

    t = time.perf_counter()
    scores = score_text_to_image(pixels, prompts)
    times["score"] = time.perf_counter() - t

    if fid:
        t = time.perf_counter()
        net = shapes_feature_net(None, 2000, feature_net_epochs, image_size=size)
        dist = distribution_metrics(pixels, real_shapes_images(500, 4321, size), feature_net=net, batch_size=batch_size)
        times["fid"] = time.perf_counter() - t
        scores.update(dist)
    total = sum(times.values())
    return {
        "model_dir": model_dir, "num_prompts": num_prompts, "batch_size": batch_size,
        "tokens_per_image": int(ids.shape[1]), "threads": torch.get_num_threads(),
        "seconds": {k: round(v, 3) for k, v in times.items()}, "total_seconds": round(total, 3),
        "images_per_second_generate": round(num_prompts / times["generate"], 2),
        "accuracy": scores["accuracy"], "fid": scores.get("fid"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model_dir", nargs="?", help="a saved gaussiantoken_lm directory")
    p.add_argument("--make-model", default=None, help="save a random Shapes-sized LM here and time it")
    p.add_argument("--num-prompts", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--feature-net-epochs", type=int, default=3)
    p.add_argument("--no-fid", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if (args.model_dir is None) == (args.make_model is None):
        p.error("give a MODEL_DIR or --make-model DIR")
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model_dir or make_random_model(args.make_model)
    result = run(model_dir, args.num_prompts, args.batch_size, not args.no_fid, args.feature_net_epochs)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"evaluate {result['num_prompts']} Shapes prompts on CPU ({result['threads']} threads), "
          f"{result['tokens_per_image']} tokens/image, batch {result['batch_size']}")
    print(f"{'stage':<10} {'seconds':>10} {'share':>7}")
    for stage, sec in result["seconds"].items():
        print(f"{stage:<10} {sec:>10.2f} {sec / result['total_seconds']:>6.1%}")
    print(f"{'total':<10} {result['total_seconds']:>10.2f}")
    print(f"generation: {result['images_per_second_generate']} images/s; accuracy {result['accuracy']:.3f}"
          + (f"; fid {result['fid']:.2f}" if result["fid"] is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
