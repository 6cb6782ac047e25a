"""Referent attention: an auxiliary training loss that teaches the LM the lookup a VQA answer needs
(`train.referent_attention`, a weight; 0 is off).

Measured (bench/RESULTS.md, issue 12): the LM answers "what color is the circle?" about one object per scene,
whatever the question names, and in 2,500-5,700 steps that content-addressed lookup never forms by itself: the LM
loss gives no head a reason to look at the named object until its attention already lands there. With
`model.input_layout: objects` each object of the input image is one contiguous stretch of the sequence (its `<obj>`
and its Gaussians), and the training scene says which object a question names, so the lookup's attention can be
taught directly, as two hops (`train.referent_attention_layers: [L1, L2]`, heads 0 and 1 of each):

- word -> object, layer L1: from the last token of the words that name an object in the question ("circle" of
  "what color is the circle?", "blue" of "what shape is the blue object?", each object of a relation at its own
  words), attend to that object's tokens;
- answer -> word, layer L2 > L1: from the position that predicts the answer's first token, attend to those words
  (head 0 to the first object's, head 1 to the last's), where hop one has gathered the object.

    loss = sum over the two hops of mean over (position, head) of -log(attention mass on the target)

added to the LM loss with its weight. Taught attention alone leaves what those heads carry to the LM loss, which
learns it slowly (bench/RESULTS.md: referent use 0.10-0.17 in the demo's budget with both hops formed), so
`train.referent_values` (a second weight) also teaches the value: for a lookup question (one named object; the
answer is that object's colour, shape or size), the residual stream after layer L1 at the word position, read
through the model's final norm and output head (a "logit lens"), must already predict the answer's first token:

    value loss = mean over lookup questions of cross-entropy(lm_head(norm(h_L1[word])), answer's first token)

so hop one learns to fetch the asked attribute and hop two only has to copy it; no parameter is added. Inference is
unchanged: nothing is given at test time; VQA is scored on held-out scenes as before. `bench/vqa_probe.py
--attention L1,L2` measures how far each hop has formed, for any object-input model.

Owns `span_objects` (each token's input object), `named_span_objects` (which input objects a training row's question
names), `referent_targets` (a VQA sequence's per-position targets of both hops), `hop_masses`,
`referent_attention_loss`, `readout_head`, `word_readout` and `referent_value_loss`.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import torch

from gaussiantoken.lm.sequences import IGNORE_INDEX, REASON_SEPARATOR, VocabLayout

HEADS = 2  # heads 0 and 1 of each taught layer


def span_objects(input_ids: Sequence[int], layout: VocabLayout, obj_token_id: int) -> list[int]:
    """Per token of a sequence: n for the tokens of the n-th object of its input image span (the object's `<obj>`
    included, objects numbered from 1 in span order), 0 everywhere else (text, `<boi>`, `<eoi>`)."""
    ids = list(input_ids)
    out = [0] * len(ids)
    if layout.boi_token_id not in ids:
        return out
    start = ids.index(layout.boi_token_id) + 1
    end = ids.index(layout.eoi_token_id, start)
    n = 0
    for j in range(start, end):
        n += ids[j] == obj_token_id
        out[j] = n
    return out


def named_span_objects(row: dict, question: str) -> list[int] | None:
    """The input-span objects (numbered from 1, `lm.object_groups.group_slots` order) that `question` names, in the
    order it names them ([] for a count question), from a stream row's "scene", "caption", "objects" (each scene
    object's Gaussians, caption order) and "groups" (each Gaussian's foreground group: what the span is built from).
    A named object belongs to the group most of its Gaussians fall in; None when one has no Gaussian in any group."""
    from gaussiantoken.data.shapes_text import question_referents
    from gaussiantoken.lm.object_layout import caption_order

    scene = row["scene"]
    named = question_referents(scene, question)
    if not named:
        return []
    slots_of = {i: row["objects"][k] for k, i in enumerate(caption_order(scene, row["caption"]))}
    groups = [int(g) for g in row["groups"]]
    present = sorted({g for g in groups if g > 0})  # the span's objects: the groups holding any Gaussian, in order
    out = []
    for i in named:
        votes = Counter(groups[s] for s in slots_of[i] if groups[s] > 0)
        if not votes:
            return None
        out.append(present.index(votes.most_common(1)[0][0]) + 1)
    return out


def _answer_starts(labels: Sequence[int], after: int) -> list[int]:
    return [j for j in range(after, len(labels)) if labels[j] != IGNORE_INDEX and labels[j - 1] == IGNORE_INDEX]


def _word_position(tokenizer, ids: Sequence[int], start: int, stop: int, prefix: str) -> int:
    """The index of the token of ids[start:stop] (a turn's prompt) at which its decoded text first holds `prefix`."""
    for j in range(start, stop):
        if prefix in " ".join(tokenizer.decode(ids[start:j + 1]).lower().split()):
            return j
    raise ValueError(f"the question text {prefix!r} is not in the turn's prompt")


def referent_targets(input_ids: Sequence[int], labels: Sequence[int], layout: VocabLayout, tokenizer,
                     questions: Sequence[str], named: Sequence[Sequence[int] | None],
                     replies: Sequence[str] | None = None) -> dict[str, list[list[int]]]:
    """A VQA sequence (one or more turns after its input image), its questions and, per question, the input objects
    it names -> the two hops' targets, each [L][HEADS] (0: no target at that position for that head):

    - "referent_targets": at the last token of the words naming each object in a question ("circle" of "what
      color is the circle?", "blue" of "the blue object", each object of a relation at its own words), both heads
      -> that input object (1-based, `span_objects`);
    - "referent_words": at the position that predicts each answer's first token, head 0 -> the first named object's
      word, head 1 -> the last named (the same word for a lookup question), as the word's position + 1.
    Count questions, and questions whose object has no span (None), get no target.

    `replies` (each turn's target text): a relation's positions reply ("left: red circle 2, blue square 5, so yes",
    `data.shapes_positions`) is taught as its steps instead: hop one from each restated object's last word to that
    object; hop two, both heads, from the position predicting each digit to that object's restated word (so the
    value readout at the word predicts the digit), and from the position predicting the answer to the two digits
    (head 0 the first, head 1 the second)."""
    from gaussiantoken.data.shapes_text import question_referent_words

    ids, labels = list(input_ids), list(labels)
    after = ids.index(layout.eoi_token_id) + 1
    starts = _answer_starts(labels, after)
    if not len(starts) == len(named) == len(questions):
        raise ValueError(f"a VQA sequence with {len(starts)} answers was given {len(questions)} questions and "
                         f"targets for {len(named)}")
    objects = [[0] * HEADS for _ in ids]
    words = [[0] * HEADS for _ in ids]
    prompt_start = after
    for n, (j, question, named_objects) in enumerate(zip(starts, questions, named)):
        if named_objects:
            question = " ".join(question.strip().lower().split())
            at = [_word_position(tokenizer, ids, prompt_start, j, question[:end])
                  for end in question_referent_words(question)[1]]
            for obj, k in zip(named_objects, at):
                objects[k] = [obj] * HEADS
            reply = replies[n] if replies is not None else None
            if reply is not None and REASON_SEPARATOR in reply and len(named_objects) == 2:
                _position_steps(tokenizer, ids, labels, j, reply, named_objects, objects, words)
            else:
                words[j - 1] = [at[0] + 1, at[-1] + 1]
        prompt_start = next((k for k in range(j, len(ids)) if labels[k] == IGNORE_INDEX), len(ids))
    return {"referent_targets": objects, "referent_words": words}


def _position_steps(tokenizer, ids: list[int], labels: list[int], start: int, reply: str, named: Sequence[int],
                    objects: list[list[int]], words: list[list[int]]) -> None:
    """`referent_targets` of a positions reply "{relation}: {object a} {digit}, {object b} {digit}, so {answer}"
    whose first token is ids[start], in place."""
    stop = next((k for k in range(start, len(ids)) if labels[k] == IGNORE_INDEX), len(ids))
    rationale = reply.rpartition(REASON_SEPARATOR)[0]
    head, _, rest = rationale.partition(": ")
    parts = rest.split(", ")
    if len(parts) != 2:
        raise ValueError(f"a positions reply names two objects, got {reply!r}")
    digits, prefix = [], head + ": "
    for obj, part in zip(named, parts):
        name, _, digit = part.rpartition(" ")
        word = _word_position(tokenizer, ids, start, stop, prefix + name)
        at = _word_position(tokenizer, ids, start, stop, prefix + part)  # the digit's token
        objects[word] = [obj] * HEADS
        words[at - 1] = [word + 1] * HEADS
        digits.append(at)
        prefix += part + ", "
    answer = _word_position(tokenizer, ids, start, stop, rationale + REASON_SEPARATOR.rstrip()) + 1
    words[answer - 1] = [digits[0] + 1, digits[1] + 1]


def hop_masses(attentions: Sequence[torch.Tensor], objects: torch.Tensor, targets: torch.Tensor, words: torch.Tensor,
               layers: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The model's attention probabilities (per layer [B, H, L, L]), the input objects [B, L] and both hops'
    targets [B, L, HEADS] (`span_objects`, `referent_targets`, padded with 0), and the two layers taught (word ->
    object, answer -> word) -> per hop (rows [N], mass [N]): for every (position, head) with a target, its batch row
    and the attention mass that head puts from that position on what it should attend to."""
    positions = torch.arange(objects.shape[1], device=objects.device)
    out = []
    for layer, want, keys in ((layers[0], targets, lambda b, t: objects[b] == t.unsqueeze(-1)),
                              (layers[1], words, lambda b, t: positions == (t - 1).unsqueeze(-1))):
        b, q, h = (want > 0).nonzero(as_tuple=True)  # [N] each
        rows = attentions[layer][b, h, q].float()  # [N, L]: head h's attention from position q
        out.append((b, (rows * keys(b, want[b, q, h])).sum(-1)))
    return out


def referent_attention_loss(attentions: Sequence[torch.Tensor], objects: torch.Tensor, targets: torch.Tensor,
                            words: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """The sum over the two hops of the mean over their (position, head) targets of -log(attention mass on what
    it should attend to) (`hop_masses`): each hop weighs alike, however many targets it has; 0 when the batch
    has no target."""
    hops = [-m.clamp_min(1e-6).log().mean() for _, m in hop_masses(attentions, objects, targets, words, layers)
            if m.numel()]
    return torch.stack(hops).sum() if hops else attentions[layers[0]].sum() * 0.0


def readout_head(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """A causal LM (or the engine / wrapper around one) -> its final norm, then its output projection: what
    `lm.referent.word_readout` reads an intermediate layer's residual stream through."""
    inner = model
    while hasattr(inner, "module"):  # DeepSpeed engine, DDP
        inner = inner.module
    norm = getattr(inner.get_decoder(), "norm", None)
    if norm is None:
        raise ValueError(f"train.referent_values reads the residual stream through the model's final norm, and "
                         f"{type(inner.get_decoder()).__name__} has no `norm`")
    head = inner.get_output_embeddings()
    return lambda h: head(norm(h))


def word_readout(hidden_states: Sequence[torch.Tensor], head, labels: torch.Tensor, words: torch.Tensor,
                 layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's hidden states (embeddings, then each layer's output, the last one after the final norm; [B, L, D]
    each), `head` (the final norm and output projection: [N, D] -> logits [N, V]), the labels [B, L] and hop two's
    targets [B, L, HEADS] (`referent_targets`' "referent_words"; `layer` before the last) -> for every lookup question of the batch (one named object: both heads
    of hop two point at one word): its batch row [N], the logits [N, V] read off the residual stream after `layer`
    at that word, and the answer's first token [N], the token the answer position predicts."""
    n = len(hidden_states) - 1
    if not (-n <= layer < n and layer % n < n - 1):
        raise ValueError(f"the value readout needs a layer before the last of the {n} (whose output is already "
                         f"normed), got {layer}")
    b, p = ((words[..., 0] > 0) & (words[..., 0] == words[..., 1])).nonzero(as_tuple=True)  # [N]: answer predictors
    h = hidden_states[layer % n + 1][b, words[b, p, 0] - 1]  # [N, D]: after `layer`, at the named object's word
    return b, head(h), labels[b, p + 1]


def referent_value_loss(hidden_states: Sequence[torch.Tensor], head, labels: torch.Tensor, words: torch.Tensor,
                        layer: int) -> torch.Tensor:
    """The mean over the batch's lookup questions of the cross-entropy of the answer's first token against the
    logits read at its word after `layer` (`word_readout`); 0 when the batch has none."""
    _, logits, target = word_readout(hidden_states, head, labels, words, layer)
    if not target.numel():
        return hidden_states[0].sum() * 0.0
    return torch.nn.functional.cross_entropy(logits.float(), target)


__all__ = ["HEADS", "span_objects", "named_span_objects", "referent_targets", "hop_masses", "referent_attention_loss",
           "readout_head", "word_readout", "referent_value_loss"]
