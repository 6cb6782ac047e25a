"""What the code and README cite is in the repository: every docs/ page named in a docstring, comment or
Markdown file exists, and nothing cites the design notes that live outside it (DESIGN.md)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sources():
    for path in ROOT.rglob("*"):
        if path.suffix in (".py", ".md", ".yaml", ".sh") and not {".venv", ".git", "runs"} & set(path.parts):
            yield path


def test_cited_docs_exist_and_no_design_md():
    cited, design = set(), []
    for path in _sources():
        text = path.read_text(errors="replace")
        cited |= set(re.findall(r"docs/([a-z_]+\.md)", text))
        if "DESIGN.md" in text and path.name != "test_docs.py":
            design.append(str(path.relative_to(ROOT)))
    assert not design, f"cite docs/ instead of DESIGN.md: {design}"
    assert {"architecture.md", "splatting.md", "token_layout.md", "shapes_world.md"} <= cited
    missing = sorted(c for c in cited if not (ROOT / "docs" / c).is_file())
    assert not missing, missing


def test_docs_state_the_contracts_the_code_implements():
    from gaussiantoken.data import shapes
    from gaussiantoken.lm.sequences import caption_prompt, text_to_image_prompt, vqa_prompt
    from gaussiantoken.tokenizer.render.reference import ALPHA_CUTOFF

    world = (ROOT / "docs" / "shapes_world.md").read_text()
    assert f"background RGB {tuple(shapes.BACKGROUND)}" in world
    for name, rgb in shapes.COLORS.items():
        assert f"{name} {tuple(rgb)}" in world, name
    layout = (ROOT / "docs" / "token_layout.md").read_text()
    for prompt in (text_to_image_prompt("{caption}"), caption_prompt(), vqa_prompt("{question}")):
        assert f"`{prompt}`" in layout, prompt
    assert ALPHA_CUTOFF == 1 / 255 and "alpha < 1/255" in (ROOT / "docs" / "splatting.md").read_text()
