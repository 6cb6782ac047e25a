"""The generation core (lm.logits: grammar and processors; lm.generation: the decode loops) on a tiny random
LlamaForCausalLM and a hand-made token layout (no tokenizer)."""

from collections import namedtuple

import pytest
import torch

from gaussiantoken.lm.generation import left_pad, sample_image_tokens
from gaussiantoken.lm.logits import (
    ClassifierFreeGuidanceLogitsProcessor,
    ImageGrammar,
    ImageGrammarLogitsProcessor,
    SamplingLogitsProcessor,
    TextOnlyLogitsProcessor,
    filter_logits,
)

Slot = namedtuple("Slot", "name start size")
LAYOUT = [Slot("feature", 0, 7), Slot("x", 7, 3), Slot("y", 10, 3), Slot("scale", 13, 2)]
OFFSET, T, EOI = 20, 8, 5  # text ids [0, 20), image ids [20, 35), 2 Gaussians x 4 slots
VOCAB = OFFSET + 15


@pytest.fixture(scope="module")
def lm(make_tiny_llama):
    return make_tiny_llama(VOCAB)


@pytest.fixture(scope="module")
def grammar():
    return ImageGrammar(LAYOUT, OFFSET, T, EOI)


PROMPTS = [[1, 7, 8, 9, 4], [1, 11, 4], [1, 12, 13, 14, 15, 16, 4]]
UNCOND = [[1, 4]] * 3


def test_grammar_bias_table_by_hand(grammar):
    table = grammar.bias_table(VOCAB, "cpu")
    assert table.shape == (5, VOCAB)
    allowed = [(table[k] == 0).nonzero().flatten().tolist() for k in range(5)]
    assert allowed[0] == list(range(20, 27)) and allowed[1] == [27, 28, 29]
    assert allowed[2] == [30, 31, 32] and allowed[3] == [33, 34] and allowed[4] == [EOI]
    assert [grammar.row_index(t) for t in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 4, 4]


def test_grammar_processor_on_random_logits_always_valid(grammar):
    """Property: whatever the logits, argmax after the grammar mask is a valid image, then <eoi>."""
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        proc = ImageGrammarLogitsProcessor(grammar, prompt_length=3)
        ids = torch.zeros(2, 3, dtype=torch.long)
        for _ in range(T + 1):
            scores = torch.randn(2, VOCAB, generator=g) * 10
            tok = proc(ids, scores).argmax(-1)
            ids = torch.cat([ids, tok[:, None]], 1)
        assert grammar.check(ids[:, 3 : 3 + T]).all()
        assert (ids[:, -1] == EOI).all()


def test_sampled_images_obey_grammar_over_many_seeds(lm, grammar):
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        ids = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, guidance_scale=3.0, generator=g,
                                  temperature=1.5, top_k=None, top_p=None)
        assert ids.shape == (3, T) and grammar.check(ids).all()


def test_cfg_combines_halves_and_is_identity_at_one():
    cond, uncond = torch.randn(2, 9), torch.randn(2, 9)
    out = ClassifierFreeGuidanceLogitsProcessor(3.0)(None, torch.cat([cond, uncond]))
    torch.testing.assert_close(out[:2], uncond + 3.0 * (cond - uncond))
    torch.testing.assert_close(out[2:], out[:2])
    same = ClassifierFreeGuidanceLogitsProcessor(1.0)(None, torch.cat([cond, uncond]))
    assert torch.equal(same[:2], cond) and torch.equal(same[2:], cond)
    with pytest.raises(ValueError, match="guidance_scale"):
        ClassifierFreeGuidanceLogitsProcessor(0.5)


def test_filter_logits_golden():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top2 = filter_logits(logits, 1.0, 2, None)
    assert torch.isinf(top2[0, 2:]).all() and torch.isfinite(top2[0, :2]).all()
    nucleus = filter_logits(logits, 1.0, None, 0.7)  # 0.5 < 0.7 -> keep 0.5 and 0.3 only
    assert torch.isfinite(nucleus[0, :2]).all() and torch.isinf(nucleus[0, 2:]).all()
    torch.testing.assert_close(filter_logits(logits, 2.0, None, None), logits / 2)


def test_sampling_frequencies_match_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1])
    proc = SamplingLogitsProcessor(1.0, generator=torch.Generator().manual_seed(0))
    draws = proc.sample(probs.log().expand(20000, 3)).bincount(minlength=3).float() / 20000
    torch.testing.assert_close(draws, probs, atol=0.015, rtol=0)


def test_paired_sampling_gives_both_halves_the_same_token():
    scores = torch.randn(3, 11).repeat(2, 1)
    out = SamplingLogitsProcessor(1.0, generator=torch.Generator().manual_seed(1), paired=True)(None, scores)
    tok = out.argmax(-1)
    assert torch.equal(tok[:3], tok[3:]) and (out == 0).sum() == 6


def test_text_only_processor_masks_image_tokens():
    proc = TextOnlyLogitsProcessor(OFFSET, [4, EOI, 6])
    out = proc(None, torch.zeros(1, VOCAB))
    assert torch.isinf(out[0, OFFSET:]).all() and torch.isinf(out[0, [4, 5, 6]]).all()
    assert torch.isfinite(out[0, :4]).all() and torch.isfinite(out[0, 7:OFFSET]).all()


def test_same_seed_same_images_and_different_seed_differs(lm, grammar):
    def run(seed):
        return sample_image_tokens(lm, grammar, PROMPTS, UNCOND, guidance_scale=2.0,
                                   generator=torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_one_equals_unguided(lm, grammar):
    g1 = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, guidance_scale=1.0,
                             generator=torch.Generator().manual_seed(3))
    plain = sample_image_tokens(lm, grammar, PROMPTS, None, guidance_scale=1.0,
                                generator=torch.Generator().manual_seed(3))
    assert torch.equal(g1, plain)


def test_batched_left_padding_equals_one_by_one_greedy(lm, grammar):
    batched = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, guidance_scale=2.5, temperature=0.0)
    single = torch.cat([sample_image_tokens(lm, grammar, [p], [u], guidance_scale=2.5, temperature=0.0)
                        for p, u in zip(PROMPTS, UNCOND)])
    assert torch.equal(batched, single)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_static_loop_matches_hf_generate(lm, grammar, guidance):
    kw = dict(guidance_scale=guidance, temperature=1.0, top_k=5, top_p=0.9)
    hf = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, generator=torch.Generator().manual_seed(5), **kw)
    fast = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, generator=torch.Generator().manual_seed(5),
                               backend="static", **kw)
    assert torch.equal(hf, fast)


def test_static_cache_generate_matches_dynamic(lm, grammar):
    kw = dict(guidance_scale=2.0, temperature=0.0)
    dynamic = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, **kw)
    static = sample_image_tokens(lm, grammar, PROMPTS, UNCOND, cache_implementation="static", **kw)
    assert torch.equal(dynamic, static)


def test_bad_arguments(lm, grammar):
    with pytest.raises(ValueError, match="guidance_scale"):
        sample_image_tokens(lm, grammar, PROMPTS, UNCOND, guidance_scale=0.5)
    with pytest.raises(ValueError, match="temperature"):
        sample_image_tokens(lm, grammar, PROMPTS, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        sample_image_tokens(lm, grammar, PROMPTS, top_p=1.5)
    with pytest.raises(ValueError, match="prompt too long"):
        sample_image_tokens(lm, grammar, [[1] * 60])
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], 0)
    with pytest.raises(ValueError, match="unknown backend"):
        sample_image_tokens(lm, grammar, PROMPTS, backend="fastest")
