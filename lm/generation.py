"""The generation core: image generation under the token grammar with classifier-free guidance, and
text-only generation for captioning / VQA. Used by the pipelines, the CLI and the evaluation alike.

Everything goes through `model.generate` with logits processors (the HF path), plus one fast path for
image sampling (`backend="static"`: our own decode loop over a `StaticCache`, optionally wrapped in
`torch.compile(mode="reduce-overhead")` on CUDA) that draws exactly the same tokens from the same
logits, so the two are interchangeable (tests compare them).

Processors, applied in this order for images:
1. `ClassifierFreeGuidanceLogitsProcessor`: the batch is [cond; uncond] (2B rows, ONE forward pass per
   step, one KV cache); guided = uncond + g (cond - uncond) is written to BOTH halves.
2. `ImageGrammarLogitsProcessor`: image position t may only take LM ids in
   offset + token_layout[t % L] (the tokenizer's slot ranges); at t == tokens_per_image only <eoi>.
   So every generated sequence decodes, always.
3. `SamplingLogitsProcessor`: temperature, top-k, top-p, then the token is DRAWN here (Gumbel-max with
   uniform noise from a `torch.Generator`) and returned as one-hot scores, so `generate` runs in
   greedy mode and simply takes it. This is how seeds work: transformers' `generate` takes no
   generator, ours does. A generator on another device than the model seeds one device generator
   (with a seed drawn from it) per call, so images are a function of (seed, device, batch split).
   The two CFG halves always get the same token (drawn once from the guided row).
   temperature=0 means greedy (argmax).

Text generation (`generate_text`) masks every image token, <boi>, <eoi> and the image placeholder
(`TextOnlyLogitsProcessor`) and is greedy by default.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

NEG_INF = float("-inf")


# ----------------------------------------------------------------------------------------------
# The image grammar


class ImageGrammar:
    """Which LM ids each image position may take.

    token_layout: [(name, start, size), ...] slot ranges of ONE Gaussian group (local ids);
    position t of an image takes local ids in token_layout[t % L]; LM id = local id + offset.
    """

    def __init__(self, token_layout, image_token_offset: int, tokens_per_image: int, eoi_token_id: int):
        self.slots = [(int(s[1]), int(s[2])) for s in token_layout]  # (start, size) per slot
        if not self.slots:
            raise ValueError("token_layout is empty")
        for start, size in self.slots:
            if start < 0 or size < 1:
                raise ValueError(f"bad token_layout slot (start={start}, size={size})")
        self.offset = int(image_token_offset)
        self.tokens_per_image = int(tokens_per_image)
        self.eoi_token_id = int(eoi_token_id)
        self.image_vocab_size = max(start + size for start, size in self.slots)
        self._bias: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_model(cls, model) -> "ImageGrammar":
        """Read the grammar from a GaussianTokenForCausalLM (its tokenizer's token_layout + the LM config)."""
        config = model.config
        return cls(
            model.image_tokenizer.token_layout,
            config.image_token_offset,
            config.tokens_per_image,
            config.eoi_token_id,
        )

    def slot_bounds(self, step: int) -> tuple[int, int]:
        """[lo, hi) LM-id range allowed at image position `step` (< tokens_per_image)."""
        start, size = self.slots[step % len(self.slots)]
        return self.offset + start, self.offset + start + size

    def bias_table(self, vocab_size: int, device, dtype=torch.float32) -> torch.Tensor:
        """Additive masks [L + 1, V]: row k < L allows slot k, row L allows only <eoi>; 0 / -inf."""
        key = (vocab_size, str(device), dtype)
        if key not in self._bias:
            if self.offset + self.image_vocab_size > vocab_size or self.eoi_token_id >= vocab_size:
                raise ValueError(
                    f"the image grammar needs ids up to {self.offset + self.image_vocab_size} but the LM "
                    f"vocabulary has {vocab_size}"
                )
            table = torch.full((len(self.slots) + 1, vocab_size), NEG_INF, dtype=dtype)  # [L+1, V]
            for k, (start, size) in enumerate(self.slots):
                table[k, self.offset + start : self.offset + start + size] = 0.0
            table[-1, self.eoi_token_id] = 0.0
            self._bias[key] = table.to(device)
        return self._bias[key]

    def row_index(self, step: int) -> int:
        """Row of `bias_table` for generation step `step` (0-based; step == tokens_per_image -> <eoi>)."""
        if step >= self.tokens_per_image:
            return len(self.slots)
        return step % len(self.slots)

    def check(self, ids: torch.Tensor) -> torch.Tensor:
        """BoolTensor [N]: which rows of LM ids [N, T] obey the grammar."""
        if ids.ndim != 2 or ids.shape[1] != self.tokens_per_image:
            return torch.zeros(ids.shape[0] if ids.ndim else 0, dtype=torch.bool)
        steps = torch.arange(self.tokens_per_image, device=ids.device)
        lo = torch.tensor([self.slot_bounds(int(t))[0] for t in steps], device=ids.device)
        hi = torch.tensor([self.slot_bounds(int(t))[1] for t in steps], device=ids.device)
        return ((ids >= lo) & (ids < hi)).all(dim=1)


# ----------------------------------------------------------------------------------------------
# Logits processors


def check_guidance_scale(guidance_scale) -> float:
    """A finite real number >= 1 (1 disables guidance; < 1, nan and inf are undefined) -> float."""
    if (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float))
            or not math.isfinite(guidance_scale) or not guidance_scale >= 1.0):
        raise ValueError(f"guidance_scale must be a finite number >= 1 (1 disables guidance; < 1 is undefined), "
                         f"got {guidance_scale!r}")
    return float(guidance_scale)


class ClassifierFreeGuidanceLogitsProcessor(LogitsProcessor):
    """Rows [0, B) are conditional, rows [B, 2B) unconditional (or negative prompt) of the SAME images.

    Returns guided = uncond + g (cond - uncond) in both halves [2B, V], so both halves then pick
    the same token and their KV caches stay in step. g == 1 returns cond exactly. Finite scores stay
    finite (an overflow is clamped to the dtype's range, NaN becomes -inf), so the masks applied after
    this never leave a row without an allowed token.
    """

    def __init__(self, guidance_scale: float):
        self.guidance_scale = check_guidance_scale(guidance_scale)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] % 2:
            raise ValueError(f"classifier-free guidance needs an even batch [cond; uncond], got {scores.shape[0]}")
        cond, uncond = scores.chunk(2)  # [B, V] each
        if self.guidance_scale == 1.0:
            guided = cond
        else:
            big = torch.finfo(scores.dtype).max
            guided = (uncond + self.guidance_scale * (cond - uncond)).nan_to_num(nan=NEG_INF, posinf=big)
            guided = torch.where(torch.isfinite(cond) & torch.isfinite(uncond), guided.clamp(-big, big), guided)
        return torch.cat([guided, guided])  # [2B, V]


class ImageGrammarLogitsProcessor(LogitsProcessor):
    """Masks every id the image grammar forbids at the current image position.

    The image starts right after the (left-padded) prompt of length `prompt_length`, so the
    position is input_ids.shape[1] - prompt_length.
    """

    def __init__(self, grammar: ImageGrammar, prompt_length: int):
        self.grammar = grammar
        self.prompt_length = int(prompt_length)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        table = self.grammar.bias_table(scores.shape[-1], scores.device, scores.dtype)  # [L+1, V]
        return scores + table[self.grammar.row_index(step)]


class TextOnlyLogitsProcessor(LogitsProcessor):
    """Forbids image tokens (ids >= image_token_offset) and the image special tokens (<boi>, <eoi>,
    the <image> placeholder): captions and answers are plain text."""

    def __init__(self, image_token_offset: int, banned_ids: Iterable[int] = ()):
        self.image_token_offset = int(image_token_offset)
        self.banned_ids = sorted({int(i) for i in banned_ids if i is not None})
        self._bias: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_model(cls, model) -> "TextOnlyLogitsProcessor":
        c = model.config
        return cls(c.image_token_offset, [c.boi_token_id, c.eoi_token_id, c.image_token_id])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        key = (scores.shape[-1], str(scores.device), scores.dtype)
        if key not in self._bias:
            bias = torch.zeros(scores.shape[-1], dtype=scores.dtype)  # [V]
            bias[self.image_token_offset :] = NEG_INF
            bias[[i for i in self.banned_ids if i < scores.shape[-1]]] = NEG_INF
            self._bias[key] = bias.to(scores.device)
        return scores + self._bias[key]


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on logits [B, V]; removed entries become -inf."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [B, V]
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly before each entry
        remove_sorted = before >= top_p  # the top entry always stays
        remove = torch.zeros_like(remove_sorted).scatter(1, order, remove_sorted)
        logits = logits.masked_fill(remove, NEG_INF)
    return logits


def gumbel_argmax(logits: torch.Tensor, uniform: torch.Tensor) -> torch.LongTensor:
    """Sample from softmax(logits) [B, V] with uniform noise [B, V] (Gumbel-max); -> [B]."""
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    return torch.argmax(logits + gumbel, dim=-1)


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The generator to draw noise on `device`: `generator` itself when it lives there, else a fresh
    one seeded from a number drawn from `generator` (deterministic given the seed)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    device = torch.device(device)
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


class SamplingLogitsProcessor(LogitsProcessor):
    """Draws the next token (temperature / top-k / top-p / generator) and returns one-hot scores
    (0 at the token, -inf elsewhere) so greedy `generate` takes it. `paired=True`: rows are
    [cond; uncond] copies; one token is drawn per pair and given to both rows."""

    def __init__(self, temperature=1.0, top_k=None, top_p=None, generator=None, paired=False):
        validate_sampling(temperature, top_k, top_p)
        self.temperature, self.top_k, self.top_p = float(temperature), top_k, top_p
        self.generator, self.paired = generator, paired

    def sample(self, logits: torch.Tensor) -> torch.LongTensor:
        """logits [B, V] -> tokens [B]."""
        if self.temperature == 0.0:
            return torch.argmax(logits, dim=-1)
        logits = logits.float()
        # softmax-invariant shift: each row's best entry is 0, so no temperature can turn a row all -inf
        logits = filter_logits(logits - logits.amax(dim=-1, keepdim=True), self.temperature, self.top_k, self.top_p)
        uniform = torch.rand(logits.shape, generator=self.generator, device=logits.device)
        return gumbel_argmax(logits, uniform)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = scores[: scores.shape[0] // 2] if self.paired else scores  # [B, V]
        tokens = self.sample(rows)  # [B]
        if self.paired:
            tokens = torch.cat([tokens, tokens])
        out = torch.full_like(scores, NEG_INF)
        return out.scatter_(1, tokens[:, None], 0.0)


def validate_sampling(temperature, top_k, top_p) -> None:
    if not (isinstance(temperature, (int, float)) and temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


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


def _check_context(lm_config, prompt_length: int, new_tokens: int) -> None:
    limit = _context_length(lm_config)
    if limit is not None and prompt_length + new_tokens > limit:
        raise ValueError(
            f"prompt too long: {prompt_length} prompt tokens + {new_tokens} generated tokens exceed the "
            f"model's context of {limit} tokens"
        )


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
    new_tokens = grammar.tokens_per_image + 1  # the image, then <eoi>
    _check_context(lm.config, input_ids.shape[1], new_tokens)
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
    images = new[: len(prompt_ids), : grammar.tokens_per_image]  # [B, T]
    if images.shape[1] != grammar.tokens_per_image or not bool(grammar.check(images).all()):
        raise RuntimeError("internal error: generated image tokens violate the image grammar")
    return images


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
    steps = grammar.tokens_per_image + 1
    total = prompt_len + steps
    cache = StaticCache(config=backbone.config, max_cache_len=total)
    mask = torch.ones((rows, total), dtype=attention_mask.dtype, device=input_ids.device)  # [R, S+T+1]
    mask[:, :prompt_len] = attention_mask
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [R, S]
    table = grammar.bias_table(backbone.config.vocab_size, input_ids.device)  # [L+1, V]

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
        logits = logits + table[grammar.row_index(step)]
        token = sampler(None, logits).argmax(dim=-1)  # [R]
        tokens.append(token)
        if step + 1 == steps:
            break
        logits = step_forward(token[:, None], next_pos, mask[:, : prompt_len + step + 1] if not compiled else mask)
        next_pos = next_pos + 1
    return torch.stack(tokens, dim=1)  # [R, T+1]


# ----------------------------------------------------------------------------------------------
# The public functions: prompts in, image ids / text out


def _text_tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def prompt_token_ids(tokenizer, text: str, bos_token_id: int | None) -> list[int]:
    """Tokenize a prompt string exactly as training did (specials added, bos ensured)."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if bos_token_id is not None and (not ids or ids[0] != bos_token_id):
        ids = [bos_token_id] + ids
    return ids


def _as_prompt_list(prompts, name: str) -> list[str]:
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
    guidance_scale: float = 3.0,
    num_images_per_prompt: int = 1,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    batch_size: int = 16,
    backend: str = "hf",
    cache_implementation: str | None = None,
    progress: bool = False,
) -> torch.LongTensor:
    """Text-to-image: -> LM image ids [N, tokens_per_image], N = len(prompts) * num_images_per_prompt,
    prompt-major (all images of prompt 0 first). Decode with `model.decode_image_tokens(ids)`.

    negative_prompt: None -> the unconditional prompt (CFG); a string or one per prompt -> used as
    the uncond half. guidance_scale == 1 disables guidance (no uncond forward). batch_size counts
    images per forward (the CFG batch is twice that). temperature=0 -> greedy.
    """
    from gaussiantoken.lm.sequences import text_to_image_prompt, unconditional_prompt

    prompts = _as_prompt_list(prompts, "prompt")
    num_images_per_prompt = _check_positive_int(num_images_per_prompt, "num_images_per_prompt")
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
    grammar = ImageGrammar.from_model(model)
    for ids in cond + uncond:  # fail before any work
        _check_context(model.config, len(ids), grammar.tokens_per_image + 1)
    rows = [i for i in range(len(prompts)) for _ in range(num_images_per_prompt)]
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
    return torch.cat(out)  # [N, T]


def _as_image_list(images) -> list:
    from PIL import Image

    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"image tensors must be [B, 3, H, W] in [-1, 1], got shape {tuple(images.shape)}")
        return [images]
    if not isinstance(images, (list, tuple)) or not images:
        raise TypeError("images must be a PIL image, a list of PIL images or a [B, 3, H, W] tensor")
    for im in images:
        if not isinstance(im, Image.Image):
            raise TypeError(f"images must be PIL images, got {type(im).__name__}")
    return list(images)


def pixel_values_for(processor, images, device, dtype) -> torch.Tensor:
    """PIL images (or a [B, 3, H, W] tensor in [-1, 1]) -> pixel_values [B, 3, S, S] on device."""
    images = _as_image_list(images)
    if isinstance(images[0], torch.Tensor):
        pixels = images[0]
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
    max_new_tokens: int = 32,
    batch_size: int = 32,
    do_sample: bool = False,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> list[str]:
    """Captioning / VQA: one image per prompt -> the generated text (prompt excluded), stripped.

    prompts: None or a caption request ("Describe the image.", lm.sequences.is_caption_request) -> the
    captioning prompt; any other string -> a VQA
    question (lm.sequences.vqa_prompt). Only text tokens can be produced; greedy unless do_sample.
    """
    from gaussiantoken.lm.sequences import VocabLayout, expand_image_placeholders, image_request_prompt

    max_new_tokens = _check_positive_int(max_new_tokens, "max_new_tokens")
    batch_size = _check_positive_int(batch_size, "batch_size")
    param = next(model.parameters())
    pixels = pixel_values_for(processor, images, param.device, torch.float32)  # [B, 3, S, S]
    n = pixels.shape[0]
    prompts = [None] * n if prompts is None else _as_prompt_list(prompts, "prompt")
    if len(prompts) == 1 and n > 1:
        prompts = prompts * n
    if len(prompts) != n:
        raise ValueError(f"got {n} image(s) but {len(prompts)} prompt(s); give one prompt per image")
    tokenizer = _text_tokenizer(processor)
    layout = VocabLayout.from_config(model.config, tokenizer)
    codes = (model.encode_images(pixels) - model.config.image_token_offset).tolist()  # local ids [B, T]
    texts = [image_request_prompt(p) for p in prompts]  # caption request -> captioning prompt, else VQA
    rows = [
        expand_image_placeholders(prompt_token_ids(tokenizer, t, layout.bos_token_id), layout, [c])
        for t, c in zip(texts, codes)
    ]
    text_only = TextOnlyLogitsProcessor.from_model(model)
    out: list[str] = []
    for s in range(0, n, batch_size):
        chunk = rows[s : s + batch_size]
        input_ids, attention_mask = left_pad(chunk, layout.pad_token_id, param.device)  # [b, S]
        _check_context(model.config, input_ids.shape[1], max_new_tokens)
        processors = [text_only]
        if do_sample:
            processors.append(SamplingLogitsProcessor(temperature, generator=device_generator(generator, param.device)))
        from transformers import GenerationConfig

        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                  eos_token_id=layout.eos_token_id, pad_token_id=layout.pad_token_id)
        gen = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                             logits_processor=LogitsProcessorList(processors), generation_config=config)
        new = gen[:, input_ids.shape[1] :]
        out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return out

