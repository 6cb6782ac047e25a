"""The multimodal LM: `GaussianTokenForCausalLM` (Chameleon/Emu3 style early fusion) and auto registration.

Owns the model that joins stage one and stage two:
- `.language_model`: any AutoModelForCausalLM backbone (built from `config.text_config`), whose vocabulary is
  the text tokenizer's followed by the image codes (LM id = image_token_offset + local id; see
  configuration.py);
- `.image_tokenizer`: the frozen GaussianTokenizer, saved inside the same checkpoint (model.safetensors), so a
  saved LM directory turns pixels into tokens (`encode_images`) and tokens back into pixels
  (`decode_image_tokens`) on its own.

`forward(input_ids, attention_mask, pixel_values=None, labels=None, cache=None, ...)`: when pixel_values
are given, every "<image>" placeholder id in input_ids is replaced by the images' codes, image by image in
reading order (row by row), T = tokens_per_image placeholders per image; mismatched counts raise a
ValueError. The rest is the backbone's forward (causal LM loss on `labels`, -100 ignored; KV cache), so
`model.generate` works as for any decoder-only LM.

`GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer, text_config=... | base_model=PATH)`
does the vocabulary extension (resize_token_embeddings to offset + image vocab).
`GaussianTokenForImageTextToText`: the same checkpoint for AutoModelForImageTextToText (text-only generate).
Registration with the Auto classes lives in gaussiantoken/registration.py (the only place that registers).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel

from gaussiantoken.lm.configuration import (
    _TOKENIZER_MODEL_TYPE,
    MODEL_TYPE,
    GaussianTokenLMConfig,
    _dir_model_type,
    check_model_dir_kind,
    extra_token_count,
)
from gaussiantoken.lm.sampling_defaults import TEXT_MAX_NEW_TOKENS  # default new tokens for text generation


def _tokenizer_classes():
    from gaussiantoken.tokenizer import GaussianTokenizer

    return GaussianTokenizer


class GaussianTokenPreTrainedModel(PreTrainedModel):
    config_class = GaussianTokenLMConfig
    base_model_prefix = MODEL_TYPE
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False


class GaussianTokenForCausalLM(GaussianTokenPreTrainedModel, GenerationMixin):
    """Decoder-only LM over text + image tokens with a frozen Gaussian image tokenizer inside."""

    def __init__(self, config: GaussianTokenLMConfig):
        super().__init__(config)
        if config.image_token_offset is None or config.image_vocab_size is None:
            raise ValueError(
                "GaussianTokenLMConfig needs image_token_offset and image_vocab_size; build a new model with "
                "GaussianTokenForCausalLM.from_parts(text_tokenizer, image_tokenizer, ...)"
            )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.image_tokenizer = _tokenizer_classes()(config.tokenizer_config)
        self._check_image_tokenizer(self.image_tokenizer)
        self.image_tokenizer.requires_grad_(False)
        # object groups of input images (config.image_groups = K > 0; lm.object_groups): row 0 (background and
        # every non-image token) stays zero, the K others start at zero, so a new model reads as one without
        self.group_embed = None
        if config.image_groups:
            self.group_embed = nn.Embedding(config.image_groups + 1, config.text_config.hidden_size, padding_idx=0)
        self._no_split_modules = list(getattr(self.language_model, "_no_split_modules", None) or [])
        self.post_init()
        if self.group_embed is not None:  # zeroed after post_init, which draws every weight
            nn.init.zeros_(self.group_embed.weight)
        if self.generation_config is not None and self.generation_config.max_new_tokens is None:
            # captions and answers are short: the default of a plain `generate` and of the stock
            # image-text-to-text pipeline (saved in generation_config.json; a call's max_new_tokens wins)
            self.generation_config.max_new_tokens = TEXT_MAX_NEW_TOKENS

    # ------------------------------------------------------------------ construction
    def _check_image_tokenizer(self, tok) -> None:
        cfg = self.config
        if tok.vocab_size != cfg.image_vocab_size:
            raise ValueError(
                f"image tokenizer has {tok.vocab_size} codes but the LM config says image_vocab_size="
                f"{cfg.image_vocab_size}: tokenizer/LM vocabulary mismatch"
            )
        if tok.tokens_per_image != cfg.tokens_per_image:
            raise ValueError(
                f"image tokenizer makes {tok.tokens_per_image} tokens per image but the LM config says "
                f"tokens_per_image={cfg.tokens_per_image}"
            )

    @classmethod
    def from_parts(
        cls,
        text_tokenizer,
        image_tokenizer,
        text_config: PretrainedConfig | dict | None = None,
        base_model: str | os.PathLike | None = None,
        dtype: torch.dtype | None = None,
        object_layout: dict | None = None,
        image_groups: int = 0,
        input_layout: str = "grid",
    ) -> "GaussianTokenForCausalLM":
        """Vocabulary extension: backbone (from `text_config` or local `base_model` dir) + image tokenizer.

        The text tokenizer must already hold "<boi>", "<eoi>", "<image>", pad and eos (see
        text_tokenizer.ensure_special_tokens). `image_tokenizer`: a GaussianTokenizer or its saved directory.
        The backbone's embeddings are resized to len(text_tokenizer) + image_tokenizer.vocab_size (+ the
        object layout's extra tokens when `object_layout` is given: see `lm.object_layout`).
        """
        from gaussiantoken.lm.sequences import BOI_TOKEN, EOI_TOKEN, IMAGE_TOKEN

        GaussianTokenizer = _tokenizer_classes()
        if isinstance(image_tokenizer, (str, os.PathLike)):
            check_model_dir_kind(image_tokenizer, _TOKENIZER_MODEL_TYPE, "image_tokenizer")
            image_tokenizer = GaussianTokenizer.from_pretrained(image_tokenizer)
        if not isinstance(image_tokenizer, GaussianTokenizer):
            raise TypeError(f"image_tokenizer must be a GaussianTokenizer or its directory, got {type(image_tokenizer).__name__}")
        if (text_config is None) == (base_model is None):
            raise ValueError("give exactly one of text_config (train from scratch) or base_model (a local checkpoint dir)")
        if base_model is not None:
            if not os.path.isdir(str(base_model)):
                raise ValueError(f"base_model {base_model} is not a local directory (nothing can be downloaded)")
            if _dir_model_type(base_model) in (MODEL_TYPE, _TOKENIZER_MODEL_TYPE):
                raise ValueError(
                    f"base_model {base_model} is a {_dir_model_type(base_model)!r} checkpoint; it must be a plain "
                    "causal-LM backbone (load a saved gaussiantoken_lm with GaussianTokenForCausalLM.from_pretrained)"
                )
            language_model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
        else:
            if isinstance(text_config, dict):
                from gaussiantoken.lm.configuration import _as_text_config

                text_config = _as_text_config(text_config)
            language_model = AutoModelForCausalLM.from_config(text_config, dtype=dtype)

        ids = text_tokenizer.convert_tokens_to_ids([BOI_TOKEN, EOI_TOKEN, IMAGE_TOKEN])
        if any(i is None or i == text_tokenizer.unk_token_id for i in ids):
            raise ValueError("the text tokenizer lacks <boi>/<eoi>/<image>; call text_tokenizer.ensure_special_tokens first")
        offset = len(text_tokenizer)
        extra = extra_token_count(object_layout) if object_layout else 0
        language_model.resize_token_embeddings(offset + image_tokenizer.vocab_size + extra)
        text_cfg = language_model.config
        pad = text_tokenizer.pad_token_id if text_tokenizer.pad_token_id is not None else text_tokenizer.eos_token_id
        text_cfg.pad_token_id, text_cfg.eos_token_id = pad, text_tokenizer.eos_token_id
        text_cfg.bos_token_id = text_tokenizer.bos_token_id
        config = GaussianTokenLMConfig(
            text_config=text_cfg,
            tokenizer_config=image_tokenizer.config,
            image_token_offset=offset,
            image_vocab_size=image_tokenizer.vocab_size,
            tokens_per_image=image_tokenizer.tokens_per_image,
            boi_token_id=ids[0], eoi_token_id=ids[1], image_token_id=ids[2], object_layout=object_layout,
            image_groups=image_groups, input_layout=input_layout,
            bos_token_id=text_tokenizer.bos_token_id, eos_token_id=text_tokenizer.eos_token_id, pad_token_id=pad,
        )
        model = cls(config)
        model.language_model = language_model
        if model.group_embed is not None:
            model.group_embed.to(dtype or language_model.dtype)
        model.image_tokenizer = image_tokenizer.eval().requires_grad_(False)
        if dtype is not None:
            model.to(dtype)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        from gaussiantoken.runtime.model_dirs import LM_KIND, check_loadable

        # a transformers pipeline (kwarg _from_pipeline) needs the text tokenizer too, and a readable error
        pipe = kwargs.get("_from_pipeline") is not None
        check_loadable(cls, pretrained_model_name_or_path, LM_KIND, f"{cls.__name__}.from_pretrained",
                       needs_text_tokenizer=pipe, from_pipeline=pipe, check_fit="config" not in kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As PreTrainedModel.save_pretrained, plus a README.md model card (tokenizer/model_card.py)."""
        out = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            from gaussiantoken.tokenizer.model_card import write_model_card

            write_model_card(save_directory, self.config)
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        self.image_tokenizer.eval()  # frozen: no EMA/codebook updates, no dropout
        return self

    # ------------------------------------------------------------------ embeddings (resize_token_embeddings)
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self):
        return self.language_model.get_decoder()

    # ------------------------------------------------------------------ images <-> LM ids
    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """pixel_values [B, 3, H, W] in [-1, 1] -> LM ids [B, T] (offset + local codes)."""
        if pixel_values.ndim != 4:
            raise ValueError(f"pixel_values must be [B, 3, H, W], got shape {tuple(pixel_values.shape)}")
        param = next(self.image_tokenizer.parameters(), None)
        if param is not None:
            pixel_values = pixel_values.to(device=param.device, dtype=param.dtype)
        local = self.image_tokenizer.encode(pixel_values)  # [B, T]
        return local.long() + self.config.image_token_offset

    @torch.no_grad()
    def decode_image_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """LM ids [B, T] (offset + local) -> pixels [B, 3, H, W] in [-1, 1]; out-of-range ids raise."""
        ids = torch.as_tensor(ids)
        if ids.ndim == 1:
            ids = ids[None]
        cfg = self.config
        if ids.ndim != 2 or ids.shape[1] != cfg.tokens_per_image:
            raise ValueError(f"image token ids must be [B, {cfg.tokens_per_image}], got shape {tuple(ids.shape)}")
        lo, hi = cfg.image_token_offset, cfg.image_token_offset + cfg.image_vocab_size
        if bool(((ids < lo) | (ids >= hi)).any()):
            raise ValueError(f"image token ids must be LM ids in [{lo}, {hi}) (offset + local id)")
        param = next(self.image_tokenizer.parameters(), None)
        return self.image_tokenizer.decode((ids - lo).to(param.device if param is not None else ids.device))

    def merge_image_tokens(self, input_ids: torch.LongTensor, pixel_values: torch.Tensor) -> torch.LongTensor:
        """Replace the "<image>" placeholders of input_ids [B, L] by the codes of pixel_values [N, 3, H, W]."""
        T = self.config.tokens_per_image
        mask = input_ids == self.config.image_token_id  # [B, L]
        per_row = mask.sum(dim=1)
        if bool((per_row % T).any()):
            raise ValueError(f"each row's <image> placeholder count must be a multiple of tokens_per_image={T}, got {per_row.tolist()}")
        n_images = int(per_row.sum()) // T
        if n_images != pixel_values.shape[0]:
            raise ValueError(
                f"input_ids hold {n_images} image span(s) of <image> placeholders but {pixel_values.shape[0]} image(s) "
                "were given in pixel_values"
            )
        codes = self.encode_images(pixel_values).to(input_ids.device)  # [N, T]
        merged = input_ids.clone()
        merged[mask] = codes.reshape(-1)
        return merged

    @torch.no_grad()
    def input_image_groups(self, input_ids: torch.LongTensor) -> torch.LongTensor | None:
        """Object groups [B, L] of every whole image span (<boi>, tokens_per_image codes, <eoi>) in input_ids
        [B, L], from the tokenizer's reconstruction of its codes (`lm.object_groups`); 0 elsewhere. None when
        the input holds no whole span (a decode step)."""
        from gaussiantoken.lm.object_groups import groups_from_codes

        cfg, T = self.config, self.config.tokens_per_image
        B, L = input_ids.shape
        lo, hi = cfg.image_token_offset, cfg.image_token_offset + cfg.image_vocab_size
        is_code = (input_ids >= lo) & (input_ids < hi)  # [B, L]
        starts = []
        for b, p in (input_ids[:, : max(L - T - 1, 0)] == cfg.boi_token_id).nonzero().tolist():
            if bool(is_code[b, p + 1 : p + 1 + T].all()) and int(input_ids[b, p + 1 + T]) == cfg.eoi_token_id:
                starts.append((b, p + 1))
        if not starts:
            return None
        codes = torch.stack([input_ids[b, p : p + T] for b, p in starts]) - lo  # [N, T]
        groups = groups_from_codes(self.image_tokenizer, codes, cfg.image_groups)  # [N, M]
        per_token = groups.repeat_interleave(T // groups.shape[1], dim=1)  # [N, T]
        out = torch.zeros_like(input_ids)
        for (b, p), g in zip(starts, per_token.to(input_ids.device)):
            out[b, p : p + T] = g
        return out

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values=None,
        image_groups: torch.LongTensor | None = None,
        **kwargs,
    ):
        """Causal-LM forward; pixel_values fill the <image> placeholders (see module docstring).

        image_groups [B, L] (config.image_groups > 0): each token's object group (0: none), added as a learned
        embedding; training passes them for the input images of captioning / VQA (`lm.data`); in eval mode,
        when not given, every whole image span of input_ids gets its groups (`input_image_groups`)."""
        if cache is None and past_key_values is not None:
            cache = past_key_values
        if pixel_values is not None:
            if input_ids is None:
                raise ValueError("pixel_values need input_ids with <image> placeholders (not inputs_embeds)")
            if self.config.input_layout == "objects":
                raise ValueError("this model reads input images as object-major spans (input_layout=objects), whose "
                                 "length the image decides: call generate(), or build input_ids with "
                                 "lm.object_inputs.object_input_rows, not forward(pixel_values=...)")
            input_ids = self.merge_image_tokens(input_ids, pixel_values)
        elif input_ids is not None and int((input_ids == self.config.image_token_id).sum()) >= self.config.tokens_per_image:
            raise ValueError(
                "input_ids contain <image> placeholder spans but no pixel_values were given; pass the images "
                "(or precomputed codes through the processor's image_tokens)"
            )
        if self.group_embed is not None:
            if image_groups is None and input_ids is not None and not self.training:
                image_groups = self.input_image_groups(input_ids)
            if image_groups is not None:
                if inputs_embeds is None:
                    inputs_embeds = self.get_input_embeddings()(input_ids)  # [B, L, D]
                    input_ids = None
                inputs_embeds = inputs_embeds + self.group_embed(image_groups.to(inputs_embeds.device))
        return self.language_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )


class GaussianTokenForImageTextToText(GaussianTokenForCausalLM):
    """The same checkpoint as GaussianTokenForCausalLM, for `AutoModelForImageTextToText` and the stock
    "image-text-to-text" pipeline: its `generate` produces text only (image tokens, <boi>, <eoi> and the
    <image> placeholder are masked), and answers stop at eos."""

    def generate(self, *args, logits_processor=None, **kwargs):
        from transformers import LogitsProcessorList

        from gaussiantoken.lm.generation import check_context, default_text_tokens
        from gaussiantoken.lm.logits import TextOnlyLogitsProcessor

        input_ids = kwargs.get("input_ids", args[0] if args else None)
        config = kwargs.get("generation_config") or self.generation_config
        new_tokens = kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None))
        if self.config.input_layout == "objects" and input_ids is not None:  # images -> object-major spans
            from gaussiantoken.lm.generation import left_pad
            from gaussiantoken.lm.object_inputs import object_input_rows

            if args:
                kwargs["input_ids"], args = args[0], args[1:]
            rows = object_input_rows(self, input_ids, kwargs.get("attention_mask"), kwargs.pop("pixel_values", None))
            if rows is not None:
                kwargs["input_ids"], kwargs["attention_mask"] = left_pad(rows, self.config.pad_token_id, input_ids.device)
                input_ids = kwargs["input_ids"]
        if input_ids is not None and new_tokens is not None:  # a clear error instead of positions past the context
            if "max_new_tokens" not in kwargs:  # the saved default, not asked for: cut to what the context leaves
                kwargs["max_new_tokens"] = new_tokens = default_text_tokens(self.config, input_ids.shape[-1], int(new_tokens))
            check_context(self.config, input_ids.shape[-1], int(new_tokens))
        processors = LogitsProcessorList(list(logits_processor or []))
        processors.append(TextOnlyLogitsProcessor.from_model(self))
        return super().generate(*args, logits_processor=processors, **kwargs)


__all__ = ["GaussianTokenForCausalLM", "GaussianTokenForImageTextToText", "GaussianTokenPreTrainedModel", "check_model_dir_kind"]
