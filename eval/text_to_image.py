"""Text-to-image benchmark runner: GenEval-style exact scoring on the Shapes world, FID/KID, CLIPScore.

Owns:
- `shapes_prompts(num, seed, exclude)`: held-out Shapes prompts (`data.shapes.sample_prompts`, minus
  the training captions in `exclude`).
- `prompt_sets(num_per_set, seed, exclude)`: the structured held-out sets, {"one": 1-object prompts (their
  scenes are new; every 1-object phrase occurs in training), "two_unseen" / "three_unseen": 2- / 3-object
  held-out compositions (`data.shapes_text.is_heldout_composition`, never shown by the training stream,
  and minus `exclude`)}; `score_prompt_sets` scores each set and the union ("all").
- `parsed_description(image)`: what the scene parser reads in an image (the grid captions).
- `score_text_to_image(images, prompts)`: the scorer, separate from generation so that it can be fed
  any images: each image is parsed (`data.shapes.parse_scene`) and matched against its prompt
  (`data.shapes.scene_matches_caption`). Returns accuracy (the exact scene: right count, and every
  prompt object present with the right color, shape and size, and the relation holding) and the
  sub-scores color / shape / size / count (fractions of all images) and relation (fraction of the
  2-object prompts; None when there are none), plus accuracy by number of prompt objects.
- `generate_for_prompts(model, processor, prompts, ...)`: batched generation through
  `lm.generation.generate_images` then `model.decode_image_tokens` -> pixels [N, 3, S, S] in [-1, 1].
- `distribution_metrics(fake, real, feature_net=..., inception_weights=...)`: FID and KID (torchmetrics
  with a pluggable feature network). Without Inception weights (none ship here) the features come from
  a `ShapesFeatureNet` loaded from a directory or trained on the fly (`shapes_feature_net`): such FID/KID
  values are comparable only with numbers from the same feature network, NOT with Inception FID.
- `clip_score(images, prompts, weights)`: CLIPScore from local CLIP weights (optional).
- `run_text_to_image(model, processor, prompts, ...)`: all of the above plus a grid of samples with
  their prompts; returns (metrics, report sections).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from gaussiantoken.lm.sampling_defaults import T2I_CANDIDATES, T2I_GUIDANCE_SCALE, T2I_TEMPERATURE

SUBSCORES = ("color", "shape", "size", "count")


def shapes_prompts(num: int, seed: int = 1234, exclude=None, image_size: int = 32) -> list[str]:
    """`num` distinct Shapes captions of random scenes, none of them in `exclude` (e.g. training captions)."""
    from gaussiantoken.data.shapes import sample_prompts

    if not isinstance(num, int) or num <= 0:
        raise ValueError(f"num_prompts must be a positive int, got {num!r}")
    return sample_prompts(num, seed=seed, exclude=exclude, image_size=image_size)


PROMPT_SETS = {"one": (1, None), "two_unseen": (2, True), "three_unseen": (3, True)}  # name: (objects, heldout)


def prompt_sets(num_per_set: int, seed: int = 1234, exclude=None, image_size: int = 32) -> dict[str, list[str]]:
    """{set name: prompts} for PROMPT_SETS, `num_per_set` distinct prompts each (see the module docstring)."""
    from gaussiantoken.data.shapes_text import sample_prompts

    if not isinstance(num_per_set, int) or num_per_set <= 0:
        raise ValueError(f"num_per_set must be a positive int, got {num_per_set!r}")
    out = {}
    for k, (name, (objects, heldout)) in enumerate(PROMPT_SETS.items()):
        # 1-object: only 42 captions exist; without exclusion a set may repeat none of them more than once
        n = min(num_per_set, 42) if objects == 1 else num_per_set
        out[name] = sample_prompts(n, seed=seed + k, exclude=None if objects == 1 else exclude,
                                   image_size=image_size, num_objects=objects, heldout=heldout)
    return out


def score_prompt_sets(images, sets: dict[str, list[str]]) -> dict:
    """Scores per prompt set and over all (images in the order of the concatenated sets)."""
    prompts = [p for name in sets for p in sets[name]]
    if isinstance(images, torch.Tensor):
        images = list(images)
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images for {len(prompts)} prompts in the sets")
    out, start = {"all": score_text_to_image(images, prompts)}, 0
    for name, ps in sets.items():
        out[name] = score_text_to_image(images[start:start + len(ps)], ps)
        start += len(ps)
    return out


def parsed_description(image) -> str:
    """What `parse_scene` reads in one image, as a short text ("2: small red circle; large blue square")."""
    from gaussiantoken.data.shapes import parse_scene

    objects = parse_scene(image)
    return f"{len(objects)}: " + "; ".join(f"{o['size']} {o['color']} {o['shape']}" for o in objects)


def score_text_to_image(images, prompts: Sequence[str]) -> dict:
    """GenEval-style scores of images (PIL, uint8 [H, W, 3] arrays or [3, H, W] tensors in [-1, 1], or a
    [N, 3, H, W] tensor) against their Shapes prompts (one prompt per image)."""
    from gaussiantoken.data.shapes import parse_caption, parse_scene, scene_matches_caption

    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images tensor must be [N, 3, H, W] in [-1, 1], got shape {tuple(images.shape)}")
        images = list(images)
    images, prompts = list(images), list(prompts)
    if not images:
        raise ValueError("no images to score")
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images for {len(prompts)} prompts; give one prompt per image")
    totals = {k: 0 for k in (*SUBSCORES, "correct")}
    relation_hits = relation_total = 0
    by_count: dict[int, list[int]] = {}
    for image, prompt in zip(images, prompts):
        parsed = parse_caption(prompt)
        if parsed is None:
            raise ValueError(f"prompt is not in the Shapes caption grammar: {prompt!r}")
        result = scene_matches_caption(parse_scene(image), prompt)
        for k in totals:
            totals[k] += bool(result[k])
        if result["relation"] is not None:
            relation_total += 1
            relation_hits += bool(result["relation"])
        by_count.setdefault(len(parsed["objects"]), []).append(int(result["correct"]))
    n = len(images)
    out = {"accuracy": totals["correct"] / n}
    out.update({k: totals[k] / n for k in SUBSCORES})
    out["relation"] = relation_hits / relation_total if relation_total else None
    out["accuracy_by_objects"] = {f"{k}": sum(v) / len(v) for k, v in sorted(by_count.items())}
    out["num_images"] = n
    return out


@torch.no_grad()
def generate_for_prompts(model, processor, prompts: Sequence[str], images_per_prompt: int = 1,
                         guidance_scale: float = T2I_GUIDANCE_SCALE, temperature: float = T2I_TEMPERATURE,
                         top_k: int | None = None, top_p: float | None = None, batch_size: int = 32, seed: int = 0,
                         backend: str = "hf") -> torch.Tensor:
    """Batched sampling + decoding -> pixels [N, 3, S, S] in [-1, 1], prompt-major (N = prompts x images_per_prompt)."""
    from gaussiantoken.lm.generation import generate_images

    generator = torch.Generator().manual_seed(int(seed))
    ids = generate_images(model, processor, list(prompts), guidance_scale=guidance_scale,
                          num_images_per_prompt=images_per_prompt, generator=generator, temperature=temperature,
                          top_k=top_k, top_p=top_p, batch_size=batch_size, backend=backend,
                          num_candidates=1)  # [N, T]: plain samples (best-of-K: generate_best_of)
    pixels = [model.decode_image_tokens(ids[s:s + batch_size]).float().clamp(-1, 1).cpu()
              for s in range(0, ids.shape[0], batch_size)]
    return torch.cat(pixels)  # [N, 3, S, S]


def generate_best_of(model, processor, prompts: Sequence[str], candidates: int, images_per_prompt: int = 1,
                     batch_size: int = 32, **sampling) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-of-K sampling as `generate_images(num_candidates=K)` does it (the same samples, the same choice,
    `lm.rerank.best_candidates`), keeping the candidates for scoring -> (kept pixels [N, 3, S, S], every candidate
    [N * K, 3, S, S]), N = prompts x images_per_prompt; `sampling`: the arguments of `generate_for_prompts`."""
    from gaussiantoken.lm.rerank import best_candidates

    every = generate_for_prompts(model, processor, prompts, images_per_prompt * candidates, batch_size=batch_size,
                                 **sampling)  # [N * K, 3, S, S]
    owners = [p for p in prompts for _ in range(images_per_prompt * candidates)]
    return every[best_candidates(model, processor, every, owners, candidates, batch_size)], every


def shapes_feature_net(path: str | os.PathLike | None = None, train_samples: int = 2000, epochs: int = 3,
                       image_size: int = 32, seed: int = 0, save_to: str | os.PathLike | None = None):
    """A ShapesFeatureNet: loaded from `path`, else trained on `train_samples` fresh Shapes scenes for
    `epochs` epochs (and saved to `save_to` when given, so later runs can load the same features)."""
    from gaussiantoken.data.shapes import make_dataset

    from .feature_nets import ShapesFeatureNet, train_shapes_feature_net

    if path is not None:
        if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"feature_net directory not found or missing config.json: {path}")
        return ShapesFeatureNet.from_pretrained(path).eval()
    if train_samples < 2 or epochs < 1:
        raise ValueError(f"feature_net_train_samples must be >= 2 and feature_net_epochs >= 1, got "
                         f"{train_samples}, {epochs}")
    net, _ = train_shapes_feature_net(make_dataset(train_samples, seed=seed, image_size=image_size), epochs=epochs,
                                      seed=seed)
    if save_to is not None:
        net.save_pretrained(save_to)
    return net


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # [-1, 1] -> [0, 1]


def distribution_metrics(fake: torch.Tensor, real: torch.Tensor, feature_net=None, inception_weights=None,
                         kid_subset_size: int = 100, kid_subsets: int = 50, batch_size: int = 64) -> dict:
    """FID and KID of fake vs real images (both [N, 3, H, W] in [-1, 1]); exactly one feature source."""
    from .fid import make_fid, make_kid

    if fake.shape[0] < 2 or real.shape[0] < 2:
        raise ValueError(f"FID/KID need at least 2 real and 2 generated images, got {real.shape[0]} and {fake.shape[0]}")
    subset = int(min(kid_subset_size, fake.shape[0], real.shape[0]))
    fid = make_fid(feature_net=feature_net, inception_weights=inception_weights)
    kid = make_kid(feature_net=feature_net, inception_weights=inception_weights, subsets=kid_subsets,
                   subset_size=subset)
    for images, is_real in ((real, True), (fake, False)):
        for s in range(0, images.shape[0], batch_size):
            chunk = _unit(images[s:s + batch_size])
            fid.update(chunk, real=is_real)
            kid.update(chunk, real=is_real)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std), "kid_subset_size": subset}


def clip_score(images: torch.Tensor, prompts: Sequence[str], weights, batch_size: int = 32) -> float:
    """CLIPScore of images [N, 3, H, W] in [-1, 1] against their prompts (local CLIP weights directory)."""
    from .fid import make_clip_score

    metric = make_clip_score(weights)
    for s in range(0, images.shape[0], batch_size):
        chunk = (_unit(images[s:s + batch_size]) * 255).round().to(torch.uint8)  # CLIP's processor rescales by 1/255
        metric.update(chunk, list(prompts[s:s + batch_size]))
    return float(metric.compute())


def real_shapes_images(num: int, seed: int, image_size: int) -> torch.Tensor:
    """Fresh Shapes renders as [num, 3, S, S] in [-1, 1] (the real side of FID/KID)."""
    from gaussiantoken.data.shapes import make_dataset

    from .feature_nets import image_to_tensor

    ds = make_dataset(num, seed=seed, image_size=image_size)
    return torch.stack([image_to_tensor(im) for im in ds["image"]]) * 2.0 - 1.0


def run_text_to_image(model, processor, prompts: Sequence[str], out_dir=None, images_per_prompt: int = 1,
                      guidance_scale: float = T2I_GUIDANCE_SCALE, temperature: float = T2I_TEMPERATURE,
                      top_k: int | None = None,
                      top_p: float | None = None, batch_size: int = 32, seed: int = 0, fid: bool = True,
                      fid_real_samples: int = 500, fid_real_seed: int = 4321, feature_net=None,
                      inception_weights=None, kid_subset_size: int = 100, clip_weights=None,
                      grid_size: int = 16, backend: str = "hf", sets: dict | None = None,
                      num_candidates: int = T2I_CANDIDATES) -> tuple[dict, list]:
    """Generate images for the Shapes prompts, score them, and return ({metric: value}, [ReportSection]).

    feature_net: a ShapesFeatureNet (module) for FID/KID, or None with `inception_weights` a local
    torch-fidelity weights file; with neither (or fid=False) FID/KID are skipped.
    sets: `prompt_sets` output whose concatenation is `prompts`: adds accuracy_<set> per set.
    num_candidates > 1: each image is the best of that many samples (`generate_best_of`, `lm.rerank`); the
    scores are the kept images', and accuracy_single_sample is the accuracy over every candidate (one sample's).
    """
    from .report import ReportSection, save_image_grid

    prompts = list(prompts)
    if not prompts:
        raise ValueError("text_to_image needs at least one prompt")
    sampling = dict(guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                    backend=backend)
    from gaussiantoken.lm.rerank import candidates_for

    every = None
    num_candidates = candidates_for(num_candidates, temperature)
    if num_candidates > 1:  # each image the best of K (lm.rerank); the candidates also give the one-sample score
        pixels, every = generate_best_of(model, processor, prompts, num_candidates, images_per_prompt, batch_size,
                                         **sampling)
    else:
        pixels = generate_for_prompts(model, processor, prompts, images_per_prompt, batch_size=batch_size,
                                      **sampling)  # [N, 3, S, S]
    per_image_prompts = [p for p in prompts for _ in range(images_per_prompt)]
    metrics = score_text_to_image(pixels, per_image_prompts)
    metrics["num_prompts"] = len(prompts)
    metrics["num_candidates"] = num_candidates
    if every is not None:  # the expected accuracy of one sample: every candidate scored
        metrics["accuracy_single_sample"] = score_text_to_image(every, [p for p in per_image_prompts
                                                                     for _ in range(num_candidates)])["accuracy"]
    if sets is not None:
        if images_per_prompt != 1 or [p for v in sets.values() for p in v] != prompts:
            raise ValueError("sets must be the prompt sets whose concatenation is the prompts (one image each)")
        for name, scores in score_prompt_sets(pixels, sets).items():
            if name != "all":
                metrics[f"accuracy_{name}"] = scores["accuracy"]
    notes = ["Exact scoring: each generated image is parsed (`parse_scene`) and matched to its prompt "
             "(`scene_matches_caption`); accuracy = the exact scene (count, every object's color/shape/size, "
             "relation)."]
    if fid and (feature_net is not None or inception_weights is not None):
        real = real_shapes_images(fid_real_samples, fid_real_seed, pixels.shape[-1])
        dist = distribution_metrics(pixels, real, feature_net=feature_net, inception_weights=inception_weights,
                                    kid_subset_size=kid_subset_size, batch_size=batch_size)
        metrics.update(dist)
        metrics["fid_features"] = "inception" if inception_weights is not None else "shapes_feature_net"
        if inception_weights is None:
            notes.append("FID/KID use ShapesFeatureNet features: comparable only with numbers from the same "
                         "feature network, NOT with Inception FID/KID in papers.")
    if clip_weights is not None:
        metrics["clip_score"] = clip_score(pixels, per_image_prompts, clip_weights, batch_size)
    sections = [ReportSection("text_to_image notes", " ".join(notes))]
    if out_dir is not None and grid_size > 0:
        k = min(grid_size, pixels.shape[0])
        captions = [f"{p} -> read {parsed_description(im)}" for p, im in zip(per_image_prompts[:k], pixels[:k])]
        path = save_image_grid(pixels[:k], os.path.join(out_dir, "text_to_image_samples.png"), nrow=8,
                               captions=captions, value_range=(-1.0, 1.0))
        sections.append(ReportSection("text_to_image samples", images=[(os.path.basename(path), "generated samples")]))
    return metrics, sections
