"""Prompt formats and training sequences: loss masks exactly where each task says, id-level expansion, errors."""

import re

import pytest

from gaussiantoken.lm.sequences import (
    IGNORE_INDEX,
    VocabLayout,
    build_caption,
    build_text_to_image,
    build_vqa,
    build_vqa_turns,
    caption_prompt,
    expand_image_placeholders,
    final_answer,
    prompt_token_ids,
    reasoned_answer,
    text_to_image_prompt,
    unconditional_prompt,
    vqa_prompt,
)


@pytest.fixture()
def layout(text_tokenizer):
    tok = text_tokenizer
    boi, eoi, img = tok.convert_tokens_to_ids(["<boi>", "<eoi>", "<image>"])
    return VocabLayout(
        image_token_offset=len(tok), image_vocab_size=16, tokens_per_image=6, boi_token_id=boi, eoi_token_id=eoi,
        image_token_id=img, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )


CODES = [3, 0, 15, 7, 7, 1]


def test_prompt_formats():
    assert text_to_image_prompt("a large red circle") == "Generate an image: a large red circle<boi>"
    assert unconditional_prompt() == text_to_image_prompt("") == "Generate an image: <boi>"
    assert "<image>" in caption_prompt() and "Describe the image." in caption_prompt()
    assert vqa_prompt("what color is the circle?") == "<image>Question: what color is the circle? Answer:"
    with pytest.raises(TypeError):
        text_to_image_prompt(None)


def test_text_to_image_loss_mask(text_tokenizer, layout):
    seq = build_text_to_image(text_tokenizer, "a small blue square", CODES, layout)
    ids, labels = seq["input_ids"], seq["labels"]
    prompt = text_tokenizer(text_to_image_prompt("a small blue square"))["input_ids"]
    assert ids[: len(prompt)] == prompt and ids[len(prompt) - 1] == layout.boi_token_id
    image = [layout.image_token_offset + c for c in CODES]
    assert ids[len(prompt):] == image + [layout.eoi_token_id, layout.eos_token_id]
    # loss exactly on the T codes, <eoi> and eos; never on the prompt or <boi>
    assert labels == [IGNORE_INDEX] * len(prompt) + image + [layout.eoi_token_id, layout.eos_token_id]


def test_caption_loss_mask(text_tokenizer, layout):
    seq = build_caption(text_tokenizer, "a large red circle", CODES, layout)
    ids, labels = seq["input_ids"], seq["labels"]
    T = layout.tokens_per_image
    assert ids[0] == layout.bos_token_id and ids[1] == layout.boi_token_id and ids[2 + T] == layout.eoi_token_id
    assert ids[2:2 + T] == [layout.image_token_offset + c for c in CODES]
    target = [i for i, l in zip(ids, labels) if l != IGNORE_INDEX]
    first = labels.index(next(l for l in labels if l != IGNORE_INDEX))
    assert all(l == IGNORE_INDEX for l in labels[:first]) and labels[first:] == ids[first:]
    assert target[-1] == layout.eos_token_id
    assert text_tokenizer.decode(target[:-1]) == "a large red circle"
    prompt_text = text_tokenizer.decode(ids[2 + T + 1:first])
    assert prompt_text.strip() == "Describe the image."


def test_vqa_loss_mask(text_tokenizer, layout):
    seq = build_vqa(text_tokenizer, "what color is the circle?", "red", CODES, layout)
    ids, labels = seq["input_ids"], seq["labels"]
    target = [l for l in labels if l != IGNORE_INDEX]
    assert text_tokenizer.decode(target[:-1]) == "red" and target[-1] == layout.eos_token_id
    n = len(target)
    assert labels[-n:] == ids[-n:] and all(l == IGNORE_INDEX for l in labels[:-n])
    assert "Question: what color is the circle? Answer:" in text_tokenizer.decode(ids[:-n])


def test_expand_placeholders(text_tokenizer, layout):
    ids = text_tokenizer("<image>x<image>")["input_ids"]
    out = expand_image_placeholders(ids, layout)
    T = layout.tokens_per_image
    assert out.count(layout.image_token_id) == 2 * T and out.count(layout.boi_token_id) == 2
    with_codes = expand_image_placeholders(ids, layout, [CODES, list(reversed(CODES))])
    assert layout.image_token_id not in with_codes
    with pytest.raises(ValueError, match="placeholder"):
        expand_image_placeholders(ids, layout, [CODES])


def test_bad_codes_and_length(text_tokenizer, layout):
    with pytest.raises(ValueError, match="tokens_per_image"):
        build_caption(text_tokenizer, "a", CODES[:-1], layout)
    with pytest.raises(ValueError, match="out of range"):
        build_caption(text_tokenizer, "a", CODES[:-1] + [16], layout)
    with pytest.raises(ValueError, match="max_length"):
        build_text_to_image(text_tokenizer, "a large red circle", CODES, layout, max_length=10)


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_image_input_loss(text_tokenizer, layout, task):
    """image_loss=True adds loss on exactly the T input codes (not <boi>/<eoi>, not the prompt text); the
    answer's loss and the input ids are unchanged."""
    def build(flag):
        if task == "caption":
            return build_caption(text_tokenizer, "a large red circle", CODES, layout, image_loss=flag)
        return build_vqa(text_tokenizer, "what color is the circle?", "red", CODES, layout, image_loss=flag)

    off, on = build(False), build(True)
    assert on["input_ids"] == off["input_ids"]
    T = layout.tokens_per_image
    start = off["input_ids"].index(layout.boi_token_id) + 1
    image = [layout.image_token_offset + c for c in CODES]
    assert on["labels"][start:start + T] == image and off["labels"][start:start + T] == [IGNORE_INDEX] * T
    rest_on = on["labels"][:start] + on["labels"][start + T:]
    rest_off = off["labels"][:start] + off["labels"][start + T:]
    assert rest_on == rest_off


def test_dataset_image_input_loss(codes_dir, text_tokenizer, processor):
    """MultiTaskSequenceDataset(image_input_loss=True): captioning/VQA items gain loss on their T input codes,
    text-to-image items and every input id stay as they were."""
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.extract import load_codes

    ds = load_codes(codes_dir)
    lay = processor.layout
    plain = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=3)
    with_loss = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=3, image_input_loss=True)
    seen = set()
    for i in range(len(ds)):
        a, b = plain[i], with_loss[i]
        seen.add(a["task"])
        assert a["input_ids"] == b["input_ids"] and a["task"] == b["task"]
        if a["task"] == "text_to_image":
            assert a["labels"] == b["labels"]
            continue
        start = a["input_ids"].index(lay.boi_token_id) + 1
        T = lay.tokens_per_image
        assert b["labels"][start:start + T] == a["input_ids"][start:start + T]
        assert a["labels"][start:start + T] == [IGNORE_INDEX] * T
        assert b["labels"][:start] + b["labels"][start + T:] == a["labels"][:start] + a["labels"][start + T:]
    assert seen == {"text_to_image", "caption", "vqa"}


def test_vqa_turns_are_the_chat_templates_conversation(text_tokenizer, layout):
    """Several questions about one image: the ids are the tokenized text the chat template renders for the
    conversation (tests/pipelines: q1 + " a1" + eos + q2 ...), the first turn is exactly build_vqa's sequence,
    and the loss falls on every answer and its eos, nowhere else."""
    qs, ans = ["what color is the circle?", "how many objects are there?", "what size is the red circle?"], ["red", "two", "small"]
    seq = build_vqa_turns(text_tokenizer, qs, ans, CODES, layout)
    eos = text_tokenizer.eos_token
    text = vqa_prompt(qs[0]) + "".join(f" {a}{eos}" + vqa_prompt(q)[len("<image>"):] for a, q in zip(ans, qs[1:])) \
        + f" {ans[-1]}"
    expected = expand_image_placeholders(prompt_token_ids(text_tokenizer, text, layout.bos_token_id), layout, [CODES])
    assert seq["input_ids"] == expected + [layout.eos_token_id]
    one = build_vqa(text_tokenizer, qs[0], ans[0], CODES, layout)
    assert seq["input_ids"][:len(one["input_ids"])] == one["input_ids"] and seq["labels"][:len(one["labels"])] == one["labels"]
    # loss: exactly the answers' tokens, each followed by eos
    spans, cur = [], []
    for i, l in zip(seq["input_ids"], seq["labels"]):
        if l != IGNORE_INDEX:
            assert l == i
            cur.append(i)
        elif cur:
            spans.append(cur)
            cur = []
    spans.append(cur)
    assert [text_tokenizer.decode(s[:-1]) for s in spans] == ans and all(s[-1] == layout.eos_token_id for s in spans)
    with pytest.raises(ValueError, match="equally many"):
        build_vqa_turns(text_tokenizer, qs, ans[:2], CODES, layout)
    with pytest.raises(ValueError, match="max_length"):
        build_vqa_turns(text_tokenizer, qs, ans, CODES, layout, max_length=len(expected))


def test_dataset_vqa_turns(codes_dir, text_tokenizer, processor):
    """vqa_turns=N: a VQA item asks min(N, questions) of its row's questions, from the drawn one on, cyclically;
    other tasks are unchanged; longest_sequence bounds every item."""
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.extract import load_codes

    ds = load_codes(codes_dir)
    lay = processor.layout
    one = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=3)
    three = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=3, vqa_turns=3)
    bound = three.longest_sequence()
    vqa = 0
    for i in range(len(ds)):
        a, b = one[i], three[i]
        assert a["task"] == b["task"] and len(b["input_ids"]) <= bound
        if a["task"] != "vqa":
            assert a == b
            continue
        vqa += 1
        row = ds[one.plan(i)[0]]
        k = one.plan(i)[3] % len(row["questions"])
        n = min(3, len(row["questions"]))
        order = [(k + j) % len(row["questions"]) for j in range(n)]
        expected = build_vqa_turns(text_tokenizer, [row["questions"][j] for j in order],
                                   [row["answers"][j] for j in order], row["codes"], lay)
        assert b["input_ids"] == expected["input_ids"] and b["labels"] == expected["labels"]
        assert b["input_ids"][:len(a["input_ids"])] == a["input_ids"]
    assert vqa > 0
    with pytest.raises(ValueError, match="vqa_turns"):
        MultiTaskSequenceDataset(ds, text_tokenizer, lay, vqa_turns=0)


def test_reasoned_answer_and_final_answer():
    r = reasoned_answer(" a small red circle, a large blue square and a small green triangle ", " red ")
    assert r == "a small red circle, a large blue square and a small green triangle, so red"
    assert final_answer(r) == "red" and final_answer(" " + r + " ") == "red"
    assert final_answer("a small red circle, a large blue square") == "a small red circle, a large blue square"
    assert final_answer(" two ") == "two"
    with pytest.raises(ValueError, match="separator"):
        reasoned_answer("a red circle", "red, so blue")


def test_dataset_vqa_rationale(codes_dir, text_tokenizer, processor):
    """vqa_rationale: a VQA item's loss is exactly "{rationale_for(caption, q, a)}, so {a}" + eos; the other
    tasks are unchanged; longest_sequence bounds every item; rows without captions are refused."""
    from gaussiantoken.data.shapes_text import rationale_for
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.extract import load_codes

    ds = load_codes(codes_dir)
    lay = processor.layout
    plain = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=5)
    reasoned = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=5, vqa_rationale=True)
    bound = reasoned.longest_sequence()
    assert bound > plain.longest_sequence()
    vqa = 0
    for i in range(len(ds)):
        a, b = plain[i], reasoned[i]
        assert len(b["input_ids"]) <= bound
        if a["task"] != "vqa":
            assert a == b
            continue
        vqa += 1
        row = ds[plain.plan(i)[0]]
        k = plain.plan(i)[3] % len(row["questions"])
        q, ans = row["questions"][k], row["answers"][k]
        target = [t for t, l in zip(b["input_ids"], b["labels"]) if l != IGNORE_INDEX]
        assert target[-1] == lay.eos_token_id
        text = text_tokenizer.decode(target[:-1])
        assert text == f"{rationale_for(row['caption'], q, ans)}, so {ans}" and final_answer(text) == ans
        start = len(b["input_ids"]) - len(target)
        prompt_a = next(j for j, l in enumerate(a["labels"]) if l != IGNORE_INDEX)
        assert start == prompt_a and b["input_ids"][:start] == a["input_ids"][:start]  # the same prompt
    assert vqa > 0
    with pytest.raises(ValueError, match="caption"):
        MultiTaskSequenceDataset(ds.remove_columns(["caption"]), text_tokenizer, lay,
                                 ratios={"text_to_image": 0, "caption": 0, "vqa": 1}, vqa_rationale=True)


def test_build_text_qa_is_the_reasoned_vqa_sequence_without_its_image(text_tokenizer, layout):
    """text QA = the describe-then-answer VQA turns less their image span (same ids otherwise, one turn or
    several), loss on each final answer + eos only; a target without the separator is refused."""
    from gaussiantoken.lm.sequences import build_text_qa

    qs = ["what color is the square?", "what shape is the red object?"]
    rationale = "a small red circle to the left of a large blue square"
    targets = [reasoned_answer(rationale, "blue"), reasoned_answer(rationale, "circle")]
    for n in (1, 2):
        vqa = build_vqa_turns(text_tokenizer, qs[:n], targets[:n], CODES, layout)
        seq = build_text_qa(text_tokenizer, qs[:n], targets[:n], layout)
        boi = vqa["input_ids"].index(layout.boi_token_id)
        assert seq["input_ids"] == vqa["input_ids"][:boi] + vqa["input_ids"][boi + len(CODES) + 2:]
        learned = [t for t, l in zip(seq["input_ids"], seq["labels"]) if l != IGNORE_INDEX]
        assert [l for l in seq["labels"] if l != IGNORE_INDEX] == learned  # labels are the ids where they apply
        assert learned.count(layout.eos_token_id) == n
        text = text_tokenizer.decode(learned, skip_special_tokens=False)
        assert text.replace(text_tokenizer.eos_token, " ").split() == ["blue", "circle"][:n]
    with pytest.raises(ValueError, match="rationale"):
        build_text_qa(text_tokenizer, qs[:1], ["blue"], layout)
    with pytest.raises(ValueError, match="equally many"):
        build_text_qa(text_tokenizer, qs, targets[:1], layout)
    with pytest.raises(ValueError, match="max_length"):
        build_text_qa(text_tokenizer, qs, targets, layout, max_length=len(seq["input_ids"]) - 1)


def test_dataset_text_qa_task(codes_dir, text_tokenizer, processor):
    """ratios.text_qa: those items are reasoned VQA turns without the image (answer-only loss), drawn from the
    row's questions and its caption's lookup questions, every answer true to the caption; the task needs
    vqa_rationale; longest_sequence bounds the items."""
    from gaussiantoken.data.shapes_text import answer_question, parse_caption, rationale_for
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.extract import load_codes

    ds = load_codes(codes_dir)
    lay = processor.layout
    ratios = {"text_to_image": 1, "caption": 1, "vqa": 1, "text_qa": 1}
    for turns in (1, 3):
        data = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=3, ratios=ratios, vqa_rationale=True,
                                        text_qa_turns=turns)
        bound, seen = data.longest_sequence(), 0
        for i in range(len(ds)):
            item = data[i]
            if item["task"] != "text_qa":
                continue
            seen += 1
            row = ds[data.plan(i)[0]]
            objects = parse_caption(row["caption"])["objects"]
            assert lay.boi_token_id not in item["input_ids"] and len(item["input_ids"]) <= bound
            ids, labels = item["input_ids"], item["labels"]
            turns_text = text_tokenizer.decode(ids, skip_special_tokens=False).split(text_tokenizer.eos_token)[:-1]
            assert 1 <= len(turns_text) <= turns
            answers = text_tokenizer.decode([t for t, l in zip(ids, labels) if l != IGNORE_INDEX],
                                            skip_special_tokens=False).split(text_tokenizer.eos_token)[:-1]
            for turn, answer in zip(turns_text, answers):
                question = turn.split("Question:")[1].split("Answer:")[0].strip()
                rationale = turn.split("Answer:")[1].rpartition(", so ")[0].strip()
                if question.startswith("is the"):  # a relation: its rationale states the true relation
                    assert rationale == rationale_for(row["caption"], question, answer.strip())
                    continue
                assert answer.strip() == answer_question(objects, question) != "unknown"
                assert rationale == rationale_for(row["caption"], question, answer.strip())
        assert seen > 0
    with pytest.raises(ValueError, match="vqa_rationale"):
        MultiTaskSequenceDataset(ds, text_tokenizer, lay, ratios=ratios)
    with pytest.raises(ValueError, match="text_qa_turns"):
        MultiTaskSequenceDataset(ds, text_tokenizer, lay, ratios=ratios, vqa_rationale=True, text_qa_turns=0)


def test_build_text_qa_scan_marks_carry_loss(text_tokenizer, layout):
    """scan_marks: a scan rationale's phrases are given, every "yes" / "no" mark and the answer + eos learned;
    without it only the answer is; the ids are the same either way."""
    from gaussiantoken.data.shapes_text import styled_rationale
    from gaussiantoken.lm.sequences import build_text_qa

    caption = "a large red square, a small blue circle and a large green triangle"
    cases = [("what color is the triangle?", "green", ["no", "no", "yes", "green"]),
             ("what shape is the red object?", "square", ["yes", "square"]),
             ("how many objects are there?", "three", ["three"])]
    for question, answer, learned_words in cases:
        target = reasoned_answer(styled_rationale(caption, question, answer, "scan"), answer)
        seq = build_text_qa(text_tokenizer, [question], [target], layout, scan_marks=True)
        plain = build_text_qa(text_tokenizer, [question], [target], layout)
        assert seq["input_ids"] == plain["input_ids"]
        learned = [t for t, l in zip(seq["input_ids"], seq["labels"]) if l != IGNORE_INDEX]
        words = text_tokenizer.decode(learned, skip_special_tokens=False).replace(text_tokenizer.eos_token, " ").split()
        assert words == learned_words
        plain_learned = [t for t, l in zip(plain["input_ids"], plain["labels"]) if l != IGNORE_INDEX]
        assert text_tokenizer.decode(plain_learned, skip_special_tokens=True).split() == [answer]


def test_build_text_qa_scan_cues_carry_loss(text_tokenizer, layout):
    """scan_cues: a cued scan's cues are learned with its marks and the answer; the phrases stay given."""
    from gaussiantoken.data.shapes_text import styled_rationale
    from gaussiantoken.lm.sequences import build_text_qa

    caption = "a large red square, a small blue circle and a large green triangle"
    scene = [{"shape": "square", "color": "red", "size": "large", "x": 5, "y": 5},
             {"shape": "circle", "color": "blue", "size": "small", "x": 15, "y": 20},
             {"shape": "triangle", "color": "green", "size": "large", "x": 25, "y": 12}]
    cases = [("what color is the circle?", "blue", ["circle", "no", "circle", "yes", "blue"]),
             ("what size is the green triangle?", "large", ["green", "triangle", "no", "green", "triangle", "no",
                                                            "green", "triangle", "yes", "large"]),
             ("is the red square above the blue circle?", "yes",
              ["red", "square,", "blue", "circle", "first", "red", "square,", "blue", "circle", "no",
               "red", "square,", "blue", "circle", "second", "yes"])]
    for question, answer, learned_words in cases:
        target = reasoned_answer(styled_rationale(caption, question, answer, "cued_scan", scene), answer)
        seq = build_text_qa(text_tokenizer, [question], [target], layout, scan_marks=True, scan_cues=True)
        learned = [t for t, l in zip(seq["input_ids"], seq["labels"]) if l != IGNORE_INDEX]
        words = text_tokenizer.decode(learned, skip_special_tokens=False).replace(text_tokenizer.eos_token, " ").split()
        assert words == learned_words


def _scene_rows(num: int, seed: int, tokens: int) -> "datasets.Dataset":
    """Shapes rows with a 'scene' column (as the stream's), random codes: for the scan rationale's data path."""
    import datasets
    import numpy as np
    from gaussiantoken.data.shapes_text import caption_for, questions_for
    from gaussiantoken.data.shapes_world import sample_scene

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num):
        scene = sample_scene(rng)
        q, a = questions_for(scene, rng, 5)
        rows.append({"codes": rng.integers(0, 8, tokens).tolist(), "caption": caption_for(scene, rng), "questions": q,
                     "answers": a, "scene": [{k: o[k] for k in ("shape", "color", "size", "x", "y")} for o in scene]})
    return datasets.Dataset.from_list(rows)


@pytest.mark.parametrize("style", ["scan", "cued_scan"])
def test_dataset_scan_rationale(text_tokenizer, processor, style):
    """rationale_style=scan / cued_scan: a VQA item's loss is "{styled_rationale(caption, q, a, style, scene)}, so {a}" + eos,
    every relation scan's marks in the asked axis order and consistent with the answer; text QA items learn the
    marks (and cues) and the answer; longest_sequence bounds the items; rows without a scene are refused."""
    from gaussiantoken.data.shapes_text import answer_question, styled_rationale
    from gaussiantoken.lm.data import MultiTaskSequenceDataset

    lay = processor.layout
    ds = _scene_rows(60, seed=2, tokens=lay.tokens_per_image)
    data = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=1, vqa_rationale=True, rationale_style=style,
                                    ratios={"text_to_image": 0, "caption": 0, "vqa": 1, "text_qa": 1}, text_qa_turns=2)
    bound, kinds = data.longest_sequence(), set()
    for i in range(len(ds)):
        item = data[i]
        assert len(item["input_ids"]) <= bound
        row = ds[data.plan(i)[0]]
        learned = text_tokenizer.decode([t for t, l in zip(item["input_ids"], item["labels"]) if l != IGNORE_INDEX],
                                        skip_special_tokens=False)
        if item["task"] == "vqa":
            k = data.plan(i)[3] % len(row["questions"])
            q, ans = row["questions"][k], row["answers"][k]
            rationale = styled_rationale(row["caption"], q, ans, style, row["scene"])
            assert learned == f"{rationale}, so {ans}{text_tokenizer.eos_token}"
            kinds.add(q.split()[1] if q.startswith("what") else q.split()[0])
        else:  # the given phrases, learned marks, the true answer: turn by turn
            expected = []
            for turn in text_tokenizer.decode(item["input_ids"], skip_special_tokens=False).split(
                    text_tokenizer.eos_token)[:-1]:
                q = turn.split("Question:")[1].split("Answer:")[0].strip()
                truth = answer_question(row["scene"], q)
                rationale = styled_rationale(row["caption"], q, truth, style, row["scene"])
                assert turn.split("Answer:")[1].strip() == f"{rationale}, so {truth}"
                for cue, mark in re.findall(r"(?:^|: |; )([a-z]+(?: [a-z]+)?(?:, [a-z]+ [a-z]+)?: )?a [a-z]+ [a-z]+ "
                                            r"[a-z]+: (yes|no|first|second)\b", rationale):
                    expected += cue.rstrip(": ").split() + [mark]
                expected += [truth]
            assert learned.replace(text_tokenizer.eos_token, " ").split() == expected
    assert {"color", "is"} <= kinds
    lookup = MultiTaskSequenceDataset(ds, text_tokenizer, lay, seed=1, vqa_rationale=True, rationale_style=style,
                                      ratios={"text_to_image": 0, "caption": 0, "vqa": 0, "text_qa": 1},
                                      text_qa_turns=3, text_qa_questions="lookup")
    asked = [turn.split("Question:")[1].split("Answer:")[0].strip() for i in range(len(ds))
             for turn in text_tokenizer.decode(lookup[i]["input_ids"], skip_special_tokens=False).split("Question:")[1:]
             for turn in ["Question:" + turn]]
    assert asked and all(q.split()[1] in ("color", "shape", "size") for q in asked)
    with pytest.raises(ValueError, match="text_qa_questions"):
        MultiTaskSequenceDataset(ds, text_tokenizer, lay, vqa_rationale=True, text_qa_questions="some")
    with pytest.raises(ValueError, match="scene"):
        MultiTaskSequenceDataset(ds.remove_columns(["scene"]), text_tokenizer, lay, vqa_rationale=True,
                                 rationale_style=style)
    with pytest.raises(ValueError, match="rationale_style"):
        MultiTaskSequenceDataset(ds, text_tokenizer, lay, vqa_rationale=True, rationale_style="list")
