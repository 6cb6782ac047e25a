"""Training entry of the Gaussian tokenizer: `gaussiantoken train-tokenizer CONFIG.yaml [key=value ...] [--resume]`.

Owns `train()` (set-up: accelerate, the run lock, the resume decision, building the parts; then the loop and the
end of the run) and the command line `main()`. The parts, each testable on its own:
`train_config` (run config + validation), `train_data` (images), `train_step` (generator and discriminator
updates), `train_loop` (loop state, checkpoints, the loop), `train_hooks` (JSON logs, sample grids, validation),
`trainer_state` (EMA, data order, RNG, checkpoint directories); the end of a run is `runtime.finalize`.
One CPU process, one GPU, or many (DDP via `accelerate launch`, one or many nodes):

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
  step, epoch and position in the epoch. The data order is a pure function of (seed, epoch), so a
  rerun continues exactly where the run stopped, also after a SIGKILL: `train.resume: auto` (the
  default, as in train-lm) resumes from the latest checkpoint when there is one; `--resume`
  (`train.resume: true`) does the same and says so when there is none; `train.resume: false` refuses to
  start over existing checkpoints
  (the temporaries of a killed checkpoint write are removed; a torn last log line is dropped). A damaged
  latest checkpoint (truncated/corrupted file) stops the resume with a `CheckpointError` naming it and
  the previous checkpoint (no silent fallback: checkpoints are atomic, so damage means a storage fault).
- The result: OUTPUT/final, a `save_pretrained` directory (EMA weights, config.json,
  preprocessor_config.json, train_config.yaml) loadable with `GaussianTokenizer.from_pretrained`.
  It is written at the end of `max_steps`, or when `train.max_minutes` runs out.
- Exit status (`runtime.entry`, the same for train-lm): 0 finished (or `stop_at_step`), 143 stopped by
  SIGTERM/SIGINT (checkpoint saved), 2 a config, data or run-lock error (one line), 1 a damaged checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gaussiantoken.runtime.clock import RunClock
from gaussiantoken.runtime.config import save_run_config
from gaussiantoken.runtime.dist import agree_max
from gaussiantoken.runtime.entry import exit_status, run_command
from gaussiantoken.runtime.finalize import finalize, write_summary
from gaussiantoken.runtime.process_state import restored_process_state
from gaussiantoken.runtime.run_lock import run_lock
from gaussiantoken.runtime.stop import StopFlag

from .train_config import (LossSettings, TokenizerRunConfig, TrainSettings, load_config, model_config,
                           validate_run_config)
from .train_hooks import read_losses


@dataclass
class TrainResult:
    step: int
    stop_reason: str  # "max_steps" | "max_minutes" | "signal" | "stop_at_step"
    final_dir: Path | None  # OUTPUT/final when written
    checkpoint: Path | None
    last_metrics: dict


def _refuse_deepspeed() -> None:
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise ValueError("tokenizer training does not run under DeepSpeed (it trains a generator and a "
                         "discriminator with DDP): launch it with `accelerate launch --multi_gpu`, not --use_deepspeed")


def train(config: TokenizerRunConfig, resume: bool | str | None = None, stop_flag: StopFlag | None = None,
          step_callback=None) -> TrainResult:
    """Run (or resume) training as configured. `step_callback(step, metrics)` is called after each step.
    `resume` overrides `train.resume` (True / "auto" / False)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    config = validate_run_config(config)
    t = config.train
    resume = t.resume if resume is None else resume
    out = Path(t.output_dir)
    clock = RunClock()  # the run's seconds; this process's part starts now (set-up included)

    mp = t.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() else "no"
    _refuse_deepspeed()
    with restored_process_state():  # accelerate's process-wide state is forgotten when the run ends
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
                return _run(config, accelerator, stop_flag, resume, step_callback, clock)
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


def _resume_from(out: Path, resume, with_gan: bool, accelerator):
    """(checkpoint dir, its state.pt) to resume from, or (None, None); refuses to start over checkpoints when
    `resume` is False. The temporaries of a killed checkpoint write are removed first."""
    from .trainer_state import check_checkpoint, clean_checkpoint_temporaries, latest_checkpoint

    if accelerator.is_main_process:
        clean_checkpoint_temporaries(out)
    accelerator.wait_for_everyone()
    ckpt = latest_checkpoint(out)
    if resume is True and ckpt is None:
        accelerator.print(f"--resume: {out}/checkpoints holds no checkpoint yet; starting a fresh run")
    if resume is False and ckpt is not None:
        raise ValueError(f"{out} already holds checkpoints ({ckpt.name}); pass --resume (or train.resume=auto) "
                         "to continue, or choose another train.output_dir")
    if resume not in (True, "auto") or ckpt is None:
        return None, None
    if with_gan and not (ckpt / "discriminator.safetensors").exists():
        raise ValueError(f"{ckpt} has no discriminator but loss.gan_weight > 0")
    return ckpt, check_checkpoint(ckpt, with_gan=with_gan)  # CheckpointError if damaged


def _run(config, accelerator, stop_flag, resume, step_callback, clock) -> TrainResult:
    import torch
    from accelerate.utils import set_seed

    from gaussiantoken.data.loaders import load_dataset_from_config
    from gaussiantoken.runtime.schedule import warmup_cosine

    from .discriminator import PatchDiscriminator
    from .image_processing import GaussianTokenizerImageProcessor
    from .losses import LeCam, load_lpips
    from .model_types import model_class_for
    from .train_data import ImageSet
    from .train_hooks import EvalHooks, JsonLog
    from .train_loop import LoopState, TokenizerLoop, TrainParts
    from .train_step import TokenizerStep
    from .trainer_state import ModelEMA, restore_rng

    t, lc = config.train, config.loss
    out = Path(t.output_dir)
    main_proc = accelerator.is_main_process
    use_gan = lc.gan_weight > 0
    resume_from, resume_state = _resume_from(out, resume, use_gan, accelerator)  # before anything heavy

    # ---- models, data, optimizers (seeded identically on every process)
    set_seed(t.seed)
    arch = model_config(config.model)
    model = model_class_for(arch)(arch)
    processor = GaussianTokenizerImageProcessor(image_size=arch.image_size)
    ema = ModelEMA(model, t.ema_decay, warmup=t.ema_warmup)
    disc = PatchDiscriminator(3, lc.disc_channels, lc.disc_layers, lc.disc_norm) if use_gan else None
    lecam = LeCam(lc.lecam_decay) if use_gan else None
    lpips = load_lpips(lc.lpips_weights, device=accelerator.device) if lc.lpips_weight > 0 else None

    images = ImageSet(load_dataset_from_config(dict(config.data)), processor, t.image_column, t.random_flip, t.seed)
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
        val_images = ImageSet(val_set, processor, t.image_column, False, t.seed)

    opt = torch.optim.Adam(model.parameters(), lr=t.learning_rate, betas=tuple(t.adam_betas),
                           weight_decay=t.weight_decay)
    budget_s = 60.0 * t.max_minutes if t.max_minutes is not None else None

    def lr_fn(s: int) -> float:  # a plain function: LambdaLR saves no state for it
        return warmup_cosine(s, t.warmup_steps, t.max_steps, t.min_lr_ratio, time_fraction=clock.fraction(budget_s))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_fn)
    d_opt = d_sched = None
    if use_gan:
        d_opt = torch.optim.Adam(disc.parameters(), lr=lc.disc_learning_rate or t.learning_rate,
                                 betas=tuple(t.adam_betas), weight_decay=t.weight_decay)
        d_sched = torch.optim.lr_scheduler.LambdaLR(d_opt, lr_fn)
        model, disc, opt, d_opt = accelerator.prepare(model, disc, opt, d_opt)
        lecam.to(accelerator.device)
    else:
        model, opt = accelerator.prepare(model, opt)
    ema.module.to(accelerator.device)
    parts = TrainParts(model=model, ema=ema, opt=opt, sched=sched, raw_model=accelerator.unwrap_model(model),
                       disc=disc, raw_disc=accelerator.unwrap_model(disc) if use_gan else None, d_opt=d_opt,
                       d_sched=d_sched, lecam=lecam)

    state = LoopState(steps_per_epoch=steps_per_epoch)
    train_log = JsonLog(out / "logs" / "train.jsonl", main_proc)
    val_log = JsonLog(out / "logs" / "val.jsonl", main_proc)
    if resume_from is not None:
        parts.load(resume_from, resume_state)
        state.step, state.epoch = int(resume_state["step"]), int(resume_state["epoch"])
        state.position = int(resume_state["position"])
        clock.resume(float(resume_state.get("elapsed_s", 0.0)))
        rng_states = resume_state["rng"]
        if len(rng_states) != accelerator.num_processes:
            raise ValueError(f"checkpoint {resume_from} was written by {len(rng_states)} processes, now "
                             f"{accelerator.num_processes}: exact resume needs the same number")
        restore_rng(rng_states[accelerator.process_index])
        train_log.truncate_after(state.step)
        val_log.truncate_after(state.step)
        accelerator.print(f"resumed from {resume_from} at step {state.step} (epoch {state.epoch}, "
                          f"batch {state.position})")
    state.checkpoint_at, state.has_checkpoint = clock.elapsed_s, resume_from is not None
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        save_run_config(config, out / "train_config.yaml")
    if t.log_with == "tensorboard":
        accelerator.init_trackers("tensorboard")

    hooks = EvalHooks(accelerator, ema.module, parts.raw_model.vocab_size, out, val_images, images, t.batch_size,
                      t.num_sample_images, val_log)
    step_fn = TokenizerStep(accelerator, model, opt, sched, ema, lc, t.grad_clip, lpips=lpips, disc=disc,
                            d_opt=d_opt, d_sched=d_sched, lecam=lecam)
    loop = TokenizerLoop(accelerator, config, parts, step_fn, hooks, images, state, clock, budget_s, gan_start,
                         stop_flag, train_log, step_callback)
    stop_reason = loop.run()

    # ---- the end: a checkpoint always; samples, validation and OUTPUT/final when the run is finished
    last_ckpt = loop.save_checkpoint()
    metrics, final_dir = loop.metrics, None
    if stop_reason in ("max_steps", "max_minutes"):
        hooks.write_samples(state.step)
        metrics.update(hooks.validate(state.step))

        def write_final(tmp: Path) -> None:
            ema.module.save_pretrained(tmp)
            processor.save_pretrained(tmp)

        final_dir = finalize(out, write_final, config, is_main=main_proc, wait=accelerator.wait_for_everyone)
    accelerator.print(f"stopped at step {state.step} ({stop_reason}); checkpoint {last_ckpt}"
                      + (f"; final model {final_dir}" if final_dir else ""))
    accelerator.end_training()
    return TrainResult(step=state.step, stop_reason=stop_reason, final_dir=final_dir, checkpoint=last_ckpt,
                       last_metrics=metrics)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gaussiantoken train-tokenizer",
        description="Train the Gaussian tokenizer. The final (EMA) model is written to OUTPUT/final "
        "(OUTPUT = train.output_dir); checkpoints to OUTPUT/checkpoints. Multi-GPU / multi-node: "
        "`accelerate launch -m gaussiantoken.tokenizer.train CONFIG ...`. A rerun continues from the latest "
        "checkpoint (train.resume: auto). SIGTERM/SIGINT save a checkpoint "
        "and exit with status 143; train.max_minutes stops cleanly with a final save (status 0); "
        "a config, data or run-lock error (another run writing OUTPUT) exits with status 2; a damaged checkpoint "
        "met by a resume exits with status 1.",
    )
    parser.add_argument("config", help="run config YAML (e.g. configs/tokenizer/shapes.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUTPUT "
                        "(what train.resume: auto does too), saying so when there is none")
    parser.add_argument("--summary", default=None, metavar="FILE",
                        help="also write the run's result (step, stop reason, final dir, last metrics) as JSON")
    args = parser.parse_intermixed_args(argv)

    def run(config) -> int:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
        result = train(config, resume=True if args.resume else None)
        write_summary(args.summary, {"step": result.step, "stop_reason": result.stop_reason,
                                     "final_dir": result.final_dir, "checkpoint": result.checkpoint,
                                     "last_metrics": result.last_metrics})
        return exit_status(result.stop_reason == "signal")

    return run_command("train-tokenizer", lambda: load_config(args.config, args.overrides), run)


__all__ = ["TrainSettings", "LossSettings", "TokenizerRunConfig", "validate_run_config", "load_config",
           "read_losses", "TrainResult", "train", "main"]

if __name__ == "__main__":
    sys.exit(main())
