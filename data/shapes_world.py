"""The Shapes world's vocabulary and geometry: palette, shapes, sizes, relations, scene sampling.

A *scene* is a list of 1-3 objects, each a dict ``{shape, color, size, x, y}``:
- ``shape`` in SHAPES, ``color`` a key of COLORS, ``size`` in SIZES;
- ``x``, ``y``: the centre of the object's bounding box in pixel units, as Python floats, with
  pixel column j covering [j, j + 1) (so an object whose box spans columns [left, left + n) has
  x = left + n / 2; y grows downward). Values are integers or half-integers.
The bounding box of an object is an n x n square of pixels, n = ``object_side(size, S)``
(about 0.25 S for small, 0.45 S for large). Objects never overlap: any two bounding boxes are
separated by at least ``GAP`` background pixels horizontally or vertically. Within a scene the
(color, shape) pairs are distinct, so "the red circle" always names exactly one object.
Scenes are stored in the canonical order: sorted by centre x, then centre y (left to right).
"""

from __future__ import annotations

import numpy as np

BACKGROUND = (24, 24, 24)
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "magenta": (210, 60, 210),
    "cyan": (40, 200, 210),
    "white": (235, 235, 235),
}
COLOR_NAMES = tuple(COLORS)
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
SIZE_FRACTIONS = {"small": 0.25, "large": 0.45}
RELATIONS = ("to the left of", "to the right of", "above", "below")
OPPOSITE = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
GAP = 2  # minimum background pixels between two bounding boxes (on one axis at least)
MIN_IMAGE_SIZE = 16


def check_image_size(image_size: int) -> int:
    if not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    return int(image_size)


def object_side(size: str, image_size: int) -> int:
    """Side n (pixels) of the square bounding box of an object of this size on an S x S canvas."""
    if size not in SIZE_FRACTIONS:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return max(3, int(round(SIZE_FRACTIONS[size] * image_size)))


def count_word(n: int) -> str:
    return COUNT_WORDS[n] if 0 <= n < len(COUNT_WORDS) else str(n)


def canonical_order(objects: list[dict]) -> list[dict]:
    """Objects sorted left to right by centre x, ties broken by centre y (top first)."""
    return sorted(objects, key=lambda o: (float(o["x"]), float(o["y"])))


def relation_holds(a: dict, b: dict, relation: str) -> bool:
    """True when ``a <relation> b`` holds for the two centres (y grows downward)."""
    if relation == "to the left of":
        return float(a["x"]) < float(b["x"])
    if relation == "to the right of":
        return float(a["x"]) > float(b["x"])
    if relation == "above":
        return float(a["y"]) < float(b["y"])
    if relation == "below":
        return float(a["y"]) > float(b["y"])
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


def clear_relations(a: dict, b: dict) -> list[str]:
    """Relations of ``a`` to ``b`` that hold unambiguously.

    An axis is *clear* when the centres differ along it by at least half of the larger of the two
    centre offsets (and by more than zero); the axis of the larger offset is always clear. For each
    clear axis the true relation is returned (x axis first).
    """
    dx = float(b["x"]) - float(a["x"])
    dy = float(b["y"]) - float(a["y"])
    big = max(abs(dx), abs(dy))
    out = []
    if abs(dx) > 0 and abs(dx) >= 0.5 * big:
        out.append("to the left of" if dx > 0 else "to the right of")
    if abs(dy) > 0 and abs(dy) >= 0.5 * big:
        out.append("above" if dy > 0 else "below")
    return out


def _separated(la, ta, na, lb, tb, nb) -> np.ndarray:
    """Elementwise: are the boxes (left, top, side) a and b at least GAP pixels apart on one axis?"""
    gap_x = np.maximum(lb - (la + na), la - (lb + nb))
    gap_y = np.maximum(tb - (ta + na), ta - (tb + nb))
    return (gap_x >= GAP) | (gap_y >= GAP)


def sample_scenes(rng: np.random.Generator, num: int, image_size: int = 32, num_objects: int | None = None) -> list[list[dict]]:
    """``num`` random scenes (canonical order), vectorized over scenes.

    Per scene: the object count is uniform in {1, 2, 3} (or ``num_objects``), the (color, shape)
    pairs are distinct and uniform, sizes uniform. Objects are placed largest first, each at the
    first of ``tries`` uniform candidate positions that keeps GAP pixels from those already placed;
    a scene whose placement fails is placed again (new sizes after repeated failures).
    """
    s = check_image_size(image_size)
    if not isinstance(num, (int, np.integer)) or num < 0:
        raise ValueError(f"num must be a non-negative int, got {num!r}")
    if num_objects is not None and num_objects not in (1, 2, 3):
        raise ValueError(f"num_objects must be 1, 2 or 3, got {num_objects!r}")
    tries = 64
    side_of = np.array([object_side(z, s) for z in SIZES])  # [2]
    k = rng.integers(1, 4, size=num) if num_objects is None else np.full(num, int(num_objects))  # [N]
    pairs = np.argsort(rng.random((num, len(COLOR_NAMES) * len(SHAPES))), axis=1)[:, :3]  # [N, 3] distinct
    sizes = np.sort(rng.integers(0, 2, size=(num, 3)), axis=1)[:, ::-1].copy()  # [N, 3] large first
    left = np.zeros((num, 3), dtype=np.int64)
    top = np.zeros((num, 3), dtype=np.int64)
    todo = np.arange(num)
    rounds = 0
    while todo.size:
        rounds += 1
        if rounds % 8 == 0:  # persistent failures: draw new sizes for the remaining scenes
            sizes[todo] = np.sort(rng.integers(0, 2, size=(todo.size, 3)), axis=1)[:, ::-1]
        n = side_of[sizes[todo]]  # [m, 3]
        ok = np.ones(todo.size, dtype=bool)
        for slot in range(3):
            span = (s - n[:, slot] + 1)[:, None]  # [m, 1]
            cand_l = (rng.random((todo.size, tries)) * span).astype(np.int64)  # [m, T]
            cand_t = (rng.random((todo.size, tries)) * span).astype(np.int64)  # [m, T]
            valid = np.ones_like(cand_l, dtype=bool)  # [m, T]
            for prev in range(slot):
                valid &= _separated(cand_l, cand_t, n[:, slot:slot + 1], left[todo, prev:prev + 1],
                                    top[todo, prev:prev + 1], n[:, prev:prev + 1])
            first = valid.argmax(1)  # [m]
            active = slot < k[todo]
            ok &= valid.any(1) | ~active
            rows = np.arange(todo.size)
            left[todo, slot] = np.where(active, cand_l[rows, first], 0)
            top[todo, slot] = np.where(active, cand_t[rows, first], 0)
        todo = todo[~ok]
    sides = side_of[sizes]  # [N, 3]
    cx = (left + sides / 2.0).tolist()  # [N, 3] python floats
    cy = (top + sides / 2.0).tolist()
    shape_l, color_l = (pairs % len(SHAPES)).tolist(), (pairs // len(SHAPES)).tolist()
    size_l, k_l = sizes.tolist(), k.tolist()
    scenes = []
    for i in range(num):
        objects = [
            {"shape": SHAPES[shape_l[i][j]], "color": COLOR_NAMES[color_l[i][j]], "size": SIZES[size_l[i][j]],
             "x": cx[i][j], "y": cy[i][j]}
            for j in range(k_l[i])
        ]
        scenes.append(canonical_order(objects))
    return scenes


def sample_scenes_on(rng: np.random.Generator, num: int, centres, image_size: int = 32) -> list[list[dict]]:
    """``num`` random scenes like ``sample_scenes`` (same counts, attributes and canonical order) whose object
    centres are taken from ``centres`` [(x, y), ...] (pixel units), each rounded to the nearest centre an
    object box can have (x = left + n / 2, integer left). Objects are placed largest first, each at a random
    centre where its box fits the canvas and keeps GAP pixels from those already placed; a scene that does
    not fit is replaced by another with as many objects (so the object counts stay uniform; like
    ``sample_scenes`` this favours small objects in crowded scenes), a ValueError after 100 tries.
    For the text-to-image targets of `data.t2i_positions: lattice` (`lm.stream`): objects centred on the
    image tokenizer's anchors are coded alike wherever they sit."""
    s = check_image_size(image_size)
    pts = np.asarray(centres, dtype=np.float64).reshape(-1, 2)  # [P, 2]
    if pts.shape[0] == 0:
        raise ValueError("sample_scenes_on needs at least one centre")
    boxes = {}  # size -> [Q, 2] (left, top) of the boxes centred on the usable centres
    for size in SIZES:
        n = object_side(size, s)
        lt = np.unique(np.rint(pts - n / 2.0).astype(np.int64), axis=0)  # [P', 2]
        lt = lt[((lt >= 0) & (lt <= s - n)).all(1)]
        if lt.shape[0] == 0:
            raise ValueError(f"no centre in {centres!r} holds a {size} object on a {s} x {s} canvas")
        boxes[size] = lt

    def place(scene: list[dict]) -> bool:  # in place; False when an object finds no free centre
        placed = []
        for obj in sorted(scene, key=lambda o: -object_side(o["size"], s)):
            n = object_side(obj["size"], s)
            cand = boxes[obj["size"]][rng.permutation(boxes[obj["size"]].shape[0])]  # [Q, 2]
            ok = np.ones(cand.shape[0], dtype=bool)
            for pl, pt, pn in placed:
                ok &= _separated(cand[:, 0], cand[:, 1], n, pl, pt, pn)
            if not ok.any():
                return False
            left, top = (int(v) for v in cand[int(ok.argmax())])
            placed.append((left, top, n))
            obj.update(x=left + n / 2.0, y=top + n / 2.0)
        return True

    scenes: list[list[dict]] = []
    for scene in sample_scenes(rng, num, s):
        for _ in range(100):  # a scene that does not fit: another one with as many objects (the counts stay uniform)
            if place(scene):
                break
            scene = sample_scenes(rng, 1, s, num_objects=len(scene))[0]
        else:
            raise ValueError(f"the centres {[tuple(p) for p in pts.tolist()]} cannot hold {len(scene)} objects")
        scenes.append(canonical_order(scene))
    return scenes


def sample_scene(rng: np.random.Generator, image_size: int = 32, num_objects: int | None = None) -> list[dict]:
    """One random scene (see ``sample_scenes``)."""
    return sample_scenes(rng, 1, image_size, num_objects)[0]
