"""Structure rules of the package, read from the source with `ast` (nothing is imported):

1. Imports flow one way: runtime <- data <- tokenizer <- lm <- eval <- pipelines. A module may import its own
   package and the packages below it, never one above (runtime imports no other package, data only runtime,
   ...). Every import counts, also the lazy ones inside functions. The root's registration.py, __init__.py
   and __main__.py (which refer to every package) are exempt, and so are bench/ (above every layer: it may
   import any of them) and tests/.
2. No private name (`_name`) is imported from, or read as an attribute of, a module of another package; this
   rule covers bench/ too (its scripts use the packages' public names only).
3. No module is over 500 lines, and every module starts with a docstring (saying what it owns).

The checker runs on the real tree and, so that it is known to fail, on small planted trees.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

PACKAGE = "gaussiantoken"
LAYERS = ("runtime", "data", "tokenizer", "lm", "eval", "pipelines")  # bottom to top
ROOT_EXEMPT = ("registration.py", "__init__.py", "__main__.py")
NOT_PACKAGES = ("bench", "tests", "docs", "configs", "scripts", "runs")  # root folders that are not layers (runs/: outputs)
ABOVE_LAYERS = ("bench",)  # not layers, but held to rule 2: every package is "another package" to them
MAX_LINES = 500
REPO = Path(__file__).resolve().parents[1]


def modules(root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """(file, dotted module name without the package prefix; () for the root's __init__.py) of every module
    of the package under `root`: the root modules and the layers' modules. A folder of the root that holds
    Python files but is neither a layer nor a known non-package folder is an error: a new package must be
    placed in LAYERS."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__pycache__"
                               and not d.endswith(".egg-info")
                               and not (Path(folder) == Path(root) and d in NOT_PACKAGES))
        for file in sorted(f for f in files if f.endswith(".py")):
            path = Path(folder) / file
            rel = path.relative_to(root).parts
            if len(rel) > 1 and rel[0] not in LAYERS:
                raise AssertionError(f"{path}: folder {rel[0]!r} is not a layer; add it to LAYERS in {__file__}")
            found.append((path, rel[:-1] + (() if file == "__init__.py" else (file[:-3],))))
    return sorted(found)


def top_modules(root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """(file, dotted name) of every module in the ABOVE_LAYERS folders of `root` (e.g. ('bench', 'splat'))."""
    found = []
    for top in ABOVE_LAYERS:
        for path in sorted((Path(root) / top).rglob("*.py")):
            rel = path.relative_to(root).parts
            found.append((path, rel[:-1] + (() if path.name == "__init__.py" else (path.stem,))))
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _resolve(node: ast.ImportFrom, module: tuple[str, ...], is_package: bool) -> tuple[str, ...] | None:
    """The absolute module an ImportFrom reads from, without the package prefix (None: not ours)."""
    if node.level == 0:
        parts = tuple((node.module or "").split("."))
        return parts[1:] if parts[0] == PACKAGE else None
    base = module if is_package else module[:-1]
    if node.level - 1 > len(base):
        raise AssertionError(f"relative import beyond the package root: {'.' * node.level}{node.module or ''}")
    base = base[: len(base) - (node.level - 1)]
    return base + (tuple(node.module.split(".")) if node.module else ())


def _is_module(root: Path, parts: tuple[str, ...]) -> bool:
    return bool(parts) and ((root.joinpath(*parts).with_suffix(".py")).is_file() or root.joinpath(*parts).is_dir())


def violations(root: Path) -> list[str]:
    """Every import against the layer direction and every cross-package private name, one line each:
    'file:line: what'."""
    root = Path(root)
    rank = {name: i for i, name in enumerate(LAYERS)}
    out = []
    for path, module in modules(root) + top_modules(root):
        if path.parent == root:  # a root module: registration.py, __init__.py, __main__.py
            if path.name in ROOT_EXEMPT:
                continue
            raise AssertionError(f"{path}: a module at the package root; only {ROOT_EXEMPT} belong there")
        own = module[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = lambda node: f"{path.relative_to(root)}:{node.lineno}"  # noqa: E731
        aliases = {}  # local name -> the other package's module it is bound to

        def check_target(node, target: tuple[str, ...], what: str) -> None:
            if own in ABOVE_LAYERS:  # any layer may be imported from above them; private modules may not
                pass
            elif not target:
                out.append(f"{where(node)}: imports the package root ({what}); only the root modules may")
            elif target[0] not in rank:
                out.append(f"{where(node)}: imports {PACKAGE}.{'.'.join(target)}, which is in no layer ({what})")
            elif rank[target[0]] > rank[own]:
                out.append(f"{where(node)}: {own} imports {target[0]} ({what}): against the direction "
                           f"{' <- '.join(LAYERS)}")
            if target and target[0] != own and any(_is_private(p) for p in target):
                out.append(f"{where(node)}: imports the private module {PACKAGE}.{'.'.join(target)} of another package")

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = tuple(alias.name.split("."))
                    if parts[0] != PACKAGE:
                        continue
                    check_target(node, parts[1:], f"import {alias.name}")
                    if alias.asname and len(parts) > 1 and parts[1] != own:
                        aliases[alias.asname] = parts[1:]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(node, module, path.name == "__init__.py")
                if source is None:
                    continue
                for alias in node.names:
                    target = source + (alias.name,) if _is_module(root, source + (alias.name,)) else source
                    check_target(node, target, f"from {'.' * node.level}{node.module or ''} import {alias.name}")
                    other = bool(target) and target[0] != own
                    if other and target == source and _is_private(alias.name):
                        out.append(f"{where(node)}: imports the private name {alias.name} from "
                                   f"{PACKAGE}.{'.'.join(source)} (another package)")
                    if other and target != source:
                        aliases[alias.asname or alias.name] = target
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _is_private(node.attr)):
                out.append(f"{where(node)}: reads the private name {node.attr} of "
                           f"{PACKAGE}.{'.'.join(aliases[node.value.id])} (another package)")
    return sorted(set(out))


def size_problems(root: Path, max_lines: int = MAX_LINES) -> list[str]:
    """Modules over `max_lines` lines, one line each."""
    out = []
    for path, _ in modules(Path(root)):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > max_lines:
            out.append(f"{path.relative_to(root)}: {lines} lines (over {max_lines})")
    return sorted(out)


def docstring_problems(root: Path) -> list[str]:
    """Modules without a (non-empty) module docstring, one line each."""
    return sorted(f"{path.relative_to(root)}: no module docstring" for path, _ in modules(Path(root))
                  if not (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip())


# ------------------------------------------------------------------------------------------ the real tree


def test_imports_follow_the_layer_direction_and_no_private_names_cross_packages():
    found = violations(REPO)
    assert not found, "import rule violations:\n" + "\n".join(found)


def test_no_module_over_500_lines():
    found = size_problems(REPO)
    assert not found, f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(found)


def test_every_module_has_a_docstring():
    found = docstring_problems(REPO)
    assert not found, "modules without a docstring:\n" + "\n".join(found)


# ------------------------------------------------------------------------------------ planted violations


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for layer in LAYERS:
        (root / layer).mkdir(exist_ok=True)
        init = root / layer / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{layer}"""\n')
    return root


def test_checker_finds_planted_violations(tmp_path):
    root = _tree(tmp_path, {
        "registration.py": '"""r"""\nimport gaussiantoken.pipelines.x\n',  # exempt
        "bench/b.py": '"""b"""\nfrom gaussiantoken.pipelines import x\n',  # exempt
        "tests/t.py": "from gaussiantoken.lm.m import _hidden\n",  # exempt
        "bench/p.py": '"""p"""\nfrom gaussiantoken.lm.m import _hidden, public\nimport gaussiantoken.lm.generation as g\n'
                      'g._as_list(1)\nfrom gaussiantoken.tokenizer import _impl\n',  # bench: rule 2 applies
        "runtime/up.py": '"""u"""\nimport gaussiantoken.data.shapes\n',
        "data/lazy.py": '"""l"""\ndef f():\n    from gaussiantoken.lm import modeling\n',
        "data/__init__.py": '"""d"""\nfrom .shapes import make\nfrom ..tokenizer import model\n',
        "tokenizer/rel.py": '"""r"""\nfrom ..eval.report import write_report\n',
        "tokenizer/sub/__init__.py": '"""s"""\nfrom ...pipelines import cli\n',
        "lm/m.py": '"""m"""\nfrom gaussiantoken.tokenizer.model import _private, public\n_hidden = 1\n',
        "lm/ok.py": '"""ok"""\nfrom gaussiantoken.lm.m import _hidden\nfrom .m import _hidden as h\n'
                    'from gaussiantoken.runtime import files\nfrom ..data import shapes\n',
        "eval/attr.py": '"""a"""\nimport gaussiantoken.lm.generation as gen\nfrom gaussiantoken.lm import modeling\n'
                        'gen._as_list(1)\nmodeling._check(2)\ngen.public(3)\n',
        "eval/mod.py": '"""p"""\nfrom gaussiantoken.tokenizer import _impl\nimport gaussiantoken.runtime._x\n',
        "pipelines/root.py": '"""r"""\nfrom gaussiantoken import registration\nimport gaussiantoken\n',
    })
    (root / "tokenizer" / "_impl.py").write_text('"""i"""\n')
    (root / "lm" / "generation.py").write_text('"""g"""\n')
    (root / "lm" / "modeling.py").write_text('"""m"""\n')
    (root / "data" / "shapes.py").write_text('"""s"""\n')
    found = violations(root)
    expected = [
        "bench/p.py:2: imports the private name _hidden from gaussiantoken.lm.m",
        "bench/p.py:4: reads the private name _as_list of gaussiantoken.lm.generation",
        "bench/p.py:5: imports the private module gaussiantoken.tokenizer._impl",
        "data/__init__.py:3: data imports tokenizer (from ..tokenizer import model)",
        "data/lazy.py:3: data imports lm (from gaussiantoken.lm import modeling)",
        "eval/attr.py:4: reads the private name _as_list of gaussiantoken.lm.generation",
        "eval/attr.py:5: reads the private name _check of gaussiantoken.lm.modeling",
        "eval/mod.py:2: imports the private module gaussiantoken.tokenizer._impl",
        "eval/mod.py:3: imports the private module gaussiantoken.runtime._x",
        "lm/m.py:2: imports the private name _private from gaussiantoken.tokenizer.model",
        "pipelines/root.py:2: imports gaussiantoken.registration, which is in no layer",
        "pipelines/root.py:3: imports the package root",
        "runtime/up.py:2: runtime imports data (import gaussiantoken.data.shapes)",
        "tokenizer/rel.py:2: tokenizer imports eval (from ..eval.report import write_report)",
        "tokenizer/sub/__init__.py:2: tokenizer imports pipelines (from ...pipelines import cli)",
    ]
    assert len(found) == len(expected), "\n".join(found)
    for line, want in zip(found, expected):
        assert line.startswith(want), (line, want)


def test_checker_rejects_unknown_package_and_stray_root_module(tmp_path):
    _tree(tmp_path / "a", {"newpkg/x.py": '"""x"""\n'})
    with pytest.raises(AssertionError, match="'newpkg' is not a layer"):
        violations(tmp_path / "a")
    _tree(tmp_path / "b", {"helpers.py": '"""h"""\n'})
    with pytest.raises(AssertionError, match="a module at the package root"):
        violations(tmp_path / "b")


def test_size_and_docstring_checker_on_planted_modules(tmp_path):
    root = _tree(tmp_path, {
        "lm/long.py": '"""long"""\n' + "x = 1\n" * MAX_LINES,  # 501 lines
        "lm/fits.py": '"""fits"""\n' + "x = 1\n" * (MAX_LINES - 1),  # 500 lines
        "eval/bare.py": "import os\n",
        "eval/empty_doc.py": '""""""\n',
        "tests/long_test.py": "x = 1\n" * 1000,  # tests are not modules of the package
    })
    assert size_problems(root) == [f"lm/long.py: {MAX_LINES + 1} lines (over {MAX_LINES})"]
    assert docstring_problems(root) == ["eval/bare.py: no module docstring", "eval/empty_doc.py: no module docstring"]
