"""Code extraction: run the image tokenizer once over a dataset, keep the token ids with the texts.

Owns `gaussiantoken extract-codes` (`main(argv)`), `load_codes(dir)` and `encode_uint8` (uint8 images ->
ids in fixed batches: the one place the in-memory fits and the fresh-scene stream encode Shapes renders).

    gaussiantoken extract-codes --tokenizer runs/tokenizer-shapes/final --data shapes \
        --num-samples 20000 --seed 0 --out runs/codes-shapes [--batch-size 64] [--shard-size 4096]
    gaussiantoken extract-codes --tokenizer DIR --data data_spec.yaml --out DIR   # load_dataset_from_config spec

Output directory:
    meta.json            what was extracted (tokenizer config, tokens_per_image, vocab_size, rows, shards);
                         written last, atomically: its presence means the extraction is complete
    shards/shard-00000/  one `datasets` arrow directory per `shard_size` rows, written atomically (the
                         work in progress; shards/progress.json says what they belong to)
    merged/              all shards concatenated (datasets.load_from_disk or `load_codes(OUT)`), atomic
Columns: `codes` (list[int32], LOCAL tokenizer ids, length tokens_per_image), `index` (row in the source
dataset), and whichever of `caption`, `questions`, `answers` the source has (other columns dropped).

Resumable: a completed shard is skipped on rerun (a killed run loses at most the shard in progress);
rerunning with a different tokenizer or dataset size into the same --out raises a ValueError. One writer:
the run holds OUT's lock (`runtime.run_lock`). An empty dataset is an error before anything is written.
The CLI exits with status 2 and a one-line message on bad input (missing tokenizer, bad --data, --out a file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

TEXT_COLUMNS = ("caption", "questions", "answers")
META_FILE = "meta.json"


def encode_uint8(tokenizer, images_uint8, batch_size: int = 256):
    """uint8 images [N, S, S, 3] (numpy) -> LOCAL token ids [N, T], encoded `batch_size` images at a time
    (no grad; the tokenizer's mode is the caller's)."""
    pixels = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [N, 3, S, S]
    with torch.no_grad():
        return torch.cat([tokenizer.encode(pixels[s:s + batch_size]) for s in range(0, len(pixels), batch_size)])


def load_codes(path: str | Path):
    """The merged codes dataset of an extract-codes output dir (or a dataset dir itself)."""
    import datasets

    path = Path(path)
    target = path / "merged" if (path / "merged").is_dir() else path
    if not target.is_dir():
        raise FileNotFoundError(f"no codes dataset at {path} (run `gaussiantoken extract-codes` first)")
    try:
        ds = datasets.load_from_disk(str(target))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{target} is not a saved datasets directory (incomplete extract-codes run?)") from exc
    if "codes" not in ds.column_names:
        raise ValueError(f"dataset at {target} has no 'codes' column (columns: {ds.column_names})")
    return ds


def load_codes_meta(path: str | Path) -> dict:
    """meta.json of an extract-codes dir ({} when absent, e.g. a hand-made dataset)."""
    meta = Path(path) / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _load_source(data: str, num_samples: int | None, seed: int, image_size: int):
    if data == "shapes":
        from gaussiantoken.data.shapes import make_dataset

        return make_dataset(num_samples if num_samples is not None else 1000, seed=seed, image_size=image_size)
    path = Path(data)
    if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
        import yaml

        try:
            spec = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"--data {path}: not a readable YAML/JSON dataset spec ({type(exc).__name__})") from None
        if not isinstance(spec, dict):
            raise ValueError(f"--data {path}: expected a mapping (a load_dataset_from_config spec)")
        from gaussiantoken.data.loaders import load_dataset_from_config

        ds = load_dataset_from_config(spec)
    elif path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise ValueError(f"--data {path} is a directory but not a saved dataset (datasets.save_to_disk)") from None
    else:
        raise ValueError(f"--data must be 'shapes', a dataset spec .yaml/.json, or a saved dataset dir; got {data!r}")
    if num_samples is not None:
        ds = ds.select(range(min(num_samples, len(ds))))
    return ds


def _canonical_config(config) -> dict:
    """The architecture fields of a config, JSON-normalised (no paths/versions), to compare extractions."""
    data = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _image_processor(tokenizer_dir: Path, image_size: int):
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

    if (tokenizer_dir / "preprocessor_config.json").is_file():
        return GaussianTokenizerImageProcessor.from_pretrained(str(tokenizer_dir))
    return GaussianTokenizerImageProcessor(image_size=image_size)


def extract_codes(
    tokenizer_dir: str | Path,
    dataset,
    out_dir: str | Path,
    batch_size: int = 64,
    shard_size: int = 4096,
    device: str = "cpu",
    progress: bool = True,
):
    """Encode `dataset` (needs an `image` column) into OUT (see module docstring); returns the merged dataset."""
    from gaussiantoken.runtime.run_lock import run_lock

    if batch_size <= 0 or shard_size <= 0:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size}, {shard_size}")
    if "image" not in dataset.column_names:
        raise ValueError(f"the dataset has no 'image' column (columns: {dataset.column_names})")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty: nothing to extract (check --num-samples / the data spec)")
    tokenizer_dir, out_dir = Path(tokenizer_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a directory")
    with run_lock(out_dir, "extract-codes"):
        return _extract(tokenizer_dir, dataset, out_dir, batch_size, shard_size, device, progress)


def _extract(tokenizer_dir: Path, dataset, out_dir: Path, batch_size: int, shard_size: int, device: str,
             progress: bool):
    import datasets
    from tqdm.auto import tqdm

    from gaussiantoken.tokenizer import GaussianTokenizer
    from gaussiantoken.runtime.files import atomic_directory, atomic_write_text

    model = GaussianTokenizer.from_pretrained(str(tokenizer_dir)).to(device).eval()
    processor = _image_processor(tokenizer_dir, model.config.image_size)
    keep = [c for c in TEXT_COLUMNS if c in dataset.column_names]
    n = len(dataset)
    n_shards = max(1, -(-n // shard_size))
    meta = {
        "tokenizer": str(tokenizer_dir),
        "tokenizer_config": _canonical_config(model.config),
        "tokens_per_image": int(model.tokens_per_image),
        "vocab_size": int(model.vocab_size),
        "num_rows": n,
        "shard_size": shard_size,
        "num_shards": n_shards,
        "text_columns": keep,
    }
    shard_root = out_dir / "shards"
    meta_path, progress_path = out_dir / META_FILE, shard_root / "progress.json"
    for earlier in (meta_path, progress_path):  # a complete extraction, or one in progress
        if earlier.is_file():
            old = json.loads(earlier.read_text())
            for key in ("tokenizer_config", "num_rows", "shard_size", "text_columns"):
                if old.get(key) != meta[key]:
                    raise ValueError(
                        f"{out_dir} holds an extraction with a different {key}; choose another --out or delete it"
                    )
    atomic_write_text(progress_path, json.dumps(meta, indent=2, sort_keys=True))

    bar = tqdm(total=n, desc="extract-codes", unit="img", disable=not progress)
    for k in range(n_shards):
        lo, hi = k * shard_size, min((k + 1) * shard_size, n)
        final = shard_root / f"shard-{k:05d}"
        if (final / "dataset_info.json").is_file():
            bar.update(hi - lo)
            continue
        columns: dict[str, list] = {"index": list(range(lo, hi)), "codes": []}
        part = dataset.select(range(lo, hi))
        for c in keep:
            columns[c] = list(part[c])
        for start in range(0, hi - lo, batch_size):
            images = list(part.select(range(start, min(start + batch_size, hi - lo)))["image"])
            pixels = processor(images, return_tensors="pt")["pixel_values"].to(device)  # [b, 3, S, S]
            with torch.no_grad():
                ids = model.encode(pixels)  # [b, T]
            columns["codes"] += ids.to(torch.int32).cpu().tolist()
            bar.update(len(images))
        features = datasets.Features(
            {
                "index": datasets.Value("int64"),
                "codes": datasets.Sequence(datasets.Value("int32")),
                **{c: dataset.features[c] for c in keep},
            }
        )
        shard = datasets.Dataset.from_dict(columns, features=features)
        with atomic_directory(final) as tmp:
            shard.save_to_disk(str(tmp))
    bar.close()

    shards = [datasets.load_from_disk(str(shard_root / f"shard-{k:05d}")) for k in range(n_shards)]
    merged = datasets.concatenate_datasets(shards)
    with atomic_directory(out_dir / "merged") as tmp:
        merged.save_to_disk(str(tmp))
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True))  # last: the extraction is complete
    return load_codes(out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaussiantoken extract-codes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="trained GaussianTokenizer directory")
    parser.add_argument("--data", default="shapes", help="'shapes', a load_dataset_from_config .yaml, or a dataset dir")
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto")
    args = parser.parse_args(argv)
    try:
        merged = _main(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"gaussiantoken extract-codes: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(merged)} rows of codes to {Path(args.out) / 'merged'}")
    return 0


def _main(args):
    from gaussiantoken.runtime.model_dirs import TOKENIZER_KIND, check_model_dir

    if args.num_samples is not None and args.num_samples <= 0:
        raise ValueError(f"--num-samples must be positive, got {args.num_samples}")
    tok_dir = Path(args.tokenizer)
    config = check_model_dir(tok_dir, TOKENIZER_KIND, "--tokenizer")
    image_size = config.get("image_size", 32)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dataset = _load_source(args.data, args.num_samples, args.seed, image_size)
    return extract_codes(tok_dir, dataset, args.out, args.batch_size, args.shard_size, device)


if __name__ == "__main__":
    sys.exit(main())
