"""THE one place for the multimodal LM's prompt formats, how a prompt tokenizes (`prompt_token_ids`), how
user requests about an image are read (`is_caption_request`, `image_request_prompt`, the chat template) and
the training sequences (with loss masks). Generation, the processor and the pipelines take their prompts
from here.

Special tokens (text ids of the text tokenizer): "<boi>" begins an image span, "<eoi>" ends it, "<image>"
is the placeholder that the processor expands to `<boi> + T x <image> + <eoi>` (T = tokens_per_image) and
that the model replaces by the image's codes (LM id = image_token_offset + local id).

Prompt formats (strings; tokenized with the text tokenizer, bos added by the tokenizer):
- text-to-image:  text_to_image_prompt(caption) = "Generate an image: {caption}<boi>"
  It ENDS WITH "<boi>": generation continues directly with the T image tokens, then "<eoi>" and eos.
  The caption-dropped (unconditional, classifier-free guidance) prompt is text_to_image_prompt("") ==
  unconditional_prompt() = "Generate an image: <boi>"; training drops the caption with probability
  `caption_dropout` so this prompt is in-distribution.
- captioning:     caption_prompt() = "<image>Describe the image."  ; target: caption + eos
- VQA:            vqa_prompt(question) = "<image>Question: {question} Answer:"  ; target: answer + eos
                  (several turns about one image, `build_vqa_turns`: each later turn appends
                  "Question: {q} Answer:" + answer + eos, as the chat template writes a conversation)

Training sequences are built at the id level: the prompt is tokenized as a string (exactly as at
inference), each "<image>" placeholder id is expanded to <boi> + codes + <eoi>, and the target is
tokenized separately (without specials) and appended with eos. Labels are -100 where no loss applies:
  text-to-image: loss on the T image tokens, <eoi> and eos (not on the prompt, not on <boi>)
  captioning:    loss on the caption tokens and eos
  VQA:           loss on the answer tokens and eos (of every turn)
  text QA:       `build_text_qa`, a describe-then-answer VQA turn without its image: loss on the final answer + eos
  (captioning/VQA with `image_loss=True`, data.image_input_loss: also on the input image's codes, i.e. the
  image modelled unconditionally in the tokenizer's order; the span's <boi>/<eoi> keep no loss)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from gaussiantoken.data.shapes_text import SCAN_AXIS_WORDS

BOI_TOKEN = "<boi>"
EOI_TOKEN = "<eoi>"
IMAGE_TOKEN = "<image>"
SPECIAL_IMAGE_TOKENS = (BOI_TOKEN, EOI_TOKEN, IMAGE_TOKEN)
IGNORE_INDEX = -100
TASKS = ("text_to_image", "caption", "vqa", "text_qa")

_T2I_PREFIX = "Generate an image: "
_CAPTION_INSTRUCTION = "Describe the image."


def text_to_image_prompt(caption: str) -> str:
    """Prompt for text-to-image; ends with "<boi>" (generation starts with the first image token)."""
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str, got {type(caption).__name__}")
    return f"{_T2I_PREFIX}{caption.strip()}{BOI_TOKEN}"


def unconditional_prompt() -> str:
    """The caption-dropped text-to-image prompt (the negative/unconditional branch of CFG)."""
    return text_to_image_prompt("")


def caption_prompt() -> str:
    """Prompt for captioning: the image placeholder, then the instruction."""
    return f"{IMAGE_TOKEN}{_CAPTION_INSTRUCTION}"


REASON_SEPARATOR = ", so "  # between a describe-then-answer target's rationale and its answer


def reasoned_answer(rationale: str, answer: str) -> str:
    """A describe-then-answer VQA target: "{rationale}, so {answer}"."""
    rationale, answer = rationale.strip(), answer.strip()
    if REASON_SEPARATOR in answer:
        raise ValueError(f"the answer {answer!r} contains the rationale separator {REASON_SEPARATOR!r}")
    return f"{rationale}{REASON_SEPARATOR}{answer}"


def final_answer(text: str) -> str:
    """The answer of a generated reply: the text after the last ", so " (a describe-then-answer reply), else the
    whole text, stripped. Captions and plain answers never hold the separator, so they pass unchanged."""
    return text.rpartition(REASON_SEPARATOR)[2].strip()


def check_user_text(text: str, what: str = "text") -> str:
    """User text is text: it may not contain the reserved markers <boi>, <eoi>, <image> (the tokenizer would
    read them as the image-span specials, and the placeholder count would include them). ValueError naming
    the marker otherwise."""
    found = [t for t in SPECIAL_IMAGE_TOKENS if t in text]
    if found:
        raise ValueError(f"the {what} {text!r} contains {', '.join(found)}, reserved for image spans; "
                         f"user text cannot contain {', '.join(SPECIAL_IMAGE_TOKENS)} (pass images as images)")
    return text


def vqa_prompt(question: str) -> str:
    """Prompt for visual question answering: the image placeholder, the question, "Answer:"."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    check_user_text(question, "question")
    return f"{IMAGE_TOKEN}Question: {question.strip()} Answer:"


# Requests that mean "caption this image" (compared trimmed, lower-case, without a final period).
CAPTION_REQUESTS = ("", "describe the image", "describe this image", "caption", "caption the image")


def is_caption_request(text: str | None) -> bool:
    """True when a user's request about an image asks for its caption (see CAPTION_REQUESTS)."""
    return text is None or text.strip().lower().rstrip(".") in CAPTION_REQUESTS


def image_request_prompt(text: str | None) -> str:
    """A user's plain request about one image -> our prompt: the captioning prompt for a caption request
    (None, "", "Describe the image.", ...), else the VQA prompt with `text` as the question. This is
    how the stock image-text-to-text task, its chat template and our captioning/VQA pipelines read
    user text, so all of them give the same answers."""
    return caption_prompt() if is_caption_request(text) else vqa_prompt(text)


def chat_template() -> str:
    """The processor's Jinja chat template (saved in chat_template.jinja with the processor).

    A conversation is one or more user turns, each with image parts ({"type": "image", ...}, rendered
    as the <image> placeholder, so images come first) and text parts (joined, then formatted as
    `image_request_prompt` does: caption request -> "Describe the image.", else "Question: q
    Answer:"); an assistant turn adds its text followed by eos, except a final assistant turn
    (continue_final_message), which is left open. add_generation_prompt adds nothing: our prompts end
    where the answer starts. System turns are rejected."""
    requests = ", ".join(repr(r) for r in CAPTION_REQUESTS)
    question_prefix, question_suffix = vqa_prompt("{q}").replace(IMAGE_TOKEN, "", 1).split("{q}")
    return (
        "{%- set caption_requests = [" + requests + "] -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}"
        "{{ raise_exception('system messages are not supported by this model') }}"
        "{%- elif message['role'] == 'user' -%}"
        "{%- set ns = namespace(text='') -%}"
        "{%- if message['content'] is string -%}{%- set ns.text = message['content'] -%}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}" + IMAGE_TOKEN +
        "{%- elif part['type'] == 'text' -%}{%- set ns.text = ns.text + part['text'] -%}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
        "{%- set request = ns.text | trim -%}"
        "{%- if (request | lower).rstrip('.') in caption_requests -%}" + _CAPTION_INSTRUCTION +
        "{%- else -%}" + question_prefix + "{{ request }}" + question_suffix + "{%- endif -%}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{%- if message['content'] is string -%}{{ ' ' + message['content'] }}"
        "{%- else -%}{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}"
        "{{ ' ' + part['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}"
        "{%- if not loop.last -%}{{ eos_token }}{%- endif -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


@dataclass(frozen=True)
class VocabLayout:
    """The id facts that sequence building needs (taken from the LM config or the processor)."""

    image_token_offset: int
    image_vocab_size: int
    tokens_per_image: int
    boi_token_id: int
    eoi_token_id: int
    image_token_id: int
    bos_token_id: int | None
    eos_token_id: int
    pad_token_id: int

    @classmethod
    def from_config(cls, config, tokenizer=None) -> "VocabLayout":
        """From a GaussianTokenLMConfig (+ the text tokenizer for bos/eos/pad when given)."""
        source = tokenizer if tokenizer is not None else config
        eos = source.eos_token_id
        pad = source.pad_token_id if source.pad_token_id is not None else eos
        return cls(
            image_token_offset=config.image_token_offset,
            image_vocab_size=config.image_vocab_size,
            tokens_per_image=config.tokens_per_image,
            boi_token_id=config.boi_token_id,
            eoi_token_id=config.eoi_token_id,
            image_token_id=config.image_token_id,
            bos_token_id=source.bos_token_id,
            eos_token_id=eos,
            pad_token_id=pad,
        )


def image_span(codes: Sequence[int], layout: VocabLayout) -> list[int]:
    """<boi> + LM ids of the codes + <eoi>; `codes` are LOCAL tokenizer ids (validated)."""
    codes = [int(c) for c in codes]
    if len(codes) != layout.tokens_per_image:
        raise ValueError(f"image has {len(codes)} codes, expected tokens_per_image={layout.tokens_per_image}")
    bad = [c for c in codes if not 0 <= c < layout.image_vocab_size]
    if bad:
        raise ValueError(f"image codes out of range [0, {layout.image_vocab_size}): e.g. {bad[:3]}")
    return [layout.boi_token_id, *(layout.image_token_offset + c for c in codes), layout.eoi_token_id]


def expand_image_placeholders(
    ids: Sequence[int], layout: VocabLayout, images_codes: Sequence[Sequence[int]] | None = None
) -> list[int]:
    """Replace each "<image>" id in `ids` by an image span.

    With `images_codes` (one list of local codes per placeholder, in order) the span holds the codes;
    without, it holds T placeholder ids (<boi> + T x <image> + <eoi>), which the model fills from
    pixel_values. Raises ValueError when the number of placeholders and images differ.
    """
    count = sum(1 for i in ids if i == layout.image_token_id)
    if images_codes is not None and count != len(images_codes):
        raise ValueError(f"text has {count} {IMAGE_TOKEN} placeholder(s) but {len(images_codes)} image(s) were given")
    out: list[int] = []
    k = 0
    for i in ids:
        if i != layout.image_token_id:
            out.append(int(i))
        elif images_codes is None:
            out += [layout.boi_token_id, *([layout.image_token_id] * layout.tokens_per_image), layout.eoi_token_id]
        else:
            out += image_span(images_codes[k], layout)
            k += 1
    return out


def expand_image_spans(ids: Sequence[int], layout: VocabLayout, spans: Sequence[Sequence[int]]) -> list[int]:
    """Replace each "<image>" id in `ids` by <boi> + its span (LM ids, e.g. an object-major input span) + <eoi>.
    Raises ValueError when the number of placeholders and spans differ."""
    count = sum(1 for i in ids if i == layout.image_token_id)
    if count != len(spans):
        raise ValueError(f"text has {count} {IMAGE_TOKEN} placeholder(s) but {len(spans)} image span(s) were given")
    out: list[int] = []
    it = iter(spans)
    for i in ids:
        out += [layout.boi_token_id, *(int(t) for t in next(it)), layout.eoi_token_id] if i == layout.image_token_id else [int(i)]
    return out


def _tokenize(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def prompt_token_ids(tokenizer, text: str, bos_token_id: int | None) -> list[int]:
    """Tokenize a prompt string as training and inference both do: specials added, bos ensured."""
    ids = _tokenize(tokenizer, text, add_special_tokens=True)
    if bos_token_id is not None and (not ids or ids[0] != bos_token_id):
        ids = [bos_token_id] + ids
    return ids


def _prompt_ids(tokenizer, text: str, layout: VocabLayout) -> list[int]:
    return prompt_token_ids(tokenizer, text, layout.bos_token_id)


def _target_ids(tokenizer, text: str, layout: VocabLayout) -> list[int]:
    return _tokenize(tokenizer, text.strip(), add_special_tokens=False) + [layout.eos_token_id]


def _check_length(ids: list[int], max_length: int | None, what: str) -> None:
    if max_length is not None and len(ids) > max_length:
        raise ValueError(
            f"{what} sequence has {len(ids)} tokens, longer than max_length={max_length} (the model's context); "
            "shorten the text, raise data.max_length / the backbone's max_position_embeddings, or use fewer "
            "tokens per image"
        )


def build_text_to_image(
    tokenizer, caption: str, codes: Sequence[int] | None, layout: VocabLayout, max_length: int | None = None,
    span: Sequence[int] | None = None,
) -> dict[str, list[int]]:
    """[bos] prompt(caption) (ending <boi>) codes <eoi> eos; loss on codes, <eoi>, eos.

    `span` (LM ids, instead of `codes`): the image span between <boi> and <eoi> as another layout writes
    it (the object-major layout of `lm.object_layout`)."""
    prompt = _prompt_ids(tokenizer, text_to_image_prompt(caption), layout)
    if prompt[-1] != layout.boi_token_id:
        raise ValueError("the text-to-image prompt must tokenize to ids ending with <boi>; check the tokenizer's specials")
    if (codes is None) == (span is None):
        raise ValueError("give exactly one of codes or span")
    if span is not None:
        span = [int(i) for i in span] + [layout.eoi_token_id]
    else:
        span = image_span(codes, layout)[1:]  # prompt already ends with <boi>
    input_ids = prompt + span + [layout.eos_token_id]
    labels = [IGNORE_INDEX] * len(prompt) + span + [layout.eos_token_id]
    _check_length(input_ids, max_length, "text-to-image")
    return {"input_ids": input_ids, "labels": labels}


def _image_prompt_sequence(tokenizer, prompt_text, target, codes, layout, max_length, what, image_loss=False, span=None):
    ids = _prompt_ids(tokenizer, prompt_text, layout)
    if span is None:
        prompt = expand_image_placeholders(ids, layout, [codes])
        lo, hi = layout.image_token_offset, layout.image_token_offset + layout.image_vocab_size
        labels = [i if image_loss and lo <= i < hi else IGNORE_INDEX for i in prompt]
    else:  # the image as an object-major span (LM ids between <boi> and <eoi>, lm.object_groups.input_span)
        prompt = expand_image_spans(ids, layout, [span])
        k = prompt.index(layout.boi_token_id) + 1
        labels = [i if image_loss and k <= j < k + len(span) else IGNORE_INDEX for j, i in enumerate(prompt)]
    answer = _target_ids(tokenizer, target, layout)
    input_ids = prompt + answer
    labels = labels + answer
    _check_length(input_ids, max_length, what)
    return {"input_ids": input_ids, "labels": labels}


def build_caption(
    tokenizer, caption: str, codes: Sequence[int], layout: VocabLayout, max_length: int | None = None,
    image_loss: bool = False, span: Sequence[int] | None = None,
) -> dict[str, list[int]]:
    """[bos] <boi> codes <eoi> "Describe the image." caption eos; loss on caption + eos (+ codes: image_loss).
    `span`: the image written as these LM ids between <boi> and <eoi> instead of `codes` (the object-major input)."""
    return _image_prompt_sequence(tokenizer, caption_prompt(), caption, codes, layout, max_length, "captioning",
                                  image_loss, span)


def build_vqa(
    tokenizer, question: str, answer: str, codes: Sequence[int], layout: VocabLayout, max_length: int | None = None,
    image_loss: bool = False, span: Sequence[int] | None = None,
) -> dict[str, list[int]]:
    """[bos] <boi> codes <eoi> "Question: q Answer:" answer eos; loss on answer + eos (+ codes: image_loss)."""
    return build_vqa_turns(tokenizer, [question], [answer], codes, layout, max_length, image_loss, span)


def _later_turn_prompt(tokenizer, question: str, layout: VocabLayout) -> list[int]:
    """"Question: q Answer:" of a turn after the first: tokenized after the eos it follows (and then without it), as
    the chat template's rendered text is."""
    prompt = _tokenize(tokenizer, tokenizer.eos_token + vqa_prompt(question).replace(IMAGE_TOKEN, "", 1),
                       add_special_tokens=False)
    if prompt[:1] != [layout.eos_token_id]:
        raise ValueError("the text tokenizer must read its eos token string as the eos id")
    return prompt[1:]


def build_vqa_turns(
    tokenizer, questions: Sequence[str], answers: Sequence[str], codes: Sequence[int], layout: VocabLayout,
    max_length: int | None = None, image_loss: bool = False, span: Sequence[int] | None = None,
) -> dict[str, list[int]]:
    """Several questions about one image, as the chat template writes a multi-turn conversation:
    [bos] <boi> codes <eoi> "Question: q1 Answer:" a1 eos "Question: q2 Answer:" a2 eos ...; loss on every
    answer and its eos (+ codes: image_loss). The first turn is exactly `build_vqa`'s sequence, so a
    one-question prompt at inference is the start of every training sequence."""
    if not questions or len(questions) != len(answers):
        raise ValueError(f"VQA turns need equally many questions and answers (>= 1), got {len(questions)} and {len(answers)}")
    seq = _image_prompt_sequence(tokenizer, vqa_prompt(questions[0]), answers[0], codes, layout, None, "VQA", image_loss,
                                 span)
    input_ids, labels = seq["input_ids"], seq["labels"]
    for question, answer in zip(questions[1:], answers[1:]):
        prompt = _later_turn_prompt(tokenizer, question, layout)
        target = _target_ids(tokenizer, answer, layout)
        input_ids = input_ids + prompt + target
        labels = labels + [IGNORE_INDEX] * len(prompt) + target
    _check_length(input_ids, max_length, "VQA")
    return {"input_ids": input_ids, "labels": labels}


SCAN_MARKS = (": yes", ": no", ": first", ": second")  # a scan rationale's marks (data.shapes_text.scan_rationale)
# a cued scan's cue: the asked object's one or two words (two objects for a relation), at the start of each step, before
# its phrase ("circle: a large red square: no; circle: ..."; "from the left: red circle, blue square: a ...")
_SCAN_CUE = re.compile(rf"(?:^|^(?:{'|'.join(SCAN_AXIS_WORDS.values())}): |; )([a-z]+(?: [a-z]+)?(?:, [a-z]+ [a-z]+)?): a ")


def build_text_qa(
    tokenizer, questions: Sequence[str], reasoned: Sequence[str], layout: VocabLayout, max_length: int | None = None,
    scan_marks: bool = False, scan_cues: bool = False,
) -> dict[str, list[int]]:
    """Describe-then-answer VQA turns with the image left out: [bos] "Question: q1 Answer:" rationale1 ", so"
    answer1 eos "Question: q2 Answer:" ... , tokenized exactly as `build_vqa_turns`'s (the <image> placeholder
    id dropped); loss on each answer and its eos only. It drills the reading of an answer off a description in
    the context (the rationale is given, not learned), the step a describe-then-answer reply ends with, at a
    fraction of a VQA sequence's length and with several answers per sequence. `scan_marks`: a scan rationale's
    marks (SCAN_MARKS: yes / no / first / second) carry loss too: its phrases are given, each comparison with the question
    and the answer are learned. `scan_cues`: a cued scan's cues (the question's referent restated before each phrase)
    are learned as well."""
    if not questions or len(questions) != len(reasoned):
        raise ValueError(f"text QA needs equally many questions and targets (>= 1), got {len(questions)} and {len(reasoned)}")
    input_ids: list[int] = []
    labels: list[int] = []
    for question, target_text in zip(questions, reasoned):
        head, sep, answer = target_text.strip().rpartition(REASON_SEPARATOR)
        if not sep or not head.strip() or not answer.strip():
            raise ValueError(f"a text QA target must be '{{rationale}}{REASON_SEPARATOR}{{answer}}', got {target_text!r}")
        if not input_ids:
            prompt = [i for i in _prompt_ids(tokenizer, vqa_prompt(question), layout) if i != layout.image_token_id]
        else:
            prompt = _later_turn_prompt(tokenizer, question, layout)
        target = _target_ids(tokenizer, target_text, layout)
        # learned character spans of the target: each mark's word (scan_marks), then the answer (to the eos)
        spans = [(m.start() + 1, m.end()) for m in re.finditer("|".join(map(re.escape, SCAN_MARKS)), head)] if scan_marks else []
        if scan_cues:  # each cue with the space before it, as the marks (a reply's first cue from its start)
            spans = sorted(spans + [(max(m.start(1) - 1, 0), m.end(1)) for m in _SCAN_CUE.finditer(head)])
        spans.append((len(head) + len(sep) - 1, None))
        loss_from = []  # (given prefix end, learned end) in target tokens
        text = target_text.strip()
        for a, b in spans:
            given = _tokenize(tokenizer, text[:a], add_special_tokens=False)
            end = target if b is None else _tokenize(tokenizer, text[:b], add_special_tokens=False)
            if target[:len(given)] != given or target[:len(end)] != end or len(given) >= len(end) - (b is None):
                raise ValueError(f"the text tokenizer does not split {target_text!r} at its marks and answer; "
                                 "cannot mask the rationale")
            loss_from.append((len(given), len(end)))
        target_labels = [IGNORE_INDEX] * len(target)
        for a, b in loss_from:
            target_labels[a:b] = target[a:b]
        input_ids += prompt + target
        labels += [IGNORE_INDEX] * len(prompt) + target_labels
    _check_length(input_ids, max_length, "text QA")
    return {"input_ids": input_ids, "labels": labels}


__all__ = [
    "BOI_TOKEN", "EOI_TOKEN", "IMAGE_TOKEN", "SPECIAL_IMAGE_TOKENS", "IGNORE_INDEX", "TASKS",
    "text_to_image_prompt", "unconditional_prompt", "caption_prompt", "vqa_prompt", "check_user_text",
    "REASON_SEPARATOR", "reasoned_answer", "final_answer",
    "CAPTION_REQUESTS", "is_caption_request", "image_request_prompt", "chat_template",
    "VocabLayout", "image_span", "expand_image_placeholders", "expand_image_spans", "prompt_token_ids",
    "build_text_to_image", "build_caption", "build_vqa", "build_vqa_turns", "build_text_qa", "SCAN_MARKS",
]
