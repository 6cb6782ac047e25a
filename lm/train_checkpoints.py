"""Which LM checkpoint a run resumes from, and whether it is intact.

Owns `check_lm_checkpoint` (every file of an HF Trainer checkpoint complete and readable, without loading
tensors; else a `CheckpointError` naming it) and `resolve_resume` (`train.resume`: auto = the newest complete
OUTPUT/checkpoint-* (one without trainer_state.json, a run killed while saving it, is skipped with a warning),
a path = that checkpoint, null = start fresh).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from .train_config import LMRunConfig


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
