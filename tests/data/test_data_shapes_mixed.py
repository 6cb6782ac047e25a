"""Shapes drawn by a mix of renderers plus colour noise (data/shapes_mixed.py) and its config route."""

import numpy as np
import pytest

from gaussiantoken.data import loaders
from gaussiantoken.data.shapes import make_dataset
from gaussiantoken.data.shapes_mixed import make_mixed_dataset, renderer_counts
from gaussiantoken.data.shapes_world import BACKGROUND, COLORS

PALETTE = {tuple(c) for c in COLORS.values()} | {tuple(BACKGROUND)}


def _pixels(ds) -> np.ndarray:
    return np.stack([np.asarray(im) for im in ds["image"]])  # [N, S, S, 3] uint8


def _off_palette(image: np.ndarray) -> int:
    return sum(tuple(p) not in PALETTE for p in image.reshape(-1, 3))


def test_pixel_only_without_noise_is_make_dataset():
    mixed, plain = make_mixed_dataset(12, seed=4), make_dataset(12, seed=4)
    assert mixed.features == plain.features
    assert np.array_equal(_pixels(mixed), _pixels(plain))
    for column in ("caption", "objects", "questions", "answers"):
        assert list(mixed[column]) == list(plain[column])


def test_half_antialiased_rows_exact_count_and_the_pixel_rows_unchanged():
    mixed = make_mixed_dataset(40, seed=5, num_questions=0, renderers={"pixel": 0.5, "antialiased": 0.5})
    plain = make_dataset(40, seed=5, num_questions=0)
    got, ref = _pixels(mixed), _pixels(plain)
    same = [np.array_equal(a, b) for a, b in zip(got, ref)]
    assert sum(same) == 20  # exactly half drawn by our renderer, identical to make_dataset's pictures
    assert list(mixed["caption"]) == list(plain["caption"])
    for keep, image, objs, truth in zip(same, got, mixed["objects"], plain["objects"]):
        if keep:
            assert objs == truth and _off_palette(image) == 0
        else:  # blended edges; same objects, centres moved by at most the jitter
            assert _off_palette(image) > 0
            assert [(o["shape"], o["color"], o["size"]) for o in objs] == \
                   [(o["shape"], o["color"], o["size"]) for o in truth]
            assert all(abs(o["x"] - t["x"]) <= 0.5 and abs(o["y"] - t["y"]) <= 0.5 for o, t in zip(objs, truth))
            assert any(o["x"] != t["x"] or o["y"] != t["y"] for o, t in zip(objs, truth))


def test_deterministic_by_seed():
    spec = dict(num_questions=0, renderers={"pixel": 1, "antialiased": 2}, color_noise=0.03)
    a, b = make_mixed_dataset(16, seed=7, **spec), make_mixed_dataset(16, seed=7, **spec)
    assert np.array_equal(_pixels(a), _pixels(b)) and list(a["objects"]) == list(b["objects"])
    c = make_mixed_dataset(16, seed=8, **spec)
    assert not np.array_equal(_pixels(a), _pixels(c))


def test_color_noise_has_the_asked_spread():
    clean = _pixels(make_dataset(30, seed=2, num_questions=0)).astype(np.float64)
    noisy = _pixels(make_mixed_dataset(30, seed=2, num_questions=0, color_noise=0.02)).astype(np.float64)
    inner = (clean > 10) & (clean < 245)  # away from the clip at 0 / 255
    diff = (noisy - clean)[inner]
    assert abs(diff.mean()) < 0.2 and abs(diff.std() - 0.02 * 255) < 0.3


def test_renderer_counts_largest_remainder():
    assert renderer_counts({"pixel": 1.0, "antialiased": 1.0}, 5) == {"pixel": 3, "antialiased": 2}
    assert renderer_counts({"pixel": 1.0, "antialiased": 2.0}, 10) == {"pixel": 3, "antialiased": 7}
    assert renderer_counts({"antialiased": 1.0}, 4) == {"antialiased": 4}
    assert sum(renderer_counts({"pixel": 0.3, "antialiased": 0.7}, 4097).values()) == 4097


@pytest.mark.parametrize("bad, message", [
    ({"renderers": {"pixels": 1}}, "unknown renderer 'pixels'"),
    ({"renderers": {"pixel": -0.5}}, r"renderers.pixel: weight must be a number >= 0, got -0.5"),
    ({"renderers": {"pixel": "half"}}, "renderers.pixel: weight"),
    ({"renderers": {"pixel": 0, "antialiased": 0}}, "must not all be 0"),
    ({"renderers": ["pixel"]}, "renderers must be a non-empty mapping"),
    ({"color_noise": 0.5}, r"color_noise must be a number in \[0, 0.25\].*got 0.5"),
    ({"color_noise": -0.1}, "color_noise"),
    ({"renderers": {"antialiased": 1}, "jitter": 3.0}, "jitter"),
])
def test_bad_arguments_one_line_errors(bad, message):
    with pytest.raises(ValueError, match=message) as err:
        make_mixed_dataset(2, seed=0, **bad)
    assert "\n" not in str(err.value)


def test_load_dataset_from_config_routes_the_mixed_keys():
    spec = {"name": "shapes", "num_samples": 6, "seed": 3, "num_questions": 0,
            "renderers": {"pixel": 0.5, "antialiased": 0.5}, "color_noise": 0.01}
    ds = loaders.load_dataset_from_config(spec)
    direct = make_mixed_dataset(6, seed=3, num_questions=0, renderers={"pixel": 0.5, "antialiased": 0.5},
                                color_noise=0.01)
    assert np.array_equal(_pixels(ds), _pixels(direct))
    plain = loaders.load_dataset_from_config({"name": "shapes", "num_samples": 6, "seed": 3, "num_questions": 0})
    assert np.array_equal(_pixels(plain), _pixels(make_dataset(6, seed=3, num_questions=0)))
    with pytest.raises(TypeError, match="bad arguments.*colour_noise"):
        loaders.load_dataset_from_config({"name": "shapes", "num_samples": 2, "colour_noise": 0.1})
    with pytest.raises(ValueError, match="unknown renderer 'blur'"):
        loaders.load_dataset_from_config({"name": "shapes", "num_samples": 2, "renderers": {"blur": 1}})
