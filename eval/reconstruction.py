"""Tokenizer reconstruction benchmark: `gaussiantoken eval-tokenizer MODEL_DIR [--data shapes ...]`.

Owns the runner and its CLI: load a saved `GaussianTokenizer` (+ its image processor), push a dataset
through `model(pixel_values)` in eval mode (which rebuilds the image from its own discrete ids, exactly
as `decode(encode(x))`), and report
- per-image PSNR (mean over images), SSIM, MS-SSIM where the image size allows, LPIPS when
  `--lpips-weights` is given (metric math from `eval.image_metrics` / `eval.perceptual`);
- rFID when `--fid-weights` is given: a directory saved by `ShapesFeatureNet.save_pretrained`
  (offline Shapes features) or a torch-fidelity Inception weights file (`eval.fid.make_fid`);
- codebook usage / entropy / perplexity of the feature codes, usage of the whole token vocabulary,
  tokens per image;
- on Shapes: the exact-scene rate of the reconstructions (`data.shapes.parse_scene` of the
  reconstruction against the dataset's objects: same objects, each with the same shape, colour and
  size, its centre within `--position-tolerance` pixels) and the attribute-only rate.
Writes OUT/metrics.json and OUT/samples.png (originals | reconstructions | Gaussians) when `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATA_CHOICES = ("shapes", "cifar100", "mini_imagenet", "imagenet", "image_folder")


def scene_match(predicted: list[dict], truth: list[dict], tolerance: float = 1.5) -> tuple[bool, bool]:
    """(exact, attributes): same objects by (shape, color, size); exact also needs centres within tolerance."""
    key = lambda o: (o["color"], o["shape"], o["size"], float(o["x"]), float(o["y"]))  # noqa: E731
    if len(predicted) != len(truth):
        return False, False
    p, t = sorted(predicted, key=key), sorted(truth, key=key)
    attributes = all(a["color"] == b["color"] and a["shape"] == b["shape"] and a["size"] == b["size"]
                     for a, b in zip(p, t))
    exact = attributes and all(abs(float(a["x"]) - float(b["x"])) <= tolerance
                               and abs(float(a["y"]) - float(b["y"])) <= tolerance for a, b in zip(p, t))
    return exact, attributes


def to_pil(pixels):
    """[3, H, W] in [-1, 1] -> PIL RGB (rounded to uint8 like a saved PNG)."""
    import numpy as np
    from PIL import Image

    arr = ((pixels.detach().float().cpu().clamp(-1, 1).permute(1, 2, 0).numpy() + 1) * 127.5).round()
    return Image.fromarray(arr.astype(np.uint8))


def evaluate_tokenizer(model, processor, dataset, batch_size: int = 64, lpips=None, fid=None,
                       parse_scenes: bool = False, position_tolerance: float = 1.5, device="cpu",
                       image_column: str = "image") -> dict:
    """Reconstruction metrics of `model` on `dataset` (see the module docstring)."""
    import torch

    from .image_metrics import ReconstructionMetrics, codebook_stats

    if len(dataset) == 0:
        raise ValueError("the evaluation dataset is empty")
    if parse_scenes and "objects" not in dataset.column_names:
        raise ValueError("scene parsing needs an 'objects' column (the Shapes dataset)")
    model = model.to(device).eval()
    metrics = ReconstructionMetrics(data_range=2.0, perceptual=lpips)
    slot = len(model.token_layout)
    names = [s.name for s in model.token_layout]
    feature_pos = names.index("feature") if "feature" in names else 0
    feature_start, codebook_size = model.token_layout[feature_pos].start, model.token_layout[feature_pos].size
    feature_codes, used_ids = [], torch.zeros(model.vocab_size, dtype=torch.bool)
    exact = attributes = 0
    for lo in range(0, len(dataset), batch_size):
        rows = dataset[lo : lo + batch_size]
        x = processor(images=rows[image_column], return_tensors="pt")["pixel_values"].to(device)  # [B, 3, S, S]
        with torch.no_grad():
            out = model(pixel_values=x)
        recon = out.reconstruction.float().clamp(-1, 1)  # [B, 3, S, S]
        metrics.update(recon, x)
        ids = out.ids.cpu()  # [B, T]
        feature_codes.append(ids[:, feature_pos::slot].reshape(-1) - feature_start)  # each Gaussian's code
        used_ids[ids.unique()] = True
        if fid is not None:
            fid.update(((x + 1) / 2).clamp(0, 1).float().cpu(), real=True)
            fid.update(((recon + 1) / 2).clamp(0, 1).cpu(), real=False)
        if parse_scenes:
            from gaussiantoken.data.shapes import parse_scene

            for pixels, truth in zip(recon, rows["objects"]):
                e, a = scene_match(parse_scene(to_pil(pixels)), truth, position_tolerance)
                exact, attributes = exact + e, attributes + a
    result = metrics.compute()
    stats = codebook_stats(torch.cat(feature_codes), codebook_size)
    result.update(
        codebook_usage=stats["usage"], codebook_used_codes=stats["used_codes"], codebook_size=codebook_size,
        codebook_entropy_bits=stats["entropy_bits"], codebook_perplexity=stats["perplexity"],
        vocab_usage=float(used_ids.float().mean()), vocab_size=model.vocab_size,
        tokens_per_image=model.tokens_per_image,
    )
    if fid is not None:
        result["rfid"] = float(fid.compute())
    if parse_scenes:
        result["scene_exact_rate"] = exact / len(dataset)
        result["scene_attribute_rate"] = attributes / len(dataset)
    return result


def load_fid(path: str):
    from .fid import make_fid

    p = Path(path)
    if p.is_dir():
        from .feature_nets import ShapesFeatureNet

        return make_fid(feature_net=ShapesFeatureNet.from_pretrained(p))
    return make_fid(inception_weights=p)


def _dataset(args, image_size: int):
    from gaussiantoken.data.loaders import load_dataset_from_config

    if args.data == "shapes":
        spec = {"name": "shapes", "num_samples": args.num_samples, "seed": args.seed, "image_size": image_size}
    else:
        if args.data_root is None:
            raise ValueError(f"--data {args.data} needs --data-root")
        spec = {"name": args.data, "root": args.data_root}
        if args.data != "image_folder":
            spec["split"] = args.split
    ds = load_dataset_from_config(spec)
    if len(ds) > args.num_samples:
        ds = ds.shuffle(seed=args.seed).select(range(args.num_samples))
    return ds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaussiantoken eval-tokenizer", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", help="a GaussianTokenizer save_pretrained directory (e.g. OUTPUT/final)")
    parser.add_argument("--data", default="shapes", choices=DATA_CHOICES)
    parser.add_argument("--data-root", default=None, help="dataset folder for the real datasets")
    parser.add_argument("--split", default="test", help="split of the real datasets (cifar100: test; others: val)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1234, help="Shapes scene seed (held out: training uses 0)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lpips-weights", default=None, help="LPIPS safetensors file")
    parser.add_argument("--fid-weights", default=None,
                        help="ShapesFeatureNet directory or torch-fidelity Inception weights file")
    parser.add_argument("--position-tolerance", type=float, default=1.5, help="Shapes exact-scene centre tolerance (px)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write metrics.json and samples.png here")
    args = parser.parse_args(argv)
    if args.num_samples <= 0 or args.batch_size <= 0:
        parser.error("--num-samples and --batch-size must be positive")

    import torch

    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

    torch.manual_seed(0)
    try:
        model = GaussianTokenizer.from_pretrained(args.model_dir)
        processor = GaussianTokenizerImageProcessor.from_pretrained(args.model_dir)
        dataset = _dataset(args, model.config.image_size)
        lpips = fid = None
        if args.lpips_weights:
            from .perceptual import load_lpips

            lpips = load_lpips(args.lpips_weights, device=args.device)
        if args.fid_weights:
            fid = load_fid(args.fid_weights)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"eval-tokenizer: {exc}", file=sys.stderr)
        return 2
    result = evaluate_tokenizer(model, processor, dataset, args.batch_size, lpips=lpips, fid=fid,
                                parse_scenes=args.data == "shapes", position_tolerance=args.position_tolerance,
                                device=args.device)
    result = {"model": str(args.model_dir), "data": args.data, "seed": args.seed, **result}
    print(json.dumps(result, indent=2))
    if args.out:
        from gaussiantoken.runtime.files import atomic_write_text
        from gaussiantoken.tokenizer.previews import save_sample_grid

        out = Path(args.out)
        atomic_write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n")
        rows = dataset[: min(8, len(dataset))]["image"]
        x = processor(images=rows, return_tensors="pt")["pixel_values"].to(args.device)
        with torch.no_grad():
            o = model(pixel_values=x)
        save_sample_grid(out / "samples.png", x, o.reconstruction, o.gaussians)
    return 0


if __name__ == "__main__":
    sys.exit(main())
