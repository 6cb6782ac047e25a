"""The tokenizer trainer's loop: its state as objects, the checkpoints it writes and reads, and the loop itself.

Owns:
- `LoopState`: step, epoch and position in the epoch (global batches done), and when the last checkpoint
  was written (by the run clock); `advance()` after each step. With `runtime.clock.RunClock` (the seconds
  spent over all resumed processes) it is everything a resume restores besides weights, optimizers and RNG.
- `checkpoint_due(state, clock, settings, budget_s)`: every `checkpoint_every` steps, every
  `checkpoint_minutes`, and once halfway when the run has none yet; `stop_reason(...)`: the agreed decision
  to stop ("signal", "max_minutes", "stop_at_step") or to go on ("max_steps").
- `TrainParts`: the trained objects (model, EMA, optimizers, schedulers; discriminator and LeCam with the GAN)
  and their checkpoint files: `save(dir, ...)` / `load(dir, state)` (OUTPUT/checkpoints/step-XXXXXXXX: model,
  EMA, discriminator + LeCam averages, both optimizers and schedulers, RNG states of every process, step,
  epoch, position and the clock, in state.pt).
- `TokenizerLoop.run()`: the epochs of batches (`trainer_state.batches_for`, a pure function of (seed,
  epoch)), one `train_step.TokenizerStep` per batch, the JSON log, the progress bar, the hooks
  (`train_hooks.EvalHooks`), the agreed clock and stop decisions, and the checkpoints; it returns why it
  stopped. The last checkpoint, samples, validation and OUTPUT/final are the caller's (`tokenizer.train`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# per-step metrics that are batch means: with several processes the log holds their mean over processes
BATCH_MEANS = ("loss", "pixel", "lpips", "quantization", "g_loss", "d_loss", "lecam", "logits_real", "logits_fake")


@dataclass
class LoopState:
    """Where the run is: `step` (optimizer steps done), `epoch`, `position` (global batches done in the epoch),
    and the run clock's reading at the last checkpoint (`checkpoint_at`; `has_checkpoint` once one exists)."""

    steps_per_epoch: int
    step: int = 0
    epoch: int = 0
    position: int = 0
    checkpoint_at: float = 0.0
    has_checkpoint: bool = False

    def advance(self) -> None:
        self.step += 1
        self.position += 1
        if self.position == self.steps_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0

    def checkpointed(self, clock_s: float) -> None:
        self.checkpoint_at, self.has_checkpoint = clock_s, True


def checkpoint_due(state: LoopState, clock_s: float, settings, budget_s: float | None) -> bool:
    """Every `checkpoint_every` steps, every `checkpoint_minutes`, and once halfway when the run has none yet;
    decided from the step and the agreed clock `clock_s`, so every process decides the same."""
    t = settings
    if t.checkpoint_every and state.step % t.checkpoint_every == 0:
        return True
    if t.checkpoint_minutes and clock_s - state.checkpoint_at >= 60.0 * t.checkpoint_minutes:
        return True
    halfway = state.step >= t.max_steps // 2 or (budget_s is not None and clock_s >= budget_s / 2)
    return not state.has_checkpoint and halfway


def stop_reason(requested: bool, clock_s: float, budget_s: float | None, settings, step: int) -> str:
    """Why to stop after `step` ("signal", "max_minutes", "stop_at_step"), or "max_steps" to go on (the loop
    ends by itself at max_steps)."""
    if requested:
        return "signal"
    if budget_s is not None and clock_s > budget_s:
        return "max_minutes"
    if settings.stop_at_step is not None and settings.max_steps > step >= settings.stop_at_step:
        return "stop_at_step"
    return "max_steps"


@dataclass
class TrainParts:
    """The trained objects, as prepared by accelerate (`raw_*`: unwrapped), and their checkpoint files."""

    model: object
    ema: object
    opt: object
    sched: object
    raw_model: object
    disc: object = None
    raw_disc: object = None
    d_opt: object = None
    d_sched: object = None
    lecam: object = None

    @property
    def use_gan(self) -> bool:
        return self.disc is not None

    def save(self, target: Path, state: LoopState, clock_s: float, rngs: list, config) -> None:
        """Write one checkpoint into the (temporary) directory `target` (main process)."""
        import torch
        from safetensors.torch import save_model

        from gaussiantoken.runtime.config import save_run_config

        save_model(self.raw_model, str(target / "model.safetensors"))
        save_model(self.ema.module, str(target / "ema.safetensors"))
        record = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                  "ema": self.ema.state_dict(), "step": state.step, "epoch": state.epoch,
                  "position": state.position, "rng": rngs, "elapsed_s": clock_s}
        if self.use_gan:
            save_model(self.raw_disc, str(target / "discriminator.safetensors"))
            save_model(self.lecam, str(target / "lecam.safetensors"))
            record["disc_optimizer"] = self.d_opt.state_dict()
            record["disc_scheduler"] = self.d_sched.state_dict()
        torch.save(record, target / "state.pt")
        save_run_config(config, target / "train_config.yaml")

    def load(self, path: Path, record: dict) -> None:
        """Restore weights and optimizer/scheduler/EMA state from checkpoint `path` (`record`: its state.pt)."""
        from safetensors.torch import load_model

        load_model(self.raw_model, str(path / "model.safetensors"))
        load_model(self.ema.module, str(path / "ema.safetensors"))
        self.opt.load_state_dict(record["optimizer"])
        self.sched.load_state_dict(record["scheduler"])
        self.ema.load_state_dict(record["ema"])
        if self.use_gan:
            load_model(self.raw_disc, str(path / "discriminator.safetensors"))
            load_model(self.lecam, str(path / "lecam.safetensors"))
            self.d_opt.load_state_dict(record["disc_optimizer"])
            self.d_sched.load_state_dict(record["disc_scheduler"])


class TokenizerLoop:
    """The training loop over prepared parts (see the module docstring); `run()` returns why it stopped."""

    def __init__(self, accelerator, config, parts: TrainParts, step_fn, hooks, images, state: LoopState, clock,
                 budget_s: float | None, gan_start: int, stop_flag, train_log, step_callback=None):
        self.accelerator, self.config, self.parts, self.step_fn, self.hooks = accelerator, config, parts, step_fn, hooks
        self.images, self.state, self.clock, self.budget_s, self.gan_start = images, state, clock, budget_s, gan_start
        self.stop_flag, self.train_log, self.step_callback = stop_flag, train_log, step_callback
        self.out = Path(config.train.output_dir)
        self.last_checkpoint: Path | None = None
        self.metrics: dict = {}

    def save_checkpoint(self) -> Path:
        """OUTPUT/checkpoints/step-XXXXXXXX, atomically (every process gives its RNG state; main writes)."""
        from accelerate.utils import gather_object

        from gaussiantoken.runtime.files import atomic_directory

        from .trainer_state import capture_rng, checkpoint_dir, prune_checkpoints

        rngs = gather_object([capture_rng()])
        target = checkpoint_dir(self.out, self.state.step)
        if self.accelerator.is_main_process:
            with atomic_directory(target) as tmp:
                self.parts.save(tmp, self.state, self.clock.elapsed_s, rngs, self.config)
            prune_checkpoints(self.out, self.config.train.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        self.state.checkpointed(self.clock.elapsed_s)
        self.last_checkpoint = target
        return target

    def _log_step(self, o, loss) -> None:
        """Complete, reduce (many processes) and write the step's metrics."""
        import torch

        acc, t, s, m = self.accelerator, self.config.train, self.state, self.metrics
        m.update(loss=loss.item(), quantization=o.quantization_loss.item(), codebook_usage=float(o.codebook_usage),
                 codebook_perplexity=float(o.codebook_perplexity), lr=self.parts.sched.get_last_lr()[0],
                 epoch=s.epoch, elapsed_s=self.clock.local_s())
        if acc.num_processes > 1:  # log the global batch's losses (means of the per-process means)
            keys = [k for k in BATCH_MEANS if k in m]
            means = acc.reduce(torch.tensor([float(m[k]) for k in keys], device=acc.device), "mean")
            m.update(zip(keys, means.tolist()))
        self.train_log.write({"step": s.step, **m})
        if s.step % t.log_every == 0 or s.step == 1:
            acc.log({f"train/{k}": v for k, v in m.items()}, step=s.step)

    def run(self) -> str:
        """Train until max_steps or a stop decision; returns the stop reason (see `stop_reason`)."""
        from tqdm.auto import tqdm

        from .train_data import image_batches
        from .trainer_state import batches_for

        acc, t, s = self.accelerator, self.config.train, self.state
        bar = tqdm(total=t.max_steps, initial=s.step, disable=not (acc.is_main_process and t.progress_bar),
                   desc="tokenizer")
        reason = "max_steps"
        self.parts.model.train()
        if self.parts.use_gan:
            self.parts.disc.train()
        while s.step < t.max_steps and reason == "max_steps":
            batches = batches_for(len(self.images), t.batch_size, acc.num_processes, acc.process_index, t.seed,
                                  s.epoch, start=s.position)
            for x in image_batches(self.images, batches, s.epoch, t.num_workers, t.seed):
                x = x.to(acc.device)  # [B, 3, S, S]
                o, loss, self.metrics = self.step_fn(x, self.parts.use_gan and s.step >= self.gan_start)
                s.advance()
                self._log_step(o, loss)
                if s.step % t.log_every == 0 or s.step == 1:
                    bar.set_postfix(loss=f"{self.metrics['loss']:.4f}",
                                    usage=f"{self.metrics['codebook_usage']:.2f}")
                bar.update(1)
                if self.step_callback is not None:
                    self.step_callback(s.step, self.metrics)
                if t.sample_every and s.step % t.sample_every == 0:
                    self.hooks.write_samples(s.step)
                if t.eval_every and s.step % t.eval_every == 0:
                    self.hooks.validate(s.step)
                # the clock and the stop decisions, agreed by all processes (max)
                requested = self.clock.agree(self.stop_flag.requested, acc.device)
                reason = stop_reason(requested, self.clock.elapsed_s, self.budget_s, t, s.step)
                if reason != "max_steps" or s.step >= t.max_steps:
                    break
                if checkpoint_due(s, self.clock.elapsed_s, t, self.budget_s):
                    self.save_checkpoint()
        bar.close()
        return reason


__all__ = ["BATCH_MEANS", "LoopState", "checkpoint_due", "stop_reason", "TrainParts", "TokenizerLoop"]
