"""The shape a newcomer can read: small functions, no upward imports from engines/ and store/ into the UI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_PACKAGES = ["engines", "ui", "store", "databrowser", "serving", "compare", "finetune"]
TOP_MODULES = ["app.py", "config.py", "services.py", "errors.py", "identity.py"]
SCRIPTS = ["scripts"]  # benchmarks and training are read (and their figures trusted) as often as the app
MAX_FUNCTION_LINES = 60
NO_GRADIO = ["engines", "store", "databrowser", "serving", "compare", "finetune", "errors.py", "identity.py",
             "services.py", "config.py"]


def _sources(names: list[str]) -> list[Path]:
    paths = []
    for name in names:
        target = ROOT / name
        paths += sorted(target.rglob("*.py")) if target.is_dir() else [target] if target.exists() else []
    return paths


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_no_function_in_the_app_or_its_scripts_is_longer_than_60_lines():
    long = []
    for path in _sources(APP_PACKAGES + TOP_MODULES + SCRIPTS):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these:\n" + "\n".join(long)


def test_models_stores_and_the_api_never_import_gradio_or_the_ui():
    wrong = [f"{path.relative_to(ROOT)} imports {sorted(bad)}" for path in _sources(NO_GRADIO)
             if (bad := _imports(ast.parse(path.read_text())) & {"gradio", "ui", "app"})]
    assert not wrong, "\n".join(wrong)
