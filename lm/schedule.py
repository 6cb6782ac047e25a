"""The LM run's clock: a warm-up + cosine schedule that follows a time budget (`ClockCosineLR`; optionally with
a stable phase at the peak rate before the cosine, `train.lr_stable_fraction`), the callback
that keeps the clock and stops the run when the budget (or a stop request) says so (`RunClockCallback`), and
the Trainer that uses them (`ClockTrainer`).

Under `train.max_minutes` with `lr_scheduler: cosine`, the cosine's progress is the larger of the step
fraction and the share of the budget spent (the tokenizer trainer's rule, `warmup_cosine`), so a run cut by
its clock ends annealed instead of mid-schedule. The seconds spent live in the scheduler's state
(`elapsed_s` in the Trainer's scheduler.pt), so a resumed run continues the same clock and the budget counts
the time of all its runs. Processes agree on the clock and on stopping (an all-reduce max after each optimizer
step), so every rank uses the same learning rate and stops at the same step. The clock is read after each optimizer
step, so the learning rate of step k + 1 follows the time at the end of step k's update.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler
from transformers import Trainer, TrainerCallback

from gaussiantoken.runtime.clock import RunClock
from gaussiantoken.runtime.schedule import warmup_cosine

# state that a resumed run takes from the checkpoint; the rest (warm-up, steps, budget) from its own config
_RESUMED = ("last_epoch", "_step_count", "_last_lr", "base_lrs", "elapsed_s")


class ClockCosineLR(LRScheduler):
    """lr = base_lr * warmup_cosine(step, warmup_steps, total_steps, time_fraction=elapsed_s / budget_s,
    stable_fraction); without a budget (None) the schedule follows steps only. `warmup_cosine` checks the
    stable fraction (at the first rate, in this constructor)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                 budget_s: float | None, stable_fraction: float = 0.0):
        if budget_s is not None and budget_s <= 0:
            raise ValueError(f"the time budget must be positive, got {budget_s} s")
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.budget_s = None if budget_s is None else float(budget_s)
        self.stable_fraction = float(stable_fraction)
        self.elapsed_s = 0.0  # set by RunClock after each optimizer step, before this scheduler's step
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        time_fraction = 0.0 if self.budget_s is None else self.elapsed_s / self.budget_s
        f = warmup_cosine(self.last_epoch, self.warmup_steps, self.total_steps, time_fraction=time_fraction,
                          stable_fraction=self.stable_fraction)
        return [base * f for base in self.base_lrs]

    def state_dict(self) -> dict:
        # "lr_lambdas": what LambdaLR (HF's step schedules) expects, so a run resumed without a budget loads it
        return {**{k: getattr(self, k) for k in _RESUMED}, "lr_lambdas": [None] * len(self.base_lrs)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Steps and learning rates from any LRScheduler state; the clock too when it has one (a run started
        without a time budget resumes under one with its clock at 0)."""
        missing = [k for k in _RESUMED[:-1] if k not in state_dict]
        if missing:
            raise ValueError(f"scheduler state lacks {missing}: not a torch LRScheduler state")
        for k in _RESUMED:
            setattr(self, k, state_dict.get(k, 0.0))
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


class RunClockCallback(TrainerCallback):
    """Keeps the run's clock (`runtime.clock.RunClock`: seconds over all resumed runs when the scheduler is a
    ClockCosineLR, else this process's) and stops cleanly (checkpoint saved) on the budget, a stop request
    (`requested`: SIGTERM/SIGINT, agreed by all processes) or `stop_at_step`."""

    def __init__(self, max_minutes: float | None, stop_flag, stop_at_step: int | None = None):
        self.max_minutes, self.stop_flag, self.stop_at_step = max_minutes, stop_flag, stop_at_step
        self.scheduler: ClockCosineLR | None = None
        self.clock = RunClock()
        self.requested, self.stopped_early = False, False

    @property
    def elapsed_s(self) -> float:
        return self.clock.elapsed_s

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        # called after the Trainer has loaded a resumed checkpoint's scheduler state
        self.scheduler = lr_scheduler if isinstance(lr_scheduler, ClockCosineLR) else None
        self.clock.resume(self.scheduler.elapsed_s if self.scheduler is not None else 0.0)
        self.clock.restart()

    def on_optimizer_step(self, args, state, control, **kwargs):
        # after the optimizer step and before the scheduler's: the next step's lr sees this step's clock
        self.requested = self.clock.agree(self.stop_flag.requested, args.device)
        if self.scheduler is not None:
            self.scheduler.elapsed_s = self.clock.elapsed_s

    def on_step_end(self, args, state, control, **kwargs):
        over = self.max_minutes is not None and self.clock.elapsed_s / 60.0 >= self.max_minutes
        at_step = self.stop_at_step is not None and state.global_step >= self.stop_at_step
        if over or at_step or self.requested:
            self.stopped_early = True
            control.should_training_stop = True
            control.should_save = True
        return control


class ClockTrainer(Trainer):
    """The HF Trainer, with a ClockCosineLR for `lr_scheduler_type="cosine"` when `budget_s` or a stable phase
    (`stable_fraction` > 0) is given, a sequential sampler over a fresh-scene stream (`lm.stream`), and the
    referent attention and value losses (`lm.referent`) when `referent_attention` / `referent_values` > 0."""

    def __init__(self, *args, budget_s: float | None = None, stable_fraction: float = 0.0,
                 referent_attention: float = 0.0, referent_layers: tuple[int, int] = (1, -1),
                 referent_values: float = 0.0, **kwargs):
        self.budget_s, self.stable_fraction = budget_s, stable_fraction
        self.referent_attention, self.referent_layers = referent_attention, tuple(referent_layers)  # lm.referent
        self.referent_values = referent_values
        # detached loss tensors, averaged at log time (no host sync per step)
        self._referent_losses: dict[str, list[torch.Tensor]] = {"referent_loss": [], "value_loss": []}
        super().__init__(*args, **kwargs)
        if referent_values:
            from gaussiantoken.lm.referent import readout_head

            readout_head(self.model)  # a backbone with no final norm to read through fails here, not at step 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The LM loss, plus `referent_attention` x `lm.referent.referent_attention_loss` and `referent_values` x
        `lm.referent.referent_value_loss` when the batch carries referent targets (popped here: the model never sees
        them)."""
        referent = {k: inputs.pop(k) for k in ("input_objects", "referent_targets", "referent_words") if k in inputs}
        if not referent or not (self.referent_attention or self.referent_values):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from gaussiantoken.lm.referent import readout_head, referent_attention_loss, referent_value_loss

        wants = {"output_attentions": bool(self.referent_attention), "output_hidden_states": bool(self.referent_values)}
        loss, outputs = super().compute_loss(model, {**inputs, **wants}, True, num_items_in_batch)
        # the LM loss is already normalized over the whole accumulated batch and the Trainer will not divide it by the
        # accumulation steps; the auxiliary losses are per-micro-batch means, so they are divided here
        scaled = self.loss_is_scaled_for_ga  # the Trainer's own rule (Trainer.training_step)
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None
        scale = self.current_gradient_accumulation_steps if scaled else 1
        if self.referent_attention:
            aux = referent_attention_loss(outputs.attentions, referent["input_objects"], referent["referent_targets"],
                                          referent["referent_words"], self.referent_layers)
            self._referent_losses["referent_loss"].append(aux.detach())
            loss = loss + self.referent_attention * (aux / scale).to(loss.dtype)
        if self.referent_values:
            aux = referent_value_loss(outputs.hidden_states, readout_head(model), inputs["labels"],
                                      referent["referent_words"], self.referent_layers[0])
            self._referent_losses["value_loss"].append(aux.detach())
            loss = loss + self.referent_values * (aux / scale).to(loss.dtype)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        for key, values in self._referent_losses.items():  # the auxiliary losses' means since the last log
            if values and "loss" in logs:
                logs[key] = round(float(torch.stack(values).float().mean()), 4)
                values.clear()
        super().log(logs, *args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        from gaussiantoken.lm.stream import sequential_sampler_for  # a fresh-scene stream is read in order

        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return sequential_sampler_for(dataset) or super()._get_train_sampler(train_dataset)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        ours = self.budget_s is not None or self.stable_fraction > 0
        if self.lr_scheduler is None and ours and self.args.lr_scheduler_type == "cosine":
            self.lr_scheduler = ClockCosineLR(optimizer if optimizer is not None else self.optimizer,
                                              self.args.get_warmup_steps(num_training_steps), num_training_steps,
                                              self.budget_s, self.stable_fraction)
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)
