"""Relation questions answered by first writing where the two named objects are (`data.relation_positions`).

A relation answer ("is the red circle to the left of the blue square?" -> "yes") needs two looked-up objects'
positions compared, and the comparison made the asked way round; measured (bench/RESULTS.md, issue 12), a 4-layer
LM does not form that in one step, although it looks up one named object's colour, shape or size reliably. The
positions reply breaks the answer into steps that are each a single lookup or a comparison of adjacent words:

    "left: red circle 2, blue square 5, so yes"

the relation's word, then each named object restated with its centre on the asked axis as one of POSITION_BINS
digits (0 = left / top edge), then the answer. Each digit is the lookup of one named object (its restated words
just before it); the answer compares two digits written a fixed few tokens back under the relation word written
at the reply's start. The bins are 4 pixels wide on the Shapes world's 32-pixel images; over the 12,703 relation
questions of 30,000 sampled scenes the two objects' centres are at least 5 pixels apart on the asked axis (9 pixels at
64, bins of 8), so no two fell in one bin, and the digits' order is the centres' (the bin is monotone in the
coordinate): the reply's digits and its true answer agree. (Were two centres ever in one bin, the digits would tie
and the answer would still be the truth's.)

Owns `POSITION_BINS`, `RELATION_WORDS`, `position_bin`, `relation_positions` (a question's rationale, or None for
a question that is no relation), `positions_answer` (the answer a rationale's digits give), `position_digits` (its objects and digits) and
`relation_positions_bound` (its longest text)."""

from __future__ import annotations

import re

from gaussiantoken.data.shapes_world import COLOR_NAMES, SHAPES

POSITION_BINS = 8
RELATION_WORDS = {"to the left of": "left", "to the right of": "right", "above": "above", "below": "below"}
_PART = r"([a-z]+ [a-z]+) (\d)"  # one restated object and its digit: "red circle 2"
_RATIONALE = re.compile(rf"(left|right|above|below): {_PART}, {_PART}")
_AXIS = {"to the left of": "x", "to the right of": "x", "above": "y", "below": "y"}


def position_bin(value: float, image_size: int) -> int:
    """A centre coordinate in pixels (0 .. image_size) -> its bin, 0 .. POSITION_BINS - 1 (equal widths)."""
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return min(POSITION_BINS - 1, max(0, int(float(value) * POSITION_BINS / image_size)))


def relation_positions(scene: list[dict], question: str, image_size: int) -> str | None:
    """The rationale of a relation question about `scene` (objects with color, shape, x, y in pixels):
    "{relation word}: {color a} {shape a} {bin a}, {color b} {shape b} {bin b}" with both objects in the question's
    order and their centres binned on the asked axis; None for any other Shapes question. ValueError outside the
    question grammar or when the scene does not hold a named object exactly once."""
    from gaussiantoken.data.shapes_text import _Q_REL, _normalize, question_referents

    m = _Q_REL.match(_normalize(question, "question"))
    if m is None:
        question_referents(scene, question)  # raises outside the grammar
        return None
    relation, axis = m.group(3), _AXIS[m.group(3)]
    parts = [f"{scene[i]['color']} {scene[i]['shape']} {position_bin(scene[i][axis], image_size)}"
             for i in question_referents(scene, question)]
    return f"{RELATION_WORDS[relation]}: {parts[0]}, {parts[1]}"


def positions_answer(rationale: str) -> str | None:
    """The answer a positions rationale's own digits give ("left: red circle 2, blue square 5" -> "yes": 2 < 5),
    or None when the text is not one (e.g. a model's malformed reply)."""
    m = _RATIONALE.fullmatch(" ".join(rationale.split()))
    if m is None:
        return None
    first, second = int(m.group(3)), int(m.group(5))
    return "yes" if (first < second if m.group(1) in ("left", "above") else first > second) else "no"


def position_digits(text: str) -> list[tuple[str, int]]:
    """Every "{color} {shape} {digit}" of a (possibly malformed or cut short) positions rationale, in order:
    "left: red circle 2, blue square 5" -> [("red circle", 2), ("blue square", 5)]."""
    return [(name, int(d)) for name, d in re.findall(_PART + r"\b", " ".join(text.split()))]


def relation_positions_bound(measure=len) -> int:
    """The most `measure` (e.g. a tokenizer's token count) any positions rationale takes: every word choice's
    longest, each alone (a bound, not a reachable text)."""
    word = max(RELATION_WORDS.values(), key=measure)
    color, shape = max(COLOR_NAMES, key=measure), max(SHAPES, key=measure)
    digit = max((str(d) for d in range(POSITION_BINS)), key=measure)
    return measure(f"{word}: {color} {shape} {digit}, {color} {shape} {digit}")


__all__ = ["POSITION_BINS", "RELATION_WORDS", "position_bin", "relation_positions", "positions_answer", "position_digits",
           "relation_positions_bound"]
