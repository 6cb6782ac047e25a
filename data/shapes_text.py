"""The Shapes world's language: captions, the caption parser, questions/answers, GenEval-style scoring.

Caption grammar (lower case, no final period; ``parse_caption`` also accepts surrounding spaces,
a final period and upper case):
- 1 object:  "a large red circle"                      (phrase = "a <size> <color> <shape>")
- 2 objects: "<phrase> <relation> <phrase>"             e.g. "a small red circle to the left of a
             large blue square"; the relation is true of the two centres and *clear* (see
             ``shapes_world.clear_relations``).
- 3 objects: "<phrase>, <phrase> and <phrase>", objects in the canonical order (left to right by
             centre x, then y). A 3-object caption makes no spatial claim.

Questions (one-word answers), with the referent always unambiguous in the generated data:
- "what color is the <shape>?"            -> a color      (only if that shape occurs once)
- "what shape is the <color> object?"     -> a shape      (only if that color occurs once)
- "what size is the <color> <shape>?"     -> small/large
- "how many objects are there?"           -> one/two/three (count words, ``count_word``)
- "is the <color> <shape> <relation> the <color> <shape>?" -> yes/no, balanced 50/50; the asked
  relation (or its opposite, for "no") lies on a clear axis.
``answer_question`` answers from any object list (e.g. a parsed image) and returns "unknown"
when the referent is missing or ambiguous there.

Rationales (``rationale_for``): the text a describe-then-answer VQA target writes before its answer
(``lm.sequences.reasoned_answer``): for a relation question the two asked objects related on the asked
axis in the 2-object caption grammar (the true relation: the asked one for "yes", its opposite for "no");
for any other question the scene's caption. Either is a pure function of the caption, question and answer.
The "scan" style (``styled_rationale``, ``scan_rationale``) writes a lookup question's rationale as the caption's
objects marked in turn, ": yes" for the asked one, up to it ("a large red square: no; a small blue circle: yes"),
and a relation question's as the scene's objects ordered along the asked axis, the two asked ones marked
": first" / ": second" ("from the top: a large blue square: second; a small red circle: first").

The "cued_scan" style writes the same scan with the question's referent restated before every phrase ("circle: a
large red square: no; circle: a small blue circle: yes"; a relation scan restates both asked objects), so that
each mark compares two words a fixed distance apart (with a whole-word text vocabulary) and no step reaches back
to the question, which is at a varying distance.
Held-out compositions: ``is_heldout_composition`` marks a fixed tenth of the 2- and 3-object
captions (by a stable CRC32 of the caption text; never a 1-object caption) that a training stream
never shows (``lm.stream``) and the text-to-image evaluation draws its unseen compositions from
(``sample_prompts(..., num_objects=k, heldout=True)``).
"""

from __future__ import annotations

import itertools
import re
import zlib

import numpy as np

from .shapes_world import (
    COLOR_NAMES,
    OPPOSITE,
    RELATIONS,
    SHAPES,
    SIZES,
    canonical_order,
    check_image_size,
    clear_relations,
    count_word,
    relation_holds,
    sample_scene,
)

_COLOR = "|".join(COLOR_NAMES)
_SHAPE = "|".join(SHAPES)
_SIZE = "|".join(SIZES)
_REL = "|".join(RELATIONS)
_PHRASE = rf"a ({_SIZE}) ({_COLOR}) ({_SHAPE})"
_CAPTION_1 = re.compile(rf"^{_PHRASE}$")
_CAPTION_2 = re.compile(rf"^{_PHRASE} ({_REL}) {_PHRASE}$")
_CAPTION_3 = re.compile(rf"^{_PHRASE}, {_PHRASE} and {_PHRASE}$")
_Q_COLOR = re.compile(rf"^what color is the ({_SHAPE})\?$")
_Q_SHAPE = re.compile(rf"^what shape is the ({_COLOR}) object\?$")
_Q_SIZE = re.compile(rf"^what size is the ({_COLOR}) ({_SHAPE})\?$")
_Q_COUNT = re.compile(r"^how many objects are there\?$")
_Q_REL = re.compile(rf"^is the ({_COLOR}) ({_SHAPE}) ({_REL}) the ({_COLOR}) ({_SHAPE})\?$")


def _normalize(text: str, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    return " ".join(text.strip().lower().split())


def _check_objects(objects, need_xy: bool) -> list[dict]:
    if not isinstance(objects, (list, tuple)) or not 1 <= len(objects) <= 3:
        raise ValueError(f"objects must be a list of 1-3 object dicts, got {objects!r}")
    for o in objects:
        keys = ("shape", "color", "size", "x", "y") if need_xy else ("shape", "color", "size")
        if not isinstance(o, dict) or any(k not in o for k in keys):
            raise ValueError(f"each object needs keys {keys}, got {o!r}")
    return list(objects)


def phrase(obj: dict) -> str:
    return f"a {obj['size']} {obj['color']} {obj['shape']}"


def caption_for(objects: list[dict], rng: np.random.Generator | None = None) -> str:
    """Caption of a scene.

    Two objects: without ``rng`` the first given object is the subject and the relation is on the
    axis of the larger centre offset (x on ties); with ``rng`` the subject and the clear axis are
    drawn at random. Three objects are listed in the canonical order.
    """
    if not isinstance(objects, (list, tuple)):
        raise TypeError(f"objects must be a list of object dicts, got {type(objects).__name__}")
    objects = _check_objects(objects, need_xy=len(objects) > 1)
    if len(objects) == 1:
        return phrase(objects[0])
    if len(objects) == 2:
        a, b = objects
        if rng is not None and rng.random() < 0.5:
            a, b = b, a
        options = clear_relations(a, b)
        if not options:
            raise ValueError(f"the two objects share a centre, no relation holds: {objects!r}")
        if rng is None:
            dx, dy = abs(float(b["x"]) - float(a["x"])), abs(float(b["y"]) - float(a["y"]))
            relation = options[0] if dx >= dy else options[-1]
        else:
            relation = options[int(rng.integers(0, len(options)))]
        return f"{phrase(a)} {relation} {phrase(b)}"
    first, second, third = canonical_order(objects)
    return f"{phrase(first)}, {phrase(second)} and {phrase(third)}"


def parse_caption(text: str) -> dict | None:
    """Inverse of the caption grammar.

    Returns ``{"objects": [{shape, color, size}, ...], "relation": str | None}`` (objects in caption
    order; ``relation`` is the relation of objects[0] to objects[1] for 2-object captions, else
    None), or None when the text is not a grammatical caption.
    """
    text = _normalize(text, "text").rstrip(".").rstrip()
    for pattern in (_CAPTION_1, _CAPTION_2, _CAPTION_3):
        m = pattern.match(text)
        if m is None:
            continue
        groups = list(m.groups())
        relation = None
        if pattern is _CAPTION_2:
            relation = groups.pop(3)
        objects = [
            {"shape": groups[i + 2], "color": groups[i + 1], "size": groups[i]} for i in range(0, len(groups), 3)
        ]
        return {"objects": objects, "relation": relation}
    return None


def _find(objects: list[dict], color: str | None = None, shape: str | None = None) -> list[dict]:
    return [o for o in objects if (color is None or o["color"] == color) and (shape is None or o["shape"] == shape)]


def questions_for(objects: list[dict], rng: np.random.Generator, num_questions: int = 3) -> tuple[list[str], list[str]]:
    """Up to ``num_questions`` questions of distinct kinds (drawn at random) and their answers."""
    objects = _check_objects(objects, need_xy=True)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    makers = []
    unique_shapes = [s for s in SHAPES if len(_find(objects, shape=s)) == 1]
    unique_colors = [c for c in COLOR_NAMES if len(_find(objects, color=c)) == 1]
    if unique_shapes:
        def ask_color():
            s = unique_shapes[int(rng.integers(0, len(unique_shapes)))]
            return f"what color is the {s}?", _find(objects, shape=s)[0]["color"]
        makers.append(ask_color)
    if unique_colors:
        def ask_shape():
            c = unique_colors[int(rng.integers(0, len(unique_colors)))]
            return f"what shape is the {c} object?", _find(objects, color=c)[0]["shape"]
        makers.append(ask_shape)

    def ask_size():
        o = objects[int(rng.integers(0, len(objects)))]
        return f"what size is the {o['color']} {o['shape']}?", o["size"]
    makers.append(ask_size)
    makers.append(lambda: ("how many objects are there?", count_word(len(objects))))
    if len(objects) >= 2:
        def ask_relation():
            i, j = (int(v) for v in rng.choice(len(objects), size=2, replace=False))
            a, b = objects[i], objects[j]
            options = clear_relations(a, b)
            relation = options[int(rng.integers(0, len(options)))]
            yes = bool(rng.random() < 0.5)
            if not yes:
                relation = OPPOSITE[relation]
            q = f"is the {a['color']} {a['shape']} {relation} the {b['color']} {b['shape']}?"
            return q, "yes" if yes else "no"
        makers.append(ask_relation)
    picks = rng.permutation(len(makers))[: max(0, int(num_questions))]
    questions, answers = [], []
    for p in sorted(int(v) for v in picks):
        q, a = makers[p]()
        questions.append(q)
        answers.append(a)
    return questions, answers


def lookup_questions(objects: list[dict]) -> tuple[list[str], list[str]]:
    """Every question that names one object and asks another of its attributes (colour by a unique shape, shape
    by a unique colour, size by colour and shape), in object order, and their answers: the questions a reader
    answers by finding the named object. Objects need no position (a parsed caption's will do)."""
    objects = _check_objects(objects, need_xy=False)
    questions, answers = [], []
    for o in objects:
        if len(_find(objects, shape=o["shape"])) == 1:
            questions.append(f"what color is the {o['shape']}?")
            answers.append(o["color"])
        if len(_find(objects, color=o["color"])) == 1:
            questions.append(f"what shape is the {o['color']} object?")
            answers.append(o["shape"])
        if len(_find(objects, color=o["color"], shape=o["shape"])) == 1:
            questions.append(f"what size is the {o['color']} {o['shape']}?")
            answers.append(o["size"])
    return questions, answers


def answer_question(objects: list[dict], question: str) -> str:
    """Answer a Shapes question from an object list; "unknown" when the referent is missing/ambiguous."""
    if not isinstance(objects, (list, tuple)):
        raise TypeError(f"objects must be a list of object dicts, got {type(objects).__name__}")
    q = _normalize(question, "question")
    named = [_find(objects, **want) for want in question_referent_words(q)[0]]  # raises outside the grammar
    if not named:  # a count question
        return count_word(len(objects))
    if any(len(found) != 1 for found in named):
        return "unknown"
    if (m := _Q_REL.match(q)) is not None:
        return "yes" if relation_holds(named[0][0], named[1][0], m.group(3)) else "no"
    asked = "color" if _Q_COLOR.match(q) else "shape" if _Q_SHAPE.match(q) else "size"
    return named[0][0][asked]


def question_referent_words(question: str) -> tuple[list[dict], list[int]]:
    """The objects a Shapes question names, in the order it names them (as attribute dicts: {"shape"} for a colour
    question, {"color"} for a shape question, both for size and relation questions; none for a count), and the
    character offset in the normalized question where the words naming each end ("what color is the circle?" ->
    after "circle"; "what shape is the blue object?" -> after "blue"). ValueError outside the grammar."""
    q = _normalize(question, "question")
    if _Q_COUNT.match(q) is not None:
        return [], []
    if (m := _Q_REL.match(q)) is not None:
        return [{"color": m.group(1), "shape": m.group(2)}, {"color": m.group(4), "shape": m.group(5)}], [m.end(2), m.end(5)]
    for pattern, keys in ((_Q_COLOR, ("shape",)), (_Q_SHAPE, ("color",)), (_Q_SIZE, ("color", "shape"))):
        if (m := pattern.match(q)) is not None:
            return [dict(zip(keys, m.groups()))], [m.end(len(keys))]
    raise ValueError(f"question is not in the Shapes question grammar: {question!r}")


def question_referents(objects: list[dict], question: str) -> list[int]:
    """Indices into `objects` of the objects a Shapes question names, in the order it names them (one for a lookup
    question, two for a relation, none for a count). ValueError when a named object is not held exactly once or the
    question is outside the grammar."""
    out = []
    for want in question_referent_words(question)[0]:
        hits = [i for i, o in enumerate(objects) if all(o[k] == v for k, v in want.items())]
        if len(hits) != 1:
            raise ValueError(f"the question {question!r} names an object the scene does not hold exactly once")
        out.append(hits[0])
    return out


def rationale_for(caption: str, question: str, answer: str) -> str:
    """The describe-then-answer rationale of a Shapes question (see the module docstring): the caption, or, for
    a relation question, "<phrase a> <true relation> <phrase b>" with both phrases (sizes) read from the caption.
    ValueError when the caption or question is not in the grammar, or a relation referent is not in the caption."""
    parsed = parse_caption(caption)
    if parsed is None:
        raise ValueError(f"caption is not in the Shapes caption grammar: {caption!r}")
    q = _normalize(question, "question")
    m = _Q_REL.match(q)
    if m is None:
        answer_question(parsed["objects"], q)  # raises on a question outside the grammar
        return _normalize(caption, "caption").rstrip(".").rstrip()
    answer = _normalize(answer, "answer")
    if answer not in ("yes", "no"):
        raise ValueError(f"a relation question's answer must be yes or no, got {answer!r}")
    a = _find(parsed["objects"], color=m.group(1), shape=m.group(2))
    b = _find(parsed["objects"], color=m.group(4), shape=m.group(5))
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f"the question {question!r} names objects the caption {caption!r} does not hold once each")
    relation = m.group(3) if answer == "yes" else OPPOSITE[m.group(3)]
    return f"{phrase(a[0])} {relation} {phrase(b[0])}"


RATIONALE_STYLES = ("describe", "scan", "cued_scan")
SCAN_STYLES = ("scan", "cued_scan")  # the styles whose rationales are scans (marks carry loss in the text QA drill)
SCAN_AXIS_WORDS = {"x": "from the left", "y": "from the top"}  # a relation scan's order, written first


def scan_rationale(caption: str, question: str, scene: list[dict] | None = None, cued: bool = False) -> str | None:
    """The scan rationale of a question: its objects marked in turn, each mark comparing one phrase with the
    question, up to the last object the question names, so that the answer sits at a fixed place before the
    reply's ", so " and no step has to find an object by its content (bench/RESULTS.md, "VQA as a scan": in a
    text drill a 4-layer LM reads a lookup answer off a description at the level of picking an object at random,
    off a scan at 0.98-1.00 within 800 steps; in the multimodal mix the comparison formed in one run of six).

    - Lookup questions (colour of a shape, shape of a colour, size of a colour and shape): the caption's objects
      in caption order, ": yes" for the asked one, ": no" before it: "a large red square: no; a small blue
      circle: yes".
    - Relation questions ("is the A <relation> the B?", needs `scene`, the objects with centres x, y): the
      objects ordered along the asked axis ("from the left" for left / right, "from the top" for above / below),
      ": first" for A, ": second" for B, ": no" for any other, up to the later of A and B: "from the top: a
      large blue square: second; a small red circle: first". The answer follows from which mark came last.
    - Count questions: None (no object is asked about; the describe rationale serves).
    - `cued`: every marked phrase is preceded by the question's referent, "{cue}: ": "circle: a large red square:
      no; circle: a small blue circle: yes"; relations "red circle, blue square: a ...: first".

    ValueError when the caption or question is outside the grammar, the question's objects are not each held
    exactly once, or a relation question comes without a scene."""
    parsed = parse_caption(caption)
    if parsed is None:
        raise ValueError(f"caption is not in the Shapes caption grammar: {caption!r}")
    q = _normalize(question, "question")
    for pattern, keys in ((_Q_COLOR, ("shape",)), (_Q_SHAPE, ("color",)), (_Q_SIZE, ("color", "shape"))):
        m = pattern.match(q)
        if m is None:
            continue
        asked = dict(zip(keys, m.groups()))
        hits = [all(o[k] == v for k, v in asked.items()) for o in parsed["objects"]]
        if sum(hits) != 1:
            raise ValueError(f"the question {question!r} does not name exactly one object of the caption {caption!r}")
        cue = f"{' '.join(asked[k] for k in keys)}: " if cued else ""
        marks = [f"{cue}{phrase(o)}: {'yes' if hit else 'no'}" for o, hit in zip(parsed["objects"], hits)]
        return "; ".join(marks[:hits.index(True) + 1])
    if _Q_COUNT.match(q) is not None:
        return None
    m = _Q_REL.match(q)
    if m is None:
        raise ValueError(f"question is not in the Shapes question grammar: {question!r}")
    if scene is None:
        raise ValueError(f"a relation question's scan orders the objects by position: it needs the scene ({question!r})")
    scene = _check_objects(scene, need_xy=True)
    a, b = _find(scene, color=m.group(1), shape=m.group(2)), _find(scene, color=m.group(4), shape=m.group(5))
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f"the question {question!r} names objects the scene does not hold once each")
    axis = "x" if m.group(3) in ("to the left of", "to the right of") else "y"
    other = "y" if axis == "x" else "x"
    cue = f"{m.group(1)} {m.group(2)}, {m.group(4)} {m.group(5)}: " if cued else ""
    marks, found = [], 0
    for o in sorted(scene, key=lambda o: (float(o[axis]), float(o[other]))):
        mark = "first" if o is a[0] else "second" if o is b[0] else "no"
        marks.append(f"{cue}{phrase(o)}: {mark}")
        found += mark != "no"
        if found == 2:
            break
    return f"{SCAN_AXIS_WORDS[axis]}: " + "; ".join(marks)


def scan_bound_text(caption: str, cued: bool = False, measure=len) -> str:
    """A text at least as long as any scan rationale of this caption's scene: every object marked, the longest
    mark, the longer axis words, and with `cued` the longest cue (twice the scene's longest object name) before
    each (for context-length bounds). `measure`: what "long" means (characters; pass a token counter for tokens)."""
    parsed = parse_caption(caption)
    if parsed is None:
        raise ValueError(f"caption is not in the Shapes caption grammar: {caption!r}")
    name = max((f"{o['color']} {o['shape']}" for o in parsed["objects"]), key=measure)
    cue = f"{name}, {name}: " if cued else ""
    axis = max(SCAN_AXIS_WORDS.values(), key=measure)
    return f"{axis}: " + "; ".join(f"{cue}{phrase(o)}: {max(('second', 'first'), key=measure)}"
                                   for o in parsed["objects"])


def styled_rationale(caption: str, question: str, answer: str, style: str = "describe",
                     scene: list[dict] | None = None) -> str:
    """The rationale of a describe-then-answer target in `style` (RATIONALE_STYLES): "describe" is
    `rationale_for`; "scan" / "cued_scan" is `scan_rationale` (uncued / cued; its relation scan needs `scene`), and
    `rationale_for` for count questions. A relation scan must agree with `answer` (ValueError otherwise)."""
    if style not in RATIONALE_STYLES:
        raise ValueError(f"rationale style must be one of {RATIONALE_STYLES}, got {style!r}")
    if style == "describe":
        return rationale_for(caption, question, answer)
    scanned = scan_rationale(caption, question, scene, cued=style == "cued_scan")
    if scanned is None:
        return rationale_for(caption, question, answer)
    if _Q_REL.match(_normalize(question, "question")) and answer_question(scene, question) != _normalize(answer, "answer"):
        raise ValueError(f"the answer {answer!r} to {question!r} disagrees with the scene's positions")
    return scanned


def equivalent_captions(text: str) -> list[str]:
    """Every phrasing of the claim a caption makes: the text itself first, then for a two-object caption the
    same pair read from its second object (the opposite relation), for a three-object caption its other five
    object orders (it makes no spatial claim). Text outside the caption grammar: [text]. Used where a caption
    is scored against a captioner that writes one phrasing only (`lm.rerank`)."""
    parsed = parse_caption(text)
    if parsed is None:
        return [text]
    objects, relation = parsed["objects"], parsed["relation"]
    if len(objects) == 2:
        return [text, f"{phrase(objects[1])} {OPPOSITE[relation]} {phrase(objects[0])}"]
    if len(objects) == 3:
        orders = list(itertools.permutations(objects))[1:]
        return [text] + [f"{phrase(a)}, {phrase(b)} and {phrase(c)}" for a, b, c in orders]
    return [text]


def scene_matches_caption(objects: list[dict], caption: str) -> dict:
    """GenEval-style score of a (parsed) scene against a caption.

    Caption objects are matched one-to-one to scene objects by the assignment with the most
    agreeing attributes (ties: the relation holding). Sub-scores:
    - ``count``: the scene has exactly as many objects as the caption;
    - ``color`` / ``shape`` / ``size``: every caption object is matched and agrees on it;
    - ``relation``: 2-object captions only (else None): the matched objects satisfy it by centres;
    - ``correct``: all of the above that apply are True (the exact scene).
    """
    if not isinstance(objects, (list, tuple)):
        raise TypeError(f"objects must be a list of object dicts, got {type(objects).__name__}")
    parsed = parse_caption(caption)
    if parsed is None:
        raise ValueError(f"caption is not in the Shapes caption grammar: {caption!r}")
    want, relation = parsed["objects"], parsed["relation"]
    k, m = len(want), len(objects)
    best = None  # (score, relation_ok, pairs)
    if m >= k:
        candidates = [list(zip(range(k), perm)) for perm in itertools.permutations(range(m), k)]
    else:
        candidates = [list(zip(perm, range(m))) for perm in itertools.permutations(range(k), m)]
    for pairs in candidates:
        score = sum(sum(want[i][a] == objects[j][a] for a in ("color", "shape", "size")) for i, j in pairs)
        rel_ok = False
        if relation is not None and len(pairs) == 2:
            where = dict(pairs)
            rel_ok = relation_holds(objects[where[0]], objects[where[1]], relation)
        if best is None or (score, rel_ok) > best[:2]:
            best = (score, rel_ok, pairs)
    pairs = best[2] if best is not None else []
    matched = len(pairs) == k

    def agree(attr: str) -> bool:
        return matched and all(want[i][attr] == objects[j][attr] for i, j in pairs)

    result = {
        "count": m == k,
        "color": agree("color"),
        "shape": agree("shape"),
        "size": agree("size"),
        "relation": (matched and best[1]) if relation is not None else None,
    }
    result["correct"] = all(v for v in result.values() if v is not None)
    return result


HELDOUT_MODULUS = 10  # one 2-/3-object caption in ten is a held-out composition


def is_heldout_composition(caption: str) -> bool:
    """True for the fixed held-out tenth of the 2- and 3-object captions (CRC32 of the normalized
    text); 1-object captions are never held out (their scenes are new, the phrase is not)."""
    parsed = parse_caption(caption)
    if parsed is None:
        raise ValueError(f"caption is not in the Shapes caption grammar: {caption!r}")
    if len(parsed["objects"]) == 1:
        return False
    text = _normalize(caption, "caption").rstrip(".").rstrip()
    return zlib.crc32(text.encode("utf-8")) % HELDOUT_MODULUS == 0


def sample_prompts(num: int, seed: int = 0, exclude=None, image_size: int = 32, num_objects: int | None = None,
                   heldout: bool | None = None) -> list[str]:
    """``num`` distinct captions of random scenes, none of them in ``exclude`` (held-out prompts).

    ``num_objects`` (1-3) fixes the object count; ``heldout`` True keeps only held-out compositions
    (``is_heldout_composition``), False only the others, None either."""
    if not isinstance(num, (int, np.integer)) or num < 0:
        raise ValueError(f"num must be a non-negative int, got {num!r}")
    check_image_size(image_size)
    if num_objects is not None and num_objects not in (1, 2, 3):
        raise ValueError(f"num_objects must be 1, 2 or 3, got {num_objects!r}")
    if heldout and num_objects == 1:
        raise ValueError("1-object captions are never held-out compositions; use heldout=None for them")
    exclude = set() if exclude is None else set(exclude)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    limit = 1000 + 100 * num * (HELDOUT_MODULUS if heldout else 1)
    while len(out) < num:
        attempts += 1
        if attempts > limit:
            raise ValueError(f"could not find {num} distinct captions outside `exclude` (found {len(out)})")
        caption = caption_for(sample_scene(rng, image_size, num_objects), rng)
        if caption in exclude or caption in seen:
            continue
        if heldout is not None and is_heldout_composition(caption) != heldout:
            continue
        seen.add(caption)
        out.append(caption)
    return out
