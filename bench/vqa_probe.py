"""VQA probe: where a trained LM's Shapes answers go wrong, by question kind and object count.

Asks every question of N held-out scenes (`data.shapes.make_dataset`, seed 12345 as `bench/lm_quality.py`) with
`lm.generation.generate_text` and prints, per (question kind, objects in the scene):
- `answer`: exact-match accuracy of the final answer (what the eval harness scores);
- `other_object`: the share of wrong color / shape / size answers that are another object's attribute in the
  same scene (a binding failure: the model read the scene but picked the wrong object);
- for describe-then-answer models (`data.vqa_rationale`; their replies are "{rationale}, so {answer}"):
  `rationale` (the reply's rationale is the true rationale, `data.shapes_text.styled_rationale` of the scene's
  canonical caption in the model's `--style`: describe, scan or cued_scan) and `consistent` (the final answer is what the objects the model's own rationale names
  answer, `data.shapes_text.answer_question` on them; color / shape / size questions only); for a relation
  positions model (`data.relation_positions`, `--style positions`), `rationale` is the relation reply's digits
  and names all right (`data.shapes_positions.relation_positions`) and `consistent` its answer the one its own
  digits give (`positions_answer`): which of the reply's steps fails, the lookups or the comparison; and each
  digit's kind (`digit_errors`: right, a swap with the other named object, the other axis, ...).
Then `referent use`: over the multi-object scenes whose objects differ in shape and in color, "what color is the
<shape>?" is asked about every object; the share of scenes whose answers differ between the objects asked
about (1.0 when the answer follows the question's referent, 0.0 when the model answers about one object of the
scene whatever is asked), and the exact-match rate of these answers. Last, the `referent-blind` baseline: the
VQA accuracy of an answerer that knows the scene but not which object a question names (color / shape / size
of a random object of the scene, the true count, "yes" to every relation), on the same held-out scenes.
With `--reading`: `reading`, the answer read off a GIVEN description, no image: each held-out scene's questions
and every lookup question of its caption (`data.shapes_text.lookup_questions`) asked as a text QA turn
(`lm.sequences.build_text_qa`: "Question: q Answer: {true rationale}, so {answer}"), per (kind, objects): the
share of turns whose every learned token (the answer and its eos; under a scan `--style` each mark too, and
under cued_scan each cue, its phrases given) is the model's greedy choice.
It separates reading the answer off text (the last step of a describe-then-answer reply) from seeing the image.

With `--attention L1,L2` (only this): how far the lookup's two hops have formed, the attention of heads 0 / 1 of
layer L1 from a question's words on the object they name and of layer L2 from the answer on those words
(`attention_mass`; what `train.referent_attention` teaches, `lm.referent`), per question kind; and `word=answer`,
how often the residual stream after layer L1 at a lookup question's words already reads as its answer through the
final norm and output head (what `train.referent_values` teaches).

    python bench/vqa_probe.py --model runs/demo/lm [--scenes 200] [--style scan|cued_scan] [--reading] [--json out.json]
    python bench/vqa_probe.py --model runs/demo/lm --attention 1,3 [--scenes 200]

Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter

PHRASE = re.compile(r"\ba (small|large) (\w+) (circle|square|triangle)\b")


def kind_of(question: str) -> str:
    return "relation" if question.startswith("is the") else {"color": "color", "shape": "shape", "size": "size",
                                                              "many": "count"}[question.split()[1]]


def probe(model_dir: str, scenes: int = 200, batch_size: int = 64, style: str = "describe") -> list[dict]:
    """One row per (kind, objects): counts and rates (see the module docstring)."""
    import gaussiantoken.lm.sequences as sequences
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.data.shapes_positions import positions_answer, relation_positions
    from gaussiantoken.data.shapes_text import answer_question, caption_for, styled_rationale
    from gaussiantoken.data.shapes_world import canonical_order
    from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor
    from gaussiantoken.lm.generation import generate_text

    model = GaussianTokenForCausalLM.from_pretrained(model_dir).eval()
    processor = GaussianTokenProcessor.from_pretrained(model_dir)
    size = int(model.config.tokenizer_config.image_size)
    items = [(r["image"], q, a, r["objects"]) for r in make_dataset(scenes, seed=12345, image_size=size)
             for q, a in zip(r["questions"], r["answers"])]
    replies = generate_text(model, processor, [i[0] for i in items], [i[1] for i in items],
                            batch_size=batch_size, full_reply=True)  # rationale and answer
    n = Counter()
    for (_, q, a, objects), reply in zip(items, replies):
        key, got = (kind_of(q), len(objects)), sequences.final_answer(reply)
        rationale = reply.rpartition(sequences.REASON_SEPARATOR)[0]
        n[key + ("questions",)] += 1
        n[key + ("answer",)] += got == a
        if got != a and key[0] in ("color", "shape", "size"):
            n[key + ("wrong",)] += 1
            n[key + ("other_object",)] += any(o[key[0]] == got for o in objects)
        if rationale:
            n[key + ("reasoned",)] += 1
            if style == "positions":  # a relation's positions reply: its digits right, its answer following them
                n[key + ("rationale",)] += " ".join(rationale.split()) == relation_positions(objects, q, size)
                n[key + ("consistent",)] += positions_answer(rationale) == got
                for what in digit_errors(objects, q, rationale, size):
                    n[key + ("digit " + what,)] += 1
                continue
            true = styled_rationale(caption_for(canonical_order(objects)), q, a, style, objects)
            n[key + ("rationale",)] += " ".join(rationale.split()) == true
            if key[0] in ("color", "shape", "size"):  # the objects the rationale names, in its order
                mine = [{"size": z, "color": c, "shape": s} for z, c, s in PHRASE.findall(rationale)]
                n[key + ("consistent",)] += bool(mine) and answer_question(mine, q) == got
    rows = []
    for key in sorted({k[:2] for k in n}):
        c = {k[2]: v for k, v in n.items() if k[:2] == key}
        row = {"kind": key[0], "objects": key[1], "questions": c["questions"], "answer": c["answer"] / c["questions"],
               "other_object": c.get("other_object", 0) / c["wrong"] if c.get("wrong") else None}
        digits = {k[len("digit "):]: v for k, v in c.items() if k.startswith("digit ")}
        if digits:  # each digit of the relation replies: right, or whose coordinate it is (`digit_errors`)
            row["digits"] = {k: v / sum(digits.values()) for k, v in sorted(digits.items())}
        if c.get("reasoned"):
            row["rationale"] = c.get("rationale", 0) / c["reasoned"]
            row["consistent"] = (c.get("consistent", 0) / c["reasoned"]
                                 if key[0] in ("color", "shape", "size") or style == "positions" else None)
        rows.append(row)
    return rows


DIGIT_ERRORS = ("right", "other named", "own other axis", "other object", "off by one", "other", "missing")


def digit_errors(objects: list[dict], question: str, rationale: str, size: int) -> list[str]:
    """A relation positions reply's two digits against the truth (`data.shapes_positions`), each as one of
    DIGIT_ERRORS: right; the other named object's bin on the asked axis (a swap); the object's own bin on the other
    axis; an unnamed object's bin on the asked axis; one bin off; anything else; "missing" (no digit written)."""
    from gaussiantoken.data.shapes_positions import position_bin, position_digits, relation_positions

    true = relation_positions(objects, question, size)
    axis = "x" if true.split(":")[0] in ("left", "right") else "y"
    other = "y" if axis == "x" else "x"
    named = [next(o for o in objects if f"{o['color']} {o['shape']}" == name) for name, _ in position_digits(true)]
    written = [d for _, d in position_digits(rationale)]
    out = []
    for k, obj in enumerate(named):
        if k >= len(written):
            out.append("missing")
            continue
        bin_of = lambda o, ax: position_bin(o[ax], size)  # noqa: E731
        got, want = written[k], bin_of(obj, axis)
        out.append("right" if got == want else "other named" if got == bin_of(named[1 - k], axis)
                   else "own other axis" if got == bin_of(obj, other)
                   else "other object" if any(got == bin_of(o, axis) for o in objects if o not in named)
                   else "off by one" if abs(got - want) == 1 else "other")
    return out


def referent_use(model_dir: str, scenes: int = 300, batch_size: int = 64) -> dict:
    """`referent use` of the module docstring: ask about every object of scenes with distinct shapes and colors."""
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor
    from gaussiantoken.lm.generation import generate_text

    model = GaussianTokenForCausalLM.from_pretrained(model_dir).eval()
    processor = GaussianTokenProcessor.from_pretrained(model_dir)
    size = int(model.config.tokenizer_config.image_size)
    images, questions, truth, scene_of = [], [], [], []
    for k, r in enumerate(make_dataset(scenes, seed=777, image_size=size)):
        objs = r["objects"]
        if len(objs) < 2 or len({o["shape"] for o in objs}) < len(objs) or len({o["color"] for o in objs}) < len(objs):
            continue
        for o in objs:
            images.append(r["image"])
            questions.append(f"what color is the {o['shape']}?")
            truth.append(o["color"])
            scene_of.append(k)
    answers = generate_text(model, processor, images, questions, batch_size=batch_size)
    by_scene: dict[int, set] = {}
    for k, a in zip(scene_of, answers):
        by_scene.setdefault(k, set()).add(a)
    return {"scenes": len(by_scene), "answers_differ": sum(len(v) > 1 for v in by_scene.values()) / len(by_scene),
            "accuracy": sum(a == t for a, t in zip(answers, truth)) / len(truth)}


def reading_items(tokenizer, layout, scenes: int = 200, style: str = "describe") -> list[dict]:
    """Text QA turns of `--reading` (module docstring): {kind, objects, question, answer, ids, seq, labels} on the
    held-out scenes of seed 777: `seq` / `labels` the whole turn with the scene's true rationale in `style`
    (`lm.sequences.build_text_qa`: labels on a scan's marks and on the answer + eos), `ids` the prompt up to
    the first learned token."""
    from gaussiantoken.data.shapes import make_dataset
    from gaussiantoken.data.shapes_text import SCAN_STYLES, caption_for, lookup_questions, styled_rationale
    from gaussiantoken.data.shapes_world import canonical_order
    from gaussiantoken.lm.sequences import IGNORE_INDEX, build_text_qa, reasoned_answer

    items = []
    for r in make_dataset(scenes, seed=777, image_size=32).remove_columns(["image"]):
        caption = caption_for(canonical_order(r["objects"]))
        pairs = dict(zip(r["questions"], r["answers"]))
        pairs.update((q, a) for q, a in zip(*lookup_questions(r["objects"])) if q not in pairs)
        for q, a in pairs.items():
            target = reasoned_answer(styled_rationale(caption, q, a, style, r["objects"]), a)
            seq = build_text_qa(tokenizer, [q], [target], layout, scan_marks=style in SCAN_STYLES,
                                scan_cues=style == "cued_scan")
            cut = next(i for i, label in enumerate(seq["labels"]) if label != IGNORE_INDEX)
            items.append({"kind": kind_of(q), "objects": len(r["objects"]), "question": q, "answer": a,
                          "ids": seq["input_ids"][:cut], "seq": seq["input_ids"], "labels": seq["labels"]})
    return items


def reading(model_dir: str, scenes: int = 200, batch_size: int = 128, style: str = "describe") -> list[dict]:
    """`--reading` rows: {kind, objects, questions, accuracy}: the share of `reading_items` turns whose every
    learned token (a scan's marks, the answer, its eos) is the model's greedy choice given the turn before it."""
    import torch

    from gaussiantoken.lm import GaussianTokenForCausalLM, GaussianTokenProcessor
    from gaussiantoken.lm.generation import left_pad
    from gaussiantoken.lm.sequences import IGNORE_INDEX

    model = GaussianTokenForCausalLM.from_pretrained(model_dir).eval()
    processor = GaussianTokenProcessor.from_pretrained(model_dir)
    layout = processor.layout
    items = reading_items(processor.tokenizer, layout, scenes, style)
    n = Counter()
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        ids, mask = left_pad([b["seq"] for b in batch], layout.pad_token_id)  # [B, L]
        with torch.no_grad():
            guess = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)  # [B, L]
        for b, row in zip(batch, guess.tolist()):
            pad = ids.shape[1] - len(b["seq"])
            ok = all(row[pad + j - 1] == t for j, t in enumerate(b["labels"]) if t != IGNORE_INDEX)
            key = (b["kind"], b["objects"])
            n[key + ("questions",)] += 1
            n[key + ("right",)] += ok
    return [{"kind": k, "objects": o, "questions": n[(k, o, "questions")],
             "accuracy": n[(k, o, "right")] / n[(k, o, "questions")]} for k, o in sorted({key[:2] for key in n})]


def referent_blind_accuracy(scenes: int = 200, seed: int = 0) -> float:
    """VQA accuracy of the referent-blind answerer (module docstring) on the probe's held-out scenes."""
    import numpy as np

    from gaussiantoken.data.shapes import make_dataset

    rng = np.random.default_rng(seed)
    right = total = 0
    for r in make_dataset(scenes, seed=12345).remove_columns(["image"]):
        for q, a in zip(r["questions"], r["answers"]):
            kind = kind_of(q)
            if kind in ("color", "shape", "size"):
                guess = r["objects"][int(rng.integers(len(r["objects"])))][kind]
            else:
                guess = a if kind == "count" else "yes"
            right += guess == a
            total += 1
    return right / total


def attention_mass(model_dir: str, scenes: int = 200, layers: tuple[int, int] = (1, -1), batch_size: int = 32) -> list[dict]:
    """Where the heads `train.referent_attention` teaches look (`lm.referent`), on fresh stream scenes (seed 12345,
    one question each, multi-object scenes only): per question kind, the attention mass of heads 0 / 1 of
    layers[0] from the question's words on the object they name (`word->object`, against the share of the
    image's tokens that object holds: what spreading evenly over the image gives) and of layers[1] from the answer
    on those words (`answer->word`); and for lookup questions `word=answer`, how often the residual stream after
    layers[0] at the words already reads as the answer through the final norm and output head (`lm.referent.word_readout`,
    what `train.referent_values` teaches; in the "mass" column); for any model with object-major inputs, taught or not."""
    import torch

    from gaussiantoken.lm.data import MultiTaskSequenceDataset, SequenceCollator
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.object_layout import ObjectLayout
    from gaussiantoken.lm.processing import GaussianTokenProcessor
    from gaussiantoken.lm.referent import hop_masses, readout_head, word_readout
    from gaussiantoken.lm.stream import ShapesCodeStream

    model = GaussianTokenForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    processor = GaussianTokenProcessor.from_pretrained(model_dir)
    if model.config.input_layout != "objects":
        raise SystemExit(f"--attention needs a model with object-major inputs (input_layout=objects): {model_dir}")
    n = model.config.text_config.num_hidden_layers
    if not (all(-n <= v < n for v in layers) and layers[0] % n < layers[1] % n):
        raise SystemExit(f"--attention layers {layers} are not two layers, the first before the second, of this "
                         f"{n}-layer model: {model_dir}")
    stream = ShapesCodeStream(model.image_tokenizer, scenes, seed=12345, chunk_size=min(256, scenes),
                              image_groups=model.config.image_groups, object_radius=1)
    data = MultiTaskSequenceDataset(stream, processor.tokenizer, processor.layout, {"vqa": 1.0}, 0.0, seed=12345,
                                    object_layout=ObjectLayout.from_config(model.config), image_groups=True,
                                    input_objects=True, referent_attention=True)
    collate = SequenceCollator(processor.layout.pad_token_id)
    sums: Counter = Counter()
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(len(data), start + batch_size))]
        batch = collate(items)
        objects, targets, words = (batch.pop(k) for k in ("input_objects", "referent_targets", "referent_words"))
        with torch.no_grad():
            out = model(**batch, output_attentions=True, output_hidden_states=True)
            b3, logits, answer = word_readout(out.hidden_states, readout_head(model), batch["labels"], words, layers[0])
        attn = out.attentions
        kinds = []
        for b, item in enumerate(items):  # multi-object scenes only: one object is found by attending to the image
            question = processor.tokenizer.decode(item["input_ids"]).rsplit("Question:", 1)[-1].split("Answer:")[0]
            kinds.append(kind_of(question.strip()) if int(objects[b].max()) > 1 else None)
        (b1, m1), (b2, m2) = hop_masses(attn, objects, targets, words, layers)
        bq, q, h = (targets > 0).nonzero(as_tuple=True)  # hop 1's (row, position, head), in hop_masses' order
        share = (objects[bq] == targets[bq, q, h].unsqueeze(-1)).sum(-1) / (objects[bq] > 0).sum(-1)  # even spread
        read = (logits.argmax(-1) == answer).float()  # [N]: the word already reads as the answer
        for hop, rows_, mass, even in (("word->object", b1, m1, share), ("answer->word", b2, m2, None),
                                       ("word=answer", b3, read, None)):
            for j, b in enumerate(rows_.tolist()):
                if kinds[b] is not None:
                    sums[(kinds[b], hop, "mass")] += float(mass[j])
                    sums[(kinds[b], hop, "even")] += 0.0 if even is None else float(even[j])
                    sums[(kinds[b], hop, "n")] += 1
    rows = []
    for kind, hop in sorted({k[:2] for k in sums}):
        n = sums[(kind, hop, "n")]
        rows.append({"kind": kind, "hop": hop, "targets": n, "mass": sums[(kind, hop, "mass")] / n,
                     "even": sums[(kind, hop, "even")] / n if hop == "word->object" else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="trained LM directory")
    p.add_argument("--scenes", type=int, default=200, help="held-out scenes (3 questions each)")
    p.add_argument("--reading", action="store_true", help="also: answers read off a given description (no image)")
    p.add_argument("--style", choices=("describe", "scan", "cued_scan", "positions"), default="describe",
                   help="the rationale style the model was trained with (data.rationale_style): the true rationale")
    p.add_argument("--json", default="", help="write the rows here")
    p.add_argument("--attention", default="", metavar="L1,L2",
                   help="only: the attention mass of heads 0/1 of layer L1 (question word -> its object) and L2 (answer "
                        "-> word), as train.referent_attention_layers teaches them (lm.referent)")
    args = p.parse_args(argv)
    if args.reading and args.style == "positions":
        p.error("--reading reads describe / scan rationales; a positions reply has no given text to read off")
    if args.attention:
        try:
            layers = tuple(int(v) for v in args.attention.split(","))
        except ValueError:
            layers = ()
        if len(layers) != 2:
            p.error(f"--attention takes two layers L1,L2 (e.g. 1,3), got {args.attention!r}")
        rows = attention_mass(args.model, args.scenes, layers)
        print(f"{'kind':<9} {'hop':<13} {'n':>4} {'mass':>6} {'even':>6}")
        for r in rows:
            even = "-" if r["even"] is None else f"{r['even']:.2f}"
            print(f"{r['kind']:<9} {r['hop']:<13} {r['targets']:>4} {r['mass']:>6.2f} {even:>6}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"model": args.model, "scenes": args.scenes, "attention": args.attention, "rows": rows}, f,
                          indent=1)
        return 0
    rows = probe(args.model, args.scenes, style=args.style)

    def fmt(v):
        return "-" if v is None else f"{v:.2f}"

    print(f"{'kind':<9} {'objs':>4} {'n':>4} {'answer':>6} {'other':>6} {'ratnl':>6} {'cons':>6}")
    for r in rows:
        print(f"{r['kind']:<9} {r['objects']:>4} {r['questions']:>4} {fmt(r['answer']):>6} {fmt(r['other_object']):>6} "
              f"{fmt(r.get('rationale')):>6} {fmt(r.get('consistent')):>6}")
    for r in rows:
        if r.get("digits"):
            print(f"digits of {r['objects']}-object relation replies: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["digits"].items()))
    use = referent_use(args.model)
    print(f"referent use: {use['scenes']} multi-object scenes, answers differ between referents in "
          f"{use['answers_differ']:.2f}, accuracy {use['accuracy']:.2f}")
    blind = referent_blind_accuracy(args.scenes)
    print(f"referent-blind answerer on the same scenes: VQA {blind:.3f}")
    read = reading(args.model, args.scenes, style=args.style) if args.reading else None
    for r in read or []:
        print(f"reading   {r['kind']:<9} {r['objects']:>4} {r['questions']:>4} {r['accuracy']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "scenes": args.scenes, "rows": rows, "referent_use": use,
                       "referent_blind_vqa": blind, "reading": read}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
