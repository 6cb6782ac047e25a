"""The parts an LM run is built from, each from the run config: process set-up, text tokenizer, model and
processor, data (a codes directory or the fresh-scene stream) and the HF TrainingArguments.

Owns `ensure_distributed_env` (single-process rendezvous defaults; a launcher's values win),
`avoid_cpu_op_builds` (no DeepSpeed C++ op JIT on CPU), `load_text_tokenizer`, `build_model_and_processor`,
`init_from_saved` (model.init_from: start from a saved LM's weights), `train_only` (train.trainable: freeze the rest),
`build_stream` (`lm.stream`), `background_canon` (`lm.canonical`), `object_layout_spec` (`lm.object_layout`), `build_dataset` (`lm.data`) and
`make_training_arguments`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .train_config import LMRunConfig, resolve_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def avoid_cpu_op_builds() -> None:
    """On CPU, stop DeepSpeed from JIT-compiling its shared-memory all-reduce op (30 s to minutes of g++ per
    fresh machine); torch.distributed's gloo backend does the collectives instead."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False


def ensure_distributed_env() -> None:
    """Single-process defaults for torch.distributed / DeepSpeed (a launcher's values win)."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


# ----------------------------------------------------------------------------- building blocks
def load_text_tokenizer(cfg: LMRunConfig):
    """The text tokenizer: model.text_tokenizer, else the base model's, else trained on the Shapes corpus."""
    from transformers import AutoTokenizer

    from gaussiantoken.lm.text_tokenizer import default_corpus, ensure_special_tokens, train_text_tokenizer

    m = cfg.model
    if m.text_tokenizer is not None:
        path = resolve_path(m.text_tokenizer)
        if os.path.isdir(path) and (Path(path) / "processor_config.json").is_file():
            raise ValueError(f"model.text_tokenizer {path} is a saved LM directory; point at a text tokenizer dir")
        tokenizer = AutoTokenizer.from_pretrained(path)
    elif m.base_model is not None or m.init_from is not None:
        tokenizer = AutoTokenizer.from_pretrained(resolve_path(m.base_model or m.init_from))
    else:  # train once per run dir (deterministic), reuse on resume
        saved = Path(cfg.train.output_dir) / "text_tokenizer"
        if (saved / "tokenizer.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(saved)
        else:
            tokenizer = train_text_tokenizer(default_corpus(), m.text_vocab_size)
            if int(os.environ.get("RANK", "0")) == 0:
                from gaussiantoken.runtime.files import atomic_directory

                with atomic_directory(saved) as tmp:
                    tokenizer.save_pretrained(tmp)
    ensure_special_tokens(tokenizer)
    return tokenizer


def build_model_and_processor(cfg: LMRunConfig):
    import torch

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.lm.processing import GaussianTokenProcessor
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

    tokenizer = load_text_tokenizer(cfg)
    tok_dir = resolve_path(cfg.model.tokenizer)
    text_config = None
    if cfg.model.base_model is None:
        text_config = dict(cfg.model.text_config)
    model = GaussianTokenForCausalLM.from_parts(
        tokenizer, tok_dir, text_config=text_config, base_model=cfg.model.base_model, dtype=torch.float32,
        object_layout=object_layout_spec(cfg), image_groups=cfg.model.image_groups,
        input_layout=cfg.model.input_layout,
    )
    if cfg.model.init_from is not None:
        init_from_saved(model, tokenizer, resolve_path(cfg.model.init_from))
    if cfg.train.trainable is not None:
        train_only(model, cfg.train.trainable)
    model.config._attn_implementation = cfg.model.attn_implementation
    if (Path(tok_dir) / "preprocessor_config.json").is_file():
        image_processor = GaussianTokenizerImageProcessor.from_pretrained(tok_dir)
    else:
        image_processor = GaussianTokenizerImageProcessor(image_size=model.config.tokenizer_config.image_size)
    processor = GaussianTokenProcessor.from_model_config(model.config, tokenizer, image_processor)
    return model, processor


def train_only(model, patterns: list[str]) -> None:
    """`train.trainable`: freeze every trainable parameter of `model` whose name no pattern matches (re.search).
    ValueError naming a pattern that matches no trainable parameter (a typo would otherwise freeze the whole model,
    or train nothing it names)."""
    import re

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # the frozen image tokenizer is not listed
    hits = {pattern: {n for n, _ in named if re.search(pattern, n)} for pattern in patterns}
    for pattern, names in hits.items():
        if not names:
            raise ValueError(f"train.trainable: {pattern!r} matches no trainable parameter of the LM "
                             f"(e.g. {named[0][0]!r})")
    keep = set().union(*hits.values())
    for name, param in named:
        if name not in keep:
            param.requires_grad_(False)


def init_from_saved(model, tokenizer, path: str) -> None:
    """Load the weights of the saved gaussiantoken LM at `path` (model.init_from) into `model`, built from this
    run's config. The run must be that model's continuation: the same text vocabulary (token by token), the
    same frozen image tokenizer (tensor by tensor) and the same backbone shapes; else a ValueError naming the
    key. The image tokenizer stays the run's own copy (equal by the check)."""
    import torch
    from transformers import AutoTokenizer

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    if AutoTokenizer.from_pretrained(path).get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"model.init_from {path} was trained with another text vocabulary than this run's "
                         "(model.text_tokenizer); leave model.text_tokenizer null to use its own")
    # transformers reads the weights (shards, tied tensors, dtype); compared here tensor by tensor
    saved = GaussianTokenForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()
    ours = model.state_dict()
    prefix = "image_tokenizer."
    for key, value in ours.items():
        if key.startswith(prefix) and (key not in saved or not torch.equal(saved[key], value)):
            raise ValueError(f"model.init_from {path} was trained with another image tokenizer than model.tokenizer "
                             f"(tensor {key} differs)")
    weights = {k: v for k, v in saved.items() if not k.startswith(prefix)}
    missing = sorted(k for k in ours if not k.startswith(prefix) and k not in weights)
    unexpected = sorted(k for k in weights if k not in ours)
    if missing or unexpected:
        raise ValueError(f"model.init_from {path} does not fit this run's model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]} (model.image_groups / data.t2i_layout must match)")
    for key, value in weights.items():
        if value.shape != ours[key].shape:
            raise ValueError(f"model.init_from {path} does not fit this run's model: {key} is "
                             f"{tuple(value.shape)} there, {tuple(ours[key].shape)} here (model.text_config must match)")
    model.load_state_dict(weights, strict=False)


def object_layout_spec(cfg: LMRunConfig) -> dict | None:
    """The LM config's `object_layout` for data.t2i_layout=objects (None for grid): the tokenizer's slots and
    group, and the fill of unwritten slots fitted on 512 fixed Shapes scenes (`lm.object_layout.fit_fill`)."""
    if cfg.data.t2i_layout != "objects":
        return None
    import numpy as np

    from gaussiantoken.data.shapes_world import sample_scenes
    from gaussiantoken.lm.object_layout import fit_fill
    from gaussiantoken.tokenizer import GaussianTokenizer

    tokenizer = GaussianTokenizer.from_pretrained(resolve_path(cfg.model.tokenizer)).eval()
    num_slots = int(tokenizer.config.num_gaussians)
    scenes = sample_scenes(np.random.default_rng(2 ** 20), 512, int(tokenizer.config.image_size))
    spec = {"num_slots": num_slots, "group": tokenizer.tokens_per_image // num_slots,
            "fill": fit_fill(tokenizer, scenes, cfg.data.object_radius), "max_objects": 8}
    if cfg.data.object_slots == "relative":
        from gaussiantoken.tokenizer.configuration import anchor_grid_shape

        spec.update(slots="relative", grid=list(anchor_grid_shape(num_slots, tokenizer.config.anchor_layout)))
    return spec


def build_stream(cfg: LMRunConfig, image_tokenizer):
    """The fresh-scene stream (data.source=shapes_stream), as long as the whole run's rows, and its state.
    `image_tokenizer`: its own frozen CPU copy (a directory), not the LM's (which DeepSpeed may move/cast)."""
    from gaussiantoken.lm.stream import ShapesCodeStream, StreamState

    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows_per_step = t.per_device_batch_size * t.gradient_accumulation_steps * world
    stream = ShapesCodeStream(image_tokenizer, length=t.max_steps * rows_per_step, seed=t.seed,
                              chunk_size=cfg.data.stream_chunk, per_device_batch=t.per_device_batch_size,
                              world_size=world,
                              object_radius=cfg.data.object_radius if cfg.data.t2i_layout == "objects" else None,
                              t2i_lattice=cfg.data.t2i_positions == "lattice", image_groups=cfg.model.image_groups,
                              canonical_captions=cfg.data.caption_style == "canonical")
    return stream, StreamState(stream, rows_per_step)


def background_canon(cfg: LMRunConfig):
    """lm.canonical.BackgroundCanon of the image tokenizer, fitted on 512 fixed Shapes scenes."""
    import numpy as np

    from gaussiantoken.data.shapes_render import render_batch
    from gaussiantoken.data.shapes_world import sample_scenes
    from gaussiantoken.lm.canonical import BackgroundCanon
    from gaussiantoken.tokenizer import GaussianTokenizer

    tokenizer = GaussianTokenizer.from_pretrained(resolve_path(cfg.model.tokenizer)).eval()
    size = int(tokenizer.config.image_size)
    scenes = sample_scenes(np.random.default_rng(2 ** 20), 512, size)
    return BackgroundCanon.fit(tokenizer, render_batch(scenes, size))


def build_dataset(cfg: LMRunConfig, processor, model_config, rows=None):
    from gaussiantoken.lm.extract import load_codes, load_codes_meta

    if rows is not None:  # a stream (build_stream)
        return _sequence_dataset(cfg, processor, model_config, rows)
    codes_dir = resolve_path(cfg.data.codes)
    meta = load_codes_meta(codes_dir)
    if meta:
        for key, ours in (("tokens_per_image", model_config.tokens_per_image), ("vocab_size", model_config.image_vocab_size)):
            if meta.get(key) != ours:
                raise ValueError(
                    f"data.codes {codes_dir} was extracted with {key}={meta.get(key)} but the image tokenizer has "
                    f"{ours}: tokenizer/LM vocabulary mismatch (re-run extract-codes with model.tokenizer)"
                )
    ds = load_codes(codes_dir)
    if cfg.data.num_samples is not None:
        ds = ds.select(range(min(cfg.data.num_samples, len(ds))))
    return _sequence_dataset(cfg, processor, model_config, ds)


def _sequence_dataset(cfg: LMRunConfig, processor, model_config, ds):
    from gaussiantoken.lm.data import MultiTaskSequenceDataset
    from gaussiantoken.lm.object_layout import ObjectLayout

    context = model_config.max_position_embeddings
    max_length = cfg.data.max_length or context
    if context is not None and max_length > context:
        raise ValueError(f"data.max_length {max_length} exceeds the backbone's max_position_embeddings {context}")
    dataset = MultiTaskSequenceDataset(
        ds, processor.tokenizer, processor.layout, cfg.data.ratios, cfg.data.caption_dropout,
        seed=cfg.train.seed, max_length=max_length, repeats=1 if cfg.data.source == "shapes_stream" else cfg.data.repeats,
        t2i_codes=background_canon(cfg) if cfg.data.t2i_background == "canonical" else None,
        object_layout=ObjectLayout.from_config(model_config), image_input_loss=cfg.data.image_input_loss,
        image_groups=bool(getattr(model_config, "image_groups", 0)),
        canonical_captions=cfg.data.caption_style == "canonical", vqa_turns=cfg.data.vqa_turns,
        input_objects=getattr(model_config, "input_layout", "grid") == "objects", vqa_rationale=cfg.data.vqa_rationale,
        text_qa_turns=cfg.data.text_qa_turns, rationale_style=cfg.data.rationale_style,
        text_qa_questions=cfg.data.text_qa_questions,
        referent_attention=cfg.train.referent_attention > 0 or cfg.train.referent_values > 0,
        relation_positions=cfg.data.relation_positions, image_size=model_config.tokenizer_config.image_size,
    )
    longest = dataset.longest_sequence()
    if max_length is not None and longest > max_length:
        raise ValueError(
            f"sequences reach {longest} tokens (tokens_per_image={processor.tokens_per_image} + text) but the "
            f"context is {max_length}; raise model.text_config.max_position_embeddings / data.max_length"
        )
    return dataset


def _use_bf16(cfg: LMRunConfig, on_cuda: bool) -> bool:
    flag = str(cfg.train.bf16).lower()
    return on_cuda if flag == "auto" else flag == "true"


def make_training_arguments(cfg: LMRunConfig, on_cuda: bool):
    from transformers import TrainingArguments

    t = cfg.train
    return TrainingArguments(
        output_dir=t.output_dir,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        adam_beta2=t.adam_beta2,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        max_steps=t.max_steps,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        save_strategy="steps",
        seed=t.seed,
        data_seed=t.seed,
        bf16=_use_bf16(cfg, on_cuda),
        deepspeed=resolve_path(t.deepspeed),
        report_to=list(t.report_to) if t.report_to else "none",
        gradient_checkpointing=t.gradient_checkpointing,
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,
        use_cpu=not on_cuda,
        optim="adamw_torch",
        disable_tqdm=False,
    )
