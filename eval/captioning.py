"""Captioning metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) through pycocoevalcap.

Owns `caption_scores(predictions, references, metrics=...)`: predictions {id: caption}, references
{id: [captions]}; both sides are tokenized with the COCO PTB tokenizer (java, lower-cased, punctuation
dropped) and scored with the COCO caption scorers. Returns a dict with keys bleu1..bleu4, meteor,
rouge_l, cider (fractions as pycocoevalcap reports them; CIDEr is CIDEr-D: x10 scale, clipped
tf-idf, Gaussian length penalty with sigma 6, idf from the evaluated references). METEOR starts a java
process (seconds); pass `metrics=` to choose a subset.

The benchmark runner (added for the evaluation harness):
- `shapes_caption_accuracy(predictions, objects)`: exact-scene accuracy of captions on the Shapes world:
  a prediction is right when it parses (`data.shapes.parse_caption`) and describes exactly the image's
  objects (count, and each one's color, shape and size) and, for 2 objects, its relation holds for the
  true centres (`data.shapes.scene_matches_caption`); also the grammatical rate.
- `score_shapes_captions(predictions, references, objects, metrics)`: caption_scores + the above.
- `run_captioning(model, processor, dataset, ...)`: generate captions for the dataset's images
  (batched `lm.generation.generate_text`) and score them; on Shapes (an `objects` column) with the exact
  accuracy, on COCO (`captions` column, or `references` {image_id: [captions]} from
  `eval.readers.read_coco_captions`) with the caption metrics only.
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


def shapes_caption_accuracy(predictions, objects) -> dict:
    """Exact-scene accuracy of predicted Shapes captions (a list, one per image) against each image's
    true objects (a list of object-dict lists). Ungrammatical captions count as wrong."""
    from gaussiantoken.data.shapes import parse_caption, scene_matches_caption

    from .feature_nets import _objects_list

    predictions, objects = list(predictions), list(objects)
    if not predictions:
        raise ValueError("predictions is empty: nothing to score")
    if len(predictions) != len(objects):
        raise ValueError(f"got {len(predictions)} predictions for {len(objects)} images")
    correct = grammatical = 0
    for text, objs in zip(predictions, objects):
        if not isinstance(text, str):
            raise TypeError(f"predicted captions must be str, got {type(text).__name__}")
        if parse_caption(text) is None:
            continue
        grammatical += 1
        correct += bool(scene_matches_caption(_objects_list(objs), text)["correct"])
    n = len(predictions)
    return {"exact_scene_accuracy": correct / n, "grammatical_rate": grammatical / n}


def score_shapes_captions(predictions, references, objects, metrics: Iterable[str] = ALL_METRICS) -> dict:
    """COCO caption metrics (ids = positions) plus the Shapes exact-scene accuracy.

    predictions: list[str]; references: list[str] or list[list[str]] (one entry per image)."""
    predictions, references = list(predictions), list(references)
    refs = {i: ([r] if isinstance(r, str) else list(r)) for i, r in enumerate(references)}
    out = caption_scores({i: p for i, p in enumerate(predictions)}, refs, metrics)
    out.update(shapes_caption_accuracy(predictions, objects))
    out["num_images"] = len(predictions)
    return out


def run_captioning(model, processor, dataset, references: dict | None = None, metrics: Iterable[str] = ALL_METRICS,
                   batch_size: int = 32, max_new_tokens: int = 32, image_column: str = "image",
                   id_column: str = "image_id") -> tuple[dict, dict]:
    """Caption every image of `dataset` and score the captions. Returns (metrics, predictions {id: str}).

    Shapes datasets (columns image, caption, objects): references are the true captions, ids the row
    positions, plus the exact-scene accuracy. Other datasets: `references` {image_id: [captions]}
    (e.g. `read_coco_captions`), matched to the `id_column` of the dataset, else its `captions` column.
    """
    from gaussiantoken.lm.generation import generate_text

    if len(dataset) == 0:
        raise ValueError("the captioning dataset is empty")
    if image_column not in dataset.column_names:
        raise ValueError(f"the captioning dataset has no {image_column!r} column (columns: {dataset.column_names})")
    texts: list[str] = []
    for s in range(0, len(dataset), batch_size):
        images = dataset[s:s + batch_size][image_column]
        texts += generate_text(model, processor, list(images),  # colour modes: the image processor
                               max_new_tokens=max_new_tokens, batch_size=batch_size)
    if "objects" in dataset.column_names and references is None:
        scores = score_shapes_captions(texts, dataset["caption"], dataset["objects"], metrics)
        return scores, dict(enumerate(texts))
    if id_column in dataset.column_names:
        ids = list(dataset[id_column])
    else:
        ids = list(range(len(dataset)))
    if len(set(ids)) != len(ids):
        raise ValueError(f"the captioning dataset has duplicate {id_column!r} values; load one row per image")
    predictions = dict(zip(ids, texts))
    if references is None:
        if "captions" not in dataset.column_names:
            raise ValueError("no references: give references= (read_coco_captions) or a dataset with a 'captions' column")
        references = dict(zip(ids, dataset["captions"]))
    from .readers import match_ids

    refs = match_ids(predictions, references, what="image_id", allow_subset=True)
    scores = caption_scores(predictions, refs, metrics)
    scores["num_images"] = len(predictions)
    return scores, predictions
