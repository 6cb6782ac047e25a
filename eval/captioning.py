"""Captioning metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) through pycocoevalcap.

Owns `caption_scores(predictions, references, metrics=...)`: predictions {id: caption}, references
{id: [captions]}; both sides are tokenized with the COCO PTB tokenizer (java, lower-cased, punctuation
dropped) and scored with the COCO caption scorers. Returns a dict with keys bleu1..bleu4, meteor,
rouge_l, cider (fractions as pycocoevalcap reports them; CIDEr is CIDEr-D: x10 scale, clipped
tf-idf, Gaussian length penalty with sigma 6, idf from the evaluated references). METEOR starts a java
process (seconds); pass `metrics=` to choose a subset. The benchmark runner will live here too.
"""

from __future__ import annotations

from typing import Iterable

ALL_METRICS = ("bleu", "meteor", "rouge_l", "cider")


def check_caption_inputs(predictions: dict, references: dict) -> None:
    """Validate caption prediction / reference dicts; ValueError naming the problem."""
    if not isinstance(predictions, dict) or not isinstance(references, dict):
        raise TypeError("predictions must be {id: str} and references {id: [str, ...]} dicts")
    if not predictions:
        raise ValueError("predictions is empty: nothing to score")
    missing = sorted(set(references) - set(predictions), key=str)
    extra = sorted(set(predictions) - set(references), key=str)
    if missing or extra:
        raise ValueError(f"prediction ids do not match reference ids: {len(missing)} references without a "
                         f"prediction (e.g. {missing[:3]}), {len(extra)} predictions without references "
                         f"(e.g. {extra[:3]})")
    for key, cap in predictions.items():
        if not isinstance(cap, str):
            raise TypeError(f"prediction for id {key!r} must be a str, got {type(cap).__name__}")
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, (list, tuple)) or not refs:
            raise ValueError(f"references for id {key!r} must be a non-empty list of str")
        if not all(isinstance(r, str) and r.strip() for r in refs):
            raise ValueError(f"references for id {key!r} contain an empty or non-str caption")


def ptb_tokenize(captions: dict) -> dict:
    """{id: [str]} -> {id: [tokenized str]} with the COCO PTB tokenizer (java)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


def caption_scores(predictions: dict, references: dict, metrics: Iterable[str] = ALL_METRICS) -> dict:
    """COCO caption metrics of `predictions` {id: str} against `references` {id: [str]}.

    metrics: any of "bleu" (bleu1..bleu4), "meteor", "rouge_l", "cider". Returns {name: float}.
    """
    metrics = tuple(metrics)
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown or not metrics:
        raise ValueError(f"unknown or no caption metrics {sorted(unknown)}; choose from {ALL_METRICS}")
    check_caption_inputs(predictions, references)
    keys = list(references)
    # Tokenize predictions and references in one java call; string keys keep the two apart.
    joint = {("p", i): [predictions[k]] for i, k in enumerate(keys)}
    joint.update({("r", i): list(references[k]) for i, k in enumerate(keys)})
    tok = ptb_tokenize(joint)
    res = {i: tok[("p", i)] for i in range(len(keys))}
    gts = {i: tok[("r", i)] for i in range(len(keys))}
    out: dict[str, float] = {}
    if "bleu" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)})
    if "meteor" in metrics:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            out["meteor"] = float(scorer.compute_score(gts, res)[0])
        finally:
            _close_meteor(scorer)
    if "rouge_l" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    if "cider" in metrics:
        from pycocoevalcap.cider.cider import Cider

        out["cider"] = float(Cider().compute_score(gts, res)[0])
    return out


def _close_meteor(scorer) -> None:
    """Stop the METEOR java subprocess now rather than at garbage collection (its __del__ stays safe)."""
    proc = getattr(scorer, "meteor_p", None)
    if proc is None:
        return
    with scorer.lock:
        proc.stdin.close()
        proc.kill()
        proc.wait()
