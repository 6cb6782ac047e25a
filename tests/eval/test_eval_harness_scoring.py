"""The harness's scorers without a model: text-to-image on true vs shuffled renders, caption exact-scene
accuracy, Shapes VQA exact match, and the captioning / VQA runners driven by an oracle that reads the
true scene from the pixels (the scene parser is exact on clean renders)."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def scenes():
    from gaussiantoken.data.shapes import make_dataset

    return make_dataset(30, seed=11, image_size=32)


def test_text_to_image_scorer_true_images_score_100_and_shuffled_lower(scenes):
    from gaussiantoken.eval.text_to_image import score_text_to_image

    images, captions = list(scenes["image"]), list(scenes["caption"])
    true = score_text_to_image(images, captions)
    assert true["accuracy"] == 1.0 and true["num_images"] == 30
    for key in ("color", "shape", "size", "count"):
        assert true[key] == 1.0
    assert true["relation"] == 1.0  # 30 scenes hold 2-object captions
    assert set(true["accuracy_by_objects"].values()) == {1.0}

    shuffled = score_text_to_image(images[1:] + images[:1], captions)  # each image paired with another's caption
    assert shuffled["accuracy"] < 0.5
    assert 0.0 <= shuffled["count"] <= 1.0 and shuffled["color"] < 1.0

    # A [N, 3, H, W] tensor in [-1, 1] (the decoder's output) scores the same as the PIL images.
    from gaussiantoken.eval.feature_nets import image_to_tensor

    pixels = torch.stack([image_to_tensor(im) for im in images[:6]]) * 2 - 1
    assert score_text_to_image(pixels, captions[:6])["accuracy"] == 1.0
    # A blank canvas holds no object: count, color, shape, size all fail.
    blank = torch.full((1, 3, 32, 32), 24 / 127.5 - 1)
    assert score_text_to_image(blank, ["a large red circle"]) == {
        "accuracy": 0.0, "color": 0.0, "shape": 0.0, "size": 0.0, "count": 0.0, "relation": None,
        "accuracy_by_objects": {"1": 0.0}, "num_images": 1}


def test_text_to_image_scorer_input_errors(scenes):
    from gaussiantoken.eval.text_to_image import score_text_to_image, shapes_prompts

    with pytest.raises(ValueError, match="one prompt per image"):
        score_text_to_image(list(scenes["image"][:2]), ["a large red circle"])
    with pytest.raises(ValueError, match="caption grammar"):
        score_text_to_image(list(scenes["image"][:1]), ["a purple dog"])
    with pytest.raises(ValueError, match="no images"):
        score_text_to_image([], [])
    train = set(scenes["caption"])
    prompts = shapes_prompts(20, seed=3, exclude=train)
    assert len(set(prompts)) == 20 and not set(prompts) & train


def test_caption_exact_scene_accuracy(scenes):
    from gaussiantoken.eval.captioning import score_shapes_captions, shapes_caption_accuracy

    captions, objects = list(scenes["caption"]), list(scenes["objects"])
    assert shapes_caption_accuracy(captions, objects) == {"exact_scene_accuracy": 1.0, "grammatical_rate": 1.0}
    # Relation truth: the opposite relation describes the same objects but is false.
    i = next(k for k, c in enumerate(captions) if " to the left of " in c or " to the right of " in c)
    swapped = captions[i].replace(" to the left of ", " to the XX of ").replace(" to the right of ", " to the left of ")
    swapped = swapped.replace(" to the XX of ", " to the right of ")
    assert shapes_caption_accuracy([swapped], [objects[i]])["exact_scene_accuracy"] == 0.0
    # Ungrammatical text counts as wrong; shuffled captions mostly wrong.
    assert shapes_caption_accuracy(["a red thing"], [objects[0]]) == {"exact_scene_accuracy": 0.0, "grammatical_rate": 0.0}
    assert shapes_caption_accuracy(captions[1:] + captions[:1], objects)["exact_scene_accuracy"] < 0.5
    scores = score_shapes_captions(captions, captions, objects, metrics=("bleu", "rouge_l"))
    assert scores["bleu4"] == pytest.approx(1.0, abs=1e-6) and scores["rouge_l"] == pytest.approx(1.0)
    assert scores["exact_scene_accuracy"] == 1.0 and scores["num_images"] == 30
    with pytest.raises(ValueError, match="predictions"):
        shapes_caption_accuracy(captions[:2], objects[:3])


def test_shapes_vqa_scoring_true_answers(scenes):
    from gaussiantoken.eval.vqa import score_shapes_vqa, shapes_question_type

    ids = [(r, k) for r in range(len(scenes)) for k in range(len(scenes[r]["questions"]))]
    questions = {f"{r}_{k}": scenes[r]["questions"][k] for r, k in ids}
    answers = {f"{r}_{k}": scenes[r]["answers"][k] for r, k in ids}
    out = score_shapes_vqa(dict(answers), answers, questions)
    assert out["accuracy"] == 1.0 and out["num_questions"] == len(ids)
    assert set(out["per_question_type"]) <= {"color", "shape", "size", "count", "relation"}
    assert set(out["per_question_type"].values()) == {1.0}
    wrong = {k: ("no" if v == "yes" else "yes") for k, v in answers.items()}
    assert score_shapes_vqa(wrong, answers, questions)["accuracy"] == 0.0
    assert shapes_question_type("How many objects are there?") == "count"
    with pytest.raises(ValueError, match="differ"):
        score_shapes_vqa({"0_0": "red"}, answers, questions)


def _oracle_generate_text(model, processor, images, prompts=None, max_new_tokens=32, batch_size=32):
    """Reads the scene off the pixels: the true caption / answer for clean renders."""
    from gaussiantoken.data.shapes import answer_question, caption_for, parse_scene

    scenes = [parse_scene(im) for im in images]
    if prompts is None:
        return [caption_for(s) for s in scenes]
    return [answer_question(s, q) for s, q in zip(scenes, prompts)]


def test_captioning_and_vqa_runners_with_oracle(scenes, monkeypatch):
    import gaussiantoken.lm.generation as generation
    from gaussiantoken.eval.captioning import run_captioning
    from gaussiantoken.eval.vqa import run_vqa

    monkeypatch.setattr(generation, "generate_text", _oracle_generate_text)
    ds = scenes.select(range(12))
    scores, preds = run_captioning(None, None, ds, metrics=("bleu", "cider"), batch_size=5)
    assert scores["exact_scene_accuracy"] == 1.0 and scores["grammatical_rate"] == 1.0
    assert len(preds) == 12 and 0.0 <= scores["bleu4"] <= 1.0 and scores["cider"] >= 0.0
    vqa, answers = run_vqa(None, None, ds, batch_size=4)
    assert vqa["accuracy"] == 1.0 and vqa["num_questions"] == sum(len(q) for q in ds["questions"])
    assert answers["0_0"] == ds[0]["answers"][0]
