"""bench/vqa_probe.py: its rates on answerers of known behaviour (a truthful describe-then-answer one, one that
answers about the first object whatever is asked), and the command end to end in a fresh process."""

import json
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def _answerer(mode: str):
    """A stand-in for generate_text that reads the scene off the (exactly parsable) Shapes image."""
    import numpy as np

    from gaussiantoken.data.shapes import parse_scene
    from gaussiantoken.data.shapes_text import answer_question, caption_for, styled_rationale
    from gaussiantoken.data.shapes_world import canonical_order
    from gaussiantoken.lm import sequences

    def generate(model, processor, images, prompts, full_reply=False, **kwargs):  # as generate_text
        out = []
        for image, q in zip(images, prompts):
            objects = parse_scene(np.asarray(image))
            truth = answer_question(objects, q)
            if mode in ("describe", "scan"):  # truthful, with this rationale style
                caption = caption_for(canonical_order(objects))
                reply = sequences.reasoned_answer(styled_rationale(caption, q, truth, mode, objects), truth)
                out.append(reply if full_reply else sequences.final_answer(reply))
            elif mode in ("positions", "flipped"):  # relations: a positions reply, its answer flipped when "flipped"
                from gaussiantoken.data.shapes_positions import relation_positions

                rationale = relation_positions(objects, q, np.asarray(image).shape[0])
                if rationale is None:
                    out.append(truth)
                    continue
                said = {"yes": "no", "no": "yes"}[truth] if mode == "flipped" else truth
                reply = sequences.reasoned_answer(rationale, said)
                out.append(reply if full_reply else sequences.final_answer(reply))
            else:  # about the first object, whatever the question names
                first = canonical_order(objects)[0]
                kind = q.split()[1]
                out.append(first[kind] if kind in ("color", "shape", "size") else truth)
        return out

    return generate


def test_probe_rates_on_known_answerers(lm_dir, monkeypatch):
    import vqa_probe

    import gaussiantoken.lm.generation as generation

    monkeypatch.setattr(generation, "generate_text", _answerer("describe"))
    rows = vqa_probe.probe(str(lm_dir), scenes=30)
    assert {r["kind"] for r in rows} == {"color", "shape", "size", "count", "relation"}
    assert all(r["answer"] == 1.0 and r["rationale"] == 1.0 for r in rows)
    assert all(r["consistent"] == 1.0 for r in rows if r["kind"] in ("color", "shape", "size"))
    monkeypatch.setattr(generation, "generate_text", _answerer("scan"))  # scan replies: true under --style scan only
    rows = vqa_probe.probe(str(lm_dir), scenes=30, style="scan")
    assert all(r["answer"] == 1.0 and r["rationale"] == 1.0 for r in rows)
    assert all(r["consistent"] == 1.0 for r in rows if r["kind"] in ("color", "shape", "size"))
    rows = vqa_probe.probe(str(lm_dir), scenes=30)
    assert any(r["rationale"] < 1.0 for r in rows if r["kind"] == "relation")
    monkeypatch.setattr(generation, "generate_text", _answerer("positions"))  # relation positions replies
    rows = vqa_probe.probe(str(lm_dir), scenes=30, style="positions")
    assert all(r["answer"] == 1.0 for r in rows)
    relations = [r for r in rows if r["kind"] == "relation"]
    assert relations and all(r["rationale"] == 1.0 and r["consistent"] == 1.0 for r in relations)
    assert all(r["digits"] == {"right": 1.0} for r in relations)
    assert all("rationale" not in r for r in rows if r["kind"] != "relation")  # plain answers
    monkeypatch.setattr(generation, "generate_text", _answerer("flipped"))  # the digits right, the comparison not
    rows = [r for r in vqa_probe.probe(str(lm_dir), scenes=30, style="positions") if r["kind"] == "relation"]
    assert all(r["answer"] == 0.0 and r["rationale"] == 1.0 and r["consistent"] == 0.0 for r in rows)
    use = vqa_probe.referent_use(str(lm_dir), scenes=60)
    assert use["scenes"] > 3 and use["answers_differ"] == 1.0 and use["accuracy"] == 1.0

    monkeypatch.setattr(generation, "generate_text", _answerer("first"))
    rows = vqa_probe.probe(str(lm_dir), scenes=30)
    multi = [r for r in rows if r["kind"] == "color" and r["objects"] > 1]
    assert multi and all(r["answer"] < 1.0 and r["other_object"] == 1.0 and "rationale" not in r for r in multi)
    assert all(r["answer"] == 1.0 for r in rows if r["objects"] == 1)
    use = vqa_probe.referent_use(str(lm_dir), scenes=60)
    assert use["answers_differ"] == 0.0 and 0.0 < use["accuracy"] < 1.0
    blind = vqa_probe.referent_blind_accuracy(100)
    assert 0.6 < blind < 0.9 and blind == vqa_probe.referent_blind_accuracy(100)  # deterministic


def test_reading_items_are_true_text_qa_prompts(processor):
    """`--reading` prompts: the text QA turn up to its answer, with the scene's true rationale given; every
    answer is the scene's; lookup questions of every kind are among them."""
    import vqa_probe

    from gaussiantoken.data.shapes_text import answer_question, parse_caption

    tok = processor.tokenizer
    items = vqa_probe.reading_items(tok, processor.layout, scenes=40)
    assert {i["kind"] for i in items} == {"color", "shape", "size", "count", "relation"}
    assert {i["objects"] for i in items} == {1, 2, 3}
    for item in items:
        text = tok.decode(item["ids"], skip_special_tokens=True)
        question, given = text.split("Question:")[1].split("Answer:")
        assert question.strip() == item["question"] and given.rstrip().endswith(", so")
        assert processor.layout.boi_token_id not in item["ids"]
        if item["kind"] != "relation":  # the answer follows from the objects the given caption names
            objects = parse_caption(given.rstrip()[:-len(", so")])["objects"]
            assert answer_question(objects, item["question"]) == item["answer"]
    # scan: the learned tokens are the marks (the phrases given) and the answer; one "yes", or first + second
    for item in vqa_probe.reading_items(tok, processor.layout, scenes=40, style="scan"):
        learned = tok.decode([t for t, l in zip(item["seq"], item["labels"]) if l != -100], skip_special_tokens=True)
        *marks, answer = learned.split()
        assert answer == item["answer"] and item["seq"][:len(item["ids"])] == item["ids"]
        if item["kind"] in ("color", "shape", "size"):
            assert marks[-1] == "yes" and set(marks[:-1]) <= {"no"}
        elif item["kind"] == "relation":
            assert sorted(m for m in marks if m != "no") == ["first", "second"]
        else:
            assert marks == []


# a fresh process, the way a user runs it: load, generate for a few scenes
def test_vqa_probe_command(lm_dir, tmp_path):
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "vqa_probe.py"), "--model", str(lm_dir),
                           "--scenes", "4", "--reading", "--style", "scan", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "referent use" in proc.stdout and "referent-blind" in proc.stdout
    data = json.loads(out.read_text())
    assert data["rows"] and set(data["referent_use"]) == {"scenes", "answers_differ", "accuracy"}
    assert "reading" in proc.stdout and all(0 <= r["accuracy"] <= 1 and r["questions"] > 0 for r in data["reading"])
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "vqa_probe.py"), "--model", str(lm_dir),
                           "--scenes", "4", "--style", "positions", "--json", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {r["kind"] for r in json.loads(out.read_text())["rows"]} <= {"color", "shape", "size", "count", "relation"}


def test_reading_refuses_positions_replies():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "vqa_probe.py"), "--model", "unused", "--reading",
                           "--style", "positions"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no given text" in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_digit_errors_name_whose_coordinate_a_wrong_digit_is():
    import vqa_probe

    scene = [{"shape": "circle", "color": "red", "size": "small", "x": 9.5, "y": 26.0},   # bins x 2, y 6
             {"shape": "square", "color": "blue", "size": "large", "x": 22.0, "y": 4.0},  # x 5, y 1
             {"shape": "triangle", "color": "green", "size": "small", "x": 30.0, "y": 13.0}]  # x 7, y 3
    q = "is the red circle to the left of the blue square?"
    errors = lambda text: vqa_probe.digit_errors(scene, q, text, 32)  # noqa: E731
    assert errors("left: red circle 2, blue square 5") == ["right", "right"]
    assert errors("left: red circle 5, blue square 2") == ["other named", "other named"]
    assert errors("left: red circle 6, blue square 7") == ["own other axis", "other object"]
    assert errors("left: red circle 3, blue square 0") == ["off by one", "other"]
    assert errors("left: red circle 2") == ["right", "missing"]
    assert set(sum((errors(t) for t in ("left: red circle 4, blue square 3",)), [])) <= set(vqa_probe.DIGIT_ERRORS)
