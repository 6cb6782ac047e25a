"""The tokenizer run config: plain dataclasses filled from YAML (`runtime.config`), checked before anything heavy.

Owns `TrainSettings`, `LossSettings`, `TokenizerRunConfig` (the `train:`, `loss:`, `model:`, `data:`,
`val_data:` sections of configs/tokenizer/*.yaml), `validate_run_config` (types, then value ranges and
cross-field rules: every problem is a ValueError/TypeError naming the key), `load_config` (YAML +
`key=value` overrides -> a validated config) and `model_config` (the `model:` spec -> architecture config).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gaussiantoken.runtime.config import check_config, load_run_config


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
    resume: bool | str = "auto"  # "auto" (continue when a checkpoint exists) | True (same; says so when none) | False
    # (refuse to start over existing checkpoints)


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
    model_config(config.model)  # unknown/invalid architecture keys fail here, before training
    return config


def model_config(model_spec: dict):
    """`model` spec -> architecture config; `model.type` picks the architecture (tokenizer/model_types.py)."""
    from .model_types import config_from_spec

    return config_from_spec(model_spec)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> TokenizerRunConfig:
    """YAML + `key=value` overrides -> a validated `TokenizerRunConfig` (errors name the bad key)."""
    return validate_run_config(load_run_config(TokenizerRunConfig, path, overrides))
