"""GaussianToken against a grid-VQ baseline at equal tokens per image and equal training minutes.

For each training set (photo patches split by photograph, and Shapes) and each token budget (64 and
128 tokens per 32 x 32 image), four tokenizers are trained one after the other by the real trainer
(`tokenizer.train.train`, the same losses, recipe and `train.max_minutes`):
- `vq`: `GridVQTokenizer`, an h x w grid of codes (8 x 8 = 64, 8 x 16 = 128), codebook 1024 x 8;
- `gauss`: `GaussianTokenizer`, budget / 2 Gaussians of two tokens each (feature code from the same
  1024 x 8 EMA codebook | one geometry token: dx, dy, scale_x, scale_y, rotation binned jointly);
- `gauss-cont`: the same with its geometry left continuous (`quantize_geometry=False`, the seed
  paper's setting; its geometry is five floats per Gaussian, not tokens);
- `gauss-1tok`: budget Gaussians of one token each (`geometry_slots=[]`: the geometry is decoded from the
  feature code, so a token names a whole Gaussian; the `photos` preset and `configs/tokenizer/photos.yaml`).
Held-out metrics (reconstructions rounded to uint8 like a saved PNG): per-image PSNR and SSIM
(`eval.image_metrics`), an FID-style distance on a small feature net trained on the training
photo patches (`eval.photo_features`), the share of codes used, tokens and bits per image,
encode and decode images per second, and the black-disc rate: the share of reconstructions with >= 3
pixels that are near-black (every channel < -0.8, in [-1, 1]) and much darker than the original (mean
over channels lower by > 0.6); dark content reconstructed dark is not counted.
Photo-trained models are scored on the held-out photos; Shapes-trained ones on held-out Shapes drawn by
our renderer and by the anti-aliased sub-pixel renderer (`data.shapes_antialiased`, never seen in
training), with the exact-scene rate.

    OMP_NUM_THREADS=1 python bench/tokenizer_vs_vq.py --minutes 2.5 --threads 1 --json out.json \
        --figure-dir bench/figures

`--steps N` trains every run for N steps instead (equal steps: what each design learns per step, apart from
its cost per step). `--variant NAME:key=value,...` (repeatable) defines a Gaussian tokenizer with extra
trainer overrides on top of `gauss`; list NAME in `--kinds` to train it, e.g.
`--variant r16:model.render_size=16 --kinds vq,gauss,r16`.

Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"photos": REPO / "configs" / "tokenizer" / "photos.yaml", "shapes": REPO / "configs" / "tokenizer" / "shapes.yaml"}
GAUSS_MODEL = ["model.preset=photos"]  # one token per Gaussian (gauss-1tok); `gauss` adds a joint geometry token
JOINT_GEOMETRY = ["model.geometry_slots=[[x, y, scale_x, scale_y, rotation]]", "model.position_bins=16",
                  "model.scale_bins=8", "model.rotation_bins=4"]  # 65,536 ids: the photos preset before 2026-12-06
BUILT_IN_KINDS = ("vq", "gauss", "gauss-cont", "gauss-1tok")


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


def model_overrides(kind: str, budget: int, variants: dict[str, list[str]] | None = None) -> list[str]:
    """Trainer overrides of one model kind at `budget` tokens per image (`variants`: NAME -> extra overrides
    on top of `gauss`)."""
    if kind == "vq":
        return ["model={type: grid_vq, preset: vq%d}" % budget]
    if kind == "gauss-cont":
        extra = ["model.quantize_geometry=false"]
    elif kind == "gauss-1tok":  # one token per Gaussian: budget Gaussians
        return ["model={}", *GAUSS_MODEL, f"model.num_gaussians={budget}"]
    elif kind == "gauss":
        extra = []
    elif variants and kind in variants:
        extra = variants[kind]
    else:
        raise SystemExit(f"error: --kinds: unknown model kind {kind!r} (vq, gauss, gauss-cont, gauss-1tok or a --variant NAME)")
    return ["model={}", *GAUSS_MODEL, *JOINT_GEOMETRY, f"model.num_gaussians={budget // 2}", *extra]


def held_out(name: str, n: int):
    from gaussiantoken.data.photos import load_photo_patches
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.data.shapes_antialiased import make_antialiased_dataset

    if name == "photos":
        return load_photo_patches(split="test", num_samples=n, seed=0)
    if name == "shapes":
        return make_dataset(n, seed=12345, num_questions=0)
    return make_antialiased_dataset(n, seed=12345)


def bits_per_image(model) -> float:
    if getattr(model.config, "quantize_geometry", True) is False:  # only the feature codes are tokens
        return model.config.num_gaussians * math.log2(model.token_layout[0].size)
    per_group = sum(math.log2(s.size) for s in model.token_layout)
    return model.tokens_per_image / len(model.token_layout) * per_group


def evaluate(model, processor, dataset, fid_net, parse: bool) -> dict:
    import torch

    from gaussiantoken.data.shapes import parse_scene
    from gaussiantoken.eval.fid import make_fid
    from gaussiantoken.eval.image_metrics import codebook_stats, psnr_per_image, ssim_per_image
    from gaussiantoken.eval.reconstruction import scene_match
    from gaussiantoken.eval.reconstruction import to_pil as _to_pil

    model.eval()
    fid = make_fid(feature_net=fid_net)
    psnr, ssim, dark, codes, exact = [], [], [], [], 0
    recon_all = []
    for lo in range(0, len(dataset), 100):
        rows = dataset[lo : lo + 100]
        x = processor(images=list(rows["image"]), return_tensors="pt")["pixel_values"]  # [B, 3, 32, 32]
        with torch.no_grad():
            out = model(pixel_values=x)
        rec = ((out.reconstruction.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # uint8 levels
        recon_all.append(rec)
        psnr.append(psnr_per_image(rec, x))
        ssim.append(ssim_per_image(rec, x))
        spurious = (rec.amax(1) < -0.8) & (x.mean(1) - rec.mean(1) > 0.6)  # [B, H, W] near-black, much darker
        dark.append(spurious.flatten(1).sum(1) >= 3)
        codes.append(out.ids[:, :: len(model.token_layout)].reshape(-1))
        fid.update((x + 1) / 2, real=True)
        fid.update((rec + 1) / 2, real=False)
        if parse:
            for pixels, truth in zip(rec, rows["objects"]):
                exact += scene_match(parse_scene(_to_pil(pixels)), truth)[0]
    stats = codebook_stats(torch.cat(codes), model.token_layout[0].size)
    result = {"psnr": float(torch.cat(psnr).mean()), "ssim": float(torch.cat(ssim).mean()),
              "psnr_std": float(torch.cat(psnr).std()), "fid": float(fid.compute()),
              "dark_rate": float(torch.cat(dark).float().mean()), "code_usage": stats["usage"]}
    if parse:
        result["exact"] = exact / len(dataset)
    return result, torch.cat(recon_all)


def throughput(model, x) -> tuple[float, float]:
    import torch

    model.eval()
    with torch.no_grad():
        model.encode(x[:8])
        t = time.perf_counter()
        ids = model.encode(x)
        enc = len(x) / (time.perf_counter() - t)
        t = time.perf_counter()
        model.decode(ids)
        dec = len(x) / (time.perf_counter() - t)
    return enc, dec


def figure(path: Path, originals, rows: list[tuple[str, object, object]]) -> None:
    """PNG: originals | for each (label, reconstructions, gaussians or None): reconstructions (| drawn)."""
    import numpy as np
    from PIL import Image

    from gaussiantoken.tokenizer import draw_gaussians
    from gaussiantoken.runtime.files import atomic_write_bytes

    up, n = 4, originals.shape[0]
    cell = originals.shape[-1] * up

    def pil(t):
        arr = ((t.float().clamp(-1, 1).permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        return Image.fromarray(arr).resize((cell, cell), Image.NEAREST)

    grid_rows = [[pil(x) for x in originals]]
    for _, recon, gaussians in rows:
        grid_rows.append([pil(r) for r in recon])
        if gaussians is not None:
            grid_rows.append([draw_gaussians(originals[i], {k: v[i : i + 1] for k, v in gaussians.items()
                                                            if k in ("means", "scales", "rotations")}, upscale=up)
                              for i in range(n)])
    pad = 2
    canvas = Image.new("RGB", (n * (cell + pad) + pad, len(grid_rows) * (cell + pad) + pad), (255, 255, 255))
    for r, row in enumerate(grid_rows):
        for c, im in enumerate(row):
            canvas.paste(im.convert("RGB").resize((cell, cell)), (pad + c * (cell + pad), pad + r * (cell + pad)))
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=2.5, help="training budget of every run (train.max_minutes)")
    p.add_argument("--steps", type=int, default=0, help="train every run for this many steps instead of --minutes")
    p.add_argument("--variant", action="append", default=[], help="NAME:key=value,... a Gaussian variant (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budgets", default="64,128", help="tokens per image")
    p.add_argument("--train-sets", default="photos,shapes")
    p.add_argument("--kinds", default="vq,gauss,gauss-cont,gauss-1tok")
    p.add_argument("--seed", type=int, default=0, help="training seed (train.seed)")
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--feature-samples", type=int, default=6000, help="training photo patches for the FID net")
    p.add_argument("--json", default="")
    p.add_argument("--figure-dir", default="", help="write one picture per training set here")
    p.add_argument("--keep", default="", help="keep each run's output directory under this folder")
    args = p.parse_args(argv)
    variants = {}
    for spec in args.variant:
        name, _, rest = spec.partition(":")
        if not name or name in BUILT_IN_KINDS or not rest:
            p.error(f"--variant {spec!r}: want NAME:key=value,... with a new NAME")
        variants[name] = split_overrides(rest)
    if args.steps < 0 or (args.steps == 0 and args.minutes <= 0):
        p.error("need --steps > 0 or --minutes > 0")
    for kind in args.kinds.split(","):
        model_overrides(kind, 64, variants)  # unknown kinds fail before any training

    import torch

    torch.set_num_threads(args.threads)
    from gaussiantoken.data.photos import load_photo_patches
    from gaussiantoken.eval.photo_features import train_photo_feature_net
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor
    from gaussiantoken.tokenizer.model_types import config_from_spec, model_class_for
    from gaussiantoken.tokenizer.train import load_config, train

    t0 = time.time()
    fid_net, _ = train_photo_feature_net(load_photo_patches(split="train", num_samples=args.feature_samples, seed=7),
                                         epochs=2)
    print(f"feature net trained in {time.time() - t0:.0f} s", flush=True)
    budgets = [int(b) for b in args.budgets.split(",")]
    evals = {"photos": ["photos"], "shapes": ["shapes", "shapes-aa"]}
    sets = {name: held_out(name, args.eval_samples) for ts in args.train_sets.split(",") for name in evals[ts]}
    header = (f"{'train':<7} {'eval':<10} {'model':<11} {'tok':>4} {'bits':>5} {'steps':>6} {'PSNR':>6} {'SSIM':>6} "
              f"{'FID*':>7} {'dark':>5} {'usage':>5} {'exact':>5} {'enc/s':>7} {'dec/s':>7}")
    print(header, flush=True)
    rows, pictures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for train_set in args.train_sets.split(","):
            for budget in budgets:
                for kind in args.kinds.split(","):
                    out_dir = root / f"{train_set}-{budget}-{kind}-s{args.seed}"
                    budget_settings = ([f"train.max_steps={args.steps}", "train.max_minutes=null"] if args.steps else
                                       [f"train.max_minutes={args.minutes}", "train.max_steps=100000"])
                    settings = [f"train.output_dir={out_dir}", *budget_settings, f"train.seed={args.seed}",
                                "train.progress_bar=false", "train.log_with=none", "train.checkpoint_every=0",
                                "train.sample_every=0", "train.eval_every=0",
                                *model_overrides(kind, budget, variants)]
                    config = load_config(RECIPES[train_set], settings)
                    start = time.time()
                    result = train(config)
                    train_s = time.time() - start
                    cls = model_class_for(config_from_spec(config.model))
                    model = cls.from_pretrained(result.final_dir).eval()
                    processor = GaussianTokenizerImageProcessor.from_pretrained(result.final_dir)
                    for eval_name in evals[train_set]:
                        ds = sets[eval_name]
                        metrics, recon = evaluate(model, processor, ds, fid_net, parse=eval_name != "photos")
                        x = processor(images=list(ds["image"][:256]), return_tensors="pt")["pixel_values"]
                        enc, dec = throughput(model, x)
                        row = {"train": train_set, "eval": eval_name, "model": kind, "tokens": model.tokens_per_image
                               if getattr(model.config, "quantize_geometry", True) else model.config.num_gaussians,
                               "bits": bits_per_image(model), "steps": result.step,
                               "minutes": None if args.steps else args.minutes, "train_s": train_s,
                               "overrides": variants.get(kind, []),
                               "seed": args.seed, "enc_per_s": enc, "dec_per_s": dec, **metrics}
                        rows.append(row)
                        print(f"{train_set:<7} {eval_name:<10} {kind:<11} {row['tokens']:>4} {row['bits']:>5.0f} "
                              f"{row['steps']:>6} {row['psnr']:>6.2f} {row['ssim']:>6.3f} {row['fid']:>7.2f} "
                              f"{row['dark_rate']:>5.2f} {row['code_usage']:>5.2f} {row.get('exact', float('nan')):>5.2f} "
                              f"{enc:>7.0f} {dec:>7.0f}", flush=True)
                        if args.json:
                            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
                        if args.figure_dir:  # every kind: the Gaussian ones with their Gaussians drawn
                            take = slice(0, 8)
                            with torch.no_grad():
                                xs = processor(images=list(ds["image"][:8]), return_tensors="pt")["pixel_values"]
                                g = model(pixel_values=xs).gaussians
                            pictures.setdefault(eval_name, {"x": xs})[f"{kind}{budget}"] = (recon[take], g)
        if args.figure_dir:
            for eval_name, pics in pictures.items():
                order = [f"{k}{b}" for b in budgets for k in args.kinds.split(",") if f"{k}{b}" in pics]
                figure(Path(args.figure_dir) / f"tokenizer_vs_vq_{eval_name}.png", pics["x"],
                       [(k, *pics[k]) for k in order])
    return 0


if __name__ == "__main__":
    sys.exit(main())
