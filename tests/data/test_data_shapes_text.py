"""Shapes language: caption grammar, parse_caption, questions/answers, GenEval-style scoring, prompts."""

import re

import numpy as np
import pytest

from gaussiantoken.data import shapes
from gaussiantoken.data.shapes_world import relation_holds

RED_CIRCLE = {"shape": "circle", "color": "red", "size": "small", "x": 6.0, "y": 16.0}
BLUE_SQUARE = {"shape": "square", "color": "blue", "size": "large", "x": 24.0, "y": 15.0}
GREEN_TRIANGLE = {"shape": "triangle", "color": "green", "size": "small", "x": 14.0, "y": 4.0}


def test_caption_grammar_hand_cases():
    assert shapes.caption_for([{"shape": "circle", "color": "red", "size": "large", "x": 9.0, "y": 9.0}]) == \
        "a large red circle"
    assert shapes.caption_for([RED_CIRCLE, BLUE_SQUARE]) == "a small red circle to the left of a large blue square"
    assert shapes.caption_for([BLUE_SQUARE, RED_CIRCLE]) == "a large blue square to the right of a small red circle"
    below = dict(BLUE_SQUARE, x=8.0, y=26.0)
    assert shapes.caption_for([RED_CIRCLE, below]) == "a small red circle above a large blue square"
    assert shapes.caption_for([BLUE_SQUARE, GREEN_TRIANGLE, RED_CIRCLE]) == \
        "a small red circle, a small green triangle and a large blue square"  # left to right


def test_generated_captions_true_and_grammatical():
    rng = np.random.default_rng(11)
    relations = set()
    for _ in range(600):
        scene = shapes.sample_scene(rng, 32)
        caption = shapes.caption_for(scene, rng)
        parsed = shapes.parse_caption(caption)
        assert parsed is not None
        assert sorted((o["shape"], o["color"], o["size"]) for o in parsed["objects"]) == \
            sorted((o["shape"], o["color"], o["size"]) for o in scene)
        if len(scene) == 2:
            by_key = {(o["color"], o["shape"]): o for o in scene}
            a, b = (by_key[(o["color"], o["shape"])] for o in parsed["objects"])
            relations.add(parsed["relation"])
            assert relation_holds(a, b, parsed["relation"])
            dx, dy = abs(a["x"] - b["x"]), abs(a["y"] - b["y"])
            axis = dx if parsed["relation"] in ("to the left of", "to the right of") else dy
            assert axis >= 0.5 * max(dx, dy) and axis >= 5  # clearly separated on that axis
        elif len(scene) == 3:
            names = [(o["color"], o["shape"]) for o in parsed["objects"]]
            assert names == [(o["color"], o["shape"]) for o in shapes.canonical_order(scene)]
            assert re.fullmatch(r"a [a-z ]+, a [a-z ]+ and a [a-z ]+", caption)
        assert shapes.scene_matches_caption(scene, caption)["correct"]
    assert relations == set(shapes.RELATIONS)


def _unparse(parsed):
    phrases = [f"a {o['size']} {o['color']} {o['shape']}" for o in parsed["objects"]]
    if len(phrases) == 2:
        return f"{phrases[0]} {parsed['relation']} {phrases[1]}"
    if len(phrases) == 3:
        return f"{phrases[0]}, {phrases[1]} and {phrases[2]}"
    return phrases[0]


def test_parse_caption_inverts_caption_for():
    rng = np.random.default_rng(12)
    for _ in range(500):
        scene = shapes.sample_scene(rng, 64)
        caption = shapes.caption_for(scene, rng)
        parsed = shapes.parse_caption(caption)
        assert _unparse(parsed) == caption
        assert (parsed["relation"] is not None) == (len(scene) == 2)
        assert len(parsed["objects"]) == len(scene)
    assert shapes.parse_caption("  A Large Red Circle. ") == {
        "objects": [{"shape": "circle", "color": "red", "size": "large"}], "relation": None}
    for bad in ("a large red", "a huge red circle", "a large red circle near a small blue square",
                "a small red circle and a large blue square", ""):
        assert shapes.parse_caption(bad) is None


def test_answer_question_agrees_with_stored_answers():
    ds = shapes.make_dataset(300, seed=3)
    kinds = {"color": 0, "shape": 0, "size": 0, "many": 0, "is": 0}
    for row in ds:
        for q, a in zip(row["questions"], row["answers"]):
            assert shapes.answer_question(row["objects"], q) == a
            assert shapes.answer_question(shapes.parse_scene(row["image"]), q) == a
            kinds[q.split()[1] if q.startswith("what") else q.split()[0] if q.startswith("is") else "many"] += 1
    assert all(v > 20 for v in kinds.values()), kinds


def test_answer_question_hand_cases():
    scene = [RED_CIRCLE, BLUE_SQUARE]
    assert shapes.answer_question(scene, "what color is the circle?") == "red"
    assert shapes.answer_question(scene, "what shape is the blue object?") == "square"
    assert shapes.answer_question(scene, "what size is the blue square?") == "large"
    assert shapes.answer_question(scene, "how many objects are there?") == "two"
    assert shapes.answer_question(scene, "is the red circle to the left of the blue square?") == "yes"
    assert shapes.answer_question(scene, "is the red circle above the blue square?") == "no"
    assert shapes.answer_question(scene, "what color is the triangle?") == "unknown"
    two = [RED_CIRCLE, dict(BLUE_SQUARE, shape="circle")]  # two circles: a lookup or relation naming one is ambiguous
    assert shapes.answer_question(two, "what color is the circle?") == "unknown"
    assert shapes.answer_question(two, "what shape is the blue object?") == "circle"
    assert shapes.answer_question(scene, "is the red circle above the green triangle?") == "unknown"
    with pytest.raises(ValueError, match="grammar"):
        shapes.answer_question(scene, "why is the sky blue?")


def test_question_referents_name_the_asked_objects_in_order():
    from gaussiantoken.data.shapes_text import question_referent_words, question_referents

    scene = [RED_CIRCLE, BLUE_SQUARE, GREEN_TRIANGLE]
    assert question_referents(scene, "what color is the square?") == [1]
    assert question_referents(scene, "what shape is the green object?") == [2]
    assert question_referents(scene, "what size is the red circle?") == [0]
    assert question_referents(scene, "is the blue square above the red circle?") == [1, 0]
    assert question_referents(scene, "how many objects are there?") == []
    q = "is the blue square above the red circle?"
    named, ends = question_referent_words(q)
    assert named == [{"color": "blue", "shape": "square"}, {"color": "red", "shape": "circle"}]
    assert [q[:e] for e in ends] == ["is the blue square", "is the blue square above the red circle"]
    q = "what shape is the green object?"
    assert q[:question_referent_words(q)[1][0]] == "what shape is the green"
    assert question_referent_words("how many objects are there?") == ([], [])
    with pytest.raises(ValueError, match="exactly once"):
        question_referents([RED_CIRCLE, dict(BLUE_SQUARE, shape="circle")], "what color is the circle?")
    for call in (question_referents, lambda _, q: question_referent_words(q)):
        with pytest.raises(ValueError, match="grammar"):
            call(scene, "why is the sky blue?")
    for row in shapes.make_dataset(100, seed=5):  # every generated question names objects that answer it
        for q, a in zip(row["questions"], row["answers"]):
            named = [row["objects"][i] for i in question_referents(row["objects"], q)]
            assert shapes.answer_question(named if q.startswith("is") else named or row["objects"], q) == a


def test_questions_only_unambiguous():
    scene = [dict(RED_CIRCLE), dict(BLUE_SQUARE, shape="circle"), GREEN_TRIANGLE]  # two circles
    rng = np.random.default_rng(0)
    for _ in range(200):
        qs, ans = shapes.questions_for(scene, rng)
        assert "what color is the circle?" not in qs and len(qs) == 3
        assert all(a != "unknown" for a in ans)


def test_scene_matches_caption_subscores():
    cap = "a small red circle to the left of a large blue square"
    good = [RED_CIRCLE, BLUE_SQUARE]
    assert shapes.scene_matches_caption(good, cap) == {
        "count": True, "color": True, "shape": True, "size": True, "relation": True, "correct": True}
    swapped = [dict(RED_CIRCLE, x=28.0), dict(BLUE_SQUARE, x=10.0)]
    r = shapes.scene_matches_caption(swapped, cap)
    assert r["relation"] is False and r["color"] and r["shape"] and r["size"] and not r["correct"]
    wrong_color = [dict(RED_CIRCLE, color="yellow"), BLUE_SQUARE]
    r = shapes.scene_matches_caption(wrong_color, cap)
    assert r["color"] is False and r["shape"] and r["size"] and r["count"] and r["relation"]
    r = shapes.scene_matches_caption([RED_CIRCLE], cap)
    assert r["count"] is False and r["color"] is False and r["relation"] is False
    extra = [RED_CIRCLE, BLUE_SQUARE, GREEN_TRIANGLE]
    r = shapes.scene_matches_caption(extra, cap)
    assert r["count"] is False and r["color"] and r["relation"] and not r["correct"]
    r = shapes.scene_matches_caption([dict(RED_CIRCLE, size="large")], "a small red circle")
    assert r == {"count": True, "color": True, "shape": True, "size": False, "relation": None, "correct": False}
    r = shapes.scene_matches_caption([], "a small red circle")
    assert r["count"] is False and r["correct"] is False
    three = "a small red circle, a small green triangle and a large blue square"
    assert shapes.scene_matches_caption([GREEN_TRIANGLE, BLUE_SQUARE, RED_CIRCLE], three)["correct"]
    with pytest.raises(ValueError, match="grammar"):
        shapes.scene_matches_caption(good, "a red thing")


def test_sample_prompts_deterministic_and_excluding():
    a = shapes.sample_prompts(50, seed=1)
    assert a == shapes.sample_prompts(50, seed=1) and len(set(a)) == 50
    assert all(shapes.parse_caption(p) is not None for p in a)
    b = shapes.sample_prompts(50, seed=1, exclude=set(a[:25]))
    assert not set(b) & set(a[:25])
    train = set(shapes.make_dataset(200, seed=0)["caption"])
    assert not set(shapes.sample_prompts(30, seed=9, exclude=train)) & train


def test_rationale_for_golden_and_errors():
    """Describe-then-answer rationales: the caption for attribute / count questions; for a relation question the
    two asked objects (sizes from the caption) related by the TRUE relation on the asked axis."""
    from gaussiantoken.data.shapes_text import rationale_for

    cap = "a small red circle, a large blue square and a small green triangle"
    assert rationale_for(cap, "what color is the circle?", "red") == cap
    assert rationale_for(cap + ".", "How many objects are there?", "three") == cap
    assert (rationale_for(cap, "is the green triangle above the red circle?", "yes")
            == "a small green triangle above a small red circle")
    assert (rationale_for(cap, "is the green triangle above the red circle?", "no")
            == "a small green triangle below a small red circle")
    assert (rationale_for(cap, "is the blue square to the left of the red circle?", "no")
            == "a large blue square to the right of a small red circle")
    with pytest.raises(ValueError, match="grammar"):
        rationale_for("three shapes", "what color is the circle?", "red")
    with pytest.raises(ValueError, match="grammar"):
        rationale_for(cap, "why is the circle red?", "because")
    with pytest.raises(ValueError, match="yes or no"):
        rationale_for(cap, "is the green triangle above the red circle?", "maybe")
    with pytest.raises(ValueError, match="does not hold"):
        rationale_for(cap, "is the red square above the red circle?", "yes")


def test_rationales_of_generated_questions_are_true():
    """Over many generated scenes, a relation rationale states a relation that holds between the two scene
    objects, and every rationale parses as a caption whose objects are scene objects."""
    from gaussiantoken.data.shapes_text import rationale_for

    rng = np.random.default_rng(7)
    relations = 0
    for _ in range(300):
        scene = shapes.sample_scene(rng, 32)
        caption = shapes.caption_for(scene, rng)
        for q, a in zip(*shapes.questions_for(scene, rng)):
            r = shapes.parse_caption(rationale_for(caption, q, a))
            assert r is not None
            found = [[o for o in scene if all(o[k] == p[k] for k in ("color", "shape", "size"))] for p in r["objects"]]
            assert all(len(f) == 1 for f in found)
            if q.startswith("is the"):
                relations += 1
                assert relation_holds(found[0][0], found[1][0], r["relation"])
    assert relations > 50


def test_lookup_questions_golden():
    """Every attribute question with a unique referent, in object order; none whose referent is ambiguous."""
    from gaussiantoken.data.shapes_text import answer_question, lookup_questions

    objects = [{"shape": "circle", "color": "red", "size": "small"}, {"shape": "circle", "color": "blue", "size": "large"},
               {"shape": "square", "color": "red", "size": "large"}]
    questions, answers = lookup_questions(objects)
    assert list(zip(questions, answers)) == [
        ("what size is the red circle?", "small"),
        ("what shape is the blue object?", "circle"),
        ("what size is the blue circle?", "large"),
        ("what color is the square?", "red"),
        ("what size is the red square?", "large"),
    ]
    assert all(answer_question(objects, q) == a for q, a in zip(questions, answers))
    assert lookup_questions(objects[:1])[1] == ["red", "circle", "small"]
    with pytest.raises(ValueError, match="1-3 object"):
        lookup_questions([])


def test_scan_rationale_golden_and_errors():
    """A lookup question's scan marks the caption's objects in turn up to the asked one; count questions keep
    the describe rationale, a relation scan needs the scene; a referent held twice or not at all, or an unknown style, is refused."""
    from gaussiantoken.data.shapes_text import rationale_for, scan_rationale, styled_rationale

    cap = "a small red circle to the left of a large blue square"
    assert scan_rationale(cap, "what color is the square?") == "a small red circle: no; a large blue square: yes"
    assert scan_rationale(cap, "What shape is the red object?") == "a small red circle: yes"
    assert scan_rationale(cap, "what size is the blue square?") == "a small red circle: no; a large blue square: yes"
    assert scan_rationale(cap, "how many objects are there?") is None
    rel = "is the red circle to the left of the blue square?"
    with pytest.raises(ValueError, match="scene"):
        styled_rationale(cap, rel, "yes", "scan")
    assert styled_rationale(cap, "how many objects are there?", "two", "scan") == rationale_for(cap, "how many objects are there?", "two")
    assert styled_rationale(cap, "what color is the square?", "blue") == cap
    with pytest.raises(ValueError, match="exactly one"):
        scan_rationale(cap, "what color is the triangle?")
    with pytest.raises(ValueError, match="exactly one"):
        scan_rationale("a small red circle above a large red square", "what shape is the red object?")
    with pytest.raises(ValueError, match="grammar"):
        scan_rationale(cap, "why is the circle red?")
    with pytest.raises(ValueError, match="style"):
        styled_rationale(cap, "what color is the square?", "blue", "list")


def test_relation_scan_orders_by_the_asked_axis_and_agrees_with_the_answer():
    """A relation scan lists the scene along the asked axis, marks the asked objects first / second, stops at
    the later one; over many scenes its marks imply the true answer; a wrong answer or a missing scene is refused."""
    from gaussiantoken.data.shapes_text import questions_for, scan_rationale, styled_rationale
    from gaussiantoken.data.shapes_world import sample_scene

    scene = [{"shape": "circle", "color": "red", "size": "small", "x": 5, "y": 20},
             {"shape": "square", "color": "blue", "size": "large", "x": 12, "y": 4},
             {"shape": "triangle", "color": "green", "size": "small", "x": 25, "y": 12}]
    cap = "a small red circle, a large blue square and a small green triangle"
    q = "is the red circle above the green triangle?"
    assert scan_rationale(cap, q, scene) == ("from the top: a large blue square: no; a small green triangle: second; "
                                             "a small red circle: first")
    assert styled_rationale(cap, q, "no", "scan", scene).endswith("circle: first")
    with pytest.raises(ValueError, match="disagrees"):
        styled_rationale(cap, q, "yes", "scan", scene)
    q = "is the blue square to the right of the red circle?"
    assert scan_rationale(cap, q, scene) == "from the left: a small red circle: second; a large blue square: first"
    with pytest.raises(ValueError, match="scene"):
        scan_rationale(cap, q)
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(300):
        objs = sample_scene(rng)
        for q, a in zip(*questions_for(objs, rng, 5)):
            if q.startswith("is the"):
                seen += 1
                text = styled_rationale(shapes.caption_for(objs), q, a, "scan", objs)  # raises on disagreement
                assert text.count(": first") == 1 and text.count(": second") == 1
    assert seen > 50


def test_cued_scan_restates_the_referent_and_is_bounded():
    """A cued scan is the scan with the question's referent before every phrase (both asked objects for a
    relation); stripping the cues gives the plain scan back; scan_bound_text(cued=True) is at least as long as
    every cued scan of many random scenes."""
    from gaussiantoken.data.shapes_text import questions_for, scan_bound_text, scan_rationale, styled_rationale
    from gaussiantoken.data.shapes_world import sample_scene

    cap = "a small red circle to the left of a large blue square"
    assert scan_rationale(cap, "what color is the square?", cued=True) == (
        "square: a small red circle: no; square: a large blue square: yes")
    assert styled_rationale(cap, "what shape is the red object?", "circle", "cued_scan") == "red: a small red circle: yes"
    assert scan_rationale(cap, "what size is the blue square?", cued=True) == (
        "blue square: a small red circle: no; blue square: a large blue square: yes")
    assert styled_rationale(cap, "how many objects are there?", "two", "cued_scan") == cap
    scene = [{"shape": "circle", "color": "red", "size": "small", "x": 5, "y": 20},
             {"shape": "square", "color": "blue", "size": "large", "x": 12, "y": 4}]
    q = "is the red circle above the blue square?"
    assert styled_rationale(cap, q, "no", "cued_scan", scene) == (
        "from the top: red circle, blue square: a large blue square: second; red circle, blue square: a small red "
        "circle: first")
    rng = np.random.default_rng(3)
    for _ in range(300):
        objs = sample_scene(rng)
        caption = shapes.caption_for(objs)
        for q, a in zip(*questions_for(objs, rng, 5)):
            cued = styled_rationale(caption, q, a, "cued_scan", objs)
            plain = styled_rationale(caption, q, a, "scan", objs)
            assert re.sub(r"(^|: |; )[a-z]+( [a-z]+)?(, [a-z]+ [a-z]+)?: (?=a )", r"\1", cued) == plain
            assert len(cued) <= len(scan_bound_text(caption, cued=True))


def test_equivalent_captions_phrase_the_same_claim():
    """Every phrasing is grammatical, states the same objects, and holds of exactly the scenes the caption holds
    of; two-object: the pair read from its other side; three-object: all six orders; other text as given."""
    from gaussiantoken.data.shapes_text import equivalent_captions

    two = "a small red circle to the left of a large blue square"
    assert equivalent_captions(two) == [two, "a large blue square to the right of a small red circle"]
    assert equivalent_captions("a large red circle") == ["a large red circle"]
    assert equivalent_captions("hello there") == ["hello there"]
    rows = shapes.make_dataset(60, seed=5, image_size=32)
    checked = 0
    for row in rows:
        objects = row["objects"]
        phrasings = equivalent_captions(row["caption"])
        assert len(phrasings) == len(set(phrasings)) == {1: 1, 2: 2, 3: 6}[len(objects)]
        for text in phrasings:
            parsed = shapes.parse_caption(text)
            assert parsed is not None
            assert sorted(map(str, parsed["objects"])) == sorted(map(str, shapes.parse_caption(row["caption"])["objects"]))
            assert shapes.scene_matches_caption(objects, text)["correct"]
        if len(objects) == 2 and any(objects[0][k] != objects[1][k] for k in ("shape", "color", "size")):
            # a scene with the (distinguishable) pair the other way round fails every phrasing alike
            a, b = objects
            flipped = [dict(a, x=b["x"], y=b["y"]), dict(b, x=a["x"], y=a["y"])]
            assert {shapes.scene_matches_caption(flipped, t)["correct"] for t in phrasings} == {False}
        checked += len(objects) > 1
    assert checked > 20
