"""The generation loops: image generation under the token grammar with classifier-free guidance, and
text-only generation for captioning / VQA. Used by the pipelines, the CLI and the evaluation alike.

Everything goes through `model.generate` with the logits processors of `lm.logits` (the HF path), plus one
fast path for image sampling (`backend="static"`: our own decode loop over a `StaticCache`, optionally
wrapped in `torch.compile(mode="reduce-overhead")` on CUDA) that draws exactly the same tokens from the same
logits, so the two are interchangeable (tests compare them).

For images the processors run in this order: classifier-free guidance (the batch is [cond; uncond], 2B
rows, ONE forward pass per step, one KV cache), the image grammar (so every generated sequence decodes,
always), then sampling: the token is drawn by `SamplingLogitsProcessor` from a `torch.Generator` (which
transformers' `generate` does not take), so images are a function of (seed, device, batch split); the two
CFG halves always get the same token. temperature=0 means greedy (argmax). The grammar, the processors and
the checks of guidance / sampling settings live in `lm.logits` (re-exported here).

Text generation (`generate_text`) masks every image token, <boi>, <eoi> and the image placeholder
(`TextOnlyLogitsProcessor`) and is greedy by default. Prompt strings come from `lm.sequences` only.

Owns also the checks of the public arguments: `as_prompt_list` (prompts), `as_image_list` (THE image
coercion of generation and the captioning / VQA pipelines: PIL images, image file paths, [B, 3, H, W]
tensors), `check_context` (prompt + new tokens within the backbone's context).
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from transformers import LogitsProcessorList

from gaussiantoken.lm.logits import (  # noqa: F401 - re-exported: the generation API's building blocks
    NEG_INF,
    ClassifierFreeGuidanceLogitsProcessor,
    ImageGrammar,
    ImageGrammarLogitsProcessor,
    SamplingLogitsProcessor,
    TextOnlyLogitsProcessor,
    check_guidance_scale,
    device_generator,
    filter_logits,
    gumbel_argmax,
    validate_sampling,
)
from gaussiantoken.lm.sequences import prompt_token_ids  # noqa: F401 - re-exported
from gaussiantoken.lm.sampling_defaults import T2I_CANDIDATES, T2I_GUIDANCE_SCALE, T2I_TEMPERATURE, TEXT_MAX_NEW_TOKENS


# ----------------------------------------------------------------------------------------------
# Batching helpers


def left_pad(sequences: Sequence[Sequence[int]], pad_token_id: int, device=None):
    """Left-pad id lists -> (input_ids [B, S], attention_mask [B, S])."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("every prompt must have at least one token")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), int(pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[i, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def _context_length(config) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None)


def check_context(lm_config, prompt_length: int, new_tokens: int) -> None:
    """ValueError when prompt_length + new_tokens exceed the backbone's max_position_embeddings."""
    limit = _context_length(lm_config)
    if limit is not None and prompt_length + new_tokens > limit:
        raise ValueError(
            f"prompt too long: {prompt_length} prompt tokens + {new_tokens} generated tokens exceed the "
            f"model's context of {limit} tokens"
        )


def default_text_tokens(lm_config, prompt_length: int, wanted: int = TEXT_MAX_NEW_TOKENS) -> int:
    """New tokens for a text reply nobody asked a length for: `wanted` (TEXT_MAX_NEW_TOKENS, or a model's saved
    default), or what the context leaves after the prompt if less (at least 1; a prompt that fills the context is
    then refused by `check_context`)."""
    limit = _context_length(lm_config)
    return wanted if limit is None else max(1, min(wanted, limit - prompt_length))


def _pad_id(lm) -> int:
    gc = getattr(lm, "generation_config", None)
    for value in (getattr(gc, "pad_token_id", None), getattr(lm.config, "pad_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


# ----------------------------------------------------------------------------------------------
# Image tokens: one batch


@torch.no_grad()
def sample_image_tokens(
    lm,
    grammar: ImageGrammar,
    prompt_ids: Sequence[Sequence[int]],
    negative_ids: Sequence[Sequence[int]] | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    backend: str = "hf",
    cache_implementation: str | None = None,
    pad_token_id: int | None = None,
) -> torch.LongTensor:
    """Sample one image per prompt (prompt id lists ending in <boi>) -> LM ids [B, tokens_per_image].

    `lm` is any causal LM with `generate` (our GaussianTokenForCausalLM or a bare backbone).
    negative_ids: the unconditional prompts (one per prompt), needed when guidance_scale > 1.
    backend: "hf" (model.generate + processors) or "static" / "compiled" (our StaticCache loop;
    "compiled" wraps the decode step in torch.compile(mode="reduce-overhead"), CUDA only).
    """
    validate_sampling(temperature, top_k, top_p)
    guidance_scale = check_guidance_scale(guidance_scale)
    guided = guidance_scale != 1.0
    if guided and (negative_ids is None or len(negative_ids) != len(prompt_ids)):
        raise ValueError("guidance_scale > 1 needs one unconditional/negative prompt per prompt")
    rows = list(prompt_ids) + (list(negative_ids) if guided else [])
    pad = _pad_id(lm) if pad_token_id is None else pad_token_id
    device = next(lm.parameters()).device
    input_ids, attention_mask = left_pad(rows, pad, device)  # [R, S]
    new_tokens = grammar.max_new_tokens  # the image span, then <eoi>
    check_context(lm.config, input_ids.shape[1], new_tokens)
    gen = device_generator(generator, device)
    sampler = SamplingLogitsProcessor(temperature, top_k, top_p, gen, paired=guided)
    cfg = ClassifierFreeGuidanceLogitsProcessor(guidance_scale) if guided else None
    if backend == "hf":
        processors = LogitsProcessorList(
            ([cfg] if cfg else []) + [ImageGrammarLogitsProcessor(grammar, input_ids.shape[1]), sampler]
        )
        out = lm.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            logits_processor=processors,
            generation_config=_greedy_config(lm, new_tokens, grammar.eoi_token_id, pad, cache_implementation),
        )
        new = out[:, input_ids.shape[1] :]  # [R, <= T+1]
    elif backend in ("static", "compiled"):
        new = _static_loop(lm, grammar, input_ids, attention_mask, cfg, sampler, backend == "compiled")
    else:
        raise ValueError(f"unknown backend {backend!r}: use 'hf', 'static' or 'compiled'")
    return grammar.images(new[: len(prompt_ids)])  # [B, T] anchor-layout image LM ids


def image_grammar_for(model):
    """THE choice of the image grammar: the object-major span (`lm.object_layout`) when the LM was trained
    with data.t2i_layout=objects (its config holds `object_layout`), else the tokenizer's grid."""
    if getattr(model.config, "object_layout", None):
        from gaussiantoken.lm.object_layout import ObjectGrammar

        return ObjectGrammar.from_model(model)
    return ImageGrammar.from_model(model)


def _greedy_config(lm, max_new_tokens: int, eos_token_id, pad_token_id, cache_implementation):
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        min_new_tokens=None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        cache_implementation=cache_implementation,
        num_beams=1,
        use_cache=True,
    )


def _backbone(lm):
    """The bare causal LM (our wrapper's .language_model, or lm itself)."""
    return getattr(lm, "language_model", lm)


def _static_loop(lm, grammar, input_ids, attention_mask, cfg, sampler, compiled: bool):
    """Our decode loop: prefill, then T+1 single-token steps over a StaticCache. Same processors,
    same noise order as the HF path, so identical tokens for identical logits."""
    from transformers import StaticCache

    backbone = _backbone(lm)
    rows, prompt_len = input_ids.shape
    steps = grammar.max_new_tokens
    total = prompt_len + steps
    cache = StaticCache(config=backbone.config, max_cache_len=total)
    mask = torch.ones((rows, total), dtype=attention_mask.dtype, device=input_ids.device)  # [R, S+T+1]
    mask[:, :prompt_len] = attention_mask
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [R, S]
    state = grammar.stepper(rows, backbone.config.vocab_size, input_ids.device)

    def forward(ids, pos, full_mask):
        out = backbone(input_ids=ids, attention_mask=full_mask, position_ids=pos, cache=cache,
                       use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()  # [R, V]

    step_forward = forward
    if compiled:
        step_forward = torch.compile(forward, mode="reduce-overhead", fullgraph=False, dynamic=False)
    logits = forward(input_ids, positions, mask[:, :prompt_len])
    next_pos = positions[:, -1:] + 1  # [R, 1]
    tokens = []
    for step in range(steps):
        if cfg is not None:
            logits = cfg(None, logits)
        logits = logits + state.bias()
        token = sampler(None, logits).argmax(dim=-1)  # [R]
        tokens.append(token)
        state.advance(token)
        if step + 1 == steps or state.finished():
            break
        logits = step_forward(token[:, None], next_pos, mask[:, : prompt_len + step + 1] if not compiled else mask)
        next_pos = next_pos + 1
    return torch.stack(tokens, dim=1)  # [R, T+1]


# ----------------------------------------------------------------------------------------------
# The public functions: prompts in, image ids / text out


def _text_tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def as_prompt_list(prompts, name: str) -> list[str]:
    """A non-empty string or a non-empty list of non-empty strings -> list[str] (errors name `name`)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"{name} must be a non-empty string or a non-empty list of strings")
    for p in prompts:
        if not isinstance(p, str):
            raise TypeError(f"{name} must hold strings, got {type(p).__name__}")
        if not p.strip():
            raise ValueError(f"{name} contains an empty string; give some text")
    return list(prompts)


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


@torch.no_grad()
def generate_images(
    model,
    processor,
    prompts: str | Sequence[str],
    negative_prompt: str | Sequence[str] | None = None,
    guidance_scale: float = T2I_GUIDANCE_SCALE,
    num_images_per_prompt: int = 1,
    generator: torch.Generator | None = None,
    temperature: float = T2I_TEMPERATURE,
    top_k: int | None = None,
    top_p: float | None = None,
    batch_size: int = 16,
    backend: str = "hf",
    cache_implementation: str | None = None,
    progress: bool = False,
    num_candidates: int = T2I_CANDIDATES,
) -> torch.LongTensor:
    """Text-to-image: -> LM image ids [N, tokens_per_image], N = len(prompts) * num_images_per_prompt,
    prompt-major (all images of prompt 0 first). Decode with `model.decode_image_tokens(ids)`.

    negative_prompt: None -> the unconditional prompt (CFG); a string or one per prompt -> used as
    the uncond half. guidance_scale == 1 disables guidance (no uncond forward). batch_size counts
    images per forward (the CFG batch is twice that). temperature=0 -> greedy.
    num_candidates > 1: each image is the best of that many samples, as the LM captions them back
    (`lm.rerank`: log p(the prompt's claim | candidate)); the cost is that many samples plus one scoring pass.
    Greedy sampling (temperature=0) draws one: its candidates would all be the same.
    """
    from gaussiantoken.lm.sequences import text_to_image_prompt, unconditional_prompt

    prompts = as_prompt_list(prompts, "prompt")
    num_images_per_prompt = _check_positive_int(num_images_per_prompt, "num_images_per_prompt")
    from gaussiantoken.lm.rerank import candidates_for

    num_candidates = candidates_for(num_candidates, temperature)
    batch_size = _check_positive_int(batch_size, "batch_size")
    check_guidance_scale(guidance_scale)
    validate_sampling(temperature, top_k, top_p)
    if negative_prompt is None:
        negatives = [unconditional_prompt()] * len(prompts)
    else:
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != len(prompts) or not all(isinstance(n, str) for n in negatives):
            raise ValueError("negative_prompt must be a string or one string per prompt")
        negatives = [text_to_image_prompt(n) for n in negatives]
    tokenizer = _text_tokenizer(processor)
    bos = model.config.bos_token_id
    cond = [prompt_token_ids(tokenizer, text_to_image_prompt(p), bos) for p in prompts]
    uncond = [prompt_token_ids(tokenizer, n, bos) for n in negatives]
    grammar = image_grammar_for(model)
    for ids in cond + uncond:  # fail before any work
        check_context(model.config, len(ids), grammar.max_new_tokens)
    rows = [i for i in range(len(prompts)) for _ in range(num_images_per_prompt * num_candidates)]
    chunks = [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), desc="generating images", unit="img")
    out = []
    for chunk in chunks:
        out.append(
            sample_image_tokens(
                model, grammar, [cond[i] for i in chunk], [uncond[i] for i in chunk],
                guidance_scale=float(guidance_scale), generator=generator, temperature=temperature,
                top_k=top_k, top_p=top_p, backend=backend, cache_implementation=cache_implementation,
                pad_token_id=model.config.pad_token_id,
            )
        )
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    ids = torch.cat(out)  # [N * K, T], each image's K candidates adjacent
    if num_candidates > 1:
        ids = _best_candidates(model, processor, ids, [prompts[i] for i in rows], num_candidates, batch_size)
    return ids  # [N, T]


def _best_candidates(model, processor, ids, prompts, candidates: int, batch_size: int) -> torch.LongTensor:
    """ids [N * K, T] of K adjacent candidates per image, their prompts [N * K] -> the kept ids [N, T]."""
    from gaussiantoken.lm.rerank import best_candidates

    pixels = torch.cat([model.decode_image_tokens(ids[s:s + batch_size]).float().clamp(-1, 1)
                        for s in range(0, ids.shape[0], batch_size)])  # [N * K, 3, S, S]
    return ids[best_candidates(model, processor, pixels, prompts, candidates, batch_size).to(ids.device)]  # [N, T]


def as_image_list(images, paths: bool = False) -> tuple[list, bool]:
    """The one image coercion: a PIL image, a tensor [3, H, W] or [B, 3, H, W] in [-1, 1], with `paths` an
    image file path, or a non-empty list / tuple of those (PIL images / paths, or [3, H, W] tensors) ->
    (list of PIL images or of [3, H, W] tensors, single: whether one image was given bare). Paths are read
    with `load_image_file` (a missing or truncated file is a ValueError naming it); anything else is a
    TypeError. Colour modes are the image processor's business (`tokenizer.image_processing.to_rgb`)."""
    from PIL import Image

    kinds = "a PIL image" + (", an image file path" if paths else "") + " or a [3, H, W] tensor"
    if isinstance(images, torch.Tensor):
        if images.ndim not in (3, 4) or images.shape[-3] != 3:
            raise ValueError(f"image tensors must be [B, 3, H, W] in [-1, 1], got shape {tuple(images.shape)}")
        return (list(images) if images.ndim == 4 else [images]), images.ndim == 3
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    if not items:
        raise ValueError("no images given")
    out = []
    for item in items:
        if paths and isinstance(item, (str, os.PathLike)):
            from gaussiantoken.tokenizer.image_processing import load_image_file

            item = load_image_file(item)
        if isinstance(item, torch.Tensor) and not single and item.ndim == 3 and item.shape[0] == 3:
            pass
        elif not isinstance(item, Image.Image):
            raise TypeError(f"an image must be {kinds}, got {type(item).__name__}")
        out.append(item)
    if len({isinstance(i, torch.Tensor) for i in out}) > 1:
        raise TypeError("images must be all PIL images or all tensors, not a mix")
    return out, single


def pixel_values_for(processor, images, device, dtype) -> torch.Tensor:
    """Images (see `as_image_list`: PIL images, or tensors in [-1, 1] taken as they are) -> pixel_values
    [B, 3, S, S] on device."""
    images, _ = as_image_list(images)
    if isinstance(images[0], torch.Tensor):
        pixels = torch.stack(images)  # [B, 3, H, W]
    else:
        image_processor = getattr(processor, "image_processor", None)
        if image_processor is None:
            raise ValueError("the processor has no image_processor to prepare the images")
        pixels = image_processor(images, return_tensors="pt")["pixel_values"]
    return pixels.to(device=device, dtype=dtype)


@torch.no_grad()
def generate_text(
    model,
    processor,
    images,
    prompts: str | Sequence[str] | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    do_sample: bool = False,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    full_reply: bool = False,
) -> list[str]:
    """Captioning / VQA: one image per prompt -> the generated text (prompt excluded), stripped; of a
    describe-then-answer reply only the answer (`lm.sequences.final_answer`: the text after the last ", so "),
    or the whole reply, rationale included, with `full_reply=True`.

    images: see `as_image_list` (no paths). prompts: one per image, or one for all; each is read by
    `lm.sequences.image_request_prompt` (None or a caption request -> the captioning prompt, any other
    string -> a VQA question). Only text tokens can be produced; greedy unless do_sample. `max_new_tokens`:
    None is TEXT_MAX_NEW_TOKENS (lm.sampling_defaults) or what the model's context leaves after the prompt, if less;
    a number asked for is kept (a prompt that leaves no room for it is refused).
    """
    from gaussiantoken.lm.sequences import (
        VocabLayout,
        expand_image_placeholders,
        expand_image_spans,
        final_answer,
        image_request_prompt,
    )

    if max_new_tokens is not None:
        max_new_tokens = _check_positive_int(max_new_tokens, "max_new_tokens")
    batch_size = _check_positive_int(batch_size, "batch_size")
    param = next(model.parameters())
    pixels = pixel_values_for(processor, images, param.device, torch.float32)  # [B, 3, S, S]
    n = pixels.shape[0]
    prompts = [None] * n if prompts is None else as_prompt_list(prompts, "prompt")
    if len(prompts) == 1 and n > 1:
        prompts = prompts * n
    if len(prompts) != n:
        raise ValueError(f"got {n} image(s) but {len(prompts)} prompt(s); give one prompt per image")
    tokenizer = _text_tokenizer(processor)
    layout = VocabLayout.from_config(model.config, tokenizer)
    codes = (model.encode_images(pixels) - model.config.image_token_offset).tolist()  # local ids [B, T]
    texts = [image_request_prompt(p) for p in prompts]  # caption request -> captioning prompt, else VQA
    prompts_ids = [prompt_token_ids(tokenizer, t, layout.bos_token_id) for t in texts]
    if getattr(model.config, "input_layout", "grid") == "objects":  # images read as object-major spans
        from gaussiantoken.lm.object_inputs import input_spans

        spans = input_spans(model, pixels, codes)
        rows = [expand_image_spans(ids, layout, [s]) for ids, s in zip(prompts_ids, spans)]
    else:
        rows = [expand_image_placeholders(ids, layout, [c]) for ids, c in zip(prompts_ids, codes)]
    text_only = TextOnlyLogitsProcessor.from_model(model)
    out: list[str] = []
    for s in range(0, n, batch_size):
        chunk = rows[s : s + batch_size]
        input_ids, attention_mask = left_pad(chunk, layout.pad_token_id, param.device)  # [b, S]
        new_tokens = max_new_tokens or default_text_tokens(model.config, input_ids.shape[1])
        check_context(model.config, input_ids.shape[1], new_tokens)
        processors = [text_only]
        if do_sample:
            processors.append(SamplingLogitsProcessor(temperature, generator=device_generator(generator, param.device)))
        from transformers import GenerationConfig

        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=new_tokens,
                                  eos_token_id=layout.eos_token_id, pad_token_id=layout.pad_token_id)
        gen = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                             logits_processor=LogitsProcessorList(processors), generation_config=config)
        new = gen[:, input_ids.shape[1] :]
        out += [t.strip() if full_reply else final_answer(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return out

