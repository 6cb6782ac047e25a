"""Training of the multimodal LM: `gaussiantoken train-lm CONFIG.yaml [key=value ...]` (HF Trainer + DeepSpeed).

Owns `train()` (the HF Trainer run and its end: OUTPUT/final through `runtime.finalize`) and the command line
`main()`. The parts: `train_config` (the run config, checked before anything heavy), `train_build` (process
set-up, the model (vocabulary extension of a from-scratch backbone or a local `model.base_model`; or a saved
LM's weights to continue from, `model.init_from`), the processor, the data (`lm.data.MultiTaskSequenceDataset`
over an extract-codes dir, or the fresh-scene stream) and the TrainingArguments), `train_checkpoints` (what to resume from), `schedule` (the clock, the budget and
the stop decisions). A run leaves its process as it found it (`runtime.process_state`).

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
  one); SIGTERM/SIGINT save a checkpoint the same way and exit with status 143, without a final model.
- Result: OUTPUT/final (atomic, `runtime.files.atomic_directory`), loadable with
  GaussianTokenForCausalLM.from_pretrained and GaussianTokenProcessor.from_pretrained (weights in fp32, the
  image tokenizer's exact weights), plus OUTPUT/final/train_config.yaml; written when the run ends at
  max_steps, max_minutes or stop_at_step.
- Exit status (`runtime.entry`, the same for train-tokenizer): 0 finished, 143 stopped by SIGTERM/SIGINT
  (checkpoint saved), 2 a config, data, model-directory or run-lock error (one line), 1 a damaged checkpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gaussiantoken.runtime.entry import exit_status, run_command
from gaussiantoken.runtime.finalize import finalize, write_summary
from gaussiantoken.runtime.process_state import restored_process_state
from gaussiantoken.runtime.run_lock import run_lock

from .train_build import (avoid_cpu_op_builds, build_dataset, build_model_and_processor, build_stream,
                          ensure_distributed_env, make_training_arguments)
from .train_checkpoints import check_lm_checkpoint, resolve_resume
from .train_config import (REPO_ROOT, DataSettings, LMRunConfig, ModelSettings, TrainSettings, check_config,
                           load_config, resolve_path)


@dataclass
class TrainResult:
    final_dir: Path | None  # OUTPUT/final; None when a signal stopped the run
    log_history: list
    global_step: int
    stopped_early: bool
    seconds: float
    stopped_by_signal: bool = False


def train(cfg: LMRunConfig) -> TrainResult:
    """Train (or resume) as configured; returns where the final model is and the log history."""
    check_config(cfg)
    with restored_process_state():  # the rendezvous variables and accelerate's DeepSpeed state are put back
        ensure_distributed_env()
        # one writer per OUTPUT (rank 0 holds the lock; a second run exits naming the owner)
        with run_lock(cfg.train.output_dir, "train-lm", enabled=int(os.environ.get("RANK", "0")) == 0):
            return _train(cfg)


def _restore_final(directory: Path, tokenizer_dir: str) -> None:
    """Rewrite a saved LM in fp32 with the image tokenizer's exact weights (undo bf16 casting)."""
    import torch

    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.tokenizer import GaussianTokenizer

    model = GaussianTokenForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    original = GaussianTokenizer.from_pretrained(tokenizer_dir, dtype=torch.float32)
    model.image_tokenizer.load_state_dict(original.state_dict())
    model.save_pretrained(str(directory))


def _write_final(trainer, processor, cfg: LMRunConfig) -> Path:
    """OUTPUT/final via `runtime.finalize`: every rank saves into OUTPUT/.final-staging (ZeRO-3 gathers the
    shards), then the main process moves it into the atomic directory, in fp32 with the exact image tokenizer."""
    out = Path(cfg.train.output_dir)
    staging = out / ".final-staging"  # scratch every rank can name; the final directory itself is atomic
    is_main = trainer.is_world_process_zero()
    if is_main and staging.exists():
        shutil.rmtree(staging)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # every rank
    trainer.accelerator.wait_for_everyone()

    def write(tmp: Path) -> None:
        for entry in sorted(staging.iterdir()):
            os.replace(entry, tmp / entry.name)
        _restore_final(tmp, resolve_path(cfg.model.tokenizer))
        processor.save_pretrained(str(tmp))

    final = finalize(out, write, cfg, is_main=is_main, wait=trainer.accelerator.wait_for_everyone)
    if is_main:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _train(cfg: LMRunConfig) -> TrainResult:
    import torch
    from transformers import set_seed

    from gaussiantoken.lm.data import SequenceCollator
    from gaussiantoken.lm.schedule import ClockTrainer, RunClockCallback
    from gaussiantoken.runtime.stop import StopFlag

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
    callback = RunClockCallback(t.max_minutes, stop, t.stop_at_step)
    callbacks = [callback]
    if stream is not None:
        from gaussiantoken.lm.stream import stream_callback

        callbacks.append(stream_callback(stream[1], resume))
    trainer = ClockTrainer(
        model=model, args=args, train_dataset=dataset,
        data_collator=SequenceCollator(processor.layout.pad_token_id), callbacks=callbacks,
        budget_s=None if t.max_minutes is None else 60.0 * t.max_minutes, stable_fraction=t.lr_stable_fraction,
        referent_attention=t.referent_attention, referent_layers=t.referent_attention_layers,
        referent_values=t.referent_values,
    )
    start = time.time()
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        stop.restore()
    signalled = callback.requested  # agreed by all ranks; the Trainer saved a checkpoint
    final = None if signalled else _write_final(trainer, processor, cfg)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(final, list(trainer.state.log_history), trainer.state.global_step, callback.stopped_early,
                       time.time() - start, signalled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaussiantoken train-lm", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="YAML run config, e.g. configs/lm/shapes.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    parser.add_argument("--summary", default=None, metavar="FILE",
                        help="also write the run's result (steps, final dir, losses, seconds) as JSON")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args(argv)

    def run(cfg: LMRunConfig) -> int:
        result = train(cfg)
        losses = [h["loss"] for h in result.log_history if "loss" in h]
        if int(os.environ.get("RANK", "0")) == 0:
            last = f", last logged loss {losses[-1]:.4f}" if losses else ""
            end = (f"final model: {result.final_dir}" if result.final_dir is not None
                   else "stopped by a signal, checkpoint saved (rerun to continue)")
            print(f"train-lm: {result.global_step} steps in {result.seconds:.1f}s{last}; {end}")
            write_summary(args.summary, {"final_dir": result.final_dir, "global_step": result.global_step,
                                         "stopped_early": result.stopped_early, "seconds": result.seconds,
                                         "stopped_by_signal": result.stopped_by_signal,
                                         "final_loss": losses[-1] if losses else None})
        return exit_status(result.stopped_by_signal)

    return run_command("train-lm", lambda: load_config(args.config, args.overrides), run)


__all__ = ["ModelSettings", "DataSettings", "TrainSettings", "LMRunConfig", "REPO_ROOT", "resolve_path",
           "check_config", "load_config", "avoid_cpu_op_builds", "ensure_distributed_env",
           "build_model_and_processor", "build_dataset", "build_stream", "make_training_arguments",
           "check_lm_checkpoint", "resolve_resume", "TrainResult", "train", "main"]

if __name__ == "__main__":
    sys.exit(main())
