"""Referent attention (lm.referent, `train.referent_attention`): the objects a question names found in the input
span, the loss's golden values and gradient over both hops, the stream dataset's targets (question words -> the
scene's named objects, answers -> those words), training with it (logged, resumed exactly), the config's refusals."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gaussiantoken.lm.referent import (HEADS, named_span_objects, readout_head, referent_attention_loss,
                                      referent_value_loss, span_objects, word_readout)
from gaussiantoken.lm.sequences import IGNORE_INDEX

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "lm" / "shapes.yaml"


class _Layout:  # the three ids span_objects / referent_targets read
    boi_token_id, eoi_token_id = 100, 101


def test_span_objects_number_each_objects_tokens():
    obj = 7
    ids = [1, 5, 100, obj, 20, 21, obj, 22, obj, 23, 24, 101, 9, 9]
    assert span_objects(ids, _Layout, obj) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 0, 0, 0]
    assert span_objects([1, 2, 3], _Layout, obj) == [0, 0, 0]  # no image


def test_named_span_objects_follow_the_groups_of_the_named_objects():
    scene = [{"shape": "circle", "color": "red", "size": "small", "x": 24.0, "y": 8.0},
             {"shape": "square", "color": "blue", "size": "large", "x": 6.0, "y": 8.0}]
    row = {"scene": scene, "caption": "a small red circle to the right of a large blue square",
           "objects": [[2, 3], [0, 1]],  # caption order: the circle's Gaussians, then the square's
           "groups": [1, 1, 2, 2, 0]}  # the square is the left component (group 1)
    assert named_span_objects(row, "what color is the circle?") == [2]
    assert named_span_objects(row, "is the blue square to the left of the red circle?") == [1, 2]
    assert named_span_objects(row, "how many objects are there?") == []
    assert named_span_objects(dict(row, groups=[1, 1, 0, 0, 0]), "what size is the red circle?") is None
    # a group with no Gaussian is not in the span: the circle is then the span's first object
    assert named_span_objects(dict(row, groups=[0, 0, 2, 2, 0]), "what color is the circle?") == [1]


def test_loss_golden_values_and_gradient():
    B, H, L = 2, 3, 5
    logits = torch.zeros(2, B, H, L, L, requires_grad=True)  # two layers
    attn = logits.softmax(-1)  # uniform: 1/5 on each position
    objects = torch.tensor([[0, 1, 1, 2, 0], [0, 1, 2, 2, 2]])
    targets = torch.zeros(B, L, HEADS, dtype=torch.long)  # word -> object (layer 0)
    targets[0, 4] = torch.tensor([1, 2])  # masses 2/5 and 1/5
    targets[1, 4] = torch.tensor([2, 2])  # 3/5 twice
    words = torch.zeros(B, L, HEADS, dtype=torch.long)  # answer -> word (layer 1): one position, 1/5
    words[1, 3] = torch.tensor([5, 0])  # position 4
    loss = referent_attention_loss(list(attn), objects, targets, words, layers=(0, 1))
    want = -(math.log(0.4) + math.log(0.2) + 2 * math.log(0.6)) / 4 - math.log(0.2)  # hop means, summed
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    g = logits.grad[0, 0, 0, 4]  # layer 0, head 0 at the target position: raise the object's keys, lower the others
    assert (g[1:3] < 0).all() and (g[[0, 3, 4]] > 0).all() and logits.grad[0, 0, 2].abs().sum() == 0  # head 2: none
    assert logits.grad[1, 1, 0, 3, 4] < 0 and logits.grad[1, 1, 1].abs().sum() == 0  # layer 1: head 0 only
    zero = torch.zeros_like(targets)
    none = referent_attention_loss(list(attn), objects, zero, zero, layers=(0, 1))
    assert none.item() == 0.0 and none.requires_grad
    perfect = torch.zeros(B, H, L, L)
    perfect[0, 0, 4, 1:3] = 0.5
    perfect[0, 1, 4, 3] = 1.0
    perfect[1, :2, 4, 2:] = 1 / 3
    perfect[1, 0, 3, 4] = 1.0
    assert referent_attention_loss([perfect], objects, targets, words, (0, 0)).item() == pytest.approx(0.0, abs=1e-6)


def test_value_loss_reads_lookup_answers_off_the_word_after_the_first_layer():
    """Only lookup questions (both hop-two heads on one word) count; the logits are read at the word, after the
    given layer, and the answer's first token is the target; gradients reach only those residual positions."""
    B, L, D, V = 2, 6, 4, 5
    hidden = [torch.randn(B, L, D, requires_grad=True) for _ in range(4)]  # embeddings + 3 layers
    head = torch.nn.Linear(D, V)
    labels = torch.full((B, L), IGNORE_INDEX)
    labels[0, 4], labels[1, 5], labels[1, 3] = 2, 3, 1
    words = torch.zeros(B, L, HEADS, dtype=torch.long)
    words[0, 3] = torch.tensor([2, 2])  # lookup: the word at 1 -> answer token labels[0, 4] = 2
    words[1, 4] = torch.tensor([3, 3])  # lookup: the word at 2 -> labels[1, 5] = 3
    words[1, 2] = torch.tensor([1, 2])  # a relation (two words): no value target
    rows, logits, target = word_readout(hidden, head, labels, words, layer=1)
    assert rows.tolist() == [0, 1] and target.tolist() == [2, 3]
    assert torch.equal(logits, head(torch.stack([hidden[2][0, 1], hidden[2][1, 2]])))
    _, from_end, _ = word_readout(hidden, head, labels, words, layer=-2)  # counted from the last of the 3 layers
    assert torch.equal(from_end, logits)
    for last in (2, -1, 3):  # the last layer's output is already normed; 3 is no layer
        with pytest.raises(ValueError, match="before the last"):
            word_readout(hidden, head, labels, words, layer=last)
    loss = referent_value_loss(hidden, head, labels, words, layer=1)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item(), rel=1e-6)
    loss.backward()
    g = hidden[2].grad.abs().sum(-1)  # [B, L]: only the two words after layer 1
    assert g[0, 1] > 0 and g[1, 2] > 0 and g.sum() == g[0, 1] + g[1, 2]
    assert all(h.grad is None for k, h in enumerate(hidden) if k != 2)
    assert referent_value_loss(hidden, head, labels, torch.zeros_like(words), 1).item() == 0.0
    # a trained-in answer: a head that reads the word's residual as its answer makes the loss vanish
    exact = torch.nn.Linear(D, V, bias=False)
    with torch.no_grad():
        hidden[2][0, 1], hidden[2][1, 2] = 50 * torch.eye(D)[2], 50 * torch.eye(D)[3]
        exact.weight.copy_(torch.eye(V, D))
    assert referent_value_loss(hidden, exact, labels, words, 1).item() == pytest.approx(0.0, abs=1e-6)


def test_readout_head_is_the_models_final_norm_then_output_head():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, vocab_size=11,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 11, (2, 5))
    out = model(ids, output_hidden_states=True)
    last = model.model.layers[-1]
    with torch.no_grad():  # the last layer's raw output, read through the head, is the model's own logits
        raw = last(out.hidden_states[1], position_embeddings=model.model.rotary_emb(out.hidden_states[1],
                   torch.arange(5)[None]), attention_mask=None)
        raw = raw[0] if isinstance(raw, tuple) else raw
    wrapped = torch.nn.Module()
    wrapped.module = model  # as a DeepSpeed engine holds it
    assert torch.allclose(readout_head(wrapped)(raw), out.logits, atol=1e-4)


def _overrides(image_tokenizer_dir, text_tokenizer_dir, out, **extra):
    spec = importlib.util.spec_from_file_location("_lm_train_tests_ref", Path(__file__).with_name("test_lm_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.overrides(image_tokenizer_dir, "unused", text_tokenizer_dir, out, **{
        "data.source": "shapes_stream", "data.stream_chunk": 8, "model.image_groups": 3, "data.t2i_layout": "objects",
        "model.input_layout": "objects", "model.attn_implementation": "eager", "train.referent_attention": 0.5,
        "train.referent_values": 0.5,
        "data.ratios": "{text_to_image: 0.2, caption: 0.2, vqa: 0.6}", "data.vqa_turns": 2,
        "model.text_config.max_position_embeddings": 192, "train.referent_attention_layers": "[0, 1]", **extra})


def test_stream_targets_name_the_asked_objects_and_training_learns_them(image_tokenizer_dir, text_tokenizer_dir,
                                                                        tmp_path):
    """Every VQA item's target object is, in its input span, drawn by Gaussians of the scene object its question
    names; items of other tasks carry none; a run logs the loss and resumes to the same losses."""
    from gaussiantoken.data.shapes_text import question_referent_words, question_referents
    from gaussiantoken.lm.object_layout import ObjectLayout, caption_order
    from gaussiantoken.lm.train import LMRunConfig, check_config, train
    from gaussiantoken.lm.train_build import build_dataset, build_model_and_processor, build_stream
    from gaussiantoken.runtime.config import load_run_config
    from gaussiantoken.tokenizer import GaussianTokenizer

    args = (image_tokenizer_dir, text_tokenizer_dir)
    cfg = load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "a"))
    model, processor = build_model_and_processor(cfg)
    stream, _ = build_stream(cfg, GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval())
    data = build_dataset(cfg, processor, model.config, rows=stream)
    lay = ObjectLayout.from_config(model.config)
    checked = 0
    for i in range(len(data)):
        item = data[i]
        if item["task"] != "vqa":
            assert not any(map(any, item["referent_targets"] + item["referent_words"]))
            continue
        row = stream[data.plan(i)[0]]
        slots_of = dict(zip(caption_order(row["scene"], row["caption"]), row["objects"]))
        answers = [j + 1 for j in range(len(item["labels"]) - 1)
                   if item["labels"][j + 1] != IGNORE_INDEX and item["labels"][j] == IGNORE_INDEX]
        first = data.plan(i)[3] % len(row["questions"])
        questions = [row["questions"][(first + k) % len(row["questions"])] for k in range(len(answers))]
        for pos, question in zip(answers, questions):
            named = question_referents(row["scene"], question)
            heads = item["referent_words"][pos - 1]
            if not named or named_span_objects(row, question) is None:  # a count, or an object with no span
                assert heads == [0, 0]
                continue
            at = (heads[0] - 1, heads[1] - 1)  # the answer's targets: the words naming the first / last object
            _, ends = question_referent_words(question)
            for k, scene_index, end in zip(at, (named[0], named[-1]), (ends[0], ends[-1])):
                word = question[:end].split()[-1]
                assert word.endswith(processor.tokenizer.decode(item["input_ids"][k:k + 1]).strip()), (word, question)
                target = item["referent_targets"][k]
                assert target[0] == target[1] > 0
                span_slots = {t - lay.extra_offset for t, o in zip(item["input_ids"], item["input_objects"])
                              if o == target[0] and lay.extra_offset <= t < lay.extra_offset + lay.num_slots}
                assert span_slots & set(slots_of[scene_index]), (question, row["scene"])
                checked += 1
    assert checked >= 8
    off = build_dataset(load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "o", **{
        "train.referent_attention": 0, "train.referent_values": 0})), processor, model.config, rows=stream)
    keys = {k for i in range(len(off)) for k in off[i]}
    assert keys == {"input_ids", "labels", "task", "image_groups"}  # off: the sequences as before, nothing extra
    full = train(cfg)
    for key in ("referent_loss", "value_loss"):  # both auxiliary losses, logged with the LM loss
        logged = [h[key] for h in full.log_history if key in h]
        assert len(logged) == 6 and all(v >= 0 for v in logged) and sum(logged) > 0, key
    out = tmp_path / "attention.json"  # the probe of both hops, as a user runs it
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "vqa_probe.py"), "--model", str(full.final_dir),
                           "--attention", "0,1", "--scenes", "24", "--json", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["hop"] for r in rows} == {"word->object", "answer->word", "word=answer"} and "word=answer" in proc.stdout
    assert all(0.0 <= r["mass"] <= 1.0 and r["targets"] > 0 for r in rows)
    assert all(0.0 < r["even"] < 1.0 for r in rows if r["hop"] == "word->object")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "vqa_probe.py"), "--model", str(full.final_dir),
                           "--attention", "1,0"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode != 0 and "the first before the second" in proc.stderr.strip().splitlines()[-1], proc.stderr
    train(load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "b", **{"train.stop_at_step": 3})))
    resumed = train(load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "b")))
    a = [h["loss"] for h in full.log_history if "loss" in h]
    b = [h["loss"] for h in resumed.log_history if "loss" in h]
    assert len(a) == len(b) == 6 and max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    for bad, match in (({"model.attn_implementation": "sdpa"}, "eager"),
                       ({"train.referent_attention": -1}, "must be >= 0"),
                       ({"train.referent_values": -1}, "referent_values is a loss weight"),
                       ({"train.referent_attention": 0, "data.vqa_rationale": True}, "referent_values"),
                       ({"train.referent_attention_layers": "[1, 0]"}, "referent_attention_layers"),
                       ({"train.referent_attention_layers": "[0, 2]"}, "referent_attention_layers"),
                       ({"train.referent_attention_layers": "[true, 1]"}, "referent_attention_layers"),
                       ({"data.ratios": "{text_to_image: 1, caption: 1}"}, "data.ratios.vqa"),
                       ({"data.vqa_rationale": True}, "vqa_rationale=false")):
        with pytest.raises(ValueError, match=match):
            check_config(load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "x", **bad)))
    # the value loss alone reads hidden states, not attention probabilities: any attention implementation
    check_config(load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "x", **{
        "train.referent_attention": 0, "model.attn_implementation": "sdpa"})))


def test_positions_replies_teach_each_digit_and_the_answer(image_tokenizer_dir, text_tokenizer_dir, tmp_path):
    """With `data.relation_positions` a relation's reply is "left: red circle 2, blue square 5, so yes": the
    position predicting each digit is taught to look at that object's restated word (both heads, so the value
    readout there predicts the digit), that word at the named object of the input span, and the position predicting
    the answer at the two digits; the digits are the objects' bins on the asked axis. A short run trains with it."""
    from gaussiantoken.data.shapes_positions import position_bin
    from gaussiantoken.lm.train import LMRunConfig, check_config, train
    from gaussiantoken.lm.train_build import build_dataset, build_model_and_processor, build_stream
    from gaussiantoken.runtime.config import load_run_config
    from gaussiantoken.tokenizer import GaussianTokenizer

    args = (image_tokenizer_dir, text_tokenizer_dir)
    extra = {"data.relation_positions": True, "data.ratios": "{text_to_image: 0, caption: 0, vqa: 1}",
             "model.text_config.max_position_embeddings": 256, "train.max_steps": 4}
    cfg = load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "p", **extra))
    model, processor = build_model_and_processor(cfg)
    stream, _ = build_stream(cfg, GaussianTokenizer.from_pretrained(image_tokenizer_dir).eval())
    data = build_dataset(cfg, processor, model.config, rows=stream)
    tok, size = processor.tokenizer, model.config.tokenizer_config.image_size
    replies = 0
    for i in range(len(data)):
        item, row = data[i], stream[data.plan(i)[0]]
        ids, labels, words, objects = item["input_ids"], item["labels"], item["referent_words"], item["referent_targets"]
        for p in range(len(ids) - 1):
            heads = words[p]
            if not heads[0] or heads[0] == heads[1] or labels[p + 1] == IGNORE_INDEX:
                continue
            # an answer predictor taught to look at two digits: a positions reply's answer
            text = tok.decode(ids[:p + 1])
            question = text.rpartition("Question: ")[2].partition("?")[0] + "?"
            named = named_span_objects(row, question)
            reply = text.rpartition("Answer:")[2].strip()  # "left: red circle 2, blue square 5, so"
            axis = "x" if reply.split(":")[0] in ("left", "right") else "y"
            parts = reply.partition(": ")[2].rpartition(", so")[0].split(", ")
            for k, obj, part in zip(heads, named, parts):
                name, _, bin_text = part.rpartition(" ")
                digit = k - 1
                assert words[digit - 1] == [words[digit - 1][0]] * 2  # the digit's predictor: both heads, one word
                word = words[digit - 1][0] - 1
                assert objects[word] == [obj] * 2 and name.endswith(tok.decode(ids[word:word + 1]).strip())
                assert tok.decode(ids[digit:digit + 1]).strip() == bin_text
                found = [o for o in row["scene"] if f"{o['color']} {o['shape']}" == name]
                assert bin_text == str(position_bin(found[0][axis], size)), (reply, row["scene"])
            replies += 1
    assert replies >= 2
    full = train(cfg)
    logged = [h["value_loss"] for h in full.log_history if "value_loss" in h]
    assert logged and all(v > 0 for v in logged)
    with pytest.raises(ValueError, match="relation_positions"):
        check_config(load_run_config(LMRunConfig, CONFIG, _overrides(*args, tmp_path / "x", **extra, **{
            "train.referent_attention": 0, "train.referent_values": 0, "data.vqa_rationale": True})))
