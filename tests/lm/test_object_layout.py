"""The object-major text-to-image layout (lm.object_layout): span <-> codes, the generation grammar (by
hand, as a property over random logits, HF processor vs the static loop), which Gaussians draw which
object, the caption order, and a tiny LM trained layout end to end through generate_images."""

from collections import namedtuple

import numpy as np
import pytest
import torch

from gaussiantoken.lm.generation import sample_image_tokens
from gaussiantoken.lm.logits import ImageGrammarLogitsProcessor
from gaussiantoken.lm.object_layout import ObjectGrammar, ObjectLayout, assign_gaussians, caption_order, dilate

Slot = namedtuple("Slot", "name start size")
KINDS = [Slot("feature", 0, 5), Slot("geometry", 5, 4)]  # G = 2 tokens per Gaussian, local ids [0, 9)
M, G, OFFSET, EOI = 3, 2, 20, 5  # text ids [0, 20), image ids [20, 29), slot tokens 29..31, <obj> 32
EXTRA = OFFSET + 9
OBJ = EXTRA + M
VOCAB = OBJ + 1
FILL = [4, 8, 3, 7, 2, 6]  # each slot's background (feature, geometry)


@pytest.fixture(scope="module")
def layout():
    return ObjectLayout(M, G, FILL, EXTRA, OFFSET, max_objects=2)


@pytest.fixture(scope="module")
def grammar(layout):
    return ObjectGrammar(layout, KINDS, EOI)


def test_processor_reused_across_generations_of_other_sizes(grammar):
    """One processor, two generations: a 1-step one over 3 rows, then 2 rows: the state restarts at step 0."""
    proc = ImageGrammarLogitsProcessor(grammar, prompt_length=2)
    scores = torch.zeros(3, VOCAB)
    first = proc(torch.zeros(3, 2, dtype=torch.long), scores)
    assert first.shape == (3, VOCAB) and first[:, OBJ].eq(0).all() and first[:, EOI].isinf().all()
    again = proc(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, VOCAB))
    assert again.shape == (2, VOCAB) and again[:, OBJ].eq(0).all()
    step1 = proc(torch.tensor([[0, 0, OBJ], [0, 0, OBJ]]), torch.zeros(2, VOCAB))
    assert step1[:, EXTRA:EXTRA + M].eq(0).all() and step1[:, OBJ].isinf().all()


def test_span_by_hand_and_round_trip(layout):
    codes = [0, 5, 1, 6, 2, 7]
    span = layout.span(codes, [[2, 0], [1]])
    # <obj> slot0 f o slot2 f o <obj> slot1 f o   (slots ascend within an object)
    assert span == [OBJ, EXTRA + 0, 20, 25, EXTRA + 2, 22, 27, OBJ, EXTRA + 1, 21, 26]
    assert layout.span_to_codes(span + [EOI, 0, 0]) == codes
    partial = layout.span(codes, [[1]])
    assert layout.span_to_codes(partial) == [4, 8, 1, 6, 2, 6]  # unwritten slots take the fill
    ids = layout.spans_to_lm_ids(torch.tensor([span + [EOI], partial + [EOI] * 8]))
    assert ids.tolist() == [[c + OFFSET for c in codes], [c + OFFSET for c in [4, 8, 1, 6, 2, 6]]]
    assert layout.max_span_tokens == M * (G + 1) + 2 + 1 and layout.num_extra_tokens == M + 1


@pytest.mark.parametrize("objects, match", [([], "1 to 2 objects"), ([[0], [1], [2]], "1 to 2 objects"),
                                            ([[0], []], "at least one Gaussian"), ([[0, 1], [1]], "used twice"),
                                            ([[3]], "out of range")])
def test_span_rejects_bad_objects(layout, objects, match):
    with pytest.raises(ValueError, match=match):
        layout.span([0] * (M * G), objects)


def test_grammar_masks_by_hand(grammar):
    state = grammar.stepper(1, VOCAB, "cpu")

    def allowed():
        return (state.bias()[0] == 0).nonzero().flatten().tolist()

    assert allowed() == [OBJ]
    state.advance(torch.tensor([OBJ]))
    assert allowed() == [EXTRA, EXTRA + 1, EXTRA + 2]
    state.advance(torch.tensor([EXTRA + 1]))
    assert allowed() == list(range(20, 25))  # feature ids
    state.advance(torch.tensor([22]))
    assert allowed() == list(range(25, 29))  # geometry ids
    state.advance(torch.tensor([26]))
    # a later slot of this object, a new object, or the end
    assert allowed() == [EOI, EXTRA + 2, OBJ]
    state.advance(torch.tensor([OBJ]))
    assert allowed() == [EXTRA, EXTRA + 2]  # slot 1 is taken
    state.advance(torch.tensor([EXTRA + 2]))
    state.advance(torch.tensor([21]))
    state.advance(torch.tensor([27]))
    assert allowed() == [EOI]  # max_objects = 2 reached and no later slot
    assert not state.finished()
    state.advance(torch.tensor([EOI]))
    assert state.finished() and allowed() == [EOI]


def test_grammar_on_random_logits_always_decodes(grammar, layout):
    """Property: whatever the logits, the masked argmax is a span that `span_to_codes` decodes, every slot at
    most once, ending in <eoi> within max_new_tokens."""
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        proc = ImageGrammarLogitsProcessor(grammar, prompt_length=2)
        ids = torch.zeros(3, 2, dtype=torch.long)
        for _ in range(grammar.max_new_tokens):
            tok = proc(ids, torch.randn(3, VOCAB, generator=g) * 10).argmax(-1)
            ids = torch.cat([ids, tok[:, None]], 1)
        for row in ids[:, 2:].tolist():
            end = row.index(EOI)
            span = row[:end]
            slots = [t - EXTRA for t in span if EXTRA <= t < OBJ]
            assert len(slots) == len(set(slots)) and 1 <= span.count(OBJ) <= 2 and span[0] == OBJ
            codes = layout.span_to_codes(span)
            assert layout.span(codes, _objects_of(span)) == span  # re-encodes to itself
            assert all(c in range(0, 5) for c in codes[0::2]) and all(c in range(5, 9) for c in codes[1::2])


def _objects_of(span):
    objects = []
    for t in span:
        if t == OBJ:
            objects.append([])
        elif EXTRA <= t < OBJ:
            objects[-1].append(t - EXTRA)
    return objects


# relative slots: 5 slots on a 2 x 3 grid (slot k at row k // 3, column k % 3; the last cell is empty)
RM = 5
R_EXTRA = OFFSET + 9
R_STEP = R_EXTRA + RM  # steps (dr, dc): (0, 1), (0, 2), (1, -2), (1, -1), (1, 0), (1, 1), (1, 2)
R_OBJ = R_STEP + 7
R_VOCAB = R_OBJ + 1
R_FILL = [4, 8] * RM


@pytest.fixture(scope="module")
def rel_layout():
    return ObjectLayout(RM, G, R_FILL, R_EXTRA, OFFSET, max_objects=3, slots="relative", grid=(2, 3))


def test_relative_span_by_hand_and_round_trip(rel_layout):
    from gaussiantoken.lm.configuration import extra_token_count

    assert rel_layout.steps == [(0, 1), (0, 2), (1, -2), (1, -1), (1, 0), (1, 1), (1, 2)]
    assert rel_layout.obj_token_id == R_OBJ and rel_layout.num_extra_tokens == RM + 7 + 1
    assert extra_token_count(rel_layout.to_dict()) == rel_layout.num_extra_tokens
    codes = [0, 5, 1, 6, 2, 7, 3, 8, 4, 5]
    # object A on slots 1, 3, 4 (first slot 1 at (0, 1): steps (1, -1), (1, 0)); object B on slot 2 alone
    span = rel_layout.span(codes, [[4, 1, 3], [2]])
    assert span == [R_OBJ, R_EXTRA + 1, 21, 26, R_STEP + 3, 23, 28, R_STEP + 4, 24, 25, R_OBJ, R_EXTRA + 2, 22, 27]
    assert rel_layout.span_to_codes(span + [EOI]) == [4, 8] + codes[2:]
    # the same object moved one column right differs in its first slot token only (slots 2, 4, 5 -> 5 is off the grid)
    moved = rel_layout.span(codes, [[0, 2]])
    assert moved == [R_OBJ, R_EXTRA + 0, 20, 25, R_STEP + 1, 22, 27]
    with pytest.raises(ValueError, match="grid"):
        ObjectLayout(RM, G, R_FILL, R_EXTRA, OFFSET, slots="relative", grid=(2, 2))


def test_relative_grammar_steps_stay_on_the_grid_and_decode(rel_layout):
    grammar = ObjectGrammar(rel_layout, KINDS, EOI)
    state = grammar.stepper(1, R_VOCAB, "cpu")

    def allowed():
        return (state.bias()[0] == 0).nonzero().flatten().tolist()

    state.advance(torch.tensor([R_OBJ]))
    assert allowed() == [R_EXTRA + k for k in range(RM)]  # the first Gaussian: any slot, no step
    for t in (R_EXTRA + 2, 22, 27):  # first slot 2 = (0, 2): later slots on the grid are 3 = (1, -2), 4 = (1, -1)
        state.advance(torch.tensor([t]))
    assert allowed() == [EOI, R_STEP + 2, R_STEP + 3, R_OBJ]
    for t in (R_STEP + 3, 24, 25):  # slot 4; now nothing is later on the grid
        state.advance(torch.tensor([t]))
    assert allowed() == [EOI, R_OBJ]
    for seed in range(200):  # property: random logits always give a span that decodes and re-encodes to itself
        g = torch.Generator().manual_seed(seed)
        proc = ImageGrammarLogitsProcessor(grammar, prompt_length=2)
        ids = torch.zeros(3, 2, dtype=torch.long)
        for _ in range(grammar.max_new_tokens):
            ids = torch.cat([ids, proc(ids, torch.randn(3, R_VOCAB, generator=g) * 10).argmax(-1)[:, None]], 1)
        for row in ids[:, 2:].tolist():
            span = row[:row.index(EOI)]
            objects, first = [], None
            for t in span:
                if t == R_OBJ:
                    objects.append([])
                elif R_EXTRA <= t < R_STEP:
                    first = t - R_EXTRA
                    objects[-1].append(first)
                elif R_STEP <= t < R_OBJ:
                    objects[-1].append(int(rel_layout.target[first, t - R_STEP]))
            flat = [k for o in objects for k in o]
            assert len(flat) == len(set(flat)) and all(0 <= k < RM for k in flat) and span[0] == R_OBJ
            assert rel_layout.span(rel_layout.span_to_codes(span), objects) == span


@pytest.fixture(scope="module")
def lm(make_tiny_llama):
    return make_tiny_llama(VOCAB)


PROMPTS = [[1, 7, 8, 9, 4], [1, 11, 4], [1, 12, 13, 14, 15, 16, 4]]
UNCOND = [[1, 4]] * 3


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_static_loop_matches_hf_generate(lm, grammar, guidance):
    kw = dict(guidance_scale=guidance, temperature=1.0, top_k=6, top_p=0.95)
    for seed in range(4):
        hf = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, generator=torch.Generator().manual_seed(seed), **kw)
        fast = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, generator=torch.Generator().manual_seed(seed),
                                   backend="static", **kw)
        assert hf.shape == (3, M * G) and torch.equal(hf, fast)
        assert ((hf >= OFFSET) & (hf < OFFSET + 9)).all()


def test_assign_gaussians_on_a_hand_scene():
    scene = [dict(shape="square", color="red", size="large", x=8.0, y=8.0),
             dict(shape="circle", color="blue", size="small", x=24.0, y=24.0)]
    S = 32

    def at(px, py):  # pixel centre -> [-1, 1]
        return [(px + 0.5) / S * 2 - 1, (py + 0.5) / S * 2 - 1]

    means = torch.tensor([[at(8, 8), at(24, 24), at(2, 30), at(30, 2)]])  # [1, 4, 2]
    owners = assign_gaussians(means, [scene], S, radius=1)
    assert owners == [[[0], [1]]]  # the corner Gaussians are background
    # no centre on the circle: it takes the nearest spare Gaussian (background ones, not the square's only one)
    far = torch.tensor([[at(8, 8), at(20, 30), at(2, 30), at(30, 2)]])
    assert assign_gaussians(far, [scene], S, radius=1) == [[[0], [1]]]
    lone = torch.tensor([[at(8, 8), at(9, 9), at(8, 9), at(7, 8)]])  # every Gaussian on the square
    assert assign_gaussians(lone, [scene], S, radius=0) == [[[0, 2, 3], [1]]]  # the circle takes the nearest


def test_dilate_grows_by_chebyshev_radius():
    m = np.zeros((1, 7, 7), bool)
    m[0, 3, 3] = True
    assert dilate(m, 1)[0].sum() == 9 and dilate(m, 2)[0].sum() == 25
    edge = np.zeros((1, 5, 5), bool)
    edge[0, 0, 0] = True
    assert dilate(edge, 1)[0].sum() == 4  # no wrap-around


def test_caption_order_follows_the_caption():
    """The objects in caption order are the objects the parsed caption names, in its order (random subject
    and axis for two objects, the canonical order for three)."""
    from gaussiantoken.data.shapes_text import caption_for, parse_caption
    from gaussiantoken.data.shapes_world import sample_scenes

    scenes = sample_scenes(np.random.default_rng(0), 300, 32)
    rng = np.random.default_rng(1)
    keys = ("color", "shape", "size")
    for scene in scenes:
        caption = caption_for(scene, rng)
        order = caption_order(scene, caption)
        named = [tuple(o[k] for k in keys) for o in parse_caption(caption)["objects"]]
        assert [tuple(scene[i][k] for k in keys) for i in order] == named
    assert {len(s) for s in scenes} == {1, 2, 3}
    two = next(s for s in scenes if len(s) == 2)
    other = "a large red square" if two[0]["color"] != "red" else "a large blue square"
    with pytest.raises(ValueError, match="does not describe"):
        caption_order(two, f"{other} to the left of {other}")


def _stream_overrides(image_tokenizer_dir, text_tokenizer_dir, out, **extra):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("test_lm_train.py")
    spec = importlib.util.spec_from_file_location("_lm_train_tests_obj", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.overrides(image_tokenizer_dir, "unused", text_tokenizer_dir, out, **{
        "data.source": "shapes_stream", "data.stream_chunk": 8, "data.t2i_layout": "objects",
        "data.image_input_loss": "true", "data.ratios": "{text_to_image: 1.0, caption: 0.5, vqa: 0.5}", **extra})


def test_train_objects_layout_resumes_saves_and_generates(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    """train-lm with data.t2i_layout=objects: the stream's rows carry the objects, the targets are object spans,
    a resume continues exactly, the saved LM keeps its layout and generate_images decodes through it."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoProcessor

    from gaussiantoken.lm.generation import generate_images, image_grammar_for
    from gaussiantoken.lm.train import LMRunConfig, train
    from gaussiantoken.runtime.config import load_run_config

    config = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"
    args = (image_tokenizer_dir, text_tokenizer_dir)
    full = train(load_run_config(LMRunConfig, config, _stream_overrides(*args, tmp_path / "a")))
    train(load_run_config(LMRunConfig, config, _stream_overrides(*args, tmp_path / "b", **{"train.stop_at_step": 3})))
    resumed = train(load_run_config(LMRunConfig, config, _stream_overrides(*args, tmp_path / "b")))
    a = [h["loss"] for h in full.log_history if "loss" in h]
    b = [h["loss"] for h in resumed.log_history if "loss" in h]
    assert len(a) == 6 and max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)

    model = AutoModelForCausalLM.from_pretrained(full.final_dir).eval()
    processor = AutoProcessor.from_pretrained(full.final_dir)
    lay = ObjectLayout.from_config(model.config)
    assert lay is not None and lay.num_slots == 4 and lay.group == 3
    assert model.config.vocab_size == model.config.image_token_offset + model.config.image_vocab_size + 5
    assert isinstance(image_grammar_for(model), ObjectGrammar)
    ids = generate_images(model, processor, ["a small red circle", "a large blue square"], guidance_scale=2.0,
                          generator=torch.Generator().manual_seed(0))
    off = model.config.image_token_offset
    assert ids.shape == (2, 12) and ((ids >= off) & (ids < off + model.config.image_vocab_size)).all()
    assert model.decode_image_tokens(ids).shape[0] == 2
    # as a user runs it: a fresh process, the Auto classes and both pipelines after `import gaussiantoken`
    import subprocess
    import sys

    script = (
        "import sys, torch, transformers, gaussiantoken\n"
        "d = sys.argv[1]\n"
        "m = transformers.AutoModelForCausalLM.from_pretrained(d)\n"
        "assert m.config.object_layout['num_slots'] == 4\n"
        "imgs = transformers.pipeline('text-to-image', model=d)('a small red circle', "
        "generator=torch.Generator().manual_seed(0), num_images_per_prompt=2)\n"
        "assert len(imgs) == 2 and imgs[0].size == (16, 16)\n"
        "out = transformers.pipeline('image-text-to-text', model=d)(images=imgs[0], text='Describe the image.')\n"
        "print('OK', type(out).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(full.final_dir)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_objects_layout_config_errors(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    from pathlib import Path

    from gaussiantoken.lm.configuration import GaussianTokenLMConfig
    from gaussiantoken.lm.train import LMRunConfig, check_config
    from gaussiantoken.runtime.config import load_run_config

    config = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"
    args = (image_tokenizer_dir, text_tokenizer_dir, tmp_path / "x")
    for extra, match in (({"data.t2i_layout": "rows"}, "data.t2i_layout"),
                         ({"data.source": "codes", "data.codes": image_tokenizer_dir}, "data.source=shapes_stream"),
                         ({"data.t2i_background": "canonical"}, "data.t2i_background"),
                         ({"data.object_radius": -1}, "data.object_radius")):
        with pytest.raises(ValueError, match=match):
            check_config(load_run_config(LMRunConfig, config, _stream_overrides(*args, **extra)))
    from gaussiantoken.tokenizer import GaussianTokenizer

    tok = GaussianTokenizer.from_pretrained(image_tokenizer_dir)
    m, g, v = tok.config.num_gaussians, tok.tokens_per_image // tok.config.num_gaussians, tok.vocab_size
    fill = [0] * (m * g)
    base = dict(text_config={"model_type": "llama", "vocab_size": 100 + v + m + 1}, tokenizer_config=tok.config.to_dict(),
                image_token_offset=100, image_vocab_size=v, tokens_per_image=m * g, boi_token_id=3, eoi_token_id=4,
                image_token_id=5)
    GaussianTokenLMConfig(**base, object_layout={"num_slots": m, "group": g, "fill": fill})  # valid
    for spec, match in (({"num_slots": m, "group": g}, "lacks"),
                        ({"num_slots": m - 1, "group": g, "fill": fill}, "tokens_per_image"),
                        ({"num_slots": m, "group": g, "fill": fill[:-1]}, "fill"),
                        ({"num_slots": m, "group": g, "fill": [v] * (m * g)}, "fill")):
        with pytest.raises(ValueError, match=match):
            GaussianTokenLMConfig(**base, object_layout=spec)
    with pytest.raises(ValueError, match="object-layout tokens"):
        GaussianTokenLMConfig(**{**base, "text_config": {"model_type": "llama", "vocab_size": 100 + v}},
                              object_layout={"num_slots": m, "group": g, "fill": fill})


def test_train_relative_slots_on_lattice_scenes_and_generate(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    """data.object_slots=relative + data.t2i_positions=lattice: the saved LM holds the relative layout (grid of
    the tokenizer's anchors, steps in its vocabulary) and generates through it; bad values are one-line errors."""
    from pathlib import Path

    from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor
    from gaussiantoken.lm.generation import generate_images
    from gaussiantoken.lm.train import LMRunConfig, check_config, train
    from gaussiantoken.runtime.config import load_run_config

    config = Path(__file__).resolve().parents[2] / "configs" / "lm" / "shapes.yaml"
    extra = {"data.object_slots": "relative", "data.t2i_positions": "lattice", "train.max_steps": 3}
    result = train(load_run_config(LMRunConfig, config, _stream_overrides(image_tokenizer_dir, text_tokenizer_dir,
                                                                          tmp_path / "r", **extra)))
    model = GaussianTokenForCausalLM.from_pretrained(result.final_dir).eval()
    lay = ObjectLayout.from_config(model.config)
    assert lay.slots == "relative" and lay.grid == (2, 2) and len(lay.steps) == 4  # 4 Gaussians, 2 x 2 anchors
    assert model.config.vocab_size == model.config.image_token_offset + model.config.image_vocab_size + 4 + 4 + 1
    processor = GaussianTokenProcessor.from_pretrained(result.final_dir)
    ids = generate_images(model, processor, ["a small red circle"], generator=torch.Generator().manual_seed(0))
    assert ids.shape == (1, 12)
    for key, value, match in (("data.object_slots", "diagonal", "data.object_slots"),
                              ("data.t2i_positions", "grid", "data.t2i_positions")):
        with pytest.raises(ValueError, match=match):
            check_config(load_run_config(LMRunConfig, config, _stream_overrides(
                image_tokenizer_dir, text_tokenizer_dir, tmp_path / "x", **{key: value})))
    with pytest.raises(ValueError, match="shapes_stream"):
        check_config(load_run_config(LMRunConfig, config, _stream_overrides(
            image_tokenizer_dir, text_tokenizer_dir, tmp_path / "x", **{"data.t2i_positions": "lattice",
                                                                        "data.source": "codes", "data.codes": "x"})))
