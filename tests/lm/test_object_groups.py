"""Object groups of input images (lm.object_groups, config.image_groups): the foreground components of a
rendered scene are its objects, left to right; each Gaussian gets the group its true object would; the model
embeds them (computed from the codes in eval mode, given by the collator in training); train-lm with
model.image_groups runs on the stream, resumes exactly, and captions through the stock pipeline in a fresh
process."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussiantoken.data.shapes_render import render_batch
from gaussiantoken.data.shapes_world import canonical_order, sample_scenes
from gaussiantoken.lm.object_groups import foreground_components, object_groups
from gaussiantoken.lm.object_layout import assign_gaussians

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"


def test_components_are_the_objects_left_to_right_and_groups_follow_them():
    scenes = sample_scenes(np.random.default_rng(0), 200, 32)
    images = render_batch(scenes, 32)
    comps = foreground_components(images)
    for scene, masks in zip(scenes, comps):
        assert masks.shape[0] == len(scene)
        xs = [np.nonzero(m)[1].mean() for m in masks]
        assert xs == sorted(xs)
        # scenes are stored left to right (canonical order) and boxes never overlap: component k is object k
        for m, obj in zip(masks, canonical_order(scene)):
            ys, cols = np.nonzero(m)
            assert abs((cols.min() + cols.max() + 1) / 2 - obj["x"]) <= 0.5
            assert abs((ys.min() + ys.max() + 1) / 2 - obj["y"]) <= 0.5
    # Gaussians: the group of a centre is the (left-to-right) index + 1 of the object `assign_gaussians` gives it
    g = torch.Generator().manual_seed(0)
    means = torch.rand(200, 32, 2, generator=g) * 2 - 1  # [N, M, 2]
    groups = object_groups(images, means, max_groups=3)
    assert groups.shape == (200, 32) and groups.dtype == torch.long
    for i, objects in enumerate(assign_gaussians(means, scenes, 32, radius=1)):
        want = np.zeros(32, dtype=int)
        for k, slots in enumerate(objects):
            want[slots] = k + 1
        got = groups[i].numpy()
        # assign_gaussians also hands an unreached object its nearest spare Gaussian; otherwise the same
        assert (got == want).mean() >= 0.9 and set(got[got > 0]) <= set(want[want > 0])
    assert object_groups(images, means, max_groups=1).max() == 1  # later components share the last group
    blank = np.full((2, 32, 32, 3), 24, np.uint8)
    assert object_groups(blank, means[:2], 3).eq(0).all()
    with pytest.raises(ValueError, match="uint8"):
        foreground_components(images.astype(np.float32))


def test_touching_objects_of_two_colours_are_two_components_and_blended_edges_no_third():
    """Anti-aliased renders at sub-pixel positions: two objects that touch are split by their core colours; edge
    pixels (blends with the background or between the two) make no component of their own; a pixel render and a
    single anti-aliased object are as before."""
    from gaussiantoken.data.shapes_antialiased import render_batch_antialiased
    from gaussiantoken.lm.object_groups import MAX_CORES, _split_by_colour, colour_cores

    bg = np.array([24.0, 24.0, 24.0])
    yellow, white = np.array([235, 215, 40]), np.array([235, 235, 235])
    pixels = np.concatenate([np.tile(yellow, (20, 1)), np.tile(white, (9, 1)), np.tile((yellow + bg) / 2, (6, 1)),
                             np.tile((white * 3 + bg) / 4, (5, 1)), np.tile((yellow + white) / 2, (4, 1))]).round()
    assert colour_cores(pixels, bg).round().tolist() == [yellow.tolist(), white.tolist()]  # blends are no core
    img = np.full((1, 12, 12, 3), 24, np.uint8)
    img[0, 2:8, 1:6] = yellow  # two rectangles sharing an edge, a blended column between them
    img[0, 2:8, 6] = (yellow + white) // 2
    img[0, 2:8, 7:11] = white
    img[0, 1, 1:6] = (yellow + 24) // 2  # a blended edge row above the yellow one
    masks = foreground_components(img)[0]
    assert masks.shape[0] == 2 and masks[0][2:8, 1:6].all() and masks[1][2:8, 7:11].all()
    assert masks[0][1, 1:6].all() and not (masks[0] & masks[1]).any()  # the edge row joins its object
    small = np.full((1, 9, 9, 3), 24, np.uint8)  # a 4 x 4 square half a pixel off the grid: more edge than core
    small[0, 2:7, 2:7] = (yellow + 24) // 2
    small[0, [2, 2, 6, 6], [2, 6, 2, 6]] = (yellow + 3 * 24) // 4
    small[0, 3:6, 3:6] = yellow
    assert foreground_components(small)[0].shape[0] == 1  # one object, not a ring around a core
    rng = np.random.default_rng(0)  # no flat colours (a photograph): kept whole, and fast
    noisy = rng.integers(60, 256, (16, 16, 3)).repeat(2, 0).repeat(2, 1)  # 2 x 2 blocks of random colours
    whole = np.ones((32, 32), dtype=bool)
    assert len(colour_cores(noisy[whole], bg)) > MAX_CORES and len(_split_by_colour(noisy, whole, bg, 3)) == 1
    scenes = sample_scenes(np.random.default_rng(5), 400, 32)
    plain = foreground_components(render_batch(scenes, 32))
    assert all(len(m) == len(s) for m, s in zip(plain, scenes))  # objects of pixel renders never touch
    drawn, _ = render_batch_antialiased(scenes, 32, seed=5)
    counts = np.array([len(m) for m in foreground_components(drawn)])
    n = np.array([len(s) for s in scenes])
    assert (counts <= n).all() and (counts == n).mean() >= 0.99, (counts != n).sum()


def test_model_embeds_groups_from_codes_in_eval_and_from_the_batch_in_training(text_tokenizer, image_tokenizer_dir,
                                                                                tiny_text_config):
    from gaussiantoken.lm import GaussianTokenForCausalLM
    from gaussiantoken.lm.data import SequenceCollator
    from gaussiantoken.lm.object_groups import pixels_to_uint8
    from gaussiantoken.lm.sequences import VocabLayout, build_caption

    torch.manual_seed(0)
    model = GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer_dir, text_config=dict(tiny_text_config),
                                                image_groups=3).eval()
    assert model.config.image_groups == 3 and model.group_embed.weight[0].eq(0).all()
    with torch.no_grad():
        model.group_embed.weight[1:].normal_(0, 1.0)
    layout = VocabLayout.from_config(model.config, text_tokenizer)
    scenes = sample_scenes(np.random.default_rng(1), 2, 16, num_objects=2)
    pixels = torch.from_numpy(render_batch(scenes, 16)).permute(0, 3, 1, 2).float() / 127.5 - 1
    codes = model.encode_images(pixels) - layout.image_token_offset  # [2, T]
    seqs = [build_caption(text_tokenizer, "a red circle", c.tolist(), layout) for c in codes]
    batch = SequenceCollator(layout.pad_token_id)(seqs)
    groups = model.input_image_groups(batch["input_ids"])  # from the tokenizer's reconstruction
    tok = model.image_tokenizer
    want = object_groups(pixels_to_uint8(tok.decode(codes)), tok.ids_to_gaussians(codes)["means"], 3)
    T, G = layout.tokens_per_image, layout.tokens_per_image // want.shape[1]
    start = seqs[0]["input_ids"].index(layout.boi_token_id) + 1
    assert torch.equal(groups[:, start:start + T], want.repeat_interleave(G, 1))
    assert groups[:, :start].eq(0).all() and groups[:, start + T:].eq(0).all()
    with torch.no_grad():
        auto = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        given = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], image_groups=groups).logits
        none = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     image_groups=torch.zeros_like(groups)).logits
    assert torch.allclose(auto, given) and not torch.allclose(auto, none, atol=1e-4)
    assert model.input_image_groups(batch["input_ids"][:, :start]) is None  # no whole span: nothing to group
    model.train()  # training never groups on its own: without image_groups the logits are the plain model's
    assert torch.allclose(model(input_ids=batch["input_ids"]).logits, none.detach(), atol=1e-5)


def _stream_overrides(image_tokenizer_dir, text_tokenizer_dir, out, **extra):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lm_train_tests_groups", Path(__file__).with_name("test_lm_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.overrides(image_tokenizer_dir, "unused", text_tokenizer_dir, out, **{
        "data.source": "shapes_stream", "data.stream_chunk": 8, "model.image_groups": 3, **extra})


def test_train_with_groups_resumes_and_captions_in_a_fresh_process(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    from gaussiantoken.lm.train import LMRunConfig, check_config, train
    from gaussiantoken.runtime.config import load_run_config

    args = (image_tokenizer_dir, text_tokenizer_dir)
    full = train(load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "a")))
    train(load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "b", **{"train.stop_at_step": 3})))
    resumed = train(load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "b")))
    a = [h["loss"] for h in full.log_history if "loss" in h]
    b = [h["loss"] for h in resumed.log_history if "loss" in h]
    assert len(a) == 6 and max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    script = (
        "import sys, numpy as np, transformers, gaussiantoken\n"
        "from gaussiantoken.data.shapes import make_dataset\n"
        "d = sys.argv[1]\n"
        "m = transformers.AutoModelForCausalLM.from_pretrained(d)\n"
        "assert m.config.image_groups == 3 and m.group_embed.weight.abs().sum() > 0\n"
        "img = make_dataset(1, seed=3, image_size=16)[0]['image']\n"
        "out = transformers.pipeline('image-text-to-text', model=d)(images=img, text='Describe the image.')\n"
        "print('OK', type(out).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(full.final_dir)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
    for extra, match in (({"model.image_groups": -1}, "model.image_groups"),
                         ({"data.source": "codes", "data.codes": image_tokenizer_dir}, "data.source=shapes_stream")):
        with pytest.raises(ValueError, match=match):
            check_config(load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "x", **extra)))


def test_group_slots_and_input_span():
    """An input image as objects: one slot list per foreground group, left to right; no group -> one object of
    every slot; the span is the object layout's span of those lists."""
    from gaussiantoken.lm.object_groups import group_slots, input_span
    from gaussiantoken.lm.object_layout import ObjectLayout

    assert group_slots([0, 2, 1, 0, 2, 1]) == [[2, 5], [1, 4]]
    assert group_slots([0, 3, 0, 3]) == [[1, 3]]  # empty groups are skipped
    assert group_slots([0, 0, 0]) == [[0, 1, 2]]
    lay = ObjectLayout(num_slots=4, group=2, fill=[0] * 8, extra_offset=110, image_token_offset=100)
    codes = [1, 2, 3, 4, 5, 6, 7, 8]
    assert input_span(lay, codes, [0, 1, 2, 1]) == lay.span(codes, [[1, 3], [2]]) == [
        lay.obj_token_id, lay.slot_token_id(1), 103, 104, lay.slot_token_id(3), 107, 108,
        lay.obj_token_id, lay.slot_token_id(2), 105, 106]


def test_object_input_layout_trains_and_answers_alike_through_both_paths(image_tokenizer_dir, text_tokenizer_dir,
                                                                         tmp_path):
    """model.input_layout=objects: captioning / VQA training items read their image as the object span of its
    groups (loss on it with data.image_input_loss), and in a fresh process the stock image-text-to-text
    pipeline answers exactly as lm.generation.generate_text does; forward(pixel_values) refuses."""
    from gaussiantoken.lm.train import LMRunConfig, check_config, train
    from gaussiantoken.lm.train_build import build_dataset, build_model_and_processor, build_stream
    from gaussiantoken.runtime.config import load_run_config
    from gaussiantoken.tokenizer import GaussianTokenizer

    args = (image_tokenizer_dir, text_tokenizer_dir)
    extra = {"data.t2i_layout": "objects", "model.input_layout": "objects", "data.image_input_loss": "true"}
    cfg = load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "a", **extra))
    model, processor = build_model_and_processor(cfg)
    stream, _ = build_stream(cfg, GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval())
    data = build_dataset(cfg, processor, model.config, rows=stream)
    from gaussiantoken.lm.object_groups import input_span
    from gaussiantoken.lm.object_layout import ObjectLayout

    lay, L = ObjectLayout.from_config(model.config), processor.layout
    read = 0
    for i in range(24):
        item = data[i]
        if item["task"] == "text_to_image":
            continue
        row = stream[data.plan(i)[0]]
        span = input_span(lay, row["codes"], row["groups"])
        start = item["input_ids"].index(L.boi_token_id) + 1
        assert item["input_ids"][start:start + len(span) + 1] == span + [L.eoi_token_id]
        assert item["labels"][start:start + len(span)] == span and item["labels"][start + len(span)] == -100
        assert not any(item["image_groups"])
        read += 1
    assert read > 0
    final = train(cfg).final_dir
    script = (
        "import sys, torch, transformers, gaussiantoken\n"
        "from gaussiantoken.data.shapes import make_dataset\n"
        "from gaussiantoken.lm.generation import generate_text\n"
        "d = sys.argv[1]\n"
        "m = transformers.AutoModelForImageTextToText.from_pretrained(d).eval()\n"
        "p = transformers.AutoProcessor.from_pretrained(d)\n"
        "assert m.config.input_layout == 'objects'\n"
        "rows = make_dataset(3, seed=3, image_size=16)\n"
        "imgs, qs = list(rows['image']), [q[0] for q in rows['questions']]\n"
        "pipe = transformers.pipeline('image-text-to-text', model=m, processor=p)\n"
        "got = [pipe(images=i, text=q, return_full_text=False, max_new_tokens=6)[0]['generated_text'].strip() for i, q in zip(imgs, qs)]\n"
        "want = generate_text(m, p, imgs, prompts=qs, max_new_tokens=6)\n"
        "assert got == want, (got, want)\n"
        "batch = p(images=imgs[0], text=qs[0], return_tensors='pt')\n"
        "try:\n"
        "    m(**batch)\n"
        "    raise SystemExit('forward(pixel_values) should refuse')\n"
        "except ValueError as e:\n"
        "    assert 'input_layout=objects' in str(e)\n"
        "from gaussiantoken.lm.object_inputs import object_input_rows\n"
        "from gaussiantoken.lm.object_layout import ObjectLayout\n"
        "codes = (m.encode_images(batch['pixel_values']) - m.config.image_token_offset).tolist()\n"
        "given = p(text=qs[0], image_tokens=codes, return_tensors='pt')\n"
        "rows = object_input_rows(m, given['input_ids'], given['attention_mask'])\n"
        "obj = ObjectLayout.from_config(m.config).obj_token_id\n"
        "assert len(rows) == 1 and obj in rows[0] and m.config.image_token_id not in rows[0]\n"
        "assert m.generate(**given, max_new_tokens=3).shape[0] == 1\n"
        "try:\n"
        "    object_input_rows(m, batch['input_ids'], batch['attention_mask'], None)\n"
        "    raise SystemExit('placeholders without pixel_values should be refused')\n"
        "except ValueError as e:\n"
        "    assert 'pixel_values' in str(e)\n"
        "from gaussiantoken.lm.generation import generate_images\n"
        "from gaussiantoken.lm.rerank import caption_log_likelihood\n"
        "px = m.decode_image_tokens(generate_images(m, p, ['a small red circle'] * 3, num_candidates=2,\n"
        "                                           temperature=1.0)).float().clamp(-1, 1)\n"
        "caps = ['a small red circle', 'hello', 'a large blue square to the left of a small red circle']\n"
        "ll = caption_log_likelihood(m, p, px, caps, batch_size=3)  # object spans of unlike lengths, padded\n"
        "one = torch.cat([caption_log_likelihood(m, p, px[i:i + 1], [c], batch_size=1) for i, c in enumerate(caps)])\n"
        "assert torch.allclose(ll, one, atol=1e-4) and bool((ll < 0).all()), (ll, one)\n"
        "print('OK', got)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(final)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
    for bad, match in (({"data.t2i_layout": "grid"}, "model.input_layout=objects"),
                       ({"model.image_groups": 0}, "model.input_layout=objects"),
                       ({"model.input_layout": "rows"}, "model.input_layout"),
                       ({"data.vqa_turns": 0}, "data.vqa_turns"),
                       ({"data.source": "codes", "data.t2i_layout": "grid", "model.input_layout": "grid",
                         "model.image_groups": 0, "data.vqa_rationale": True}, "data.vqa_rationale"),
                       ({"data.ratios": {"text_to_image": 1, "vqa": 1, "text_qa": 1}}, "data.vqa_rationale=true"),
                       ({"data.rationale_style": "scan"}, "data.vqa_rationale=true"),
                       ({"data.vqa_rationale": True, "data.rationale_style": "list"}, "data.rationale_style"),
                       ({"data.text_qa_questions": "some"}, "data.text_qa_questions")):
        with pytest.raises(ValueError, match=match):
            check_config(load_run_config(LMRunConfig, CONFIG, _stream_overrides(*args, tmp_path / "x", **{**extra, **bad})))
