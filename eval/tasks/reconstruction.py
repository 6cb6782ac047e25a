"""The reconstruction benchmark of the harness: the image tokenizer (of an LM directory, or an image-tokenizer
directory on its own) rebuilds held-out images from its own tokens. Metrics come from
`eval.reconstruction.evaluate_tokenizer` (PSNR, SSIM, MS-SSIM, LPIPS and rFID when weights are given,
codebook usage, and on Shapes the exact-scene rate of the reconstructions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import RunContext, Task, check_positive, check_spec, check_type, load_data, shapes_spec


@dataclass
class ReconstructionConfig:
    data: dict = field(default_factory=lambda: shapes_spec(500))  # a data.loaders spec
    max_samples: int | None = None  # keep only the first N rows (real datasets)
    lpips_weights: str | None = None  # LPIPS safetensors file
    fid_weights: str | None = None  # ShapesFeatureNet dir or torch-fidelity Inception weights file
    position_tolerance: float = 1.5


class Reconstruction(Task):
    name = "reconstruction"
    config = ReconstructionConfig
    needs_lm = False
    path_keys = ("lpips_weights", "fid_weights")

    def validate(self, cfg: ReconstructionConfig) -> None:
        check_spec(cfg.data, self.key("data"))
        check_positive(cfg.max_samples, self.key("max_samples"), optional=True)
        for name in ("lpips_weights", "fid_weights"):
            check_type(getattr(cfg, name), str, self.key(name), optional=True)
        check_type(cfg.position_tolerance, (int, float), self.key("position_tolerance"))

    def run(self, cfg: ReconstructionConfig, ctx: RunContext) -> tuple[dict, list]:
        from gaussiantoken.eval.reconstruction import evaluate_tokenizer, load_fid

        models = ctx.models
        tok, image_processor = models.image_tokenizer()
        ds = load_data(cfg.data, models.image_size(), cfg.max_samples)
        lpips = fid = None
        if cfg.lpips_weights:
            from gaussiantoken.eval.perceptual import load_lpips

            lpips = load_lpips(cfg.lpips_weights, device=models.device)
        if cfg.fid_weights:
            fid = load_fid(cfg.fid_weights)
        metrics = evaluate_tokenizer(tok, image_processor, ds, ctx.batch_size, lpips=lpips, fid=fid,
                                     parse_scenes=cfg.data["name"] == "shapes" and "objects" in ds.column_names,
                                     position_tolerance=cfg.position_tolerance, device=models.device)
        return metrics, []
