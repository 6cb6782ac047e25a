"""Readers for COCO captions, VQAv2 and prediction files: round trips and clear errors on bad input."""

import json

import pytest

from gaussiantoken.eval.readers import (match_ids, read_caption_predictions, read_coco_captions,
                                        read_vqa_annotations, read_vqa_predictions, read_vqa_questions)


def _write(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def test_coco_captions_and_predictions(tmp_path):
    ann = _write(tmp_path / "captions_val.json", {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [{"image_id": 1, "id": 10, "caption": "a red circle"},
                        {"image_id": 1, "id": 11, "caption": "a red disc"},
                        {"image_id": 2, "id": 12, "caption": "a blue square"}]})
    assert read_coco_captions(ann) == {1: ["a red circle", "a red disc"], 2: ["a blue square"]}
    res = _write(tmp_path / "results.json", [{"image_id": 1, "caption": "red circle"},
                                             {"image_id": 2, "caption": "blue square"}])
    preds = read_caption_predictions(res)
    assert preds == {1: "red circle", 2: "blue square"}
    assert match_ids(preds, read_coco_captions(ann)) == read_coco_captions(ann)
    with pytest.raises(ValueError, match="no reference"):
        match_ids({3: "x"}, {1: ["y"]})
    with pytest.raises(ValueError, match="allow_subset"):
        match_ids({1: "x"}, {1: ["y"], 2: ["z"]})
    assert match_ids({1: "x"}, {1: ["y"], 2: ["z"]}, allow_subset=True) == {1: ["y"]}


def test_vqa_files(tmp_path):
    q = _write(tmp_path / "questions.json", {"questions": [{"question_id": 5, "image_id": 1, "question": "how many?"}]})
    a = _write(tmp_path / "annotations.json", {"annotations": [
        {"question_id": 5, "image_id": 1, "answer_type": "number", "question_type": "how many",
         "answers": [{"answer": "2", "answer_id": i + 1} for i in range(10)]}]})
    p = _write(tmp_path / "pred.json", [{"question_id": 5, "answer": "two"}])
    assert read_vqa_questions(q)[5]["question"] == "how many?"
    assert read_vqa_annotations(a)[5]["answer_type"] == "number"
    assert read_vqa_predictions(p) == {5: "two"}


@pytest.mark.parametrize("content, reader, message", [
    ("{not json", read_caption_predictions, "malformed JSON"),
    ([], read_caption_predictions, "empty prediction set"),
    ([{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}], read_caption_predictions, "duplicate"),
    ([{"image_id": 1}], read_caption_predictions, "no 'caption' field"),
    ([{"image_id": 1.5, "caption": "a"}], read_caption_predictions, "'image_id' must be"),
    ({"images": []}, read_coco_captions, "'annotations' list"),
    ({"annotations": [{"image_id": 1, "caption": " "}]}, read_coco_captions, "empty caption"),
    ({"annotations": [{"question_id": 1, "answers": [{"answer": "x"}]}]}, read_vqa_annotations, ">= 2 answers"),
    ({"questions": [{"question_id": 1, "question": "q"}]}, read_vqa_questions, "'image_id'"),
    ([{"question_id": 1, "answer": 3}], read_vqa_predictions, "'answer' must be str"),
    ({"question_id": 1, "answer": "x"}, read_vqa_predictions, "JSON list"),
])
def test_bad_inputs_name_file_and_problem(tmp_path, content, reader, message):
    path = _write(tmp_path / "bad_input.json", content)
    with pytest.raises(ValueError, match=message) as err:
        reader(path)
    assert "bad_input.json" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        read_vqa_predictions(tmp_path / "absent.json")
