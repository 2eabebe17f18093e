"""The packages import one way (DESIGN.md §6): whisper_core <- weights_bridge <- the backends <- whisper_mb.

Every module's imports are read from its syntax tree: ``import`` and ``from`` statements (relative ones
resolved), and every string constant that names a project module, which is how ``importlib`` strings
and registries point at a package. A module may use its own package and the layers below it; no backend
may use another; and the backend packages are named in one place, the registry.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (("whisper_core",), ("weights_bridge",), ("whisper_pt", "whisper_tf", "whisper_flax"), ("whisper_mb",))
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}
BACKEND_PACKAGES = set(LAYERS[2])
REGISTRY = "whisper_mb/registry.py"
# The one upward reference we keep on purpose: weights_bridge.__getattr__ still resolves the names that
# moved to whisper_mb.live (with a DeprecationWarning), importing it only when one is asked for.
ALLOWED = {("weights_bridge/__init__.py", "whisper_mb.live")}
_MODULE_NAME = re.compile(rf"({'|'.join(LEVEL)})(\.\w+)*")


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` for every import statement and every string constant that names a project module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            found.append((node.lineno, base))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value):
            found.append((node.lineno, node.value))
    return found


def violations(path: str, source: str) -> list[str]:
    """What in ``source`` (the file at ``path``, relative to the root) points up a layer or sideways."""
    parts = Path(path).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    module = ".".join(parts[:-1] if is_package else parts)
    own = parts[0]
    problems = []
    for line, name in imported_modules(source, module, is_package):
        target = name.split(".")[0]
        if target not in LEVEL or target == own or (path, name) in ALLOWED:
            continue
        if LEVEL[target] > LEVEL[own]:
            problems.append(f"{path}:{line}: {own} (layer {LEVEL[own]}) uses {name} (layer {LEVEL[target]})")
        elif LEVEL[target] == LEVEL[own]:
            problems.append(f"{path}:{line}: backend {own} uses another backend, {name}")
        elif target in BACKEND_PACKAGES and name == target and path != REGISTRY:
            problems.append(f"{path}:{line}: names the backend package {name!r} outside {REGISTRY}")
    return problems


def project_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for package in LEVEL for p in (ROOT / package).rglob("*.py"))


def test_every_package_imports_only_downwards():
    files = project_files()
    assert len(files) > 60, files  # the walk found the tree
    problems = [problem for path in files for problem in violations(path, (ROOT / path).read_text())]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("whisper_core/x.py", "from weights_bridge import fetch\n", "whisper_core (layer 0) uses weights_bridge"),
        ("whisper_core/a/b.py", "def f():\n    import whisper_flax.modeling\n", "uses whisper_flax.modeling"),
        ("weights_bridge/x.py", "import importlib\nimportlib.import_module('whisper_pt')\n", "uses whisper_pt"),
        ("weights_bridge/x.py", "PACKAGES = {'mb': 'whisper_mb.cli'}\n", "uses whisper_mb.cli (layer 3)"),
        ("whisper_tf/x.py", "from whisper_flax.outputs import KVCache\n", "uses another backend, whisper_flax"),
        ("whisper_mb/cli.py", "BACKENDS = ('whisper_pt',)\n", "outside whisper_mb/registry.py"),
    ],
)
def test_the_checker_catches_each_kind_of_upward_import(path, source, expected):
    problems = violations(path, source)
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_checker_resolves_relative_imports():
    assert imported_modules("from . import cli\nfrom ..decoding import ops\n", "whisper_core.transcribe.x", False) == [
        (1, "whisper_core.transcribe"),
        (2, "whisper_core.decoding"),
    ]
    assert imported_modules("from .registry import BACKENDS\n", "whisper_mb", True) == [(1, "whisper_mb.registry")]
    assert not violations("whisper_mb/registry.py", "BACKENDS = ('whisper_pt',)\nfrom weights_bridge import fetch\n")


def test_layers_below_the_application_load_nothing_above_them():
    """``import`` of each lower layer, and of the application layer itself, loads no framework, and the
    bridge does not load the application layer (its moved names resolve lazily)."""
    code = (
        "import sys, whisper_core, whisper_core.transcribe, whisper_core.tiktoken_conversion, weights_bridge\n"
        "above = [m for m in ('whisper_mb', 'whisper_pt', 'whisper_tf', 'whisper_flax') if m in sys.modules]\n"
        "import whisper_mb, whisper_mb.cli\n"
        "frameworks = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules]\n"
        "print(above, frameworks)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[] []"


def test_names_that_moved_to_the_application_layer_still_resolve_with_a_warning():
    import weights_bridge
    import whisper_mb

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert weights_bridge.to_flax is whisper_mb.to_flax
    assert [w.category for w in caught] == [DeprecationWarning]
    with pytest.raises(AttributeError, match="no attribute 'to_tf'"):
        weights_bridge.to_tf  # noqa: B018
