"""Structured held-out text-to-image sets: one-object prompts, unseen 2- / 3-object compositions (the hash
rule the training stream skips), per-set scoring, and the parser's reading for grid captions."""

import numpy as np
import pytest

from gaussiantoken.data.shapes_text import is_heldout_composition, parse_caption, sample_prompts
from gaussiantoken.eval.text_to_image import parsed_description, prompt_sets, score_prompt_sets


def test_heldout_rule_is_a_stable_tenth_of_multi_object_captions():
    many = sample_prompts(600, seed=0)
    multi = [c for c in many if len(parse_caption(c)["objects"]) > 1]
    share = np.mean([is_heldout_composition(c) for c in multi])
    assert 0.05 < share < 0.16, share
    assert not any(is_heldout_composition(c) for c in many if len(parse_caption(c)["objects"]) == 1)
    c = next(c for c in multi if is_heldout_composition(c))
    assert is_heldout_composition(c.upper() + ".")  # normalized like the parser
    with pytest.raises(ValueError, match="grammar"):
        is_heldout_composition("a purple blob")


def test_prompt_sets_by_object_count():
    sets = prompt_sets(12, seed=3, exclude={"a small red circle to the left of a large blue square"})
    assert sets == prompt_sets(12, seed=3, exclude={"a small red circle to the left of a large blue square"})
    assert [len(v) for v in sets.values()] == [12, 12, 12]
    for name, k in (("one", 1), ("two_unseen", 2), ("three_unseen", 3)):
        assert all(len(parse_caption(p)["objects"]) == k for p in sets[name])
        assert len(set(sets[name])) == len(sets[name])
    assert all(is_heldout_composition(p) for p in sets["two_unseen"] + sets["three_unseen"])
    assert len(prompt_sets(100)["one"]) == 42  # every 1-object caption, once
    with pytest.raises(ValueError):
        sample_prompts(3, num_objects=1, heldout=True)


def test_per_set_scores_and_parsed_description():
    from gaussiantoken.data.shapes import render_scene
    from gaussiantoken.data.shapes_world import sample_scene
    from gaussiantoken.data.shapes_text import caption_for

    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, 32, num_objects=k) for k in (1, 2, 3)]
    images = [render_scene(s, 32) for s in scenes]
    captions = [caption_for(s, rng) for s in scenes]
    sets = {"one": [captions[0]], "two_unseen": [captions[1]], "three_unseen": [captions[2]]}
    scores = score_prompt_sets(images, sets)
    assert scores["all"]["accuracy"] == 1.0 and all(scores[k]["accuracy"] == 1.0 for k in sets)
    wrong = {"one": [captions[0]], "two_unseen": [captions[2]], "three_unseen": [captions[1]]}
    swapped = score_prompt_sets([images[0], images[2], images[1]], {"one": [captions[0]], **{
        k: v for k, v in sets.items() if k != "one"}})
    assert swapped["one"]["accuracy"] == 1.0 and swapped["two_unseen"]["accuracy"] == 0.0
    assert score_prompt_sets(images, wrong)["all"]["accuracy"] == pytest.approx(1 / 3)
    text = parsed_description(images[1])
    assert text.startswith("2: ") and all(f"{o['size']} {o['color']} {o['shape']}" in text for o in scenes[1])


def test_harness_config_prompt_sets(tmp_path):
    from pathlib import Path

    from gaussiantoken.eval.run import load_config
    from gaussiantoken.eval.tasks.text_to_image import text_to_image_prompts

    config = Path(__file__).resolve().parents[2] / "configs" / "eval" / "shapes.yaml"
    cfg = load_config(config, ["text_to_image.prompt_sets=true", "text_to_image.num_prompts=5",
                               "text_to_image.exclude_data=null"])
    prompts, sets = text_to_image_prompts(cfg.text_to_image, 32, sets=True)
    assert list(sets) == ["one", "two_unseen", "three_unseen"] and prompts == [p for v in sets.values() for p in v]
    assert text_to_image_prompts(cfg.text_to_image, 32) == prompts
    plain = load_config(config, ["text_to_image.num_prompts=5", "text_to_image.exclude_data=null"])
    assert text_to_image_prompts(plain.text_to_image, 32, sets=True)[1] is None
    with pytest.raises((ValueError, TypeError), match="prompt_sets"):
        load_config(config, ["text_to_image.prompt_sets=3"])


def test_eval_recipe_samples_with_the_shared_defaults():
    """configs/eval/shapes.yaml spells out the text-to-image sampling (so reports show it); it must be the one
    in lm/sampling_defaults.py that the pipeline, CLI and benches use."""
    from pathlib import Path

    from gaussiantoken.eval.run import load_config
    from gaussiantoken.lm.sampling_defaults import T2I_GUIDANCE_SCALE, T2I_TEMPERATURE

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "eval" / "shapes.yaml", [])
    assert (cfg.text_to_image.guidance_scale, cfg.text_to_image.temperature) == (T2I_GUIDANCE_SCALE, T2I_TEMPERATURE)
