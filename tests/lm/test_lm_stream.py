"""The fresh-scene stream (lm.stream): rows are a pure function of (seed, index), no held-out composition is
shown, ranks draw disjoint parts, the codes equal the tokenizer's encoding of the same render, and train-lm on
the stream resumes exactly (its state is in the checkpoint and a changed stream is refused)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussiantoken.lm.stream import STATE_FILE, ShapesCodeStream
from gaussiantoken.lm.train import LMRunConfig, train
from gaussiantoken.runtime.config import load_run_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"


def test_stream_rows_are_pure_fresh_and_match_the_tokenizer(image_tokenizer_dir):
    from gaussiantoken.data.shapes_render import render_batch
    from gaussiantoken.data.shapes_text import is_heldout_composition
    from gaussiantoken.tokenizer import GaussianTokenizer, GaussianTokenizerImageProcessor

    a = ShapesCodeStream(image_tokenizer_dir, length=64, seed=5, chunk_size=8, per_device_batch=4)
    b = ShapesCodeStream(image_tokenizer_dir, length=64, seed=5, chunk_size=8, per_device_batch=4)
    rows_a = [a[i] for i in range(64)]
    rows_b = [b[i] for i in reversed(range(64))][::-1]  # another access order, another cache history
    assert rows_a == rows_b
    other = ShapesCodeStream(image_tokenizer_dir, length=64, seed=6, chunk_size=8, per_device_batch=4)
    assert [other[i]["caption"] for i in range(16)] != [r["caption"] for r in rows_a[:16]]
    assert not any(is_heldout_composition(r["caption"]) for r in rows_a)
    assert all(len(r["codes"]) == 12 and len(r["questions"]) == len(r["answers"]) > 0 for r in rows_a)
    # the codes are the tokenizer's ids of the rendered scene, as extract-codes (image processor) makes them
    scenes, captions, _, _ = a.scenes(0, 0)
    assert captions == [r["caption"] for r in rows_a[:8]]
    tok = GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval()
    proc = GaussianTokenizerImageProcessor.from_pretrained(image_tokenizer_dir)
    pixels = proc([im for im in render_batch(scenes, 16)], return_tensors="pt")["pixel_values"]
    assert tok.encode(pixels).tolist() == [r["codes"] for r in rows_a[:8]]
    with pytest.raises(IndexError):
        a[64]


def test_ranks_draw_disjoint_parts(image_tokenizer_dir):
    s = ShapesCodeStream(image_tokenizer_dir, length=32, seed=0, chunk_size=4, per_device_batch=2, world_size=2)
    # accelerate gives rank r the per-device batches r, r + W, ...: rows 0-1 -> rank 0, rows 2-3 -> rank 1, ...
    assert [s.row_source(i) for i in range(8)] == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    parts = {s.row_source(i) for i in range(32)}
    assert len(parts) == 32  # every (part, local row) once: no row is drawn twice
    assert s[0]["caption"] != s[2]["caption"] or s[0]["codes"] != s[2]["codes"]


def _train_tests():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lm_train_tests", Path(__file__).with_name("test_lm_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def overrides(image_tokenizer_dir, text_tokenizer_dir, out, **extra):
    """test_lm_train's tiny run, on the stream (its codes dir is then unused)."""
    return _train_tests().overrides(image_tokenizer_dir, "unused", text_tokenizer_dir, out,
                           **{"data.source": "shapes_stream", "data.stream_chunk": 8, **extra})


def test_train_on_the_stream_resumes_exactly(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    losses = _train_tests().losses
    args = (image_tokenizer_dir, text_tokenizer_dir)
    full = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "a")))
    first = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "b", **{"train.stop_at_step": 3})))
    state = json.loads((tmp_path / "b" / "checkpoint-3" / STATE_FILE).read_text())
    assert state["position"] == 12 and state["seed"] == 0 and state["global_step"] == 3
    resumed = train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "b")))
    a, b = losses(full.log_history), losses(resumed.log_history)
    assert len(a) == 6 and len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    assert losses(first.log_history) == b[:3]
    # a resume with another stream (seed) would not continue the same data: refused, naming the file
    with pytest.raises(ValueError, match=STATE_FILE):
        train(load_run_config(LMRunConfig, CONFIG, overrides(*args, tmp_path / "b", **{
            "train.max_steps": 9, "train.seed": 1})))


def test_lattice_half_centres_objects_on_anchors_and_leaves_the_free_rows(image_tokenizer_dir, text_tokenizer, tiny_lm):
    """t2i_lattice: each row also holds a text-to-image scene whose objects sit on the tokenizer's anchors, coded
    by the tokenizer; the free columns are the stream's without it; the dataset takes text-to-image targets from
    the lattice half and captions / VQA from the free one."""
    from gaussiantoken.data.shapes_render import render_batch
    from gaussiantoken.data.shapes_text import is_heldout_composition
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.extract import encode_uint8
    from gaussiantoken.lm.object_layout import assign_gaussians, caption_order
    from gaussiantoken.lm.sequences import VocabLayout

    kw = dict(length=16, seed=3, chunk_size=8, per_device_batch=4, object_radius=1)
    plain, lat = ShapesCodeStream(image_tokenizer_dir, **kw), ShapesCodeStream(image_tokenizer_dir, t2i_lattice=True, **kw)
    assert lat.identity()["t2i_lattice"] and not plain.identity()["t2i_lattice"]
    rows = [lat[i] for i in range(16)]
    assert [{k: r[k] for k in plain.column_names} for r in rows] == [plain[i] for i in range(16)]
    centres = lat.anchor_centres()
    assert len(centres) == 4 and sorted({round(x) for x, _ in centres}) == [4, 12]  # a 2 x 2 grid on 16 px
    scenes, captions = lat.lattice_scenes(0, 0)
    assert captions == [r["t2i_caption"] for r in rows[:8]] and not any(map(is_heldout_composition, captions))
    assert {len(s) for s in scenes} > {1}
    for scene in scenes:
        for o in scene:
            assert min(max(abs(o["x"] - cx), abs(o["y"] - cy)) for cx, cy in centres) <= 0.5
    codes = encode_uint8(lat.tokenizer, render_batch(scenes, 16))
    assert codes.tolist() == [r["t2i_codes"] for r in rows[:8]]
    owners = assign_gaussians(lat.tokenizer.ids_to_gaussians(codes)["means"], scenes, 16, 1)
    assert [[o[i] for i in caption_order(s, c)] for o, s, c in zip(owners, scenes, captions)] == \
        [r["t2i_objects"] for r in rows[:8]]

    layout = VocabLayout.from_config(tiny_lm.config, text_tokenizer)
    lo, hi = layout.image_token_offset, layout.image_token_offset + layout.image_vocab_size
    t2i = MultiTaskSequenceDataset(lat, text_tokenizer, layout, ratios={"text_to_image": 1.0}, caption_dropout=0.0)
    cap = MultiTaskSequenceDataset(lat, text_tokenizer, layout, ratios={"caption": 1.0})
    for i in range(4):
        assert [t - lo for t in t2i[i]["input_ids"] if lo <= t < hi] == rows[i]["t2i_codes"]
        assert [t - lo for t in cap[i]["input_ids"] if lo <= t < hi] == rows[i]["codes"]


def test_canonical_captions_are_the_captioning_targets(image_tokenizer_dir, text_tokenizer, tiny_lm):
    """canonical_captions: rows hold caption_for(scene) without a random draw (left to right), never a held-out
    composition; the captioning task trains on it, text-to-image keeps the sampled caption."""
    from gaussiantoken.data.shapes_text import caption_for, is_heldout_composition
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.sequences import VocabLayout

    s = ShapesCodeStream(image_tokenizer_dir, length=16, seed=2, chunk_size=16, per_device_batch=4,
                         canonical_captions=True)
    scenes, captions, _, _ = s.scenes(0, 0)
    rows = [s[i] for i in range(16)]
    assert [r["caption"] for r in rows] == captions
    assert [r["caption_canonical"] for r in rows] == [caption_for(sc) for sc in scenes]
    assert not any(is_heldout_composition(r["caption_canonical"]) for r in rows)
    assert any(r["caption"] != r["caption_canonical"] for r in rows)  # two-object captions differ half the time
    layout = VocabLayout.from_config(tiny_lm.config, text_tokenizer)
    kw = dict(caption_dropout=0.0, canonical_captions=True)
    cap = MultiTaskSequenceDataset(s, text_tokenizer, layout, ratios={"caption": 1.0}, **kw)
    t2i = MultiTaskSequenceDataset(s, text_tokenizer, layout, ratios={"text_to_image": 1.0}, **kw)
    for i in range(16):
        text = [t for t, lab in zip(cap[i]["input_ids"], cap[i]["labels"]) if lab != -100 and t < layout.image_token_offset]
        assert text_tokenizer.decode(text, skip_special_tokens=True).strip() == rows[i]["caption_canonical"]
        prompt = text_tokenizer.decode([t for t in t2i[i]["input_ids"] if t < layout.image_token_offset],
                                       skip_special_tokens=True)
        assert rows[i]["caption"] in prompt
    with pytest.raises(ValueError, match="caption_canonical"):
        MultiTaskSequenceDataset(ShapesCodeStream(image_tokenizer_dir, length=4), text_tokenizer, layout, **kw)
