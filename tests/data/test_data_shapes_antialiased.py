"""The anti-aliased, sub-pixel Shapes renderer (data/shapes_antialiased.py) against the default one."""

import numpy as np
import pytest

from gaussiantoken.data.shapes import make_dataset, parse_scene, render_batch, sample_scenes
from gaussiantoken.data.shapes_antialiased import make_antialiased_dataset, render_batch_antialiased
from gaussiantoken.data.shapes_world import BACKGROUND, COLORS


def _scenes(n=20, seed=0):
    return sample_scenes(np.random.default_rng(seed), n, 32)


def test_supersample_one_without_jitter_is_the_default_renderer():
    scenes = _scenes()
    aa, moved = render_batch_antialiased(scenes, 32, supersample=1, jitter=0.0)
    assert np.array_equal(aa, render_batch(scenes, 32))
    assert moved == [[dict(o) for o in s] for s in scenes]


def test_edges_are_blended_and_centres_move_by_at_most_jitter():
    scenes = _scenes()
    aa, moved = render_batch_antialiased(scenes, 32, supersample=8, jitter=0.5, seed=1)
    hard = render_batch(scenes, 32)
    palette = {tuple(c) for c in COLORS.values()} | {tuple(BACKGROUND)}
    blended = sum((tuple(p) not in palette) for p in aa.reshape(-1, 3))
    assert blended > 100 and not np.array_equal(aa, hard)
    assert all(tuple(p) in palette for p in hard.reshape(-1, 3))
    for a, b in zip(scenes, moved):
        for o, m in zip(a, b):
            assert abs(m["x"] - o["x"]) <= 0.5 and abs(m["y"] - o["y"]) <= 0.5 and m["shape"] == o["shape"]
    again, _ = render_batch_antialiased(scenes, 32, supersample=8, jitter=0.5, seed=1)
    assert np.array_equal(aa, again)  # deterministic by seed


def test_the_pictures_still_parse_to_their_scenes_mostly():
    ds = make_antialiased_dataset(40, seed=3)
    truth = make_dataset(40, seed=3, num_questions=0)
    assert ds["caption"] == truth["caption"]
    ok = sum(len(parse_scene(im)) == len(objs) for im, objs in zip(ds["image"], ds["objects"]))
    assert ok >= 30


def test_bad_arguments():
    with pytest.raises(ValueError, match="supersample"):
        render_batch_antialiased(_scenes(1), 32, supersample=0)
    with pytest.raises(ValueError, match="jitter"):
        render_batch_antialiased(_scenes(1), 32, jitter=2.0)
