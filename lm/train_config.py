"""The LM run config: plain dataclasses filled from YAML (`runtime.config`), checked before anything heavy.

Owns `ModelSettings`, `DataSettings`, `TrainSettings`, `LMRunConfig` (the `model:`, `data:`, `train:` sections of
configs/lm/*.yaml), `resolve_path` (relative paths from the cwd, then from the repository root),
`check_config` (types: "2e-4" becomes the float the field declares; then values, files and cross-field
rules; every problem a ValueError/TypeError/FileNotFoundError naming the key) and `load_config` (YAML +
`key=value` overrides -> a checked config).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- run config
@dataclass
class ModelSettings:
    tokenizer: str = "runs/tokenizer-shapes/final"  # trained GaussianTokenizer dir
    text_tokenizer: str | None = None  # HF tokenizer dir; None: the base model's, or train one on the Shapes
    # corpus (saved to OUTPUT/text_tokenizer and reused on resume)
    text_vocab_size: int = 384  # when a text tokenizer is trained here
    base_model: str | None = None  # local AutoModelForCausalLM dir (else from-scratch from text_config)
    # a saved gaussiantoken LM dir (an earlier stage's OUTPUT/final): the run starts from its weights (a staged
    # recipe, e.g. a text drill before the image mix); the backbone, text vocabulary and image tokenizer must be
    # the run's own (`train_build.init_from_saved`); its text tokenizer is used when model.text_tokenizer is null
    init_from: str | None = None
    text_config: dict = field(default_factory=lambda: {
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    })
    attn_implementation: str = "sdpa"
    # K > 0: captioning / VQA input images' tokens also embed their Gaussian's object group (lm.object_groups:
    # foreground components of the image, left to right; shapes_stream only). 0: off
    image_groups: int = 0
    # grid | objects: captioning / VQA read their input image as the tokenizer's codes (anchor order) or as the
    # object-major span of its foreground components (lm.object_groups.input_span; needs data.t2i_layout=objects
    # and image_groups > 0)
    input_layout: str = "grid"


@dataclass
class DataSettings:
    codes: str = "runs/codes-shapes"  # extract-codes output dir
    ratios: dict = field(default_factory=lambda: {"text_to_image": 0.5, "caption": 0.25, "vqa": 0.25})
    caption_dropout: float = 0.1
    max_length: int | None = None  # None: the backbone's max_position_embeddings
    repeats: int = 1
    num_samples: int | None = None  # use only the first N records
    # codes: the extract-codes dir `codes` (real datasets); shapes_stream: fresh Shapes scenes encoded on the fly
    # by the frozen tokenizer (lm.stream: no scene repeats, deterministic by train.seed, exactly resumable)
    source: str = "codes"
    stream_chunk: int = 256  # scenes rendered and encoded at a time (per rank)
    # raw | canonical: text-to-image targets with the background Gaussians in one fixed form (lm.canonical;
    # Shapes world only)
    t2i_background: str = "raw"
    # grid: text-to-image spans in the tokenizer's anchor order | objects: object-major spans (lm.object_layout:
    # each object's Gaussians after an <obj> marker, background left to the canonical fill; shapes_stream only)
    t2i_layout: str = "grid"
    object_radius: int = 1  # objects: a Gaussian within this many pixels of an object belongs to it
    # objects: absolute (every Gaussian names its anchor slot) | relative (an object's later Gaussians name their
    # step from its first slot on the anchor grid: the same object at two places differs in one token)
    object_slots: str = "absolute"
    # captioning/VQA sequences also put loss on their input image's codes (the image modelled in the tokenizer's
    # order): under t2i_layout=objects the LM otherwise never predicts grid-order codes, only reads them
    image_input_loss: bool = False
    # free | lattice: text-to-image targets from scenes whose objects are centred on the image tokenizer's anchors
    # (lm.stream; shapes_stream only): one object is then coded alike wherever it sits. Captioning / VQA keep
    # free positions.
    t2i_positions: str = "free"
    # sampled | canonical: the captioning task's target caption: the scene's sampled caption (random subject and
    # relation for two objects, as the text-to-image prompts) or its canonical one (objects left to right, the
    # relation on the axis of the larger offset; shapes_stream only). Any caption of the scene scores as exact.
    caption_style: str = "sampled"
    # questions per VQA sequence: up to this many of a row's questions (the stream draws 3 per scene) asked in
    # turn about one image, as the chat template writes a conversation (lm.sequences.build_vqa_turns)
    vqa_turns: int = 1
    # describe-then-answer VQA targets: "{rationale}, so {answer}" with the scene's caption (or, for a relation
    # question, the two asked objects related on the asked axis) as rationale (lm.sequences.reasoned_answer,
    # data.shapes_text.rationale_for; shapes_stream only). Inference keeps the text after ", so ".
    vqa_rationale: bool = False
    # describe | scan | cued_scan: the rationale of a lookup or relation question: the describe one above, or a scan
    # (data.shapes_text.scan_rationale): a lookup marks the caption's objects in turn up to the asked one ("a large
    # red square: no; a small blue circle: yes"), a relation orders the scene along the asked axis and marks the
    # two asked objects first / second; count questions keep the caption. cued_scan: the scan with the question's
    # referent restated before each phrase ("circle: a large red square: no; circle: ...")
    rationale_style: str = "describe"
    # relation questions answered with both named objects' positions written first (data.shapes_positions):
    # "left: red circle 2, blue square 5, so yes" (centres on the asked axis in 8 bins); other questions keep plain
    # answers. Shapes stream only, plain VQA (not with vqa_rationale); train.referent_attention / referent_values
    # also teach each digit's lookup and the answer's two digits (lm.referent)
    relation_positions: bool = False
    text_qa_turns: int = 1
    # all | lookup: text QA turns drawn from the row's questions and its caption's lookup questions, or from the
    # lookup questions only (colour / shape / size of a named object: the comparisons a scan learns)
    text_qa_questions: str = "all"


@dataclass
class TrainSettings:
    output_dir: str = "runs/lm-shapes"
    deepspeed: str | None = "configs/deepspeed/zero2.json"
    per_device_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    adam_beta2: float = 0.95
    warmup_steps: int = 20
    lr_scheduler: str = "cosine"
    lr_stable_fraction: float = 0.0  # cosine: this share of the schedule after warm-up holds the peak rate (WSD)
    # > 0: this weight x the referent attention loss (lm.referent): in VQA turns, heads 0 / 1 of the first layer of
    # `referent_attention_layers` are taught to attend from the question's words naming an object to that object of
    # the input image, and those of the second layer from the answer to those words (needs model.input_layout=objects,
    # model.attn_implementation=eager, plain answers)
    referent_attention: float = 0.0
    referent_attention_layers: list = field(default_factory=lambda: [1, -1])  # word -> object, answer -> word
    # > 0: this weight x the referent value loss (lm.referent): for lookup questions, the residual stream after the
    # first of `referent_attention_layers`, at the words naming the object, read through the final norm and output
    # head, must predict the answer (the value hop one carries; same needs as referent_attention, any attention)
    referent_values: float = 0.0
    # null: every LM parameter trains; else a list of regular expressions: only the parameters whose names one of them
    # matches (re.search) train, the rest stay frozen (e.g. a later stage that trains only some layers' attention:
    # ["layers\\.[13]\\.self_attn"])
    trainable: list | None = None
    max_steps: int = 400
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    seed: int = 0
    bf16: bool | str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | true | false (YAML or CLI booleans)
    resume: str | None = "auto"  # auto | PATH | null
    max_minutes: float | None = None
    stop_at_step: int | None = None  # checkpoint and exit at this step (split a run; the schedule keeps max_steps)
    report_to: list = field(default_factory=lambda: ["tensorboard"])
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class LMRunConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


def resolve_path(path: str | None) -> str | None:
    """Relative config paths are tried from the cwd, then from the repository root (configs/...)."""
    if path is None or os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.exists() else path


def check_config(cfg: LMRunConfig) -> None:
    """Cheap checks of the run config, before any model or data is built (ValueError/FileNotFoundError)."""
    from gaussiantoken.lm.data import TEXT_QA_QUESTIONS, normalize_ratios
    from gaussiantoken.runtime.config import check_config as check_types

    check_types(cfg)  # every key's type ('abc' for an int is a TypeError naming it), floats finite

    if normalize_ratios(cfg.data.ratios)["text_qa"] > 0 and not cfg.data.vqa_rationale:
        raise ValueError("data.ratios.text_qa > 0 drills describe-then-answer VQA: it needs data.vqa_rationale=true")
    t = cfg.train
    if t.deepspeed is not None:
        ds = resolve_path(t.deepspeed)
        if not os.path.isfile(ds):
            raise FileNotFoundError(f"train.deepspeed config not found: {t.deepspeed} (set train.deepspeed=null to run without)")
        try:
            json.loads(Path(ds).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"train.deepspeed {ds} is not valid JSON: {exc}") from exc
    if str(t.bf16).lower() not in ("auto", "true", "false"):
        raise ValueError(f"train.bf16 must be auto/true/false, got {t.bf16!r}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device must be auto/cpu/cuda, got {t.device!r}")
    if t.max_minutes is not None and not t.max_minutes > 0:
        raise ValueError(f"train.max_minutes must be positive or null, got {t.max_minutes}")
    if not (isinstance(t.lr_stable_fraction, (int, float)) and 0.0 <= t.lr_stable_fraction < 1.0):
        raise ValueError(f"train.lr_stable_fraction must be in [0, 1), got {t.lr_stable_fraction!r}")
    if t.lr_stable_fraction > 0 and t.lr_scheduler != "cosine":
        raise ValueError(f"train.lr_stable_fraction holds the peak rate before a cosine: it needs "
                         f"train.lr_scheduler=cosine, got {t.lr_scheduler!r}")
    for name in ("referent_attention", "referent_values"):
        v = getattr(t, name)
        if v < 0:
            raise ValueError(f"train.{name} is a loss weight: it must be >= 0, got {v!r}")
    taught = [name for name in ("referent_attention", "referent_values") if getattr(t, name) > 0]
    if taught:
        tc, n = cfg.model.text_config, cfg.model.text_config.get("num_hidden_layers", 0)
        if cfg.model.input_layout != "objects" or cfg.data.vqa_rationale:
            raise ValueError(f"train.{taught[0]} teaches the lookup from a VQA question to its object in the input "
                             "image's object spans: it needs model.input_layout=objects and data.vqa_rationale=false")
        if t.referent_attention > 0 and cfg.model.attn_implementation != "eager":
            raise ValueError("train.referent_attention reads attention probabilities: it needs "
                             f"model.attn_implementation=eager, got {cfg.model.attn_implementation!r}")
        if normalize_ratios(cfg.data.ratios)["vqa"] == 0:
            raise ValueError(f"train.{taught[0]} teaches VQA answers: it needs data.ratios.vqa > 0")
        heads = tc.get("num_attention_heads", 0)
        if cfg.model.base_model is not None and os.path.isdir(cfg.model.base_model):
            from transformers import AutoConfig

            base = AutoConfig.from_pretrained(cfg.model.base_model).get_text_config()
            n, heads = base.num_hidden_layers, base.num_attention_heads
        layers = t.referent_attention_layers
        ok = (len(layers) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in layers) and n > 0
              and all(-n <= v < n for v in layers) and layers[0] % n < layers[1] % n and heads >= 2)
        if not ok:
            raise ValueError(f"train.referent_attention_layers must be two layers [word -> object, answer -> word], the "
                             f"first before the second, of the {n} layers (negative: from the last), each with >= 2 "
                             f"heads; got {layers!r}")
    if t.trainable is not None:
        import re

        if not (isinstance(t.trainable, list) and t.trainable and all(isinstance(v, str) and v for v in t.trainable)):
            raise ValueError(f"train.trainable must be null or a non-empty list of regular expressions, got {t.trainable!r}")
        for pattern in t.trainable:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"train.trainable: {pattern!r} is not a regular expression ({e})") from None
    for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_steps"):
        if getattr(t, name) <= 0:
            raise ValueError(f"train.{name} must be positive, got {getattr(t, name)}")
    if not os.path.isdir(resolve_path(cfg.model.tokenizer)):
        raise FileNotFoundError(f"model.tokenizer {cfg.model.tokenizer} not found (train one: gaussiantoken train-tokenizer)")
    if cfg.data.t2i_background not in ("raw", "canonical"):
        raise ValueError(f"data.t2i_background must be raw or canonical, got {cfg.data.t2i_background!r}")
    if cfg.data.t2i_layout not in ("grid", "objects"):
        raise ValueError(f"data.t2i_layout must be grid or objects, got {cfg.data.t2i_layout!r}")
    if cfg.data.t2i_layout == "objects" and cfg.data.source != "shapes_stream":
        raise ValueError("data.t2i_layout=objects needs data.source=shapes_stream (it reads which Gaussians draw each "
                         f"object from the rendered scenes), got data.source={cfg.data.source!r}")
    if cfg.data.t2i_layout == "objects" and cfg.data.t2i_background != "raw":
        raise ValueError("data.t2i_layout=objects already leaves the background to its canonical fill: "
                         f"keep data.t2i_background=raw, got {cfg.data.t2i_background!r}")
    if cfg.data.caption_style not in ("sampled", "canonical"):
        raise ValueError(f"data.caption_style must be sampled or canonical, got {cfg.data.caption_style!r}")
    if cfg.data.caption_style == "canonical" and cfg.data.source != "shapes_stream":
        raise ValueError("data.caption_style=canonical needs data.source=shapes_stream (it captions the scenes itself), "
                         f"got data.source={cfg.data.source!r}")
    if cfg.data.t2i_positions not in ("free", "lattice"):
        raise ValueError(f"data.t2i_positions must be free or lattice, got {cfg.data.t2i_positions!r}")
    if cfg.data.t2i_positions == "lattice" and cfg.data.source != "shapes_stream":
        raise ValueError("data.t2i_positions=lattice needs data.source=shapes_stream (it draws its own scenes), "
                         f"got data.source={cfg.data.source!r}")
    if not isinstance(cfg.model.image_groups, int) or cfg.model.image_groups < 0:
        raise ValueError(f"model.image_groups must be an int >= 0, got {cfg.model.image_groups!r}")
    if cfg.model.image_groups and cfg.data.source != "shapes_stream":
        raise ValueError("model.image_groups needs data.source=shapes_stream (the stream groups each rendered scene's "
                         f"Gaussians), got data.source={cfg.data.source!r}")
    if cfg.model.input_layout not in ("grid", "objects"):
        raise ValueError(f"model.input_layout must be grid or objects, got {cfg.model.input_layout!r}")
    if cfg.model.input_layout == "objects" and (cfg.data.t2i_layout != "objects" or not cfg.model.image_groups):
        raise ValueError("model.input_layout=objects needs data.t2i_layout=objects and model.image_groups > 0")
    if cfg.data.object_slots not in ("absolute", "relative"):
        raise ValueError(f"data.object_slots must be absolute or relative, got {cfg.data.object_slots!r}")
    if cfg.data.text_qa_questions not in TEXT_QA_QUESTIONS:
        raise ValueError(f"data.text_qa_questions must be one of {TEXT_QA_QUESTIONS}, got {cfg.data.text_qa_questions!r}")
    if cfg.data.text_qa_turns < 1:
        raise ValueError(f"data.text_qa_turns must be >= 1, got {cfg.data.text_qa_turns}")
    if cfg.data.vqa_turns < 1:
        raise ValueError(f"data.vqa_turns must be >= 1, got {cfg.data.vqa_turns}")
    if cfg.data.vqa_rationale and cfg.data.source != "shapes_stream":
        raise ValueError("data.vqa_rationale needs data.source=shapes_stream (its rationales are Shapes captions), "
                         f"got data.source={cfg.data.source!r}")
    if cfg.data.relation_positions and (cfg.data.vqa_rationale or cfg.data.source != "shapes_stream"):
        raise ValueError("data.relation_positions rewrites the relation answers of plain Shapes VQA: it needs "
                         "data.source=shapes_stream and data.vqa_rationale=false")
    from gaussiantoken.data.shapes_text import RATIONALE_STYLES

    if cfg.data.rationale_style not in RATIONALE_STYLES:
        raise ValueError(f"data.rationale_style must be one of {RATIONALE_STYLES}, got {cfg.data.rationale_style!r}")
    if cfg.data.rationale_style != "describe" and not cfg.data.vqa_rationale:
        raise ValueError(f"data.rationale_style={cfg.data.rationale_style} shapes describe-then-answer VQA targets: "
                         "it needs data.vqa_rationale=true")
    if cfg.data.object_radius < 0:
        raise ValueError(f"data.object_radius must be >= 0, got {cfg.data.object_radius}")
    if cfg.data.source not in ("codes", "shapes_stream"):
        raise ValueError(f"data.source must be codes or shapes_stream, got {cfg.data.source!r}")
    if cfg.data.source == "codes" and not os.path.isdir(resolve_path(cfg.data.codes)):
        raise FileNotFoundError(f"data.codes {cfg.data.codes} not found (run: gaussiantoken extract-codes --out ...)")
    if cfg.model.base_model is not None and not os.path.isdir(cfg.model.base_model):
        raise FileNotFoundError(f"model.base_model {cfg.model.base_model} is not a local directory")
    if cfg.model.init_from is not None:
        if cfg.model.base_model is not None:
            raise ValueError("give one of model.base_model (a backbone to extend) and model.init_from (a saved "
                             "gaussiantoken LM to continue from), not both")
        from gaussiantoken.runtime.model_dirs import LM_KIND, check_model_dir

        check_model_dir(resolve_path(cfg.model.init_from), LM_KIND, "model.init_from")


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> LMRunConfig:
    """YAML (resolved with `resolve_path`) + `key=value` overrides -> a checked `LMRunConfig`."""
    from gaussiantoken.runtime.config import load_run_config

    cfg = load_run_config(LMRunConfig, resolve_path(None if path is None else str(path)), overrides)
    check_config(cfg)
    return cfg
