"""Caption metrics: CIDEr-D by hand on a toy corpus, BLEU of identical captions, input validation."""

import math

import pytest

from gaussiantoken.eval.captioning import caption_scores


def test_cider_toy_corpus_by_hand_and_bleu_identity():
    refs = {1: ["red circle"], 2: ["red square"], 3: ["blue triangle"]}
    preds = {1: "red circle", 2: "red triangle", 3: "blue triangle big"}
    out = caption_scores(preds, refs, metrics=("cider", "bleu"))
    # idf = log(N) - log(df) with N = 3 images; "red" is in 2 reference sets, every other n-gram in <= 1
    # (df 0 counts as 1). Per n: cosine of clipped tf-idf vectors, Gaussian length penalty (sigma 6),
    # mean over n = 1..4, x10.
    l15, l3 = math.log(1.5), math.log(3.0)
    s1 = 10 * (1 + 1 + 0 + 0) / 4  # identical bigram caption: unigram and bigram cosines 1
    s2 = 10 * (l15**2 / (l15**2 + l3**2)) / 4  # only "red" shared: l15^2 / (|hyp| |ref|), both sqrt(l15^2 + l3^2)
    uni = 2 * l3**2 / (math.sqrt(3) * l3 * math.sqrt(2) * l3)  # 2 of 3 unigrams shared
    bi = l3**2 / (math.sqrt(2) * l3 * l3)  # "blue triangle" shared of 2 bigrams
    s3 = 10 * (uni + bi) * math.exp(-1 / 72) / 4  # one word longer -> delta 1
    assert out["cider"] == pytest.approx((s1 + s2 + s3) / 3, rel=1e-9)
    same = caption_scores({"a": "a large red circle above a small blue square"},
                          {"a": ["A large red circle above a small blue square."]}, metrics=("bleu", "rouge_l"))
    for n in range(1, 5):
        assert same[f"bleu{n}"] == pytest.approx(1.0, abs=1e-6)
    assert same["rouge_l"] == pytest.approx(1.0)
    assert set(caption_scores(preds, refs, metrics=("bleu",))) == {"bleu1", "bleu2", "bleu3", "bleu4"}


def test_caption_input_errors():
    refs = {1: ["a red circle"], 2: ["a blue square"]}
    with pytest.raises(ValueError, match="do not match"):
        caption_scores({1: "a red circle", 3: "x"}, refs, metrics=("cider",))
    with pytest.raises(ValueError, match="empty"):
        caption_scores({}, refs, metrics=("cider",))
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({1: "a"}, {1: "a red circle"}, metrics=("cider",))
    with pytest.raises(ValueError, match="unknown"):
        caption_scores({1: "a"}, {1: ["a"]}, metrics=("spice",))
    with pytest.raises(TypeError, match="id 1"):
        caption_scores({1: 5}, {1: ["a"]}, metrics=("cider",))


@pytest.mark.slow
def test_all_metrics_including_meteor():
    out = caption_scores({1: "a large red circle", 2: "a small blue square"},
                         {1: ["a large red circle"], 2: ["a small green square", "a blue square"]})
    assert set(out) == {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"}
    assert 0.3 < out["meteor"] < 1.0
