"""Best-of-N text-to-image (`lm.rerank`): how much does the LM's own captioner gain by picking among its samples?

For each held-out prompt (`eval.text_to_image.prompt_sets`, as `bench/lm_quality.py`) the LM draws K candidates
(`eval.text_to_image.generate_for_prompts`, images_per_prompt=K); each is parsed and scored exactly against its
prompt, and scored by the LM (`lm.rerank.claim_scores`: log p(any phrasing of the prompt | image); and the
prompt's own phrasing only, `caption_log_likelihood`). From the first k of the K candidates (k = 1, 2, 4, ... K)
it prints, per prompt set and over all prompts, the accuracy of:
- `sample`: one sample (the mean over the K candidates: the expected single-sample accuracy);
- `claim`: the candidate with the best claim score (what `generate_images(num_candidates=k)` keeps);
- `phrasing`: the best score of the prompt's own phrasing only;
- `oracle`: any of the k candidates right (the ceiling of any reranker);
and the seconds per candidate spent sampling and scoring.

    python bench/t2i_rerank.py --model DIR [--candidates 8] [--temperature 0.5] [--prompt-seed 1234] [--json out]

Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent))

from gaussiantoken.lm.sampling_defaults import T2I_GUIDANCE_SCALE, T2I_TEMPERATURE  # noqa: E402

SETS = ("one", "two_unseen", "three_unseen")


def study(model_dir: str, candidates: int, temperature: float, guidance: float, prompts_per_set: int,
          prompt_seed: int, seed: int) -> dict:
    import torch

    from gaussiantoken.data.shapes import parse_scene, scene_matches_caption
    from gaussiantoken.eval.text_to_image import generate_for_prompts, prompt_sets
    from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor
    from gaussiantoken.lm.rerank import caption_log_likelihood, claim_scores

    model = GaussianTokenForCausalLM.from_pretrained(model_dir).eval()
    processor = GaussianTokenProcessor.from_pretrained(model_dir)
    size = int(model.config.tokenizer_config.image_size)
    sets = prompt_sets(prompts_per_set, seed=prompt_seed, image_size=size)
    prompts = [p for name in SETS for p in sets[name]]
    owner = [p for p in prompts for _ in range(candidates)]
    t0 = time.perf_counter()
    pixels = generate_for_prompts(model, processor, prompts, images_per_prompt=candidates, guidance_scale=guidance,
                                  temperature=temperature, batch_size=64, seed=seed)  # [P * K, 3, S, S]
    t1 = time.perf_counter()
    claim = claim_scores(model, processor, pixels, owner, batch_size=64).view(len(prompts), candidates)  # [P, K]
    t2 = time.perf_counter()
    own = caption_log_likelihood(model, processor, pixels, owner, batch_size=64).view(len(prompts), candidates)
    right = torch.tensor([scene_matches_caption(parse_scene(im), p)["correct"] for im, p in zip(pixels, owner)],
                         dtype=torch.float32).view(len(prompts), candidates)  # [P, K]
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= candidates]
    rows = []
    start = 0
    for name in (*SETS, "all"):
        sl = slice(0, len(prompts)) if name == "all" else slice(start, start + len(sets[name]))
        if name != "all":
            start += len(sets[name])
        r, c, o = right[sl], claim[sl], own[sl]
        for k in ks:
            pick = lambda s: r[:, :k].gather(1, s[:, :k].argmax(dim=1, keepdim=True)).mean().item()  # noqa: E731
            rows.append({"set": name, "k": k, "prompts": r.shape[0], "sample": r[:, :k].mean().item(),
                         "claim": pick(c), "phrasing": pick(o), "oracle": r[:, :k].max(dim=1).values.mean().item()})
    n = len(owner)
    return {"model": model_dir, "candidates": candidates, "temperature": temperature, "guidance": guidance,
            "prompt_seed": prompt_seed, "seed": seed, "rows": rows,
            "seconds_per_candidate": {"sample": (t1 - t0) / n, "claim_score": (t2 - t1) / n}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a trained gaussiantoken LM directory")
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--temperature", type=float, default=T2I_TEMPERATURE)
    p.add_argument("--guidance", type=float, default=T2I_GUIDANCE_SCALE)
    p.add_argument("--prompts", type=int, default=50, help="prompts per held-out set (one-object: at most 42)")
    p.add_argument("--prompt-seed", type=int, default=1234)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    if args.candidates < 1:
        p.error(f"--candidates must be >= 1, got {args.candidates}")
    out = study(args.model, args.candidates, args.temperature, args.guidance, args.prompts, args.prompt_seed,
                args.seed)
    print(f"{out['model']}  T={out['temperature']}  guidance={out['guidance']}  prompt seed {out['prompt_seed']}")
    print(f"{'set':<14}{'k':>3}{'prompts':>8}{'sample':>8}{'claim':>8}{'phrasing':>9}{'oracle':>8}")
    for r in out["rows"]:
        print(f"{r['set']:<14}{r['k']:>3}{r['prompts']:>8}{r['sample']:>8.3f}{r['claim']:>8.3f}{r['phrasing']:>9.3f}"
              f"{r['oracle']:>8.3f}")
    s = out["seconds_per_candidate"]
    print(f"seconds per candidate: sampling {s['sample']:.3f}, claim scoring {s['claim_score']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
