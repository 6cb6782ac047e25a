"""Auto classes and pipeline tasks after `import gaussiantoken`, each in a fresh interpreter (as a user
script runs), in several import orders; the registration module's invariants (no import hook, no
model code imported, no config <-> model import cycle)."""

import json
import subprocess
import sys

import pytest

ORDERS = {
    "gaussiantoken first": "import gaussiantoken\nimport transformers\n",
    "transformers first": "import transformers\nfrom transformers import AutoModelForCausalLM, pipeline\nimport gaussiantoken\n",
    "a submodule first": "from gaussiantoken.lm import GaussianTokenForCausalLM\nimport transformers\n",
}

LOADS = """
import json, sys, transformers as T
LM, TOK = sys.argv[1], sys.argv[2]
out = {}
for name, path in [("AutoConfig", LM), ("AutoModelForCausalLM", LM), ("AutoModelForImageTextToText", LM),
                   ("AutoProcessor", LM), ("AutoTokenizer", LM), ("AutoConfig:tok", TOK), ("AutoModel", TOK),
                   ("AutoImageProcessor", TOK)]:
    out[name] = type(getattr(T, name.split(":")[0]).from_pretrained(path)).__name__
for task in ("text-to-image", "image-text-to-text", "gaussiantoken-captioning", "gaussiantoken-vqa"):
    out[task] = type(T.pipeline(task, model=LM, device="cpu")).__name__
print("RESULT" + json.dumps(out))
"""

EXPECTED = {
    "AutoConfig": "GaussianTokenLMConfig", "AutoModelForCausalLM": "GaussianTokenForCausalLM",
    "AutoModelForImageTextToText": "GaussianTokenForImageTextToText", "AutoProcessor": "GaussianTokenProcessor",
    "AutoTokenizer": "TokenizersBackend", "AutoConfig:tok": "GaussianTokenizerConfig", "AutoModel": "GaussianTokenizer",
    "AutoImageProcessor": "GaussianTokenizerImageProcessor", "text-to-image": "TextToImagePipeline",
    "image-text-to-text": "ImageTextToTextPipeline", "gaussiantoken-captioning": "GaussianTokenImageTextToTextPipeline",
    "gaussiantoken-vqa": "GaussianTokenImageTextToTextPipeline",
}


def _run(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def tokenizer_dir(tiny_lm_dir, tmp_path_factory):
    """The tiny LM's image tokenizer saved on its own, with its image processor."""
    from gaussiantoken.lm.modeling import GaussianTokenForCausalLM
    from gaussiantoken.tokenizer import GaussianTokenizerImageProcessor

    path = tmp_path_factory.mktemp("image_tokenizer_dir")
    lm = GaussianTokenForCausalLM.from_pretrained(tiny_lm_dir)
    lm.image_tokenizer.save_pretrained(path)
    GaussianTokenizerImageProcessor(image_size=lm.config.tokenizer_config.image_size).save_pretrained(path)
    return path


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_every_auto_class_and_task_loads_our_dirs_in_a_fresh_process(order, tiny_lm_dir, tokenizer_dir):
    out = _run(ORDERS[order] + LOADS, tiny_lm_dir, tokenizer_dir)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    assert json.loads(lines[-1][len("RESULT"):]) == EXPECTED


def test_import_registers_without_hooks_model_code_or_cycles():
    code = (
        "import sys\n"
        "import gaussiantoken.tokenizer.configuration\n"
        "ours = [f for f in sys.meta_path if type(f).__module__.startswith('gaussiantoken')]\n"
        "assert not ours, f'an import hook of ours was installed: {ours}'\n"
        "heavy = [m for m in ('gaussiantoken.tokenizer.modeling', 'gaussiantoken.lm.modeling',\n"
        "         'gaussiantoken.lm.generation', 'gaussiantoken.tokenizer.render') if m in sys.modules]\n"
        "assert not heavy, f'import gaussiantoken imported model code: {heavy}'\n"
        "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
        "from transformers.pipelines import PIPELINE_REGISTRY as R\n"
        "from gaussiantoken.lm.configuration import GaussianTokenLMConfig\n"
        "from gaussiantoken.tokenizer.configuration import GaussianTokenizerConfig\n"
        "assert CONFIG_MAPPING[GaussianTokenLMConfig.model_type] is GaussianTokenLMConfig\n"
        "assert CONFIG_MAPPING[GaussianTokenizerConfig.model_type] is GaussianTokenizerConfig\n"
        "assert {'text-to-image', 'gaussiantoken-captioning', 'gaussiantoken-vqa'} <= set(R.supported_tasks)\n"
        "import gaussiantoken.registration as reg; reg.register(); reg.register()\n"
        "print('ok')\n"
    )
    out = _run(code)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_registration_is_the_only_place_that_registers():
    """No other module calls transformers' register functions (grep over the package's sources)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    pattern = re.compile(r"\.register(_pipeline)?\(|register_for_auto_class|sys\.meta_path")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "tests" not in p.parts and p.name != "registration.py" and ".venv" not in p.parts
                 and pattern.search(p.read_text())]
    assert not offenders, offenders


def test_grid_vq_tokenizer_loads_through_auto_classes(tmp_path):
    code = (
        "import sys, gaussiantoken, transformers as T\n"
        "from gaussiantoken.tokenizer import GridVQConfig, GridVQTokenizer, GaussianTokenizerImageProcessor\n"
        "GridVQTokenizer(GridVQConfig(image_size=16, grid_size=[4, 4], encoder_channels=8, codebook_size=16,\n"
        "    codebook_dim=4, decoder_channels=8, kmeans_init=False)).save_pretrained(sys.argv[1])\n"
        "GaussianTokenizerImageProcessor(image_size=16).save_pretrained(sys.argv[1])\n"
        "print('RESULT', type(T.AutoModel.from_pretrained(sys.argv[1])).__name__,\n"
        "      type(T.AutoImageProcessor.from_pretrained(sys.argv[1])).__name__)\n"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RESULT GridVQTokenizer GaussianTokenizerImageProcessor" in out.stdout
