"""Canonical background Gaussians (lm.canonical): only background-coded Gaussians change, each to its slot's
fixed triple, idempotently; the dataset applies it to text-to-image targets only."""

import numpy as np

from gaussiantoken.lm.canonical import BackgroundCanon


def test_canon_rewrites_background_gaussians_only():
    canon = BackgroundCanon({5}, {0: (5, 20, 40), 1: (5, 21, 41)}, group=3)
    codes = [5, 17, 33, 6, 18, 34, 5, 19, 35]  # slot 0 background, slot 1 object, slot 2 background (no triple)
    out = canon(codes)
    assert out == [5, 20, 40, 6, 18, 34, 5, 19, 35]
    assert canon(out) == out
    assert canon.state() == {"background_codes": [5], "slot_tokens": {"0": [5, 20, 40], "1": [5, 21, 41]}, "group": 3}


def test_fit_on_a_tiny_tokenizer_is_deterministic(image_tokenizer_dir):
    from gaussiantoken.data.shapes_render import render_batch
    from gaussiantoken.data.shapes_world import sample_scenes
    from gaussiantoken.tokenizer import GaussianTokenizer

    tok = GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval()
    images = render_batch(sample_scenes(np.random.default_rng(0), 64, 16), 16)
    a, b = BackgroundCanon.fit(tok, images, min_uses=1), BackgroundCanon.fit(tok, images, min_uses=1)
    assert a.state() == b.state() and a.group == 3
    for k, triple in a.slot_tokens.items():
        assert triple[0] in a.background_codes and len(triple) == 3


def test_dataset_canonicalizes_text_to_image_targets_only(codes_dir, text_tokenizer, processor):
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.extract import load_codes

    ds = load_codes(codes_dir)
    marker = lambda codes: [0] * len(codes)  # noqa: E731  (a visible rewrite)
    plain = MultiTaskSequenceDataset(ds, text_tokenizer, processor.layout, seed=1)
    rewritten = MultiTaskSequenceDataset(ds, text_tokenizer, processor.layout, seed=1, t2i_codes=marker)
    seen = set()
    off = processor.layout.image_token_offset
    for i in range(len(ds)):
        a, b = plain[i], rewritten[i]
        seen.add(a["task"])
        if a["task"] == "text_to_image":
            T = processor.layout.tokens_per_image
            start = b["input_ids"].index(processor.layout.boi_token_id) + 1
            assert b["input_ids"][start:start + T] == [off] * T
        else:
            assert a == b
    assert seen == {"text_to_image", "caption", "vqa"}
