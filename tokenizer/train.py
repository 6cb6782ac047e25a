"""Training entry of the Gaussian tokenizer: `gaussiantoken train-tokenizer CONFIG.yaml [key=value ...] [--resume]`.

Owns the run config (plain dataclasses filled from YAML, type-checked before anything heavy runs) and
the training loop, on one CPU process, one GPU, or many (DDP via `accelerate launch`, one or many nodes):

- Generator step: pixel loss (L1/L2) + LPIPS (when `loss.lpips_weight > 0`, weights from
  `loss.lpips_weights`) + the model's `quantization_loss` + (from `gan_start_step`/`gan_start_epoch`)
  a non-saturating GAN term, weighted fixed (`gan_weight`) or adaptively (VQGAN gradient ratio).
- Discriminator step (PatchGAN, hinge loss + LeCam regulariser) after each generator step once the GAN
  is on. Adam(betas) with linear warm-up + cosine decay for both; gradient clipping; bf16 autocast on GPU.
- Model EMA (`train.ema_decay`): the EMA weights are what is saved as the final model.
- Many processes: each takes its slice of every global batch (`batches_for`); gradients are averaged (DDP),
  the EMA codebook and LeCam statistics are global, and the logged losses are means over processes, so a
  run matches one process with the same global batch (tests/tokenizer/test_tokenizer_train_ddp.py).
- Logs: TensorBoard (accelerate tracker) under OUTPUT/logs, one JSON line per step in
  OUTPUT/logs/train.jsonl, validation lines in OUTPUT/logs/val.jsonl, a tqdm bar, PNG sample grids
  (originals | reconstructions | Gaussians drawn with `draw_gaussians`) in OUTPUT/samples.
- One writer: the run holds OUTPUT's lock (`run_lock`) from start to end; a second run into the same
  OUTPUT exits with status 2 naming the owner (pid, host); a lock left by a killed run is taken over.
- Checkpoints OUTPUT/checkpoints/step-XXXXXXXX (atomic: complete or absent) every
  `checkpoint_every` steps, every `checkpoint_minutes` of wall time, once halfway (by steps, or by
  `max_minutes`) when the run has no checkpoint yet (so a kill late in a run never loses all of it),
  on SIGTERM/SIGINT, on `stop_at_step` and at the end: model, EMA,
  discriminator (+ LeCam averages), both optimizers and schedulers, RNG states of every process,
  step, epoch and position in the epoch. The data order is a pure function of (seed, epoch), so
  `--resume` (or `train.resume: auto`) continues exactly where the run stopped, also after a SIGKILL
  (`--resume` with no checkpoint yet starts a fresh run, saying so)
  (the temporaries of a killed checkpoint write are removed; a torn last log line is dropped). A damaged
  latest checkpoint (truncated/corrupted file) stops the resume with a `CheckpointError` naming it and
  the previous checkpoint (no silent fallback: checkpoints are atomic, so damage means a storage fault).
- The result: OUTPUT/final, a `save_pretrained` directory (EMA weights, config.json,
  preprocessor_config.json, train_config.yaml) loadable with `GaussianTokenizer.from_pretrained`.
  It is written at the end of `max_steps`, or when `train.max_minutes` runs out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gaussiantoken.runtime.run_lock import run_lock
from gaussiantoken.runtime.integrity import CheckpointError
from gaussiantoken.runtime.stop import StopFlag
from gaussiantoken.runtime.dist import agree_max
from gaussiantoken.runtime.files import atomic_directory
from gaussiantoken.runtime.config import check_config, load_run_config, save_run_config


# ----------------------------------------------------------------------------- run config
@dataclass
class TrainSettings:
    output_dir: str = "runs/tokenizer"
    seed: int = 0
    batch_size: int = 32  # per process
    max_steps: int = 1000
    max_minutes: float | None = None  # time budget: stop cleanly (checkpoint + final model) after this long (setup
    # included, summed over resumed runs); the cosine schedule then follows the clock when it would end first
    stop_at_step: int | None = None  # checkpoint and exit at this step without finishing (split a run)
    learning_rate: float = 2e-4
    adam_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables
    ema_decay: float = 0.999
    ema_warmup: bool = True
    mixed_precision: str = "auto"  # auto (bf16 on GPU, none on CPU) | no | bf16 | fp16
    find_unused_parameters: bool = False
    image_column: str = "image"
    random_flip: bool = False
    num_workers: int = 0
    log_every: int = 10
    log_with: str = "tensorboard"  # tensorboard | none
    progress_bar: bool = True
    sample_every: int = 0  # 0 = only at the end
    num_sample_images: int = 8
    eval_every: int = 0  # 0 = only at the end
    num_val_samples: int = 256
    checkpoint_every: int = 0  # steps; 0 = none by step count (the time interval and the halfway one still apply)
    checkpoint_minutes: float | None = 10.0  # also checkpoint when this long has passed since the last one
    keep_checkpoints: int = 2
    resume: bool | str = False  # False | True (must exist) | "auto" (when one exists)


@dataclass
class LossSettings:
    pixel: str = "l1"  # l1 | l2 | l1+l2
    pixel_weight: float = 1.0
    lpips_weight: float = 0.0
    lpips_weights: str | None = None  # safetensors file (see tokenizer.losses.load_lpips)
    gan_weight: float = 0.0  # 0 disables the GAN and the discriminator
    adaptive_gan_weight: bool = False  # multiply gan_weight by the VQGAN gradient-norm ratio
    gan_start_step: int = 0
    gan_start_epoch: int | None = None  # overrides gan_start_step when set
    lecam_weight: float = 0.05
    lecam_decay: float = 0.999
    disc_learning_rate: float | None = None  # None = train.learning_rate
    disc_channels: int = 64
    disc_layers: int = 3
    disc_norm: str = "group"


@dataclass
class TokenizerRunConfig:
    model: dict = field(default_factory=dict)  # GaussianTokenizerConfig fields (+ optional `preset`)
    data: dict = field(default_factory=lambda: {"name": "shapes", "num_samples": 2048, "seed": 0})
    val_data: dict | None = None  # spec for validation/sample images; None = no validation metrics
    train: TrainSettings = field(default_factory=TrainSettings)
    loss: LossSettings = field(default_factory=LossSettings)


def validate_run_config(config: TokenizerRunConfig) -> TokenizerRunConfig:
    """Types, then value ranges and cross-field rules; every problem is a ValueError/TypeError naming the key."""
    check_config(config)
    t, lo = config.train, config.loss
    positive = {"train.batch_size": t.batch_size, "train.max_steps": t.max_steps, "train.learning_rate": t.learning_rate,
                "train.log_every": t.log_every, "train.num_sample_images": t.num_sample_images,
                "train.num_val_samples": t.num_val_samples}
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"config key {name!r} must be positive, got {value}")
    for name, value in {"train.warmup_steps": t.warmup_steps, "train.sample_every": t.sample_every,
                        "train.eval_every": t.eval_every, "train.checkpoint_every": t.checkpoint_every,
                        "train.num_workers": t.num_workers, "loss.gan_start_step": lo.gan_start_step}.items():
        if value < 0:
            raise ValueError(f"config key {name!r} must be >= 0, got {value}")
    if len(t.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in t.adam_betas):
        raise ValueError(f"config key 'train.adam_betas' must be two numbers in [0, 1), got {t.adam_betas}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ValueError(f"config key 'train.ema_decay' must be in [0, 1), got {t.ema_decay}")
    if t.mixed_precision not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"config key 'train.mixed_precision' must be auto|no|bf16|fp16, got {t.mixed_precision!r}")
    if t.log_with not in ("tensorboard", "none"):
        raise ValueError(f"config key 'train.log_with' must be tensorboard|none, got {t.log_with!r}")
    if isinstance(t.resume, str) and t.resume != "auto":
        raise ValueError(f"config key 'train.resume' must be true, false or 'auto', got {t.resume!r}")
    for name, value in {"train.max_minutes": t.max_minutes, "train.checkpoint_minutes": t.checkpoint_minutes}.items():
        if value is not None and value <= 0:
            raise ValueError(f"config key {name!r} must be positive (or null), got {value}")
    if lo.pixel not in ("l1", "l2", "l1+l2"):
        raise ValueError(f"config key 'loss.pixel' must be l1|l2|l1+l2, got {lo.pixel!r}")
    if lo.lpips_weight > 0 and not lo.lpips_weights:
        raise ValueError("loss.lpips_weight > 0 needs loss.lpips_weights (a safetensors file with the LPIPS net)")
    if lo.lpips_weight > 0 and not os.path.isfile(lo.lpips_weights):
        raise ValueError(f"config key 'loss.lpips_weights': file not found: {lo.lpips_weights}")
    if lo.disc_norm not in ("group", "batch", "none"):
        raise ValueError(f"config key 'loss.disc_norm' must be group|batch|none, got {lo.disc_norm!r}")
    if not 0.0 <= lo.lecam_decay < 1.0:
        raise ValueError(f"config key 'loss.lecam_decay' must be in [0, 1), got {lo.lecam_decay}")
    for name in ("data", "val_data"):
        spec = getattr(config, name)
        if spec is not None and "name" not in spec:
            raise ValueError(f"config key {name!r} must name a dataset (`name: shapes|cifar100|...`), got {spec}")
    _model_config(config.model)  # unknown/invalid architecture keys fail here, before training
    return config


def _model_config(model_spec: dict):
    """`model` spec -> architecture config; `model.type` picks the architecture (tokenizer/model_types.py)."""
    from .model_types import config_from_spec

    return config_from_spec(model_spec)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> TokenizerRunConfig:
    """YAML + `key=value` overrides -> a validated `TokenizerRunConfig` (errors name the bad key)."""
    return validate_run_config(load_run_config(TokenizerRunConfig, path, overrides))


# ----------------------------------------------------------------------------- data
class _ImageSet:
    """Map-style view of a `datasets.Dataset` giving [3, S, S] tensors in [-1, 1] for (index, epoch) keys."""

    def __init__(self, dataset, processor, column: str, flip: bool, seed: int):
        if column not in dataset.column_names:
            raise ValueError(f"dataset has no image column {column!r} (train.image_column); columns: "
                             f"{dataset.column_names}")
        self.dataset, self.processor, self.column, self.flip, self.seed = dataset, processor, column, flip, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        import torch

        index, epoch = key
        image = self.dataset[int(index)][self.column]
        pixels = self.processor(images=[image], return_tensors="pt")["pixel_values"][0]  # [3, S, S]
        if self.flip:  # a pure function of (seed, epoch, index), so resuming repeats it
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 65_537 + int(index))
            if torch.rand((), generator=g) < 0.5:
                pixels = pixels.flip(-1)
        return pixels


def _collate(items):
    import torch

    return torch.stack(items)  # [B, 3, S, S]


def _image_batches(image_set, batches: list[list[int]], epoch: int, num_workers: int, seed: int):
    import torch
    from torch.utils.data import DataLoader

    keyed = [[(i, epoch) for i in batch] for batch in batches]
    return DataLoader(image_set, batch_sampler=keyed, collate_fn=_collate, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed + epoch))  # never touches the global RNG


# ----------------------------------------------------------------------------- helpers
def _last_layer(model):
    """The decoder's last weight (for the adaptive GAN weight): `get_last_layer()` or the last conv weight."""
    if hasattr(model, "get_last_layer"):
        return model.get_last_layer()
    candidates = [p for n, p in model.named_parameters() if p.dim() == 4 and "decoder" in n]
    if not candidates:
        raise ValueError("loss.adaptive_gan_weight needs a decoder conv weight; set adaptive_gan_weight: false")
    return candidates[-1]


def psnr_per_image(recon, target):
    """PSNR (dB) of each image, pixels in [-1, 1] (peak-to-peak 2): [B, 3, H, W] x2 -> [B]."""
    mse = (recon.float() - target.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * (4.0 / mse).log10()


def grid_upscale(size: int) -> int:
    """Nearest-neighbour magnification of sample-grid cells: small images are drawn about 128 px wide."""
    return max(1, 128 // size)


def save_sample_grid(path: Path, originals, reconstructions, gaussians: dict | None) -> None:
    """Rows: originals | reconstructions | Gaussians drawn (`draw_gaussians`, 1-sigma ellipses over the
    original); cells magnified `grid_upscale(S)` times, 2 px white gaps; written as a PNG (atomically)."""
    import io

    import numpy as np
    from PIL import Image

    from gaussiantoken.tokenizer import draw_gaussians

    from gaussiantoken.runtime.files import atomic_write_bytes

    n, size = originals.shape[0], originals.shape[-1]
    up = grid_upscale(size)
    cell = size * up

    def to_pil(t):  # [3, S, S] in [-1, 1] -> PIL magnified
        arr = ((t.detach().float().cpu().clamp(-1, 1).permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        return Image.fromarray(arr).resize((cell, cell), Image.NEAREST)

    rows = [[to_pil(x) for x in originals], [to_pil(x) for x in reconstructions]]
    if gaussians is not None:
        rows.append([draw_gaussians(originals[i], {k: v[i : i + 1] for k, v in gaussians.items() if v is not None},
                                    upscale=up) for i in range(n)])
    pad = 2
    grid = Image.new("RGB", (n * (cell + pad) + pad, len(rows) * (cell + pad) + pad), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.convert("RGB").resize((cell, cell)), (pad + c * (cell + pad), pad + r * (cell + pad)))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


class _JsonLog:
    """Append-only JSON lines; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        """Keep the lines of steps <= `step`; a line torn by a kill mid-write (unparseable) is dropped."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        for ln in self.path.read_text().splitlines():
            try:
                record = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", step + 1) <= step:
                keep.append(ln)
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def write(self, record: dict) -> None:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def read_losses(output_dir: str | os.PathLike, key: str = "loss") -> list[float]:
    """The per-step values of `key` from OUTPUT/logs/train.jsonl, in step order."""
    path = Path(output_dir) / "logs" / "train.jsonl"
    records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r[key] for r in sorted(records, key=lambda r: r["step"])]


# ----------------------------------------------------------------------------- training
# per-step metrics that are batch means: with several processes the log holds their mean over processes
_BATCH_MEANS = ("loss", "pixel", "lpips", "quantization", "g_loss", "d_loss", "lecam", "logits_real", "logits_fake")


@dataclass
class TrainResult:
    step: int
    stop_reason: str  # "max_steps" | "max_minutes" | "signal" | "stop_at_step"
    final_dir: Path | None  # OUTPUT/final when written
    checkpoint: Path | None
    last_metrics: dict


def _forget_inherited_deepspeed() -> None:
    """The tokenizer trains two models (generator and discriminator) with DDP, never DeepSpeed. When an
    HF Trainer + DeepSpeed run (the LM) happened earlier in this process, accelerate keeps its
    DeepSpeed state process-wide; drop it so this run's Accelerator starts clean."""
    from accelerate.state import AcceleratorState, DistributedType, GradientState

    state = AcceleratorState._shared_state
    if state and state.get("distributed_type") == DistributedType.DEEPSPEED:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise ValueError("tokenizer training does not run under DeepSpeed (it trains a generator and a "
                         "discriminator with DDP): launch it with `accelerate launch --multi_gpu`, not --use_deepspeed")


def train(config: TokenizerRunConfig, resume: bool | str | None = None, stop_flag: StopFlag | None = None,
          step_callback=None) -> TrainResult:
    """Run (or resume) training as configured. `step_callback(step, metrics)` is called after each step."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    config = validate_run_config(config)
    t = config.train
    resume = t.resume if resume is None else resume
    out = Path(t.output_dir)
    wall_start = time.monotonic()

    mp = t.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() else "no"
    _forget_inherited_deepspeed()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # without it, a multi-process CPU launch gives N lone processes
        mixed_precision=mp,
        log_with="tensorboard" if t.log_with == "tensorboard" else None,
        project_dir=str(out / "logs"),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=t.find_unused_parameters)],
    )
    own_flag = stop_flag is None
    stop_flag = StopFlag().install() if own_flag else stop_flag
    try:
        with _locked(out, accelerator):
            return _run(config, accelerator, stop_flag, resume, step_callback, wall_start)
    finally:
        if own_flag:
            stop_flag.restore()


@contextmanager
def _locked(out: Path, accelerator):
    """The main process holds OUTPUT's run lock; every process learns (one all-reduce) whether it got it."""
    from gaussiantoken.runtime.run_lock import RunLocked

    lock, error = contextlib.ExitStack(), None
    with lock:
        if accelerator.is_main_process:
            try:
                lock.enter_context(run_lock(out, "train-tokenizer"))
            except RunLocked as exc:
                error = exc
        if agree_max([float(error is not None)], accelerator.device)[0] > 0:
            raise error or RunLocked(f"{out} is in use by another run (see the main process)")
        yield


def _run(config, accelerator, stop_flag, resume, step_callback, wall_start) -> TrainResult:
    import torch
    from accelerate.utils import gather_object, set_seed
    from safetensors.torch import load_model, save_model
    from tqdm.auto import tqdm

    from gaussiantoken.data.loaders import load_dataset_from_config
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

    from .model_types import model_class_for

    from .discriminator import PatchDiscriminator
    from .losses import LeCam, adaptive_gan_weight, hinge_d_loss, load_lpips, non_saturating_g_loss, pixel_loss
    from .trainer_state import (ModelEMA, batches_for, capture_rng, check_checkpoint, checkpoint_dir,
                                clean_checkpoint_temporaries, latest_checkpoint, prune_checkpoints, restore_rng)
    from gaussiantoken.runtime.schedule import warmup_cosine

    t, lc = config.train, config.loss
    out = Path(t.output_dir)
    main_proc = accelerator.is_main_process

    # ---- resume decision (before building anything heavy)
    if main_proc:
        clean_checkpoint_temporaries(out)
    accelerator.wait_for_everyone()
    ckpt = latest_checkpoint(out)
    if resume is True and ckpt is None:
        accelerator.print(f"--resume: {out}/checkpoints holds no checkpoint yet; starting a fresh run")
    if resume is False and ckpt is not None:
        raise ValueError(f"{out} already holds checkpoints ({ckpt.name}); pass --resume (or train.resume=auto) "
                         "to continue, or choose another train.output_dir")
    resume_from = ckpt if resume in (True, "auto") else None
    resume_state = None
    if resume_from is not None:
        if lc.gan_weight > 0 and not (resume_from / "discriminator.safetensors").exists():
            raise ValueError(f"{resume_from} has no discriminator but loss.gan_weight > 0")
        resume_state = check_checkpoint(resume_from, with_gan=lc.gan_weight > 0)  # CheckpointError if damaged

    # ---- models, data, optimizers (seeded identically on every process)
    set_seed(t.seed)
    model_config = _model_config(config.model)
    model = model_class_for(model_config)(model_config)
    processor = GaussianTokenizerImageProcessor(image_size=model_config.image_size)
    ema = ModelEMA(model, t.ema_decay, warmup=t.ema_warmup)
    use_gan = lc.gan_weight > 0
    disc = PatchDiscriminator(3, lc.disc_channels, lc.disc_layers, lc.disc_norm) if use_gan else None
    lecam = LeCam(lc.lecam_decay) if use_gan else None
    lpips = load_lpips(lc.lpips_weights, device=accelerator.device) if lc.lpips_weight > 0 else None

    train_set = load_dataset_from_config(dict(config.data))
    images = _ImageSet(train_set, processor, t.image_column, t.random_flip, t.seed)
    global_batch = t.batch_size * accelerator.num_processes
    steps_per_epoch = len(images) // global_batch
    if steps_per_epoch < 1:
        raise ValueError(f"dataset of {len(images)} images is smaller than one global batch ({global_batch})")
    gan_start = lc.gan_start_epoch * steps_per_epoch if lc.gan_start_epoch is not None else lc.gan_start_step
    val_images = None
    if config.val_data is not None:
        val_set = load_dataset_from_config(dict(config.val_data))
        if len(val_set) > t.num_val_samples:  # a fixed random subset (class folders are sorted by class)
            val_set = val_set.shuffle(seed=0).select(range(t.num_val_samples))
        val_images = _ImageSet(val_set, processor, t.image_column, False, t.seed)

    opt = torch.optim.Adam(model.parameters(), lr=t.learning_rate, betas=tuple(t.adam_betas),
                           weight_decay=t.weight_decay)
    budget_s = 60.0 * t.max_minutes if t.max_minutes is not None else None
    clock = {"offset": 0.0, "elapsed": 0.0}  # seconds spent before this process (from the checkpoint), and in all

    def lr_fn(s: int) -> float:
        fraction = clock["elapsed"] / budget_s if budget_s else 0.0
        return warmup_cosine(s, t.warmup_steps, t.max_steps, t.min_lr_ratio, time_fraction=fraction)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_fn)
    if use_gan:
        d_opt = torch.optim.Adam(disc.parameters(), lr=lc.disc_learning_rate or t.learning_rate,
                                 betas=tuple(t.adam_betas), weight_decay=t.weight_decay)
        d_sched = torch.optim.lr_scheduler.LambdaLR(d_opt, lr_fn)
        model, disc, opt, d_opt = accelerator.prepare(model, disc, opt, d_opt)
        lecam.to(accelerator.device)
    else:
        model, opt = accelerator.prepare(model, opt)
        d_opt = d_sched = None
    ema.module.to(accelerator.device)
    raw_model = accelerator.unwrap_model(model)
    raw_disc = accelerator.unwrap_model(disc) if use_gan else None

    step, epoch, position = 0, 0, 0
    train_log = _JsonLog(out / "logs" / "train.jsonl", main_proc)
    val_log = _JsonLog(out / "logs" / "val.jsonl", main_proc)
    if resume_from is not None:
        load_model(raw_model, str(resume_from / "model.safetensors"))
        load_model(ema.module, str(resume_from / "ema.safetensors"))
        state = resume_state
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        ema.load_state_dict(state["ema"])
        if use_gan:
            load_model(raw_disc, str(resume_from / "discriminator.safetensors"))
            load_model(lecam, str(resume_from / "lecam.safetensors"))
            d_opt.load_state_dict(state["disc_optimizer"])
            d_sched.load_state_dict(state["disc_scheduler"])
        step, epoch, position = int(state["step"]), int(state["epoch"]), int(state["position"])
        clock["offset"] = clock["elapsed"] = float(state.get("elapsed_s", 0.0))
        rng_states = state["rng"]
        if len(rng_states) != accelerator.num_processes:
            raise ValueError(f"checkpoint {resume_from} was written by {len(rng_states)} processes, now "
                             f"{accelerator.num_processes}: exact resume needs the same number")
        restore_rng(rng_states[accelerator.process_index])
        train_log.truncate_after(step)
        val_log.truncate_after(step)
        accelerator.print(f"resumed from {resume_from} at step {step} (epoch {epoch}, batch {position})")
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        save_run_config(config, out / "train_config.yaml")
    if t.log_with == "tensorboard":
        accelerator.init_trackers("tensorboard")

    # ---- checkpoint / sample / validation closures
    def save_checkpoint() -> Path:
        rngs = gather_object([capture_rng()])
        target = checkpoint_dir(out, step)
        if main_proc:
            with atomic_directory(target) as tmp:
                save_model(raw_model, str(tmp / "model.safetensors"))
                save_model(ema.module, str(tmp / "ema.safetensors"))
                state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "ema": ema.state_dict(),
                         "step": step, "epoch": epoch, "position": position, "rng": rngs,
                         "elapsed_s": clock["elapsed"]}
                if use_gan:
                    save_model(raw_disc, str(tmp / "discriminator.safetensors"))
                    save_model(lecam, str(tmp / "lecam.safetensors"))
                    state["disc_optimizer"] = d_opt.state_dict()
                    state["disc_scheduler"] = d_sched.state_dict()
                torch.save(state, tmp / "state.pt")
                save_run_config(config, tmp / "train_config.yaml")
            prune_checkpoints(out, t.keep_checkpoints)
        accelerator.wait_for_everyone()
        ckpt_clock.update(at=clock["elapsed"], any=True)
        return target

    def preview_batch(n: int):
        source = val_images if val_images is not None else images
        keys = [(i, 0) for i in range(min(n, len(source)))]
        return torch.stack([source[k] for k in keys]).to(accelerator.device)

    @torch.no_grad()
    def write_samples() -> None:
        if not main_proc:
            return
        with torch.random.fork_rng(devices=[]):
            x = preview_batch(t.num_sample_images)
            with accelerator.autocast():
                o = ema.module(pixel_values=x)
            save_sample_grid(out / "samples" / f"step-{step:08d}.png", x, o.reconstruction, o.gaussians)

    @torch.no_grad()
    def validate() -> dict:
        if not main_proc or val_images is None:
            return {}
        with torch.random.fork_rng(devices=[]):
            psnrs, usage, used = [], [], set()
            for lo in range(0, len(val_images), t.batch_size):
                keys = [(i, 0) for i in range(lo, min(lo + t.batch_size, len(val_images)))]
                x = torch.stack([val_images[k] for k in keys]).to(accelerator.device)
                with accelerator.autocast():
                    o = ema.module(pixel_values=x)
                psnrs.append(psnr_per_image(o.reconstruction, x).cpu())
                usage.append(float(o.codebook_usage))
                used.update(o.ids.unique().tolist())
            metrics = {"val/psnr": float(torch.cat(psnrs).mean()), "val/codebook_usage": sum(usage) / len(usage),
                       "val/vocab_usage": len(used) / raw_model.vocab_size}
        val_log.write({"step": step, **metrics})
        accelerator.log(metrics, step=step)
        return metrics

    ckpt_clock = {"at": clock["elapsed"], "any": resume_from is not None}  # the last checkpoint's clock

    def checkpoint_due() -> bool:
        """Every `checkpoint_every` steps, every `checkpoint_minutes`, and once halfway when the run has none
        yet; decided from the step and the agreed clock, so every process decides the same."""
        if t.checkpoint_every and step % t.checkpoint_every == 0:
            return True
        if t.checkpoint_minutes and clock["elapsed"] - ckpt_clock["at"] >= 60.0 * t.checkpoint_minutes:
            return True
        halfway = step >= t.max_steps // 2 or (budget_s is not None and clock["elapsed"] >= budget_s / 2)
        return not ckpt_clock["any"] and halfway

    # ---- the loop
    bar = tqdm(total=t.max_steps, initial=step, disable=not (main_proc and t.progress_bar), desc="tokenizer")
    stop_reason, last_ckpt, metrics = "max_steps", None, {}
    model.train()
    if use_gan:
        disc.train()
    while step < t.max_steps and stop_reason == "max_steps":
        batches = batches_for(len(images), t.batch_size, accelerator.num_processes, accelerator.process_index,
                              t.seed, epoch, start=position)
        for x in _image_batches(images, batches, epoch, t.num_workers, t.seed):
            x = x.to(accelerator.device)  # [B, 3, S, S]
            gan_on = use_gan and step >= gan_start
            # -- generator / tokenizer update
            with accelerator.autocast():
                o = model(pixel_values=x)
                recon = o.reconstruction
                rec = lc.pixel_weight * pixel_loss(recon, x, lc.pixel)
                metrics = {"pixel": rec.item()}
                if lpips is not None:
                    p = lpips(recon, x).mean()
                    rec = rec + lc.lpips_weight * p
                    metrics["lpips"] = p.item()
                loss = rec + o.quantization_loss.float()
                if gan_on:
                    raw_disc.requires_grad_(False)
                    g = non_saturating_g_loss(raw_disc(recon))
                    w = lc.gan_weight
                    if lc.adaptive_gan_weight:
                        w = w * adaptive_gan_weight(rec, g, _last_layer(raw_model))
                    loss = loss + w * g
                    raw_disc.requires_grad_(True)
                    metrics.update(g_loss=g.item(), gan_weight=float(w))
            accelerator.backward(loss)
            if t.grad_clip > 0:
                metrics["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(), t.grad_clip))
            opt.step()
            sched.step()  # the next step's lr, from the clock as agreed at the end of the previous step
            opt.zero_grad(set_to_none=True)
            ema.update(raw_model)
            # -- discriminator update
            if gan_on:
                with accelerator.autocast():
                    logits = disc(torch.cat([x, recon.detach()]))  # [2B, 1, h, w]
                    real, fake = logits.float().chunk(2)
                    reg = lecam(real, fake)
                    d_loss = hinge_d_loss(real, fake) + lc.lecam_weight * reg
                lecam.update(real.detach(), fake.detach())
                accelerator.backward(d_loss)
                if t.grad_clip > 0:
                    accelerator.clip_grad_norm_(disc.parameters(), t.grad_clip)
                d_opt.step()
                d_sched.step()
                d_opt.zero_grad(set_to_none=True)
                metrics.update(d_loss=d_loss.item(), lecam=reg.item(), logits_real=real.mean().item(),
                               logits_fake=fake.mean().item())
            step += 1
            position += 1
            if position == steps_per_epoch:
                epoch, position = epoch + 1, 0
            metrics.update(loss=loss.item(), quantization=o.quantization_loss.item(),
                           codebook_usage=float(o.codebook_usage), codebook_perplexity=float(o.codebook_perplexity),
                           lr=sched.get_last_lr()[0], epoch=epoch,
                           elapsed_s=clock["offset"] + time.monotonic() - wall_start)
            if accelerator.num_processes > 1:  # log the global batch's losses (means of the per-process means)
                keys = [k for k in _BATCH_MEANS if k in metrics]
                means = accelerator.reduce(torch.tensor([float(metrics[k]) for k in keys], device=accelerator.device),
                                           "mean")
                metrics.update(zip(keys, means.tolist()))
            train_log.write({"step": step, **metrics})
            if step % t.log_every == 0 or step == 1:
                accelerator.log({f"train/{k}": v for k, v in metrics.items()}, step=step)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", usage=f"{metrics['codebook_usage']:.2f}")
            bar.update(1)
            if step_callback is not None:
                step_callback(step, metrics)
            if t.sample_every and step % t.sample_every == 0:
                write_samples()
            if t.eval_every and step % t.eval_every == 0:
                validate()
            # -- the clock and the stop decisions, agreed by all processes (max)
            requested, clock["elapsed"] = agree_max(
                [float(stop_flag.requested), clock["offset"] + time.monotonic() - wall_start], accelerator.device)
            if requested > 0:
                stop_reason = "signal"
            elif budget_s is not None and clock["elapsed"] > budget_s:
                stop_reason = "max_minutes"
            elif t.stop_at_step is not None and step >= t.stop_at_step and step < t.max_steps:
                stop_reason = "stop_at_step"
            if stop_reason != "max_steps" or step >= t.max_steps:
                break
            if checkpoint_due():
                last_ckpt = save_checkpoint()
    bar.close()

    last_ckpt = save_checkpoint()
    final_dir = None
    if stop_reason in ("max_steps", "max_minutes"):
        write_samples()
        metrics.update(validate())
        final_dir = out / "final"
        if main_proc:
            with atomic_directory(final_dir) as tmp:
                ema.module.save_pretrained(tmp)
                processor.save_pretrained(tmp)
                save_run_config(config, tmp / "train_config.yaml")
        accelerator.wait_for_everyone()
    accelerator.print(f"stopped at step {step} ({stop_reason}); checkpoint {last_ckpt}"
                      + (f"; final model {final_dir}" if final_dir else ""))
    accelerator.end_training()
    return TrainResult(step=step, stop_reason=stop_reason, final_dir=final_dir, checkpoint=last_ckpt,
                       last_metrics=metrics)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gaussiantoken train-tokenizer",
        description="Train the Gaussian tokenizer. The final (EMA) model is written to OUTPUT/final "
        "(OUTPUT = train.output_dir); checkpoints to OUTPUT/checkpoints. Multi-GPU / multi-node: "
        "`accelerate launch -m gaussiantoken.tokenizer.train CONFIG ...`. SIGTERM/SIGINT save a checkpoint "
        "and exit with status 143; train.max_minutes stops cleanly with a final save (status 0); "
        "a config, data or run-lock error (another run writing OUTPUT) exits with status 2; a damaged checkpoint met by --resume exits with status 1.",
    )
    parser.add_argument("config", help="run config YAML (e.g. configs/tokenizer/shapes.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUTPUT")
    args = parser.parse_intermixed_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"train-tokenizer: config error: {exc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    try:
        result = train(config, resume=True if args.resume else None)
    except CheckpointError as exc:
        print(f"train-tokenizer: checkpoint error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as exc:  # data specs, the run lock, resume rules
        print(f"train-tokenizer: error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.stop_reason != "signal" else 128 + 15


if __name__ == "__main__":
    sys.exit(main())
