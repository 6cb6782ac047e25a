"""generate_images / generate_text on a real (tiny, random) GaussianToken LM + tokenizer."""

import pytest
import torch

from gaussiantoken.lm.generation import ImageGrammar, generate_images, generate_text

PROMPTS = ["a large red circle", "a small blue square to the left of a large green triangle", "two"]


def test_images_obey_the_tokenizer_grammar_and_decode(tiny_lm):
    model, processor = tiny_lm
    grammar = ImageGrammar.from_model(model)
    for seed in range(4):
        ids = generate_images(model, processor, PROMPTS, guidance_scale=4.0, temperature=2.0,
                              generator=torch.Generator().manual_seed(seed))
        assert ids.shape == (3, model.config.tokens_per_image) and grammar.check(ids).all()
        pixels = model.decode_image_tokens(ids)  # the tokenizer validates range and grammar itself
        assert pixels.shape == (3, 3, 16, 16) and pixels.abs().max() <= 1


def test_prompt_major_order_and_batch_split_greedy(tiny_lm):
    model, processor = tiny_lm
    kw = dict(guidance_scale=2.0, temperature=0.0, num_images_per_prompt=2)
    together = generate_images(model, processor, PROMPTS, batch_size=6, **kw)
    apart = torch.cat([generate_images(model, processor, [p], batch_size=1, **kw) for p in PROMPTS])
    assert torch.equal(together, apart)
    assert torch.equal(together[0], together[1])  # greedy: both images of a prompt agree


def test_seed_reproducible_and_negative_prompt_matters(tiny_lm):
    model, processor = tiny_lm

    def run(seed, **kw):
        return generate_images(model, processor, PROMPTS, guidance_scale=3.0,
                               generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    assert not torch.equal(run(1, temperature=0.0), run(1, temperature=0.0, negative_prompt="a large red circle"))


def test_generate_text_is_text_only_and_batch_invariant(tiny_lm):
    model, processor = tiny_lm
    pixels = model.decode_image_tokens(generate_images(model, processor, PROMPTS, temperature=0.0))
    prompts = ["Describe the image.", "what color is the circle?", "how many objects are there?"]
    batched = generate_text(model, processor, pixels, prompts, max_new_tokens=6)
    single = [generate_text(model, processor, pixels[i : i + 1], [p], max_new_tokens=6)[0]
              for i, p in enumerate(prompts)]
    assert batched == single and all(isinstance(t, str) for t in batched)
    from gaussiantoken.lm.sequences import final_answer

    full = generate_text(model, processor, pixels, prompts, max_new_tokens=6, full_reply=True)  # rationale kept
    assert [final_answer(t) for t in full] == batched
    # text-only: the raw ids never contain image tokens or the image markers
    from gaussiantoken.lm.generation import TextOnlyLogitsProcessor

    proc = TextOnlyLogitsProcessor.from_model(model)
    scores = proc(None, torch.zeros(1, model.config.vocab_size))
    allowed = torch.isfinite(scores[0]).nonzero().flatten()
    assert allowed.max() < model.config.image_token_offset
    assert model.config.boi_token_id not in allowed and model.config.image_token_id not in allowed


def test_bad_inputs_name_the_problem(tiny_lm):
    model, processor = tiny_lm
    with pytest.raises(ValueError, match="empty"):
        generate_images(model, processor, "  ")
    with pytest.raises(ValueError, match="prompt too long"):
        generate_images(model, processor, "red " * 200)
    with pytest.raises(ValueError, match="guidance_scale"):
        generate_images(model, processor, "red", guidance_scale=0.5)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        generate_images(model, processor, "red", num_images_per_prompt=0)
    with pytest.raises(TypeError, match="PIL"):
        generate_text(model, processor, ["not an image"], ["Describe the image."])
    with pytest.raises(ValueError, match="one prompt per image"):
        generate_text(model, processor, torch.zeros(2, 3, 16, 16), ["a", "b", "c"])


def test_num_candidates_keeps_the_best_scored_sample(tiny_lm):
    """num_candidates=K draws exactly the K samples that num_images_per_prompt=K draws (same generator) and
    keeps, per prompt, the one with the best claim score (lm.rerank); K=1 is plain sampling."""
    from gaussiantoken.lm.rerank import claim_scores

    model, processor = tiny_lm
    kw = dict(guidance_scale=2.0, temperature=1.5, batch_size=4)
    k = 3
    every = generate_images(model, processor, PROMPTS, num_images_per_prompt=k, num_candidates=1,
                            generator=torch.Generator().manual_seed(5), **kw)  # [P * K, T]
    kept = generate_images(model, processor, PROMPTS, num_candidates=k, generator=torch.Generator().manual_seed(5), **kw)
    assert kept.shape == (len(PROMPTS), model.config.tokens_per_image)
    pixels = model.decode_image_tokens(every).float().clamp(-1, 1)
    scores = claim_scores(model, processor, pixels, [p for p in PROMPTS for _ in range(k)]).view(len(PROMPTS), k)
    assert len({tuple(r) for r in every.tolist()}) > len(PROMPTS)  # the candidates differ
    for i in range(len(PROMPTS)):
        assert torch.equal(kept[i], every[i * k + int(scores[i].argmax())])
    from gaussiantoken.lm.sampling_defaults import T2I_CANDIDATES

    default = generate_images(model, processor, PROMPTS, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(default, generate_images(model, processor, PROMPTS, num_candidates=T2I_CANDIDATES,
                                                generator=torch.Generator().manual_seed(5), **kw))
    greedy = dict(kw, temperature=0.0)  # greedy: one draw, the candidates would all be the same
    assert torch.equal(generate_images(model, processor, PROMPTS, num_candidates=4, **greedy),
                       generate_images(model, processor, PROMPTS, num_candidates=1, **greedy))
    with pytest.raises(ValueError, match="num_candidates"):
        generate_images(model, processor, PROMPTS, num_candidates=0)
