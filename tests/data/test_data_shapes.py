"""Shapes world: scene sampling, rendering (palette exactness, geometry) and make_dataset."""

import numpy as np
import pytest
from PIL import Image

from gaussiantoken.data import shapes
from gaussiantoken.data.shapes_world import GAP, object_side


def _boxes(scene, s):
    out = []
    for o in scene:
        n = object_side(o["size"], s)
        out.append((o["x"] - n / 2, o["y"] - n / 2, n))
    return out


def test_constants_match_design():
    assert shapes.BACKGROUND == (24, 24, 24)
    assert shapes.COLORS["red"] == (220, 40, 40) and shapes.COLORS["cyan"] == (40, 200, 210)
    assert len(shapes.COLORS) == 7 and shapes.SHAPES == ("circle", "square", "triangle")
    assert shapes.SIZES == ("small", "large")
    assert shapes.RELATIONS == ("to the left of", "to the right of", "above", "below")
    assert (object_side("small", 32), object_side("large", 32)) == (8, 14)
    assert (object_side("small", 64), object_side("large", 64)) == (16, 29)


@pytest.mark.parametrize("s", [32, 64])
def test_scenes_valid_and_non_overlapping(s):
    rng = np.random.default_rng(3)
    counts = set()
    for _ in range(300):
        scene = shapes.sample_scene(rng, s)
        counts.add(len(scene))
        assert scene == shapes.canonical_order(scene)
        assert len({(o["color"], o["shape"]) for o in scene}) == len(scene)
        boxes = _boxes(scene, s)
        for left, top, n in boxes:
            assert left == int(left) and top == int(top) and 0 <= left <= s - n and 0 <= top <= s - n
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                (la, ta, na), (lb, tb, nb) = boxes[i], boxes[j]
                gap_x = max(lb - (la + na), la - (lb + nb))
                gap_y = max(tb - (ta + na), ta - (tb + nb))
                assert max(gap_x, gap_y) >= GAP
    assert counts == {1, 2, 3}


def test_scenes_on_centres_sit_on_them_and_stay_valid():
    from gaussiantoken.data.shapes_world import sample_scenes_on

    s = 32
    centres = [((k + 0.5) * s / 6, (r + 0.5) * s / 6) for r in range(6) for k in range(6)]  # a 6 x 6 anchor grid
    rng = np.random.default_rng(0)
    scenes = sample_scenes_on(rng, 300, centres, s)
    assert scenes == sample_scenes_on(np.random.default_rng(0), 300, centres, s)  # deterministic by the rng
    used, counts = set(), set()
    for scene in scenes:
        counts.add(len(scene))
        assert scene == shapes.canonical_order(scene) and len({(o["color"], o["shape"]) for o in scene}) == len(scene)
        boxes = _boxes(scene, s)
        for (left, top, n), o in zip(boxes, scene):
            assert left == int(left) and top == int(top) and 0 <= left <= s - n and 0 <= top <= s - n
            # the centre is the nearest box centre to one of the given centres (within half a pixel)
            assert min(max(abs(o["x"] - cx), abs(o["y"] - cy)) for cx, cy in centres) <= 0.5
            used.add((o["x"], o["y"]))
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                (la, ta, na), (lb, tb, nb) = boxes[i], boxes[j]
                assert max(lb - (la + na), la - (lb + nb), tb - (ta + na), ta - (tb + nb)) >= GAP
    # both sizes fit the 4 x 4 inner anchors (8, 13, 19, 24 px): every one of them is used, the border ones never
    assert counts == {1, 2, 3} and {x for x, _ in used} == {8.0, 13.0, 19.0, 24.0}
    with pytest.raises(ValueError, match="no centre"):
        sample_scenes_on(rng, 1, [(1.0, 1.0)], s)
    with pytest.raises(ValueError, match="cannot hold"):  # one position cannot hold a second object
        sample_scenes_on(np.random.default_rng(1), 50, [(16.0, 16.0)], s)


def test_render_palette_exact_and_geometry():
    scene = [
        {"shape": "square", "color": "red", "size": "small", "x": 6.0, "y": 6.0},
        {"shape": "circle", "color": "blue", "size": "large", "x": 22.0, "y": 9.0},
        {"shape": "triangle", "color": "white", "size": "large", "x": 10.0, "y": 24.0},
    ]
    img = shapes.render_scene(scene, 32)
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    arr = np.asarray(img)
    allowed = {shapes.BACKGROUND, *shapes.COLORS.values()}
    assert {tuple(int(c) for c in p) for p in arr.reshape(-1, 3)} == {
        shapes.BACKGROUND, (220, 40, 40), (50, 90, 230), (235, 235, 235)} <= allowed
    red = (arr == (220, 40, 40)).all(-1)
    assert red.sum() == 64 and red[2:10, 2:10].all()  # 8x8 square at columns/rows 2..9
    blue = (arr == (50, 90, 230)).all(-1)
    ys, xs = np.nonzero(blue)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (2, 15, 15, 28)  # 14x14 box
    assert abs(blue.sum() / 196 - np.pi / 4) < 0.03
    assert not blue[2, 15] and blue[2 + 7, 15]  # corner empty, middle of the left edge filled
    white = (arr == (235, 235, 235)).all(-1)
    rows = white[17:31, 3:17].sum(1)  # triangle box rows 17..30, cols 3..16
    assert rows[0] == 2 and rows[-1] == 14 and np.all(np.diff(rows) >= 0)
    assert white.sum() == rows.sum()


def test_render_rejects_bad_objects():
    with pytest.raises(ValueError, match="color"):
        shapes.render_scene([{"shape": "circle", "color": "orange", "size": "small", "x": 5, "y": 5}])
    with pytest.raises(ValueError, match="image_size"):
        shapes.render_scene([], image_size=8)


def test_make_dataset_columns_determinism_and_seeds():
    a = shapes.make_dataset(40, seed=5)
    b = shapes.make_dataset(40, seed=5)
    c = shapes.make_dataset(40, seed=6)
    assert a.column_names == ["image", "caption", "objects", "questions", "answers"]
    assert a["caption"] == b["caption"] and a["objects"] == b["objects"] and a["questions"] == b["questions"]
    assert a["caption"] != c["caption"]
    row = a[0]
    assert isinstance(row["image"], Image.Image) and row["image"].mode == "RGB" and row["image"].size == (32, 32)
    assert np.array_equal(np.asarray(a[3]["image"]), np.asarray(b[3]["image"]))
    for row in a:
        assert np.array_equal(np.asarray(row["image"]), shapes.render_array(row["objects"], 32))
        assert row["objects"] == shapes.parse_scene(row["image"])
        assert 1 <= len(row["questions"]) == len(row["answers"]) <= 3


def test_make_dataset_2000_fast_and_balanced():
    import time

    t = time.perf_counter()
    ds = shapes.make_dataset(2000, seed=0, image_size=32)
    elapsed = time.perf_counter() - t
    assert len(ds) == 2000 and elapsed < 30.0  # generous: shared CPUs
    yes = sum(a == "yes" for ans in ds["answers"] for a in ans)
    no = sum(a == "no" for ans in ds["answers"] for a in ans)
    assert yes + no > 300 and abs(yes - no) / (yes + no) < 0.1
    counts = np.bincount([len(o) for o in ds["objects"]], minlength=4)
    assert counts[0] == 0 and all(abs(c / 2000 - 1 / 3) < 0.05 for c in counts[1:])


def test_make_dataset_other_size_and_bad_args():
    ds = shapes.make_dataset(5, seed=1, image_size=64)
    assert ds[0]["image"].size == (64, 64)
    with pytest.raises(ValueError, match="num_samples"):
        shapes.make_dataset(-1)
    with pytest.raises(ValueError, match="image_size"):
        shapes.make_dataset(3, image_size=10)


def test_encode_png_roundtrip_and_off_canvas_clipping():
    import io

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, size=(4, 9, 13, 3), dtype=np.uint8)
    for arr, data in zip(arrays, shapes.encode_png(arrays)):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), arr)
    partly_out = [{"shape": "square", "color": "cyan", "size": "small", "x": 1.0, "y": 30.0}]
    arr = shapes.render_array(partly_out, 32)
    assert (arr == shapes.COLORS["cyan"]).all(-1).sum() == 5 * 6  # columns 0..4, rows 26..31
