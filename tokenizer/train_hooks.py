"""What the tokenizer trainer writes besides checkpoints: the JSON logs, sample grids and validation metrics.

Owns `JsonLog` (append-only JSON lines; on resume the lines after the checkpoint's step are dropped, and a
line torn by a kill is dropped), `read_losses` (the per-step values of a key from OUTPUT/logs/train.jsonl) and
`EvalHooks`: `write_samples(step)` (OUTPUT/samples/step-XXXXXXXX.png from the EMA model, `previews.save_sample_grid`)
and `validate(step)` (EMA model on the validation images: `val/psnr` (`previews.psnr_per_image`),
`val/codebook_usage`, `val/vocab_usage`, written to OUTPUT/logs/val.jsonl and the tracker). Both run on the main
process only, under `torch.random.fork_rng`, so they never change the training run's random stream.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class JsonLog:
    """Append-only JSON lines; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = Path(path), enabled

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


class EvalHooks:
    """Sample grids and validation metrics of the EMA model (main process only; other processes: no-ops).

    `ema_module`: the EMA model; `vocab_size`: the tokenizer's vocabulary (for `val/vocab_usage`);
    `val_images` / `train_images`: `train_data.ImageSet`s (grids use the validation images when given);
    `log`: the `JsonLog` of val.jsonl.
    """

    def __init__(self, accelerator, ema_module, vocab_size: int, output_dir: Path, val_images, train_images,
                 batch_size: int, num_sample_images: int, log: JsonLog):
        self.accelerator, self.ema_module, self.vocab_size = accelerator, ema_module, vocab_size
        self.out, self.val_images, self.train_images = Path(output_dir), val_images, train_images
        self.batch_size, self.num_sample_images, self.log = batch_size, num_sample_images, log

    def preview_batch(self, n: int):
        source = self.val_images if self.val_images is not None else self.train_images
        return source.batch(range(min(n, len(source)))).to(self.accelerator.device)  # [n, 3, S, S]

    def write_samples(self, step: int) -> None:
        import torch

        if not self.accelerator.is_main_process:
            return
        from .previews import save_sample_grid

        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            x = self.preview_batch(self.num_sample_images)
            with self.accelerator.autocast():
                o = self.ema_module(pixel_values=x)
            save_sample_grid(self.out / "samples" / f"step-{step:08d}.png", x, o.reconstruction, o.gaussians)

    def validate(self, step: int) -> dict:
        import torch

        if not self.accelerator.is_main_process or self.val_images is None:
            return {}
        from .previews import psnr_per_image

        images = self.val_images
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            psnrs, usage, used = [], [], set()
            for lo in range(0, len(images), self.batch_size):
                x = images.batch(range(lo, min(lo + self.batch_size, len(images)))).to(self.accelerator.device)
                with self.accelerator.autocast():
                    o = self.ema_module(pixel_values=x)
                psnrs.append(psnr_per_image(o.reconstruction, x).cpu())
                usage.append(float(o.codebook_usage))
                used.update(o.ids.unique().tolist())
            metrics = {"val/psnr": float(torch.cat(psnrs).mean()), "val/codebook_usage": sum(usage) / len(usage),
                       "val/vocab_usage": len(used) / self.vocab_size}
        self.log.write({"step": step, **metrics})
        self.accelerator.log(metrics, step=step)
        return metrics
