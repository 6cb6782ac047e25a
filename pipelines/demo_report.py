"""The demo's summary: the table of its metrics against the issue's targets (`summary_table`, printed and appended
to OUT/report.md) and the hub model cards of OUT/tokenizer, OUT/lm and OUT/lm_vqa (`write_model_cards`)."""

from __future__ import annotations

from pathlib import Path


def write_model_cards(out: Path, metrics: dict) -> None:
    """README.md model cards in OUT/tokenizer, OUT/lm (and OUT/lm_vqa) with the evaluation's metrics, the training recipe
    and a sample grid (the tokenizer trainer's last one; the text-to-image grid), ready to push to a hub."""
    from gaussiantoken.lm.configuration import GaussianTokenLMConfig
    from gaussiantoken.tokenizer.configuration import GaussianTokenizerConfig
    from gaussiantoken.tokenizer.model_card import write_model_card

    tokenizer_grids = sorted((out / "runs" / "tokenizer" / "samples").glob("step-*.png"))
    t2i_grids = sorted((out / "eval").rglob("text_to_image_samples.png"))
    reconstruction = {k: v for k, v in metrics.items() if k.startswith("reconstruction.")}
    write_model_card(out / "tokenizer", GaussianTokenizerConfig.from_pretrained(out / "tokenizer"), reconstruction,
                     samples=tokenizer_grids[-1] if tokenizer_grids else None)
    write_model_card(out / "lm", GaussianTokenLMConfig.from_pretrained(out / "lm"), metrics,
                     samples=t2i_grids[-1] if t2i_grids else None)
    if (out / "lm_vqa").is_dir():
        vqa = {k[len("vqa_model."):]: v for k, v in metrics.items() if k.startswith("vqa_model.")}
        write_model_card(out / "lm_vqa", GaussianTokenLMConfig.from_pretrained(out / "lm_vqa"), vqa)


# ----------------------------------------------------------------------------- summary
SUMMARY_KEYS = [
    ("reconstruction.psnr", "reconstruction PSNR (dB)", 28.0),
    ("reconstruction.ssim", "reconstruction SSIM", None),
    ("reconstruction.scene_exact_rate", "scene recovered from reconstructions", 0.98),
    ("text_to_image.accuracy", "text-to-image compositional accuracy (best of `num_candidates`)", 0.80),
    ("text_to_image.accuracy_one", "  one-object prompts (new scenes)", 0.95),
    ("text_to_image.accuracy_two_unseen", "  unseen two-object compositions", 0.80),
    ("text_to_image.accuracy_three_unseen", "  unseen three-object compositions", None),
    ("text_to_image.accuracy_single_sample", "  one sample per prompt, not the best of its candidates", None),
    ("captioning.exact_scene_accuracy", "captioning exact-scene accuracy", 0.90),
    ("captioning.cider", "captioning CIDEr", None),
    ("vqa.accuracy", "VQA accuracy (lm)", 0.90),
    ("antialiased.captioning.exact_scene_accuracy", "  captioning, the scenes drawn by another renderer", 0.90),
    ("antialiased.vqa.accuracy", "  VQA (lm), the scenes drawn by another renderer", 0.90),
    ("vqa_model.vqa.accuracy", "VQA accuracy, the VQA fine-tune (lm_vqa)", 0.90),
    ("vqa_model.antialiased.vqa.accuracy", "  VQA (lm_vqa), the scenes drawn by another renderer", 0.90),
]


def summary_table(metrics: dict, timings: dict) -> str:
    lines = ["| metric | value | target |", "|---|---|---|"]
    for key, label, target in SUMMARY_KEYS:
        if key not in metrics:
            continue
        value = metrics[key]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        verdict = "" if target is None else (f">= {target} " + ("met" if value >= target else "NOT met"))
        lines.append(f"| {label} (`{key}`) | {shown} | {verdict} |")
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in timings.items()]
    return "\n".join(lines)
