"""VQAv2 accuracy: the leave-one-out formula by hand, the official normalisation, exact match."""

import pytest

from gaussiantoken.eval.vqa import answer_accuracy, exact_match_accuracy, normalize_answer, vqa_accuracy


@pytest.mark.parametrize("agree, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_leave_one_out_accuracy_by_hand(agree, expected):
    # k humans agree: leaving out one of them leaves k-1 matches, leaving out another leaves k.
    # 3 agree: (3 * min(2/3, 1) + 7 * min(3/3, 1)) / 10 = 0.9.
    humans = ["2"] * agree + ["3"] * (10 - agree)
    assert answer_accuracy("2", humans) == pytest.approx(expected)


@pytest.mark.parametrize("raw, norm", [
    ("Two", "2"), ("the dog.", "dog"), ("A cat?", "cat"), ("dont", "don’t"), ("hes", "he’s"),
    ("3.5", "3.5"), ("1,000", "1000"), ("black/white", "black white"), ("yes, it is", "yes it is"),
    ("an apple\n", "apple"), ("none", "0"), ("it's", "it s"),
])
def test_official_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def test_vqa_accuracy_overall_and_per_type():
    anns = [
        {"question_id": 1, "answer_type": "number", "question_type": "how many",
         "answers": [{"answer": "2"}] * 3 + [{"answer": "3"}] * 7},
        {"question_id": 2, "answer_type": "yes/no", "question_type": "is the",
         "answers": [{"answer": "yes"}] * 10},
        {"question_id": 3, "answer_type": "other", "question_type": "what color",
         "answers": [{"answer": "red"}] * 5 + [{"answer": "red."}] * 5},
    ]
    preds = {1: "two", 2: "No", 3: "Red"}
    out = vqa_accuracy(preds, anns)
    # q1: 0.9 ("two" -> "2"); q2: 0; q3: humans differ so their punctuation is stripped -> all "red" -> 1.
    assert out["per_question"] == {1: pytest.approx(0.9), 2: 0.0, 3: 1.0}
    assert out["overall"] == pytest.approx(1.9 / 3)
    assert out["per_answer_type"] == {"number": pytest.approx(0.9), "other": 1.0, "yes/no": 0.0}
    assert out["num_questions"] == 3
    with pytest.raises(ValueError, match="question ids do not match"):
        vqa_accuracy({1: "2"}, anns)
    with pytest.raises(ValueError, match="empty"):
        vqa_accuracy({}, anns)


def test_exact_match():
    out = exact_match_accuracy({1: "Red", 2: "circle.", 3: "3"}, {1: "red", 2: "circle", 3: "2"},
                               answer_types={1: "color", 2: "shape", 3: "count"})
    assert out["overall"] == pytest.approx(2 / 3)
    assert out["per_answer_type"] == {"color": 1.0, "count": 0.0, "shape": 1.0}
    with pytest.raises(ValueError, match="differ"):
        exact_match_accuracy({1: "red"}, {2: "red"})
