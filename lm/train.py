"""Training of the multimodal LM: `gaussiantoken train-lm CONFIG.yaml [key=value ...]` (HF Trainer + DeepSpeed).

Owns the LM run config (plain dataclasses from YAML, checked before anything heavy), building the model
(vocabulary extension of a from-scratch backbone or a local `model.base_model`), the data
(`lm.data.MultiTaskSequenceDataset` over an extract-codes dir) and the HF Trainer run.

- DeepSpeed: `train.deepspeed` (default configs/deepspeed/zero2.json; zero3.json for ZeRO-3; null for
  plain DDP/single process). Our DeepSpeed JSONs have no "optimizer" section: the Trainer builds torch
  AdamW and hands it to DeepSpeed as a client optimizer ("zero_force_ds_cpu_optimizer": false), so no
  DeepSpeed C++ op is JIT-compiled on CPU.
- One CPU process: RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=<free port> are set
  when unset. fp32 on CPU, bf16 on GPU (`train.bf16: auto`). TensorBoard logs under OUTPUT/runs.
- Many GPUs / nodes: launch the same command with the DeepSpeed launcher or torchrun, e.g.
      deepspeed --num_gpus 8 -m gaussiantoken.lm.train configs/lm/gpu_400m.yaml
      torchrun --nproc_per_node 8 -m gaussiantoken.lm.train configs/lm/gpu_400m.yaml
  Multi-node with a hostfile (one line per node: "<hostname> slots=<gpus>"):
      $ cat hostfile
      node-a slots=8
      node-b slots=8
      deepspeed --hostfile hostfile --master_addr node-a --master_port 29500 \
          -m gaussiantoken.lm.train configs/lm/gpu_400m.yaml train.output_dir=/shared/runs/lm-400m
  (or torchrun --nnodes 2 --node_rank R --master_addr node-a --master_port 29500 --nproc_per_node 8 ...).
  `train.per_device_batch_size` x gradient_accumulation_steps x world size = the global batch.
- Resume: `train.resume: auto` (default) continues from the last OUTPUT/checkpoint-* when there is one
  (Trainer's resume_from_checkpoint; model, optimizer, scheduler, RNG and data position); a path resumes
  from that checkpoint; null starts fresh. The Trainer writes checkpoints in place (not atomically) with
  trainer_state.json last, so `auto` skips, with a warning, a newest checkpoint that lacks it (a run killed
  while saving); a checkpoint whose files are truncated/corrupted stops the resume with a CheckpointError
  naming it (`check_lm_checkpoint`). `train.max_minutes` stops cleanly (checkpoint + final model)
  after that wall time; with `lr_scheduler: cosine` the time counts over resumed runs and the cosine
  follows it (it anneals by the end of the budget; `lm.schedule`). `train.stop_at_step` checkpoints and
  exits at that step (the schedule still follows max_steps, so a resumed run reproduces an uninterrupted
  one); SIGTERM/SIGINT do the same.
- Result: OUTPUT/final (atomic), loadable with GaussianTokenForCausalLM.from_pretrained and
  GaussianTokenProcessor.from_pretrained (weights in fp32, the image tokenizer's exact weights), plus
  OUTPUT/final/train_config.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from gaussiantoken.runtime.run_lock import run_lock

REPO_ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- run config
@dataclass
class ModelSettings:
    tokenizer: str = "runs/tokenizer-shapes/final"  # trained GaussianTokenizer dir
    text_tokenizer: str | None = None  # HF tokenizer dir; None: the base model's, or train one on the Shapes
    # corpus (saved to OUTPUT/text_tokenizer and reused on resume)
    text_vocab_size: int = 384  # when a text tokenizer is trained here
    base_model: str | None = None  # local AutoModelForCausalLM dir (else from-scratch from text_config)
    text_config: dict = field(default_factory=lambda: {
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    })
    attn_implementation: str = "sdpa"


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
    max_steps: int = 400
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    seed: int = 0
    bf16: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | true | false
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
    from gaussiantoken.lm.data import normalize_ratios
    from gaussiantoken.runtime.config import check_config as check_types

    check_types(cfg)  # every key's type ('abc' for an int is a TypeError naming it), floats finite

    normalize_ratios(cfg.data.ratios)
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
    for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_steps"):
        if getattr(t, name) <= 0:
            raise ValueError(f"train.{name} must be positive, got {getattr(t, name)}")
    if not os.path.isdir(resolve_path(cfg.model.tokenizer)):
        raise FileNotFoundError(f"model.tokenizer {cfg.model.tokenizer} not found (train one: gaussiantoken train-tokenizer)")
    if cfg.data.t2i_background not in ("raw", "canonical"):
        raise ValueError(f"data.t2i_background must be raw or canonical, got {cfg.data.t2i_background!r}")
    if cfg.data.source not in ("codes", "shapes_stream"):
        raise ValueError(f"data.source must be codes or shapes_stream, got {cfg.data.source!r}")
    if cfg.data.source == "codes" and not os.path.isdir(resolve_path(cfg.data.codes)):
        raise FileNotFoundError(f"data.codes {cfg.data.codes} not found (run: gaussiantoken extract-codes --out ...)")
    if cfg.model.base_model is not None and not os.path.isdir(cfg.model.base_model):
        raise FileNotFoundError(f"model.base_model {cfg.model.base_model} is not a local directory")


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
    elif m.base_model is not None:
        tokenizer = AutoTokenizer.from_pretrained(m.base_model)
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
        tokenizer, tok_dir, text_config=text_config, base_model=cfg.model.base_model, dtype=torch.float32
    )
    model.config._attn_implementation = cfg.model.attn_implementation
    if (Path(tok_dir) / "preprocessor_config.json").is_file():
        image_processor = GaussianTokenizerImageProcessor.from_pretrained(tok_dir)
    else:
        image_processor = GaussianTokenizerImageProcessor(image_size=model.config.tokenizer_config.image_size)
    processor = GaussianTokenProcessor.from_model_config(model.config, tokenizer, image_processor)
    return model, processor


def build_stream(cfg: LMRunConfig, image_tokenizer):
    """The fresh-scene stream (data.source=shapes_stream), as long as the whole run's rows, and its state.
    `image_tokenizer`: its own frozen CPU copy (a directory), not the LM's (which DeepSpeed may move/cast)."""
    from gaussiantoken.lm.stream import ShapesCodeStream, StreamState

    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows_per_step = t.per_device_batch_size * t.gradient_accumulation_steps * world
    stream = ShapesCodeStream(image_tokenizer, length=t.max_steps * rows_per_step, seed=t.seed,
                              chunk_size=cfg.data.stream_chunk, per_device_batch=t.per_device_batch_size,
                              world_size=world)
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

    context = model_config.max_position_embeddings
    max_length = cfg.data.max_length or context
    if context is not None and max_length > context:
        raise ValueError(f"data.max_length {max_length} exceeds the backbone's max_position_embeddings {context}")
    dataset = MultiTaskSequenceDataset(
        ds, processor.tokenizer, processor.layout, cfg.data.ratios, cfg.data.caption_dropout,
        seed=cfg.train.seed, max_length=max_length, repeats=1 if cfg.data.source == "shapes_stream" else cfg.data.repeats,
        t2i_codes=background_canon(cfg) if cfg.data.t2i_background == "canonical" else None,
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


_CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")


def check_lm_checkpoint(path: str | os.PathLike) -> None:
    """Raise `CheckpointError` naming checkpoint `path` when any of its files is missing, truncated or corrupted.

    Checked without loading tensors: trainer_state.json (parses, has global_step), config.json and the
    safetensors weights (`check_pretrained_dir`), the DeepSpeed shards named by `latest` (or, without
    DeepSpeed, optimizer.pt and scheduler.pt) and rng_state*.pth (complete torch.save archives).
    """
    from gaussiantoken.runtime.integrity import CheckpointError, check_json_file, check_pretrained_dir, check_torch_file

    path = Path(path)
    try:
        state = check_json_file(path / "trainer_state.json")
        if not isinstance(state, dict) or "global_step" not in state:
            raise CheckpointError(f"{path / 'trainer_state.json'} is corrupted: no global_step")
        if not any(path.glob("model*.safetensors")):
            raise CheckpointError(f"{path} holds no model*.safetensors weights")
        check_pretrained_dir(path)
        latest = path / "latest"
        if latest.is_file():  # DeepSpeed engine state
            tag = latest.read_text().strip()
            shards = sorted((path / tag).glob("*.pt")) if tag else []
            if not any("optim_states" in f.name for f in shards) or not any("model_states" in f.name for f in shards):
                raise CheckpointError(f"{path / tag} lacks the DeepSpeed model/optimizer states named by {latest}")
            for f in shards:
                check_torch_file(f)
        else:
            for name in ("optimizer.pt", "scheduler.pt"):
                check_torch_file(path / name)
        for f in sorted(path.glob("rng_state*.pth")):
            check_torch_file(f)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot resume from checkpoint {path}: {exc}") from None


def resolve_resume(cfg: LMRunConfig) -> str | bool | None:
    """The checkpoint to resume from (see the module docstring), checked with `check_lm_checkpoint`."""
    from gaussiantoken.runtime.integrity import CheckpointError

    r = cfg.train.resume
    if r is None or str(r).lower() in ("none", "null", "false", "no"):
        return None
    if str(r) == "auto":
        out = Path(cfg.train.output_dir)
        found = [p for p in out.iterdir() if p.is_dir() and _CHECKPOINT_RE.fullmatch(p.name)] if out.is_dir() else []
        found.sort(key=lambda p: int(_CHECKPOINT_RE.fullmatch(p.name).group(1)))
        while found and not (found[-1] / "trainer_state.json").is_file():
            warnings.warn(f"skipping incomplete checkpoint {found[-1]} (no trainer_state.json: the run was stopped "
                          "while saving it); it will be overwritten", RuntimeWarning, stacklevel=2)
            found.pop()
        if not found:
            return None
        try:
            check_lm_checkpoint(found[-1])
        except CheckpointError as exc:
            hint = f"; move it aside to resume from {found[-2]}" if len(found) > 1 else ""
            raise CheckpointError(f"{exc}{hint}") from None
        return str(found[-1])
    if not os.path.isdir(r):
        raise FileNotFoundError(f"train.resume checkpoint not found: {r}")
    check_lm_checkpoint(r)
    return r


def _restore_final(staging: Path, tokenizer_dir: str) -> None:
    """Rewrite a saved LM in fp32 with the image tokenizer's exact weights (undo bf16 casting)."""
    import torch

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.tokenizer import GaussianTokenizer

    model = GaussianTokenForCausalLM.from_pretrained(str(staging), dtype=torch.float32)
    original = GaussianTokenizer.from_pretrained(tokenizer_dir, dtype=torch.float32)
    model.image_tokenizer.load_state_dict(original.state_dict())
    model.save_pretrained(str(staging))


# ----------------------------------------------------------------------------- entry
@dataclass
class TrainResult:
    final_dir: Path
    log_history: list
    global_step: int
    stopped_early: bool
    seconds: float


def train(cfg: LMRunConfig) -> TrainResult:
    """Train (or resume) as configured; returns where the final model is and the log history."""
    check_config(cfg)
    saved = {k: os.environ.get(k) for k in _PROCESS_ENV}
    ensure_distributed_env()
    try:
        # one writer per OUTPUT (rank 0 holds the lock; a second run exits naming the owner)
        with run_lock(cfg.train.output_dir, "train-lm", enabled=int(os.environ.get("RANK", "0")) == 0):
            return _train(cfg)
    finally:
        _release_accelerator_state(saved)


def _train(cfg: LMRunConfig) -> TrainResult:
    import torch
    from transformers import set_seed

    from gaussiantoken.lm.data import SequenceCollator
    from gaussiantoken.lm.schedule import ClockTrainer, RunClock
    from gaussiantoken.runtime.stop import StopFlag
    from gaussiantoken.runtime.config import save_run_config

    t = cfg.train
    on_cuda = torch.cuda.is_available() and t.device != "cpu"
    if t.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA GPU is available")
    if not on_cuda and t.deepspeed is not None:
        avoid_cpu_op_builds()
    set_seed(t.seed)
    model, processor = build_model_and_processor(cfg)
    stream = build_stream(cfg, resolve_path(cfg.model.tokenizer)) if cfg.data.source == "shapes_stream" else None
    dataset = build_dataset(cfg, processor, model.config, rows=stream[0] if stream else None)
    args = make_training_arguments(cfg, on_cuda)
    resume = resolve_resume(cfg)
    stop = StopFlag().install()
    callback = RunClock(t.max_minutes, stop, t.stop_at_step)
    callbacks = [callback]
    if stream is not None:
        from gaussiantoken.lm.stream import stream_callback

        callbacks.append(stream_callback(stream[1], resume))
    trainer = ClockTrainer(
        model=model, args=args, train_dataset=dataset,
        data_collator=SequenceCollator(processor.layout.pad_token_id), callbacks=callbacks,
        budget_s=None if t.max_minutes is None else 60.0 * t.max_minutes,
    )
    start = time.time()
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        stop.restore()
    out = Path(t.output_dir)
    staging, final = out / ".final-staging", out / "final"
    is_main = trainer.is_world_process_zero()
    if is_main and staging.exists():
        shutil.rmtree(staging)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # every rank (ZeRO-3 gathers the shards)
    trainer.accelerator.wait_for_everyone()
    if is_main:
        _restore_final(staging, resolve_path(cfg.model.tokenizer))
        processor.save_pretrained(str(staging))
        save_run_config(cfg, staging / "train_config.yaml")
        old = out / ".final-old"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(final, list(trainer.state.log_history), trainer.state.global_step, callback.stopped_early,
                       time.time() - start)


# environment that one in-process run sets (ours: the single-process rendezvous; accelerate's: DeepSpeed)
_PROCESS_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED")


def _release_accelerator_state(saved_env: dict) -> None:
    """Undo the process-wide variables a run leaves behind: the rendezvous variables we set, and the
    DeepSpeed switch of the Trainer's Accelerator (ACCELERATE_USE_DEEPSPEED=true), so that child
    processes started later do not inherit a rendezvous port this process holds, or DeepSpeed.
    (accelerate's in-process shared state is left alone: the tokenizer trainer resets it itself.)"""
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    from gaussiantoken.runtime.integrity import CheckpointError
    from gaussiantoken.runtime.config import load_run_config

    parser = argparse.ArgumentParser(prog="gaussiantoken train-lm", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="YAML run config, e.g. configs/lm/shapes.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        cfg = load_run_config(LMRunConfig, resolve_path(args.config), args.overrides)
        check_config(cfg)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"train-lm: config error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg)
    except CheckpointError as exc:
        print(f"train-lm: checkpoint error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as exc:  # data, model directories, the run lock
        print(f"train-lm: error: {exc}", file=sys.stderr)
        return 2
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    if int(os.environ.get("RANK", "0")) == 0:
        last = f", last logged loss {losses[-1]:.4f}" if losses else ""
        print(f"train-lm: {result.global_step} steps in {result.seconds:.1f}s{last}; final model: {result.final_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
