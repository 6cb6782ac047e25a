"""Tokenizer-trainer helpers that need no tokenizer model: model EMA, data order, RNG and checkpoints.

Owns:
- `ModelEMA`: an exponential moving average copy of a module (parameters averaged, buffers copied).
- `epoch_order(num_items, seed, epoch)` / `batches_for(...)`: the data order as a pure function of
  (seed, epoch), so a run resumed at (epoch, position) sees exactly the batches it would have seen.
- `capture_rng()` / `restore_rng(state)`: python, numpy and torch (CPU + CUDA) generator states as
  plain tensors/ints (loadable with `torch.load(weights_only=True)`).
- Checkpoint directories `OUTPUT/checkpoints/step-%08d` written with `runtime.atomic_directory`
  (complete or absent): `list_checkpoints`, `latest_checkpoint`, `prune_checkpoints`,
  `clean_checkpoint_temporaries` (what a process killed mid-write left behind), `check_checkpoint`
  (every file complete and readable, else a `CheckpointError` naming the checkpoint).
"""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

CHECKPOINT_RE = re.compile(r"step-(\d{8})")


# ----------------------------------------------------------------------------- model EMA
class ModelEMA:
    """ema = d * ema + (1 - d) * param after each optimizer step; buffers (e.g. EMA codebooks) copied.

    With `warmup=True` the decay used at update n (1-based) is min(decay, (1 + n) / (10 + n)), so early
    averages are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        d = self.current_decay()
        ema_params = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            e = ema_params[name]
            e.mul_(d).add_(p.detach().to(e.dtype), alpha=1.0 - d)
        ema_buffers = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            ema_buffers[name].copy_(b)

    def state_dict(self) -> dict:
        return {"num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])


# ----------------------------------------------------------------------------- data order
def epoch_order(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of [0, num_items) used in `epoch`: a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919) % (2**63 - 1))
    return torch.randperm(num_items, generator=g)


def batches_for(num_items: int, batch_size: int, num_processes: int, process_index: int, seed: int,
                epoch: int, start: int = 0) -> list[list[int]]:
    """This process's batches of `epoch`, from global batch `start` on (the last partial batch dropped).

    Global batch k takes order[k*G : (k+1)*G] (G = batch_size * num_processes); process i gets the
    i-th slice of batch_size items of it.
    """
    global_batch = batch_size * num_processes
    order = epoch_order(num_items, seed, epoch).tolist()
    out = []
    for k in range(start, num_items // global_batch):
        lo = k * global_batch + process_index * batch_size
        out.append(order[lo : lo + batch_size])
    return out


# ----------------------------------------------------------------------------- RNG states
def capture_rng() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": [torch.tensor(list(random.getstate()[1]), dtype=torch.int64), random.getstate()[2] or -1,
                   random.getstate()[0]],
        "numpy": [torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    internal, gauss, version = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), None if gauss == -1 else gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories (atomic_directory never leaves a partial one under this name)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.fullmatch(p.name).group(1)))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps all)."""
    import shutil

    if keep <= 0:
        return
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def clean_checkpoint_temporaries(output_dir: str | Path) -> list[Path]:
    """Remove the `.step-*.tmp-*` directories of checkpoint writes that were killed (never complete, never
    listed) and restore a checkpoint whose replacement died between its two renames; returns what was removed."""
    import shutil

    from gaussiantoken.runtime.files import recover_directory

    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    removed = []
    for tmp in sorted(root.glob(".step-*.tmp-*")):
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    for name in sorted({p.name.split(".old-")[0][1:] for p in root.glob(".step-*.old-*")}):
        recover_directory(root / name)
    return removed


CHECKPOINT_WEIGHTS = ("model.safetensors", "ema.safetensors")
GAN_WEIGHTS = ("discriminator.safetensors", "lecam.safetensors")


def check_checkpoint(path: str | Path, with_gan: bool) -> dict:
    """Check a trainer checkpoint and return its `state.pt` contents (loaded with weights_only=True).

    Every weights file must pass `check_safetensors_file` and state.pt must load and hold the resume keys;
    otherwise a `CheckpointError` names the checkpoint, the damaged file and the previous checkpoint.
    """
    from gaussiantoken.runtime.integrity import CheckpointError, check_safetensors_file, check_torch_file

    path = Path(path)
    earlier = [p for p in list_checkpoints(path.parent.parent) if p.name < path.name]
    hint = (f"; move it aside to resume from the previous checkpoint {earlier[-1]}" if earlier
            else "; no earlier checkpoint exists, so the run must start again")
    names = CHECKPOINT_WEIGHTS + (GAN_WEIGHTS if with_gan else ())
    try:
        for name in names:
            check_safetensors_file(path / name)
        check_torch_file(path / "state.pt")
        try:
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors of many kinds: report them as corruption of this file
            raise CheckpointError(f"{path / 'state.pt'} is truncated or corrupted: "
                                  f"{type(exc).__name__}: {exc}") from None
        needed = {"optimizer", "scheduler", "ema", "step", "epoch", "position", "rng"}
        needed |= {"disc_optimizer", "disc_scheduler"} if with_gan else set()
        missing = sorted(needed - set(state)) if isinstance(state, dict) else sorted(needed)
        if missing:
            raise CheckpointError(f"{path / 'state.pt'} is corrupted: it lacks {missing}")
    except CheckpointError as exc:
        raise CheckpointError(f"cannot resume from checkpoint {path}: {exc}{hint}") from None
    return state


__all__ = [
    "ModelEMA",
    "epoch_order",
    "batches_for",
    "capture_rng",
    "restore_rng",
    "checkpoint_dir",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "clean_checkpoint_temporaries",
    "check_checkpoint",
]
