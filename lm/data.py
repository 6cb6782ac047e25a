"""Training data of the multimodal LM: mixed-task sequences from extracted codes, and their collator.

Owns `MultiTaskSequenceDataset` (a map-style torch Dataset over an extract-codes dataset) and
`SequenceCollator`. Item i picks its record (i mod rows), its task and (for VQA) its question from an RNG
seeded by (seed, i), so the data is a pure function of (seed, index): identical across processes, reruns
and resumes. Tasks are mixed by `ratios` (text_to_image / caption / vqa; normalised); the text-to-image
caption is replaced by "" with probability `caption_dropout` (classifier-free guidance). Sequences come
from `lm.sequences` (the one place for prompt formats and loss masks). `repeats` > 1 makes one epoch see
each record several times with fresh task draws. `t2i_codes` (optional) rewrites the codes of text-to-image
targets only (`lm.canonical.BackgroundCanon`); captioning and VQA read the codes as extracted.
`image_groups` gives captioning / VQA sequences the object group of each input-image token (from the rows'
"groups" column, `lm.object_groups`; the collator pads them with 0). `object_layout`
(`lm.object_layout.ObjectLayout`) writes text-to-image targets object-major from the rows'
"objects" column (the stream's slot lists per object, in caption order). `image_input_loss` puts loss on the
input image's codes of captioning/VQA sequences too (the image modelled in the tokenizer's order).
`input_objects` writes the input image of captioning/VQA as the object-major span of its groups
(`lm.object_groups.input_span`; rows need "groups"; the LM config's `input_layout: objects`).
`vqa_turns` > 1 asks up to that many of a row's questions in one VQA sequence (a multi-turn conversation
about the image, `lm.sequences.build_vqa_turns`), starting from the drawn question: more answers learned per
image read. `vqa_rationale` makes every VQA target describe-then-answer: "{rationale}, so {answer}" with the
Shapes rationale of the row's caption (the canonical one under `canonical_captions`) and the question
(`data.shapes_text.rationale_for`): the answer is then read from text the model has just written.
`rationale_style="scan"` writes a lookup question's rationale as the caption's objects marked in turn up to the
asked one (`data.shapes_text.scan_rationale`), so no step needs to find an object by its content;
`"cued_scan"` restates the question's referent before each phrase, so no mark reaches back to the question.
The `text_qa` task (needs `vqa_rationale`) is that VQA turn without its image, the rationale given and loss on the
answer only (`lm.sequences.build_text_qa`; a scan's marks, and a cued scan's cues, learned too): a drill in reading the answer
off the rationale, `text_qa_turns` turns per sequence drawn from the row's questions and its caption's lookup
questions (`data.shapes_text.lookup_questions`; `text_qa_questions="lookup"`: those only).
`referent_attention` gives every sequence "input_objects" (each token's input object) and VQA sequences
"referent_targets" / "referent_words" (each question's words -> the objects they name, each answer -> those
words): the targets of `lm.referent`'s auxiliary loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from gaussiantoken.lm.sequences import (
    IGNORE_INDEX,
    TASKS,
    VocabLayout,
    build_caption,
    build_text_to_image,
    build_vqa,
    build_text_qa,
    build_vqa_turns,
    reasoned_answer,
)

REQUIRED_COLUMNS = {"text_to_image": ("caption",), "caption": ("caption",), "vqa": ("questions", "answers"),
                    "text_qa": ("caption", "questions", "answers")}


TEXT_QA_QUESTIONS = ("all", "lookup")  # what text QA turns draw from: every question, or lookup questions only


def normalize_ratios(ratios: dict) -> dict[str, float]:
    unknown = sorted(set(ratios) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) in data.ratios: {unknown}; known: {list(TASKS)}")
    values = {t: float(ratios.get(t, 0.0)) for t in TASKS}
    if any(v < 0 for v in values.values()) or sum(values.values()) <= 0:
        raise ValueError(f"data.ratios must be non-negative with a positive sum, got {ratios}")
    total = sum(values.values())
    return {t: v / total for t, v in values.items()}


def validate_codes_dataset(dataset, ratios: dict, layout: VocabLayout) -> None:
    """Raise ValueError when the dataset lacks the columns the tasks need or its codes do not fit the LM."""
    cols = set(dataset.column_names)
    if "codes" not in cols:
        raise ValueError(f"the codes dataset has no 'codes' column (columns: {sorted(cols)}); run extract-codes")
    for task, weight in normalize_ratios(ratios).items():
        missing = [c for c in REQUIRED_COLUMNS[task] if c not in cols]
        if weight > 0 and missing:
            raise ValueError(
                f"task {task!r} has ratio {weight:.2f} but the dataset lacks column(s) {missing} "
                f"(columns: {sorted(cols)}); set data.ratios.{task}=0 or use a dataset with them"
            )
    if len(dataset) == 0:
        raise ValueError("the codes dataset is empty")
    first = dataset[0]["codes"]
    if len(first) != layout.tokens_per_image:
        raise ValueError(
            f"codes have {len(first)} tokens per image but the LM expects tokens_per_image={layout.tokens_per_image}: "
            "the codes were extracted with a different image tokenizer"
        )
    if max(first) >= layout.image_vocab_size:
        raise ValueError(f"codes reach {max(first)} >= image_vocab_size {layout.image_vocab_size}: tokenizer/LM vocabulary mismatch")


class MultiTaskSequenceDataset(torch.utils.data.Dataset):
    """Item i -> {"input_ids", "labels", "task"} (lists of ints); see the module docstring."""

    def __init__(
        self,
        dataset,
        tokenizer,
        layout: VocabLayout,
        ratios: dict | None = None,
        caption_dropout: float = 0.1,
        seed: int = 0,
        max_length: int | None = None,
        repeats: int = 1,
        t2i_codes=None,
        object_layout=None,
        image_input_loss: bool = False,
        image_groups: bool = False,
        canonical_captions: bool = False,
        vqa_turns: int = 1,
        input_objects: bool = False,
        vqa_rationale: bool = False,
        text_qa_turns: int = 1,
        rationale_style: str = "describe",
        text_qa_questions: str = "all",
        referent_attention: bool = False,
        relation_positions: bool = False,
        image_size: int | None = None,
    ):
        ratios = ratios if ratios is not None else {"text_to_image": 1.0, "caption": 1.0, "vqa": 1.0}
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1], got {caption_dropout}")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        if not isinstance(vqa_turns, int) or vqa_turns < 1:
            raise ValueError(f"vqa_turns must be an int >= 1, got {vqa_turns!r}")
        if not isinstance(text_qa_turns, int) or text_qa_turns < 1:
            raise ValueError(f"text_qa_turns must be an int >= 1, got {text_qa_turns!r}")
        self.text_qa_turns = text_qa_turns  # questions per text QA sequence (the row's and every lookup question)
        if text_qa_questions not in TEXT_QA_QUESTIONS:
            raise ValueError(f"text_qa_questions must be one of {TEXT_QA_QUESTIONS}, got {text_qa_questions!r}")
        self.text_qa_questions = text_qa_questions  # lookup: only the caption's lookup questions (the row's if none)
        self.vqa_turns = vqa_turns  # questions per VQA sequence (as many as the row has, at most this)
        # captioning / VQA read the input image as the object-major span of its groups (lm.object_groups.input_span)
        self.input_objects = bool(input_objects)
        if self.input_objects and (object_layout is None or "groups" not in dataset.column_names):
            raise ValueError("object-major input images need the object layout and rows with a 'groups' column")
        # VQA targets describe, then answer: "{rationale}, so {answer}" (lm.sequences.reasoned_answer; the Shapes
        # rationale of data.shapes_text.rationale_for, read from the row's caption)
        self.vqa_rationale = bool(vqa_rationale)
        if self.vqa_rationale and "caption" not in dataset.column_names:
            raise ValueError("describe-then-answer VQA (data.vqa_rationale) needs rows with a 'caption' column "
                             "in the Shapes grammar (data.source=shapes_stream or a Shapes codes dataset)")
        if normalize_ratios(ratios)["text_qa"] > 0 and not self.vqa_rationale:
            raise ValueError("the text_qa task drills describe-then-answer VQA: it needs data.vqa_rationale=true")
        from gaussiantoken.data.shapes_text import RATIONALE_STYLES, SCAN_STYLES

        if rationale_style not in RATIONALE_STYLES:
            raise ValueError(f"rationale_style must be one of {RATIONALE_STYLES}, got {rationale_style!r}")
        if rationale_style in SCAN_STYLES and self.vqa_rationale and "scene" not in dataset.column_names:
            raise ValueError("scan rationales order a relation question's objects by position: they need rows with "
                             "a 'scene' column (data.source=shapes_stream)")
        self.rationale_style = rationale_style  # describe | scan | cued_scan (data.shapes_text.styled_rationale)
        self.scan = rationale_style in SCAN_STYLES
        validate_codes_dataset(dataset, ratios, layout)
        self.dataset, self.tokenizer, self.layout = dataset, tokenizer, layout
        self.ratios = normalize_ratios(ratios)
        self._tasks = [t for t in TASKS if self.ratios[t] > 0]
        self._probs = np.array([self.ratios[t] for t in self._tasks])
        self.caption_dropout, self.seed, self.max_length, self.repeats = caption_dropout, seed, max_length, repeats
        self.t2i_codes = t2i_codes  # codes -> codes for text-to-image targets only (e.g. lm.canonical), or None
        self.object_layout = object_layout  # lm.object_layout.ObjectLayout: object-major t2i spans (rows need "objects")
        self.image_input_loss = bool(image_input_loss)  # captioning/VQA also model their input image's codes
        self.canonical_captions = bool(canonical_captions)  # captioning targets: the rows' "caption_canonical"
        if self.canonical_captions and "caption_canonical" not in dataset.column_names:
            raise ValueError("canonical captions need rows with a 'caption_canonical' column (data.source=shapes_stream)")
        self.image_groups = bool(image_groups)  # sequences carry "image_groups" (rows need "groups": lm.object_groups)
        if self.image_groups and "groups" not in dataset.column_names:
            raise ValueError("image groups need rows with a 'groups' column (data.source=shapes_stream)")
        if object_layout is not None and "objects" not in dataset.column_names:
            raise ValueError("the object text-to-image layout needs rows with an 'objects' column (data.source=shapes_stream)")
        # relation questions answered "left: red circle 2, blue square 5, so yes": both objects' positions written
        # first (data.shapes_positions; needs the rows' scenes and the image size their centres are in)
        self.relation_positions, self.image_size = bool(relation_positions), image_size
        if self.relation_positions and (self.vqa_rationale or image_size is None or "scene" not in dataset.column_names):
            raise ValueError("relation positions replace the relation answers of plain VQA: they need "
                             "data.vqa_rationale=false, stream rows (data.source=shapes_stream) and the image size")
        # VQA sequences carry "referent_targets" and "input_objects" (lm.referent: the objects each question names)
        self.referent_attention = bool(referent_attention)
        if self.referent_attention and (not self.input_objects or self.vqa_rationale
                                        or not {"scene", "objects", "caption"} <= set(dataset.column_names)):
            raise ValueError("referent attention needs object-major input images (model.input_layout=objects), plain "
                             "answers (data.vqa_rationale=false) and stream rows (data.source=shapes_stream)")

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def plan(self, index: int) -> tuple[int, str, bool, int]:
        """(record, task, caption dropped, question index) of item `index` (pure function of seed, index)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        task = self._tasks[int(rng.choice(len(self._tasks), p=self._probs))]
        drop = bool(rng.random() < self.caption_dropout)
        q = int(rng.integers(1 << 30))
        return index % len(self.dataset), task, drop, q

    def __getitem__(self, index: int) -> dict:
        record, task, drop, q = self.plan(index)
        row = self.dataset[record]
        codes = row["codes"]
        if task == "text_to_image" and "t2i_codes" in row:  # a scene of its own for text-to-image (lm.stream)
            row = {k[4:]: v for k, v in row.items() if k.startswith("t2i_")}
            codes = row["codes"]
        if task == "text_to_image" and self.object_layout is not None:
            span = self.object_layout.span(codes, row["objects"])
            seq = build_text_to_image(self.tokenizer, "" if drop else row["caption"], None, self.layout, self.max_length,
                                      span=span)
        elif task == "text_to_image":
            if self.t2i_codes is not None:
                codes = self.t2i_codes(codes)
            seq = build_text_to_image(self.tokenizer, "" if drop else row["caption"], codes, self.layout, self.max_length)
        elif task == "caption":
            caption = row["caption_canonical"] if self.canonical_captions else row["caption"]
            seq = build_caption(self.tokenizer, caption, codes, self.layout, self.max_length, self.image_input_loss,
                                span=self._input_span(row))
        elif task == "text_qa":
            questions, answers = self._text_qa_questions(row, record)
            pick = np.random.default_rng(q).permutation(len(questions))[:self.text_qa_turns]
            seq = build_text_qa(self.tokenizer, [questions[j] for j in pick],
                                [self._vqa_target(row, questions[j], answers[j]) for j in pick], self.layout, self.max_length,
                                scan_marks=self.scan, scan_cues=self.rationale_style == "cued_scan")
        else:
            questions, answers = _row_questions(row, record)
            k, n = q % len(questions), min(self.vqa_turns, len(questions))
            order = [(k + j) % len(questions) for j in range(n)]  # from the drawn question on, cyclically
            targets = [self._vqa_target(row, questions[j], answers[j]) for j in order]
            seq = build_vqa_turns(self.tokenizer, [questions[j] for j in order], targets, codes,
                                  self.layout, self.max_length, self.image_input_loss, span=self._input_span(row))
            if self.referent_attention:
                from gaussiantoken.lm.referent import named_span_objects, referent_targets

                named = [named_span_objects(row, questions[j]) for j in order]
                seq.update(referent_targets(seq["input_ids"], seq["labels"], self.layout, self.tokenizer,
                                            [questions[j] for j in order], named, targets))
        if self.referent_attention:
            from gaussiantoken.lm.referent import HEADS, span_objects

            for key in ("referent_targets", "referent_words"):
                seq.setdefault(key, [[0] * HEADS for _ in seq["input_ids"]])
            seq["input_objects"] = span_objects(seq["input_ids"], self.layout, self.object_layout.obj_token_id)
        if self.image_groups:  # the input image's Gaussians carry their object group; text-to-image targets none
            groups = [0] * len(seq["input_ids"])  # (an object-major input span marks its objects itself: none)
            if task in ("caption", "vqa") and not self.input_objects:
                start = seq["input_ids"].index(self.layout.boi_token_id) + 1
                per_slot = row["groups"]
                G = self.layout.tokens_per_image // len(per_slot)
                groups[start:start + self.layout.tokens_per_image] = [g for g in per_slot for _ in range(G)]
            seq["image_groups"] = groups
        seq["task"] = task
        return seq

    def _vqa_target(self, row, question: str, answer: str) -> str:
        if self.relation_positions:
            from gaussiantoken.data.shapes_positions import relation_positions

            rationale = relation_positions(row["scene"], question, self.image_size)
            return answer if rationale is None else reasoned_answer(rationale, answer)
        if not self.vqa_rationale:
            return answer
        return _reasoned(row["caption_canonical"] if self.canonical_captions else row["caption"], question, answer,
                         self.rationale_style, row.get("scene"))

    def _text_qa_questions(self, row, record: int) -> tuple[list[str], list[str]]:
        """The row's questions, then every lookup question of its caption (`data.shapes_text.lookup_questions`)
        not among them: what a text QA sequence draws its turns from (`text_qa_questions="lookup"`: the lookup
        questions only, the row's when its caption has none)."""
        from gaussiantoken.data.shapes_text import lookup_questions, parse_caption

        questions, answers = (list(x) for x in _row_questions(row, record))
        caption = row["caption_canonical"] if self.canonical_captions else row["caption"]
        parsed = parse_caption(caption)
        if parsed is None:
            raise ValueError(f"row {record}: caption {caption!r} is not in the Shapes grammar (text QA reads it)")
        lookups = lookup_questions(parsed["objects"])
        if self.text_qa_questions == "lookup" and lookups[0]:
            return list(lookups[0]), list(lookups[1])
        for question, answer in zip(*lookups):
            if question not in questions:
                questions.append(question)
                answers.append(answer)
        return questions, answers

    def _input_span(self, row) -> list[int] | None:
        if not self.input_objects:
            return None
        from gaussiantoken.lm.object_groups import input_span

        return input_span(self.object_layout, row["codes"], row["groups"])

    def longest_sequence(self) -> int:
        """Upper bound of the sequence length over all records and tasks (checks the context before training)."""
        T = self.layout.tokens_per_image
        count = _token_counter(self.tokenizer)
        cols = self.dataset.column_names
        # a stream (lm.stream) has no columns to read whole: a probe of rows drawn like its own stands in
        text = self.dataset.probe_text() if hasattr(self.dataset, "probe_text") else self.dataset
        captions = list(text["caption"]) if "caption" in cols else [""]
        cap = max(count(c) for c in captions) if captions else 0
        longest = 0
        # an object-major input span may outgrow the T codes (every slot written, with its slot token)
        extra = max(0, self.object_layout.max_span_tokens - (T + 1)) if self.input_objects else 0
        if self.ratios["text_to_image"] > 0:
            image = dict(codes=None, span=[0] * (self.object_layout.max_span_tokens - 1)) if self.object_layout else dict(codes=[0] * T)
            longest = max(longest, len(build_text_to_image(self.tokenizer, "", layout=self.layout, **image)["input_ids"]) + cap)
        if self.ratios["caption"] > 0:
            longest = max(longest, len(build_caption(self.tokenizer, "", [0] * T, self.layout)["input_ids"]) + cap + extra)
        if self.ratios["vqa"] > 0 or self.ratios["text_qa"] > 0:  # a text QA sequence is a VQA one less its image
            q = max((count(x) for qs in text["questions"] for x in qs), default=0)
            a = max((count(x) for ans in text["answers"] for x in ans), default=0)
            if self.vqa_rationale:  # the probe's own describe-then-answer targets (a caption or a 2-object relation)
                rows = zip(text["caption"], text["questions"], text["answers"])
                a = max((count(_reasoned(c, x, y)) for c, qs, ans in rows for x, y in zip(qs, ans)),
                        default=0) + 4  # + slack: a longer relation/size than the probe's
                if self.scan:  # a scan's longest: every object of the caption marked
                    from gaussiantoken.data.shapes_text import scan_bound_text

                    word = max((y for ans in text["answers"] for y in ans), key=count, default="")  # longest answer
                    cued = self.rationale_style == "cued_scan"
                    bounds = (reasoned_answer(scan_bound_text(c, cued, count), word) for c in text["caption"])
                    a = max(a, max(map(count, bounds), default=0) + 4)
            if self.relation_positions:  # a relation's reply: its positions rationale, then the answer
                from gaussiantoken.data.shapes_positions import relation_positions_bound

                a = max(a, relation_positions_bound(count) + count(reasoned_answer("", "yes")) + 4)  # + slack
            turns = min(self.vqa_turns, max((len(qs) for qs in text["questions"]), default=1))
            one = len(build_vqa(self.tokenizer, "", "", [0] * T, self.layout)["input_ids"])
            more = len(build_vqa_turns(self.tokenizer, ["", ""], ["", ""], [0] * T, self.layout)["input_ids"]) - one
            longest = max(longest, one + q + a + (turns - 1) * (more + q + a) + extra)
            if self.ratios["text_qa"] > 0:  # text QA turns: a VQA turn less its image span, each
                longest = max(longest, self.text_qa_turns * (more + q + a) + 1)
        return longest


def _row_questions(row, record: int) -> tuple[list[str], list[str]]:
    questions, answers = row["questions"], row["answers"]
    if not questions or len(questions) != len(answers):
        raise ValueError(f"row {record}: questions/answers must be non-empty and of equal length")
    return questions, answers


def _reasoned(caption: str, question: str, answer: str, style: str = "describe", scene=None) -> str:
    """The describe-then-answer target of a Shapes question about a scene with this caption (and these objects,
    for a relation scan), its rationale in `style` (data.shapes_text.styled_rationale)."""
    from gaussiantoken.data.shapes_text import styled_rationale

    return reasoned_answer(styled_rationale(caption, question, answer, style, scene), answer)


def _token_counter(tokenizer):
    @lru_cache(maxsize=None)
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # +1: merge slack at the seam

    return count


@dataclass
class SequenceCollator:
    """Pads a list of {"input_ids", "labels"} on the right: input_ids with pad, labels with -100."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(features)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)  # [B, L]
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)  # [B, L]
        attention_mask = torch.zeros((n, width), dtype=torch.long)  # [B, L]
        groups = torch.zeros((n, width), dtype=torch.long) if "image_groups" in features[0] else None  # [B, L]
        objects = torch.zeros((n, width), dtype=torch.long) if "input_objects" in features[0] else None  # [B, L]
        heads = 0 if objects is None else len(features[0]["referent_targets"][0])
        targets = {k: torch.zeros((n, width, heads), dtype=torch.long)  # [B, L, heads]
                   for k in ("referent_targets", "referent_words")} if objects is not None else {}
        for i, f in enumerate(features):
            L = len(f["input_ids"])
            if len(f["labels"]) != L:
                raise ValueError("input_ids and labels must have the same length")
            input_ids[i, :L] = torch.as_tensor(f["input_ids"])
            labels[i, :L] = torch.as_tensor(f["labels"])
            attention_mask[i, :L] = 1
            if groups is not None:
                groups[i, :L] = torch.as_tensor(f["image_groups"])
            if objects is not None:
                objects[i, :L] = torch.as_tensor(f["input_objects"])
                for k, v in targets.items():
                    v[i, :L] = torch.as_tensor(f[k])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if groups is not None:
            batch["image_groups"] = groups
        if objects is not None:  # lm.referent: popped by the trainer's loss, never given to the model
            batch.update(input_objects=objects, **targets)
        return batch


__all__ = ["MultiTaskSequenceDataset", "SequenceCollator", "validate_codes_dataset", "normalize_ratios"]
