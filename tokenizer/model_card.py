"""Model cards: the README.md that `save_pretrained` writes beside our weights, in the Hugging Face hub's format.

`write_model_card(directory, config, metrics=None, samples=None)` renders `model_card(...)` into
DIRECTORY/README.md (atomically). The card has
- YAML metadata: library_name, pipeline_tag, tags, license, datasets (from the training recipe) and a
  `model-index` with the metrics the evaluation harness measured (flat keys of metrics.json, e.g.
  "reconstruction.psnr", grouped by task), when given;
- how to load it (Auto classes and pipelines, after `import gaussiantoken`);
- the architecture (key fields of config.json), the training recipe (train_config.yaml beside it, which
  both trainers save) and the sample grid (samples.png beside it, copied there when `samples` is given).

`GaussianTokenizer.save_pretrained` and `GaussianTokenForCausalLM.save_pretrained` call it without
metrics; the demo calls it again after its evaluation, so a directory it writes is ready to push to a hub.
A README.md that a person wrote (one without our marker line) is never overwritten.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

CARD_FILE = "README.md"
SAMPLES_FILE = "samples.png"
RECIPE_FILE = "train_config.yaml"
MARKER = "<!-- model card written by gaussiantoken (tokenizer/model_card.py); delete this line to keep your edits -->"

# metrics.json prefix -> (hub task type, task name)
TASKS = {
    "reconstruction": ("image-to-image", "Image reconstruction from the image tokens"),
    "text_to_image": ("text-to-image", "Text-to-image"),
    "captioning": ("image-to-text", "Image captioning"),
    "vqa": ("visual-question-answering", "Visual question answering"),
}
_LM_FIELDS = ("image_token_offset", "image_vocab_size", "tokens_per_image")
_TEXT_FIELDS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "max_position_embeddings", "vocab_size")
_TOKENIZER_FIELDS = ("image_size", "num_gaussians", "tokens_per_image", "vocab_size", "codebook_size",
                     "codebook_dim", "geometry_slots", "position_mode", "position_bins", "scale_bins",
                     "rotation_bins", "hidden_size", "splat_channels", "grid_size")


def _yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()


def _recipe(directory: Path) -> dict | None:
    path = directory / RECIPE_FILE
    if not path.is_file():
        return None
    import yaml

    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None
    return recipe if isinstance(recipe, dict) else None


def _datasets(recipe: dict | None) -> list[str]:
    data = (recipe or {}).get("data") or {}
    names = [data.get("name"), data.get("source")]
    for loader in data.get("loaders") or []:
        if isinstance(loader, dict):
            names.append(loader.get("name"))
    return sorted({str(n) for n in names if n})


def _model_index(name: str, metrics: dict | None, tasks) -> list[dict] | None:
    results = []
    for prefix in tasks:
        task_type, task_name = TASKS[prefix]
        values = [{"type": key.split(".", 1)[1], "name": key.split(".", 1)[1], "value": round(float(v), 4)}
                  for key, v in sorted((metrics or {}).items())
                  if key.startswith(prefix + ".") and isinstance(v, (int, float)) and not isinstance(v, bool)
                  and math.isfinite(v) and not any(w in key for w in ("seconds", "time", "num_", "count"))]
        if values:
            results.append({"task": {"type": task_type, "name": task_name},
                            "dataset": {"type": "shapes", "name": "Shapes world, held-out scenes"},
                            "metrics": values})
    return [{"name": name, "results": results}] if results else None


def _fields(config, names) -> dict:
    out = {}
    for n in names:
        try:
            value = getattr(config, n)
        except AttributeError:
            continue
        if value is not None:
            out[n] = value
    return out


def model_card(directory, config, metrics: dict | None = None) -> str:
    """The README.md text for a saved model directory (see the module docstring)."""
    from gaussiantoken.runtime.model_dirs import LM_KIND

    directory = Path(directory)
    name = directory.resolve().name
    recipe = _recipe(directory)
    is_lm = config.model_type == LM_KIND
    ratios = ((recipe or {}).get("data") or {}).get("ratios")
    vqa_only = is_lm and isinstance(ratios, dict) and {k for k, v in ratios.items() if v} == {"vqa"}  # a VQA fine-tune
    meta = {
        "library_name": "transformers",
        "pipeline_tag": "image-text-to-text" if is_lm else "image-feature-extraction",
        "license": "apache-2.0",
        "tags": ["gaussiantoken", "gaussian-splatting", "image-tokenizer"]
                + (["visual-question-answering", "multimodal"] if vqa_only
                   else ["text-to-image", "image-captioning", "visual-question-answering", "multimodal"] if is_lm
                   else ["vector-quantization"]),
    }
    datasets = _datasets(recipe)
    if datasets:
        meta["datasets"] = datasets
    index = _model_index(name, metrics, TASKS if is_lm else ["reconstruction"])  # a tokenizer only reconstructs
    if index:
        meta["model-index"] = index
    lines = ["---", _yaml(meta), "---", MARKER, ""]
    if vqa_only:
        lines += [
            f"# {name}: a GaussianToken visual question answering model",
            "",
            "A GaussianToken multimodal LM (text plus the discrete image tokens of a Gaussian-splatting image",
            "tokenizer, frozen and stored inside this checkpoint) fine-tuned on visual question answering alone",
            "(its training recipe below): it answers questions about an image. Training on questions alone does",
            "not keep text-to-image or captioning: use the model it was continued from (`model.init_from`) for",
            "those. See the gaussiantoken repository (docs/architecture.md) for the design.",
            "",
            "## How to load",
            "",
            "```python",
            "import gaussiantoken  # registers the model with transformers (pip install gaussiantoken)",
            "from transformers import pipeline",
            "",
            f'itt = pipeline("image-text-to-text", model="{name}")',
            'print(itt(images=image, text="what color is the circle?")[0]["generated_text"])',
            "```",
        ]
        if ((recipe or {}).get("data") or {}).get("relation_positions"):
            lines += [
                "",
                "A relation question is answered with both objects' positions first (the centre on the asked axis,",
                "0-7 from the left or top): \"is the red circle to the left of the blue square?\" ->",
                "\"left: red circle 2, blue square 5, so yes\"; `gaussiantoken.lm.sequences.final_answer` keeps the",
                "answer (`data.relation_positions` in the recipe below).",
            ]
    if is_lm and not vqa_only:
        lines += [
            f"# {name}: a GaussianToken multimodal LM",
            "",
            "A causal LM whose vocabulary is text plus the discrete image tokens of a Gaussian-splatting image",
            "tokenizer (frozen, stored inside this checkpoint): text-to-image, captioning and visual question",
            "answering in one model. See the gaussiantoken repository (docs/architecture.md) for the design.",
            "",
            "## How to load",
            "",
            "```python",
            "import gaussiantoken  # registers the model with transformers (pip install gaussiantoken)",
            "from transformers import AutoModelForCausalLM, AutoProcessor, pipeline",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{name}")',
            f'processor = AutoProcessor.from_pretrained("{name}")',
            f't2i = pipeline("text-to-image", model="{name}")',
            'images = t2i("a large red circle above a small blue square")  # sampling defaults: lm/sampling_defaults.py',
            '# each image is the best of num_candidates=4 samples as the model captions them back; 1: plain sampling',
            f'itt = pipeline("image-text-to-text", model="{name}")',
            'chat = [{"role": "user", "content": [{"type": "image", "image": images[0]},',
            '                                     {"type": "text", "text": "Describe the image."}]}]',
            'print(itt(text=chat, return_full_text=False)[0]["generated_text"])',
            "```",
        ]
    if is_lm:
        lines += [
            "",
            "## Architecture",
            "",
            "```yaml",
            _yaml({**_fields(config, _LM_FIELDS), "text_config": _fields(config.text_config, _TEXT_FIELDS),
                   "tokenizer_config": _fields(config.tokenizer_config, _TOKENIZER_FIELDS)}),
            "```",
        ]
    else:
        lines += [
            f"# {name}: a GaussianToken image tokenizer",
            "",
            "Encodes an image into a fixed number of quantized 2D Gaussians (feature code + geometry tokens per",
            "Gaussian) and decodes the tokens alone back into pixels by splatting them and a CNN decoder. See the",
            "gaussiantoken repository (docs/architecture.md, docs/token_layout.md) for the design.",
            "",
            "## How to load",
            "",
            "```python",
            "import gaussiantoken  # registers the model with transformers (pip install gaussiantoken)",
            "from transformers import AutoImageProcessor, AutoModel",
            "",
            f'tokenizer = AutoModel.from_pretrained("{name}")',
            f'processor = AutoImageProcessor.from_pretrained("{name}")',
            'pixels = processor(images, return_tensors="pt").pixel_values  # [B, 3, S, S] in [-1, 1]',
            "ids = tokenizer.encode(pixels)          # [B, tokens_per_image] discrete tokens",
            "reconstruction = tokenizer.decode(ids)  # [B, 3, S, S], from the tokens alone",
            "```",
            "",
            "## Architecture",
            "",
            "```yaml",
            _yaml(_fields(config, _TOKENIZER_FIELDS)),
            "```",
        ]
    lines += ["", "## Evaluation", ""]
    if index:
        lines += ["Measured by the gaussiantoken evaluation harness on held-out Shapes scenes:", "",
                  "| task | metric | value |", "|---|---|---|"]
        for result in index[0]["results"]:
            lines += [f"| {result['task']['name']} | {m['name']} | {m['value']} |" for m in result["metrics"]]
    else:
        lines += ["Not evaluated yet: `gaussiantoken evaluate configs/eval/shapes.yaml --model DIR` measures it."]
    lines += ["", "## Training recipe", ""]
    if recipe is not None:
        lines += [f"The run config ({RECIPE_FILE}, beside this card), as the trainer ran it:", "", "```yaml",
                  _yaml(recipe), "```"]
    else:
        lines += [f"Our trainers save their run config as {RECIPE_FILE} beside the weights; none is here."]
    if (directory / SAMPLES_FILE).is_file():
        lines += ["", "## Samples", "", f"![samples]({SAMPLES_FILE})"]
    return "\n".join(lines) + "\n"


def write_model_card(directory, config, metrics: dict | None = None, samples: str | os.PathLike | None = None):
    """Write DIRECTORY/README.md (and copy `samples` to DIRECTORY/samples.png first); returns the card's path,
    or None when DIRECTORY holds a README.md that a person wrote (no marker line)."""
    from gaussiantoken.runtime.files import atomic_write_text

    directory = Path(directory)
    card = directory / CARD_FILE
    if card.is_file() and MARKER not in card.read_text(encoding="utf-8", errors="replace"):
        return None
    if samples is not None:
        shutil.copyfile(samples, directory / SAMPLES_FILE)
    atomic_write_text(card, model_card(directory, config, metrics))
    return card


__all__ = ["model_card", "write_model_card", "CARD_FILE", "SAMPLES_FILE", "MARKER"]
