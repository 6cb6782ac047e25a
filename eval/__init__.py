"""Evaluation: metrics, readers for the standard formats, and reports (benchmark runners build on these).

Light at import: each name loads its module on first access.
- image_metrics: per-image PSNR, SSIM, MS-SSIM, `ReconstructionMetrics`, codebook usage/entropy.
- perceptual: LPIPS-style `PerceptualDistance`, `load_lpips`.
- fid: FID/KID (torchmetrics, pluggable features; own scipy/numpy reference), CLIPScore wrapper.
- feature_nets: `ShapesFeatureNet`, a small CNN trained on the Shapes world for FID features.
- captioning: `caption_scores` (BLEU-1..4, METEOR, ROUGE-L, CIDEr via pycocoevalcap).
- vqa: `vqa_accuracy` (VQAv2 official normalisation and leave-one-out accuracy), exact match.
- readers: COCO captions / VQAv2 / prediction files with validation.
- report: `write_report`, `save_image_grid`, `save_plot`, atomic metrics.json.
- reconstruction / text_to_image / captioning / vqa: the runners and scorers of each benchmark (also used
  by bench/).
- tasks/: the benchmarks of the harness, one file each on a small base (`tasks/base.py`), registered in
  one table (`tasks.TASKS`); run: the `gaussiantoken evaluate` harness over them (`evaluate(config)`).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "psnr": ".image_metrics", "psnr_per_image": ".image_metrics", "ssim": ".image_metrics",
    "ssim_per_image": ".image_metrics", "ms_ssim": ".image_metrics", "ms_ssim_per_image": ".image_metrics",
    "ms_ssim_min_size": ".image_metrics", "ReconstructionMetrics": ".image_metrics",
    "code_histogram": ".image_metrics", "codebook_stats": ".image_metrics",
    "PerceptualDistance": ".perceptual", "load_lpips": ".perceptual",
    "VGG16Features": ".perceptual", "AlexNetFeatures": ".perceptual",
    "frechet_distance": ".fid", "fid_from_features": ".fid", "polynomial_mmd": ".fid",
    "kid_from_features": ".fid", "make_fid": ".fid", "make_kid": ".fid", "make_clip_score": ".fid",
    "FeatureExtractor": ".fid",
    "ShapesFeatureNet": ".feature_nets", "ShapesFeatureNetConfig": ".feature_nets",
    "train_shapes_feature_net": ".feature_nets", "shapes_attribute_accuracy": ".feature_nets",
    "caption_scores": ".captioning",
    "vqa_accuracy": ".vqa", "normalize_answer": ".vqa", "exact_match_accuracy": ".vqa",
    "read_coco_captions": ".readers", "read_caption_predictions": ".readers",
    "read_vqa_questions": ".readers", "read_vqa_annotations": ".readers",
    "read_vqa_predictions": ".readers", "match_ids": ".readers",
    "write_report": ".report", "ReportSection": ".report", "save_image_grid": ".report",
    "save_plot": ".report", "flatten_metrics": ".report", "write_json_atomic": ".report",
    "evaluate_tokenizer": ".reconstruction", "load_fid": ".reconstruction",
    "score_text_to_image": ".text_to_image", "run_text_to_image": ".text_to_image",
    "run_captioning": ".captioning", "run_vqa": ".vqa",
    "EvalConfig": ".run", "EvalSettings": ".run", "evaluate": ".run", "load_config": ".run", "TASKS": ".tasks",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
