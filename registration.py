"""The one place that makes our models known to transformers (the package root calls `register()`).

After `import gaussiantoken` (or any `gaussiantoken.*` import, which runs the package root first), in a
fresh interpreter and in any import order:

| transformers entry point        | our directory        | resolves to                                   |
|---------------------------------|----------------------|-----------------------------------------------|
| AutoConfig                      | LM / image tokenizer | GaussianTokenLMConfig / GaussianTokenizerConfig, GridVQConfig |
| AutoModelForCausalLM            | LM                   | GaussianTokenForCausalLM                      |
| AutoModelForImageTextToText     | LM                   | GaussianTokenForImageTextToText (text-only generate) |
| AutoProcessor                   | LM                   | GaussianTokenProcessor (with its chat template) |
| AutoTokenizer                   | LM                   | the LM's text tokenizer (a stock class; needs AutoConfig to know the LM) |
| AutoModel                       | image tokenizer      | GaussianTokenizer, GridVQTokenizer (the grid-VQ baseline) |
| AutoImageProcessor              | image tokenizer      | GaussianTokenizerImageProcessor               |
| pipeline("text-to-image")       | LM                   | TextToImagePipeline                           |
| pipeline("image-text-to-text")  | LM                   | the stock ImageTextToTextPipeline             |
| pipeline("gaussiantoken-captioning" / "gaussiantoken-vqa") | LM | GaussianTokenImageTextToTextPipeline |

How it stays cheap. transformers' auto classes are name-based lazy mappings (model_type -> class name,
the class imported from its module on first lookup). We add our entries to those mappings with
our subpackages as the modules, so the model classes (and torch.nn code) load only when a model is
actually built; the config classes are registered with `AutoConfig.register` (they need only
transformers' `PretrainedConfig`). transformers' processor, image-processor and pipeline registries
live in modules that import transformers' `modeling_utils`; registering there (as we must, without
an import hook) is what `import gaussiantoken` costs beyond `import torch` (measured in
docs/architecture.md, "Registration").

No import hook, no `sys.meta_path` entry; `register()` is idempotent. The model_type strings are
the config classes' `model_type` attributes (the kinds named once: runtime/model_dirs.py for the LM and
the Gaussian tokenizer, tokenizer/grid_vq_config.py for the grid-VQ baseline); nothing here retypes them.
"""

from __future__ import annotations

_done = False

# (config module, config class, lazy subpackage holding the models, {modeling_auto mapping: model class})
_MODELS = (
    ("gaussiantoken.lm.configuration", "GaussianTokenLMConfig", "gaussiantoken.lm", {
        "MODEL_FOR_CAUSAL_LM_MAPPING": "GaussianTokenForCausalLM",
        "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING": "GaussianTokenForImageTextToText",
    }),
    ("gaussiantoken.tokenizer.configuration", "GaussianTokenizerConfig", "gaussiantoken.tokenizer", {
        "MODEL_MAPPING": "GaussianTokenizer",
    }),
    ("gaussiantoken.tokenizer.grid_vq_config", "GridVQConfig", "gaussiantoken.tokenizer", {
        "MODEL_MAPPING": "GridVQTokenizer",
    }),
)

# pipeline task -> (module, pipeline class); their models load through `GaussianTokenLMLoader`.
TASKS = {
    "text-to-image": ("gaussiantoken.pipelines.text_to_image", "TextToImagePipeline"),
    "gaussiantoken-captioning": ("gaussiantoken.pipelines.image_text_to_text", "GaussianTokenImageTextToTextPipeline"),
    "gaussiantoken-vqa": ("gaussiantoken.pipelines.image_text_to_text", "GaussianTokenImageTextToTextPipeline"),
}


class GaussianTokenLMLoader:
    """The model class of our pipeline tasks (their `pt_model`): `GaussianTokenForCausalLM.from_pretrained`,
    imported on first use, so that its directory checks run (e.g. an image tokenizer directory given as the
    LM gets the message naming both kinds, not transformers' "Unrecognized configuration class")."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        from gaussiantoken.lm.modeling import GaussianTokenForCausalLM

        return GaussianTokenForCausalLM.from_pretrained(*args, **kwargs)


def _lazy_model_entry(mapping, config_class, class_name: str, package) -> None:
    """Add config_class.model_type -> class_name to a transformers `_LazyAutoMapping`, resolved from
    `package` (a lazy subpackage of ours) on first lookup, exactly as transformers resolves its own."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    model_type = config_class.model_type
    mapping._reverse_config_mapping[config_class.__name__] = model_type
    mapping._model_mapping[model_type] = class_name
    mapping._modules[model_type_to_module_name(model_type)] = package


def register() -> None:
    """Register our configs, models, processors and pipeline tasks with transformers (idempotent)."""
    global _done
    if _done:
        return
    import importlib

    from transformers import AutoConfig, AutoImageProcessor, AutoProcessor
    from transformers.models.auto import modeling_auto
    from transformers.pipelines import PIPELINE_REGISTRY

    configs = []
    for config_module, config_name, package_name, models in _MODELS:
        config_class = getattr(importlib.import_module(config_module), config_name)
        configs.append(config_class)
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        package = importlib.import_module(package_name)
        for mapping_name, class_name in models.items():
            _lazy_model_entry(getattr(modeling_auto, mapping_name), config_class, class_name, package)
    lm_config, *tokenizer_configs = configs

    from gaussiantoken.lm.processing import GaussianTokenProcessor
    from gaussiantoken.tokenizer.image_processing import GaussianTokenizerImageProcessor

    AutoProcessor.register(lm_config, GaussianTokenProcessor, exist_ok=True)
    for tokenizer_config in tokenizer_configs:  # both image tokenizers take the same pixels
        AutoImageProcessor.register(tokenizer_config, image_processor_classes={"pil": GaussianTokenizerImageProcessor},
                                    exist_ok=True)
    for task, (module, class_name) in TASKS.items():
        pipeline_class = getattr(importlib.import_module(module), class_name)
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=GaussianTokenLMLoader,
                                            type="multimodal")
    _done = True


__all__ = ["register", "TASKS", "GaussianTokenLMLoader"]
