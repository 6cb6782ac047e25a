"""extract-codes: codes equal the tokenizer's encode, texts kept, shards resumable, bad input rejected."""

import datasets
import pytest
import torch

from gaussiantoken.lm.extract import encode_uint8, extract_codes, load_codes, load_codes_meta, main


def test_codes_match_tokenizer(codes_dir, image_tokenizer_dir, shapes_small):
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

    ds = load_codes(codes_dir)
    assert len(ds) == len(shapes_small) and ds["index"] == list(range(len(shapes_small)))
    assert list(ds["caption"]) == list(shapes_small["caption"])
    assert list(ds["answers"]) == list(shapes_small["answers"])
    tok = GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval()
    pixels = GaussianTokenizerImageProcessor.from_pretrained(image_tokenizer_dir)(list(shapes_small["image"]))["pixel_values"]
    assert torch.equal(torch.tensor(ds["codes"]), tok.encode(pixels))
    meta = load_codes_meta(codes_dir)
    assert meta["num_shards"] == 3 and meta["tokens_per_image"] == 12 and meta["vocab_size"] == tok.vocab_size
    assert datasets.load_from_disk(str(codes_dir / "merged"))["codes"] == ds["codes"]


def test_encode_uint8_matches_processor_at_any_batch(image_tokenizer_dir, shapes_small):
    """The in-memory encoder (stream, background fits) gives the processor path's codes, whatever its batch."""
    import numpy as np

    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

    tok = GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval()
    images = list(shapes_small["image"])[:11]
    pixels = GaussianTokenizerImageProcessor.from_pretrained(image_tokenizer_dir)(images)["pixel_values"]
    u8 = np.stack([np.asarray(im.convert("RGB")) for im in images])  # [11, S, S, 3]
    expected = tok.encode(pixels)  # [11, T]
    for batch in (1, 4, 256):
        got = encode_uint8(tok, u8, batch)
        assert got.shape == expected.shape and torch.equal(got, expected), batch
        assert not got.requires_grad


def test_resume_skips_completed_shards(codes_dir, image_tokenizer_dir, shapes_small, tmp_path):
    import shutil

    out = tmp_path / "codes"
    shutil.copytree(codes_dir, out)
    shutil.rmtree(out / "merged")
    shutil.rmtree(out / "shards" / "shard-00002")  # as if killed during the last shard
    kept = (out / "shards" / "shard-00000" / "dataset_info.json").stat().st_mtime_ns
    again = extract_codes(image_tokenizer_dir, shapes_small, out, batch_size=8, shard_size=10, progress=False)
    assert (out / "shards" / "shard-00000" / "dataset_info.json").stat().st_mtime_ns == kept
    assert again["codes"] == load_codes(codes_dir)["codes"]
    with pytest.raises(ValueError, match="shard_size"):
        extract_codes(image_tokenizer_dir, shapes_small, out, batch_size=8, shard_size=7, progress=False)


def test_bad_input(image_tokenizer_dir, tmp_path, capsys):
    no_image = datasets.Dataset.from_dict({"caption": ["a"]})
    with pytest.raises(ValueError, match="'image' column"):
        extract_codes(image_tokenizer_dir, no_image, tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="empty"):
        extract_codes(image_tokenizer_dir, no_image.select([]).add_column("image", []), tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()  # nothing written for an empty input
    # the CLI: exit status 2 and one line naming the problem
    assert main(["--tokenizer", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert "missing: no such directory" in capsys.readouterr().err
    assert main(["--tokenizer", str(image_tokenizer_dir), "--data", "nope", "--out", str(tmp_path / "z")]) == 2
    assert "--data" in capsys.readouterr().err
