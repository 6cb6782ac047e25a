"""VQA metrics: the VQAv2 accuracy with the official answer normalisation, and exact match for Shapes.

Owns:
- `normalize_punctuation`, `normalize_digits_articles`, `normalize_answer`: the VQAv2 evaluation's
  answer processing, reimplemented: punctuation marks are deleted when they touch a space (or when the
  text holds a digit,digit comma) and turned into spaces otherwise; periods not followed by a digit are
  removed; then lower-case, number words zero..ten (and "none") become digits, articles a/an/the are
  dropped and apostrophe-less contractions are restored ("dont" -> "don’t").
- `vqa_accuracy(predictions, annotations)`: per question, the mean over the 10 leave-one-out subsets of
  9 human answers of min(#humans in the subset giving the predicted answer / 3, 1); averaged overall and
  per answer type (and question type). As in the official tool, the prediction is fully normalised and
  the human answers get only the punctuation step, and only when they disagree (VQAv2 answers are
  already normalised at collection). Values are fractions in [0, 1] (the official tool prints x100).
  Unlike the official script, the per-type averages use each question's leave-one-out mean (the
  official code appends only the last subset's value there, a known slip).
- `exact_match_accuracy(predictions, answers)`: for Shapes questions with one exact answer.
Benchmark runner (added for the evaluation harness):
- `shapes_question_type(question)`: color / shape / size / count / relation (the Shapes question kinds).
- `score_shapes_vqa(predictions, answers, questions)`: exact match overall and per question type.
- `run_vqa(model, processor, dataset, annotations=None, ...)`: answer every question of the dataset
  (batched `lm.generation.generate_text`, one image per question) and score: a Shapes dataset
  (columns image, questions, answers: several questions per image; ids "row_k") by exact match; a VQAv2
  dataset (`data.loaders.load_vqav2` rows: image, question, question_id) against the annotations
  (`eval.readers.read_vqa_annotations`) with `vqa_accuracy`.
"""

from __future__ import annotations

import re
from collections import defaultdict

_PUNCT = (";", ":", "/", "'", "[", "]", '"', "(", ")", "=", "+", "\\", "_", ">", "<", "@", "`", ",", "?")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})

# The official contraction table: word without apostrophes -> restored form ("'" straight, "’" curly,
# exactly as the official evaluation writes them), one "key=value" pair per entry.
_CONTRACTIONS = dict(pair.split("=") for pair in """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn’t’ve
couldnt’ve=couldn’t’ve didnt=didn’t doesnt=doesn’t dont=don’t hadnt=hadn’t hadnt’ve=hadn’t’ve
hadn'tve=hadn’t’ve hasnt=hasn’t havent=haven’t hed=he’d hed’ve=he’d’ve he’dve=he’d’ve hes=he’s
howd=how’d howll=how’ll hows=how’s Id’ve=I’d’ve I’dve=I’d’ve Im=I’m Ive=I’ve isnt=isn’t itd=it’d
itd’ve=it’d’ve it’dve=it’d’ve itll=it’ll let’s=let’s maam=ma’am mightnt=mightn’t mightnt’ve=mightn’t’ve
mightn’tve=mightn’t’ve mightve=might’ve mustnt=mustn’t mustve=must’ve neednt=needn’t notve=not’ve
oclock=o’clock oughtnt=oughtn’t ow’s’at=’ow’s’at ’ows’at=’ow’s’at ’ow’sat=’ow’s’at shant=shan’t
shed’ve=she’d’ve she’dve=she’d’ve she’s=she’s shouldve=should’ve shouldnt=shouldn’t
shouldnt’ve=shouldn’t’ve shouldn’tve=shouldn’t’ve somebody’d=somebodyd somebodyd’ve=somebody’d’ve
somebody’dve=somebody’d’ve somebodyll=somebody’ll somebodys=somebody’s someoned=someone’d
someoned’ve=someone’d’ve someone’dve=someone’d’ve someonell=someone’ll someones=someone’s
somethingd=something’d somethingd’ve=something’d’ve something’dve=something’d’ve somethingll=something’ll
thats=that’s thered=there’d thered’ve=there’d’ve there’dve=there’d’ve therere=there’re theres=there’s
theyd=they’d theyd’ve=they’d’ve they’dve=they’d’ve theyll=they’ll theyre=they’re theyve=they’ve
twas=’twas wasnt=wasn’t wed’ve=we’d’ve we’dve=we’d’ve weve=we've werent=weren’t whatll=what’ll
whatre=what’re whats=what’s whatve=what’ve whens=when’s whered=where’d wheres=where's whereve=where’ve
whod=who’d whod’ve=who’d’ve who’dve=who’d’ve wholl=who’ll whos=who’s whove=who've whyll=why’ll
whyre=why’re whys=why’s wont=won’t wouldve=would’ve wouldnt=wouldn’t wouldnt’ve=wouldn’t’ve
wouldn’tve=wouldn’t’ve yall=y’all yall’ll=y’all’ll y’allll=y’all’ll yall’d’ve=y’all’d’ve
y’alld’ve=y’all’d’ve y’all’dve=y’all’d’ve youd=you’d youd’ve=you’d’ve you’dve=you’d’ve youll=you’ll
youre=you’re youve=you’ve
""".split())


def normalize_punctuation(text: str) -> str:
    """The official punctuation step (decisions are taken on the input text, edits on the output)."""
    out = text
    digit_comma = _DIGIT_COMMA.search(text) is not None
    for p in _PUNCT:
        if p + " " in text or " " + p in text or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def normalize_digits_articles(text: str) -> str:
    """Lower-case, number words -> digits, drop articles, restore contractions."""
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(text: str) -> str:
    """Full official normalisation of a predicted answer."""
    if not isinstance(text, str):
        raise TypeError(f"answer must be a str, got {type(text).__name__}")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return normalize_digits_articles(normalize_punctuation(text))


def answer_accuracy(prediction: str, human_answers: list[str]) -> float:
    """VQA accuracy of one prediction against its human answers (normally 10)."""
    if len(human_answers) < 2:
        raise ValueError(f"VQA accuracy needs at least 2 human answers, got {len(human_answers)}")
    pred = normalize_answer(prediction)
    humans = [a.replace("\n", " ").replace("\t", " ").strip() for a in human_answers]
    if len(set(humans)) > 1:
        humans = [normalize_punctuation(a) for a in humans]
    matches = [h == pred for h in humans]
    total = sum(matches)
    # Leave human i out: the other 9 contain total - matches[i] answers equal to the prediction.
    return sum(min(1.0, (total - m) / 3.0) for m in matches) / len(humans)


def vqa_accuracy(predictions: dict, annotations) -> dict:
    """VQAv2 accuracy of predictions {question_id: answer} against VQAv2 annotations.

    annotations: the "annotations" list of a VQAv2 annotation file (or a dict {question_id: annotation});
    each annotation has question_id, answers [{answer: str}, ...], and optionally answer_type /
    question_type. Returns {"overall": float, "per_answer_type": {...}, "per_question_type": {...},
    "num_questions": int}. Every prediction must have an annotation and vice versa.
    """
    if not isinstance(predictions, dict):
        raise TypeError("predictions must be a dict {question_id: answer}")
    if not predictions:
        raise ValueError("predictions is empty: nothing to score")
    anns = annotations if isinstance(annotations, dict) else {a["question_id"]: a for a in annotations}
    missing = sorted(set(anns) - set(predictions), key=str)
    extra = sorted(set(predictions) - set(anns), key=str)
    if missing or extra:
        raise ValueError(f"question ids do not match: {len(missing)} annotated questions without a prediction "
                         f"(e.g. {missing[:3]}), {len(extra)} predictions without an annotation (e.g. {extra[:3]})")
    per_q, by_ans, by_ques = {}, defaultdict(list), defaultdict(list)
    for qid, ann in anns.items():
        try:
            humans = [a["answer"] for a in ann["answers"]]
        except (KeyError, TypeError) as err:
            raise ValueError(f"annotation for question {qid!r} needs answers [{{'answer': str}}, ...]") from err
        acc = answer_accuracy(predictions[qid], humans)
        per_q[qid] = acc
        by_ans[ann.get("answer_type", "all")].append(acc)
        by_ques[ann.get("question_type", "all")].append(acc)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "overall": mean(list(per_q.values())),
        "per_answer_type": {k: mean(v) for k, v in sorted(by_ans.items())},
        "per_question_type": {k: mean(v) for k, v in sorted(by_ques.items())},
        "num_questions": len(per_q),
        "per_question": per_q,
    }


def _simple_norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def exact_match_accuracy(predictions: dict, answers: dict, answer_types: dict | None = None) -> dict:
    """Fraction of predictions equal to the single reference answer after lower-casing and stripping
    punctuation/whitespace (Shapes questions have exact one-word answers). Optional answer_types
    {id: type} adds per-type accuracy."""
    if not isinstance(predictions, dict) or not isinstance(answers, dict):
        raise TypeError("predictions and answers must be dicts {question_id: str}")
    if not predictions:
        raise ValueError("predictions is empty: nothing to score")
    if set(predictions) != set(answers):
        diff = sorted(set(predictions) ^ set(answers), key=str)
        raise ValueError(f"question ids of predictions and answers differ ({len(diff)} ids, e.g. {diff[:3]})")
    hits = {k: float(_simple_norm(predictions[k]) == _simple_norm(answers[k])) for k in answers}
    out = {"overall": sum(hits.values()) / len(hits), "num_questions": len(hits)}
    if answer_types is not None:
        groups = defaultdict(list)
        for k, v in hits.items():
            groups[answer_types.get(k, "other")].append(v)
        out["per_answer_type"] = {k: sum(v) / len(v) for k, v in sorted(groups.items())}
    return out


_QUESTION_TYPES = (("what color", "color"), ("what shape", "shape"), ("what size", "size"),
                   ("how many", "count"), ("is the", "relation"))


def shapes_question_type(question: str) -> str:
    """The kind of a Shapes question (by its opening words), "other" for anything else."""
    q = question.strip().lower()
    return next((kind for prefix, kind in _QUESTION_TYPES if q.startswith(prefix)), "other")


def score_shapes_vqa(predictions: dict, answers: dict, questions: dict) -> dict:
    """Exact-match accuracy of Shapes answers {qid: str} with per-question-type accuracy."""
    types = {k: shapes_question_type(q) for k, q in questions.items()}
    out = exact_match_accuracy(predictions, answers, answer_types=types)
    return {"accuracy": out["overall"], "num_questions": out["num_questions"],
            "per_question_type": out["per_answer_type"]}


def _answer_all(model, processor, images: list, questions: list[str], batch_size: int,
                max_new_tokens: int | None) -> list[str]:
    from gaussiantoken.lm.generation import generate_text

    out: list[str] = []
    for s in range(0, len(questions), batch_size):
        out += generate_text(model, processor, images[s:s + batch_size],  # colour modes: the image processor
                             prompts=questions[s:s + batch_size], max_new_tokens=max_new_tokens, batch_size=batch_size)
    return out


def run_vqa(model, processor, dataset, annotations: dict | None = None, batch_size: int = 32,
            max_new_tokens: int | None = None) -> tuple[dict, dict]:
    """Answer and score every question of `dataset`. Returns (metrics, predictions {question_id: answer}).

    Shapes rows (image, questions, answers): ids "row_k", exact match, per question type. VQAv2 rows
    (image, question, question_id): `annotations` {question_id: annotation} (read_vqa_annotations) scored
    with the VQAv2 accuracy; without annotations, the rows' `answers` lists (>= 2 human answers) are used.
    """
    if len(dataset) == 0:
        raise ValueError("the VQA dataset is empty")
    cols = dataset.column_names
    if "questions" in cols and "answers" in cols:  # Shapes: several questions per image
        ids, images, questions, answers = [], [], [], {}
        for row in range(len(dataset)):
            item = dataset[row]
            if len(item["questions"]) != len(item["answers"]):
                raise ValueError(f"row {row} has {len(item['questions'])} questions but {len(item['answers'])} answers")
            for k, (q, a) in enumerate(zip(item["questions"], item["answers"])):
                qid = f"{row}_{k}"
                ids.append(qid)
                images.append(item["image"])
                questions.append(q)
                answers[qid] = a
        if not ids:
            raise ValueError("the VQA dataset holds no questions")
        texts = _answer_all(model, processor, images, questions, batch_size, max_new_tokens)
        predictions = dict(zip(ids, texts))
        return score_shapes_vqa(predictions, answers, dict(zip(ids, questions))), predictions
    for col in ("image", "question", "question_id"):
        if col not in cols:
            raise ValueError(f"the VQA dataset needs a {col!r} column (VQAv2 rows) or questions/answers (Shapes); has {cols}")
    qids = list(dataset["question_id"])
    if len(set(qids)) != len(qids):
        raise ValueError("the VQA dataset has duplicate question_id values")
    texts = _answer_all(model, processor, list(dataset["image"]), list(dataset["question"]), batch_size, max_new_tokens)
    predictions = dict(zip(qids, texts))
    if annotations is None:
        if "answers" not in cols:
            raise ValueError("no annotations: give annotations= (read_vqa_annotations) or rows with 'answers'")
        annotations = {q: {"question_id": q, "answers": [{"answer": a} for a in ans]}
                       for q, ans in zip(qids, dataset["answers"])}
    else:
        from .readers import match_ids

        annotations = match_ids(predictions, annotations, what="question_id", allow_subset=True)
    result = vqa_accuracy(predictions, annotations)
    metrics = {"accuracy": result["overall"], "num_questions": result["num_questions"],
               "per_answer_type": result["per_answer_type"]}
    return metrics, predictions
