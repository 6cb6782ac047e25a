"""The positions reply of relation questions (data.shapes_positions): golden texts, the bins, agreement of the
digits' order with the true answer on many sampled scenes, the bound, refusals."""

import numpy as np
import pytest

from gaussiantoken.data.shapes_positions import (POSITION_BINS, position_bin, position_digits, positions_answer,
                                                 relation_positions,
                                                 relation_positions_bound)
from gaussiantoken.data.shapes_text import answer_question, questions_for
from gaussiantoken.data.shapes_world import sample_scenes

SCENE = [{"shape": "circle", "color": "red", "size": "small", "x": 9.5, "y": 26.0},
         {"shape": "square", "color": "blue", "size": "large", "x": 22.0, "y": 4.0}]


def test_golden_replies():
    assert relation_positions(SCENE, "is the red circle to the left of the blue square?", 32) == \
        "left: red circle 2, blue square 5"
    assert relation_positions(SCENE, "Is the blue square  below the red circle?", 32) == \
        "below: blue square 1, red circle 6"  # the asked axis (y, 0 at the top), the question's order
    for question in ("what color is the circle?", "what shape is the blue object?", "what size is the red circle?",
                     "how many objects are there?"):
        assert relation_positions(SCENE, question, 32) is None


def test_bins_cover_the_image_in_equal_widths():
    assert [position_bin(x, 32) for x in (0, 3.99, 4, 16, 31.9, 32, 40, -1)] == [0, 0, 1, 4, 7, 7, 7, 0]
    assert position_bin(63.9, 64) == POSITION_BINS - 1
    with pytest.raises(ValueError, match="image_size"):
        position_bin(3, 0)


@pytest.mark.parametrize("image_size", [32, 64])
def test_digits_order_agrees_with_the_answer(image_size):
    """On sampled scenes every relation question's two digits differ and are ordered as the relation says, so the
    reply's answer follows from its digits (and the relation word) alone."""
    rng = np.random.default_rng(0)
    checked = 0
    for scene in sample_scenes(rng, 400, image_size):
        questions, answers = questions_for(scene, rng, 3)
        for question, answer in zip(questions, answers):
            reply = relation_positions(scene, question, image_size)
            if reply is None:
                continue
            word, _, rest = reply.partition(": ")
            a, b = (int(part.rsplit(" ", 1)[1]) for part in rest.split(", "))
            assert a != b, (scene, question)
            holds = a < b if word in ("left", "above") else a > b
            assert ("yes" if holds else "no") == answer == answer_question(scene, question) == positions_answer(reply)
            checked += 1
    assert checked > 100


def test_bound_and_refusals():
    longest = relation_positions_bound()
    assert longest >= len("above: magenta triangle 7, magenta triangle 7")
    assert relation_positions_bound(lambda text: len(text.split())) == 7
    with pytest.raises(ValueError, match="grammar"):
        relation_positions(SCENE, "is the red circle near the blue square?", 32)
    with pytest.raises(ValueError, match="exactly once"):
        relation_positions(SCENE, "is the green circle above the blue square?", 32)


def test_positions_answer_reads_a_rationale_or_refuses_it():
    assert positions_answer("left: red circle 2, blue square 5") == "yes"
    assert positions_answer("right: red circle 2, blue square 5") == "no"
    assert positions_answer("below:  blue square 6,  red circle 1") == "yes"
    assert positions_answer("above: blue square 6, red circle 1") == "no"
    for bad in ("", "left: red circle, blue square 5", "near: red circle 2, blue square 5", "a small red circle"):
        assert positions_answer(bad) is None


def test_position_digits_read_whatever_pairs_a_reply_wrote():
    assert position_digits("left: red circle 2, blue square 5") == [("red circle", 2), ("blue square", 5)]
    assert position_digits("left:  red circle 2") == [("red circle", 2)]  # cut short
    assert position_digits("left: red circle 23, blue square") == []
