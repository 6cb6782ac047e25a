"""Readers for the standard evaluation file formats, with validation.

Owns:
- `read_coco_captions(path)`: COCO caption annotations {"annotations": [{image_id, caption}, ...]}
  -> references {image_id: [captions]}.
- `read_caption_predictions(path)`: COCO caption results [{image_id, caption}, ...] -> {image_id: caption}.
- `read_vqa_questions(path)`: VQAv2 questions {"questions": [{question_id, image_id, question}]}
  -> {question_id: question dict}.
- `read_vqa_annotations(path)`: VQAv2 annotations {"annotations": [{question_id, answers: [{answer}],
  answer_type, question_type, ...}]} -> {question_id: annotation dict}.
- `read_vqa_predictions(path)`: VQA results [{question_id, answer}, ...] -> {question_id: answer}.
- `match_ids(predictions, references, ...)`: the same id set on both sides, else ValueError.
Every failure names the file and the problem: FileNotFoundError for a missing file, ValueError for
malformed JSON, wrong structure, missing fields, duplicate or empty entries.
"""

from __future__ import annotations

import json
import os
from typing import Any


def _load_json(path) -> Any:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: malformed JSON ({err.msg} at line {err.lineno} column {err.colno})") from err


def _records(data, path, key: str | None) -> list:
    if key is not None:
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f"{path}: expected a JSON object with a {key!r} list")
        data = data[key]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records" + (f" under {key!r}" if key else ""))
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: record {i} is not a JSON object")
    return data


def _field(rec: dict, name: str, kind, path, i: int):
    if name not in rec:
        raise ValueError(f"{path}: record {i} has no {name!r} field")
    value = rec[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{path}: record {i} field {name!r} must be {getattr(kind, '__name__', kind)}, "
                         f"got {type(value).__name__}")
    return value


_ID = (int, str)


def read_coco_captions(path) -> dict:
    """COCO caption annotation file -> {image_id: [caption, ...]} (every image with >= 1 caption)."""
    recs = _records(_load_json(path), path, "annotations")
    refs: dict = {}
    for i, rec in enumerate(recs):
        image_id, caption = _field(rec, "image_id", _ID, path, i), _field(rec, "caption", str, path, i)
        if not caption.strip():
            raise ValueError(f"{path}: record {i} (image {image_id!r}) has an empty caption")
        refs.setdefault(image_id, []).append(caption)
    if not refs:
        raise ValueError(f"{path}: no caption annotations")
    return refs


def _read_predictions(path, id_key: str, value_key: str) -> dict:
    """A results file [{id_key, value_key}] -> {id: value}; one prediction per id, at least one."""
    recs = _records(_load_json(path), path, None)
    preds: dict = {}
    for i, rec in enumerate(recs):
        key, value = _field(rec, id_key, _ID, path, i), _field(rec, value_key, str, path, i)
        if key in preds:
            raise ValueError(f"{path}: duplicate prediction for {id_key} {key!r}")
        preds[key] = value
    if not preds:
        raise ValueError(f"{path}: empty prediction set")
    return preds


def read_caption_predictions(path) -> dict:
    """COCO caption results [{image_id, caption}] -> {image_id: caption}; one caption per image."""
    return _read_predictions(path, "image_id", "caption")


def read_vqa_questions(path) -> dict:
    """VQAv2 questions file -> {question_id: {question_id, image_id, question}}."""
    recs = _records(_load_json(path), path, "questions")
    out: dict = {}
    for i, rec in enumerate(recs):
        qid = _field(rec, "question_id", _ID, path, i)
        _field(rec, "image_id", _ID, path, i)
        _field(rec, "question", str, path, i)
        if qid in out:
            raise ValueError(f"{path}: duplicate question_id {qid!r}")
        out[qid] = rec
    if not out:
        raise ValueError(f"{path}: no questions")
    return out


def read_vqa_annotations(path) -> dict:
    """VQAv2 annotations file -> {question_id: annotation} (answers checked: a list of {answer: str})."""
    recs = _records(_load_json(path), path, "annotations")
    out: dict = {}
    for i, rec in enumerate(recs):
        qid = _field(rec, "question_id", _ID, path, i)
        answers = _field(rec, "answers", list, path, i)
        if len(answers) < 2 or not all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers):
            raise ValueError(f"{path}: record {i} (question {qid!r}) needs >= 2 answers of the form {{'answer': str}}")
        if qid in out:
            raise ValueError(f"{path}: duplicate question_id {qid!r}")
        out[qid] = rec
    if not out:
        raise ValueError(f"{path}: no annotations")
    return out


def read_vqa_predictions(path) -> dict:
    """VQA results [{question_id, answer}] -> {question_id: answer}."""
    return _read_predictions(path, "question_id", "answer")


def match_ids(predictions: dict, references: dict, what: str = "id", allow_subset: bool = False) -> dict:
    """Check prediction ids against reference ids; return the references restricted to the predictions.

    allow_subset=True accepts predictions for a subset of the references (e.g. a quick run on the first
    N images); predictions for unknown ids are always an error.
    """
    if not predictions:
        raise ValueError("empty prediction set")
    extra = sorted(set(predictions) - set(references), key=str)
    missing = sorted(set(references) - set(predictions), key=str)
    if extra:
        raise ValueError(f"{len(extra)} predictions have no reference {what} (e.g. {extra[:3]})")
    if missing and not allow_subset:
        raise ValueError(f"{len(missing)} reference {what}s have no prediction (e.g. {missing[:3]}); "
                         "pass allow_subset=True to score a subset")
    return {k: references[k] for k in predictions}
