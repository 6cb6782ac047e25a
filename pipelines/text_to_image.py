"""The "text-to-image" pipeline: `transformers.pipeline("text-to-image", model=DIR)` (after `import gaussiantoken`).

Call arguments follow diffusers: prompt (str or list), negative_prompt, guidance_scale,
num_images_per_prompt, generator (torch.Generator), temperature, top_k, top_p, batch_size
(images per forward), num_candidates (each image the best of that many samples as the LM captions them
back, `lm.rerank`; default `T2I_CANDIDATES` = 4, 1 for plain sampling), output_type:
- "pil" (default): list of PIL RGB images, prompt-major (all images of prompt 0, then prompt 1, ...);
- "pt": FloatTensor [N, 3, H, W] in [0, 1];  "np": float32 ndarray [N, H, W, 3] in [0, 1];
- "gaussians": dict of tensors [N, M, ...] (means, scales, rotations, features, ...) decoded from the
  image tokens (the tokenizer's `ids_to_gaussians`), plus "ids" [N, T] (local ids).
A tqdm bar counts images. Device: CUDA when available (the backbone cast to bf16; the image tokenizer
stays fp32), else CPU + fp32. Sampling is `gaussiantoken.lm.generation.generate_images`.
"""

from __future__ import annotations

import torch
from transformers import Pipeline

from gaussiantoken.lm.sampling_defaults import T2I_CANDIDATES, T2I_GUIDANCE_SCALE, T2I_TEMPERATURE

OUTPUT_TYPES = ("pil", "pt", "np", "gaussians")


def check_and_place_model(pipe) -> None:
    """Our pipelines need a GaussianTokenForCausalLM and its processor; then place the model (below)."""
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

    if not isinstance(pipe.model, GaussianTokenForCausalLM):
        raise ValueError(f"the {pipe.task} pipeline needs a GaussianTokenForCausalLM ('gaussiantoken_lm' "
                         f"checkpoint), got {type(pipe.model).__name__}")
    if pipe.processor is None:
        raise ValueError(f"the {pipe.task} pipeline needs the model directory's processor (text tokenizer)")
    place_model(pipe.model, pipe.device)


def place_model(model, device: torch.device):
    """CUDA: backbone in bf16; CPU: everything fp32 (the image tokenizer always fp32)."""
    model.float()
    if device.type == "cuda" and hasattr(model, "language_model"):
        model.language_model.to(torch.bfloat16)
    return model.eval()


def pixels_to_output(pixels: torch.Tensor, output_type: str):
    """pixels [N, 3, H, W] in [-1, 1] -> the requested output type (see module docstring)."""
    images = ((pixels.float().clamp(-1, 1) + 1) / 2).cpu()  # [N, 3, H, W] in [0, 1]
    if output_type == "pt":
        return images
    array = images.permute(0, 2, 3, 1).numpy()  # [N, H, W, 3]
    if output_type == "np":
        return array
    from PIL import Image

    return [Image.fromarray((a * 255).round().astype("uint8"), mode="RGB") for a in array]


class TextToImagePipeline(Pipeline):
    """Text prompt(s) -> images, sampled token by token under the image grammar with CFG."""

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _pipeline_calls_generate = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_and_place_model(self)

    def _sanitize_parameters(self, negative_prompt=None, guidance_scale=None, num_images_per_prompt=None,
                             generator=None, temperature=None, top_k=None, top_p=None, batch_size=None,
                             output_type=None, backend=None, progress=None, num_candidates=None, **kwargs):
        if kwargs:
            raise TypeError(f"unknown text-to-image argument(s): {sorted(kwargs)}")
        if guidance_scale is not None:  # before any sampling: a finite number >= 1
            from gaussiantoken.lm.logits import check_guidance_scale

            check_guidance_scale(guidance_scale)
        forward = {k: v for k, v in dict(
            negative_prompt=negative_prompt, guidance_scale=guidance_scale,
            num_images_per_prompt=num_images_per_prompt, generator=generator, temperature=temperature,
            top_k=top_k, top_p=top_p, batch_size=batch_size, backend=backend, progress=progress,
            num_candidates=num_candidates,
        ).items() if v is not None}
        post = {}
        if output_type is not None:
            if output_type not in OUTPUT_TYPES:
                raise ValueError(f"unknown output_type {output_type!r}; choose one of {OUTPUT_TYPES}")
            post["output_type"] = output_type
        return {}, forward, post

    def __call__(self, prompt, **kwargs):
        """prompt: str or list[str] -> images (see module docstring for output_type)."""
        _, forward_params, post_params = self._sanitize_parameters(**kwargs)
        model_inputs = self.preprocess(prompt)
        with torch.inference_mode():
            outputs = self._forward(model_inputs, **forward_params)
        return self.postprocess(outputs, **post_params)

    def preprocess(self, prompt):
        from gaussiantoken.lm.generation import as_prompt_list

        return {"prompts": as_prompt_list(prompt, "prompt")}

    def _forward(self, model_inputs, negative_prompt=None, guidance_scale=T2I_GUIDANCE_SCALE, num_images_per_prompt=1,
                 generator=None, temperature=T2I_TEMPERATURE, top_k=None, top_p=None, batch_size=16, backend="hf",
                 progress=True, num_candidates=T2I_CANDIDATES):
        from gaussiantoken.lm.generation import generate_images

        ids = generate_images(
            self.model, self.processor, model_inputs["prompts"], negative_prompt=negative_prompt,
            guidance_scale=guidance_scale, num_images_per_prompt=num_images_per_prompt, generator=generator,
            temperature=temperature, top_k=top_k, top_p=top_p, batch_size=batch_size, backend=backend,
            cache_implementation="static" if self.device.type == "cuda" else None, progress=progress,
            num_candidates=num_candidates,
        )  # [N, T] LM ids
        return {"ids": ids}

    def postprocess(self, model_outputs, output_type="pil"):
        ids = model_outputs["ids"]  # [N, T]
        if output_type == "gaussians":
            local = ids - self.model.config.image_token_offset
            tokenizer = self.model.image_tokenizer
            gaussians = tokenizer.ids_to_gaussians(local.to(next(tokenizer.parameters()).device))
            return {**{k: v.cpu() for k, v in gaussians.items()}, "ids": local.cpu()}
        pixels = self.model.decode_image_tokens(ids)  # [N, 3, H, W] in [-1, 1]
        return pixels_to_output(pixels, output_type)
