"""lm.rerank: the caption score is the captioning loss, the claim score combines a prompt's phrasings, and
generate_images(num_candidates=K) keeps exactly the best-scored of the K samples it would otherwise return."""

import pytest
import torch

from gaussiantoken.lm.rerank import best_of, candidates_for, caption_log_likelihood, claim_scores

CAPTIONS = ["a large red circle", "a small blue square to the left of a large green triangle", "hello", "two"]


def _images(model, n, seed=0):
    from gaussiantoken.lm.generation import ImageGrammar

    g = torch.Generator().manual_seed(seed)

    grammar = ImageGrammar.from_model(model)
    ids = grammar.images(torch.cat([_grammatical(grammar, model, g) for _ in range(n)]))
    return model.decode_image_tokens(ids).float().clamp(-1, 1)  # [n, 3, S, S]


def _grammatical(grammar, model, g):
    """One grammatical image span drawn at random (the grammar's mask on random logits)."""
    state = grammar.stepper(1, model.config.vocab_size, "cpu")
    tokens = []
    for _ in range(grammar.max_new_tokens):
        logits = torch.randn(1, model.config.vocab_size, generator=g) + state.bias()
        token = logits.argmax(-1)
        tokens.append(token)
        state.advance(token)
        if state.finished():
            break
    return torch.stack(tokens, dim=1)


def test_caption_log_likelihood_is_minus_the_captioning_loss(tiny_lm, processor):
    """Per image: -(sum of the LM's cross-entropy over the caption + eos of the training sequence), whatever the
    batch (right padding must not leak)."""
    from gaussiantoken.lm.sequences import VocabLayout, build_caption

    model = tiny_lm.eval()
    pixels = _images(model, len(CAPTIONS))
    together = caption_log_likelihood(model, processor, pixels, CAPTIONS, batch_size=4)
    apart = torch.cat([caption_log_likelihood(model, processor, pixels[i:i + 1], [c], batch_size=1)
                       for i, c in enumerate(CAPTIONS)])
    torch.testing.assert_close(together, apart, atol=1e-4, rtol=1e-5)
    layout = VocabLayout.from_config(model.config, processor.tokenizer)
    codes = (model.encode_images(pixels) - model.config.image_token_offset).tolist()
    for i, caption in enumerate(CAPTIONS):
        row = build_caption(processor.tokenizer, caption, codes[i], layout)
        labels = torch.tensor([row["labels"]])
        out = model(input_ids=torch.tensor([row["input_ids"]]), labels=labels)
        n = int((labels[:, 1:] != -100).sum())
        assert n == len(processor.tokenizer(caption, add_special_tokens=False)["input_ids"]) + 1  # + eos
        torch.testing.assert_close(together[i], -out.loss.float() * n, atol=1e-3, rtol=1e-4)
    assert (together < 0).all()


def test_claim_score_is_any_phrasing_of_the_prompt(tiny_lm, processor):
    model = tiny_lm.eval()
    pixels = _images(model, 2, seed=1)
    two = "a small red circle to the left of a large blue square"
    other = "a large blue square to the right of a small red circle"
    got = claim_scores(model, processor, pixels, [two, "hello"])
    raw = caption_log_likelihood(model, processor, pixels[[0, 0, 1]], [two, other, "hello"])
    torch.testing.assert_close(got[0], torch.logsumexp(raw[:2], 0))
    torch.testing.assert_close(got[1], raw[2])


def test_best_of_picks_each_groups_argmax():
    scores = torch.tensor([0.1, 0.5, 0.2, -1.0, -3.0, -1.0])
    assert best_of(scores, 3).tolist() == [1, 3]  # ties: the first
    assert best_of(scores, 1).tolist() == list(range(6))
    with pytest.raises(ValueError, match="groups of 4"):
        best_of(scores, 4)
    with pytest.raises(ValueError, match="one caption per image"):
        caption_log_likelihood(None, None, torch.zeros(2, 3, 16, 16), ["x"])


def test_candidates_rule_and_context_refusal(tiny_lm, processor):
    assert candidates_for(4, 0.5) == 4 and candidates_for(4, 0.0) == 1 and candidates_for(1, 1.0) == 1
    for bad in (0, -1, 2.0, True, None):
        with pytest.raises(ValueError, match="num_candidates must be an int >= 1"):
            candidates_for(bad, 0.5)
    model = tiny_lm.eval()
    with pytest.raises(ValueError, match="exceed the model's context"):  # scored past the context: refused
        caption_log_likelihood(model, processor, _images(model, 1), ["a large red circle " * 80])
