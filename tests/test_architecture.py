"""The package's shape, enforced: import layers (import-linter), no cycles, no facade imports, small modules."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import tfcompress

PACKAGE = Path(tfcompress.__file__).resolve().parent
REPO = PACKAGE.parent
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _lint_imports(cwd: Path, env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if env_path is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(env_path)}
    exe = shutil.which("lint-imports") or "lint-imports"
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_import_layers_hold():
    proc = _lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def test_a_forbidden_import_breaks_the_contracts(tmp_path):
    """The contracts bite: export importing techniques (a layer above it) fails lint-imports."""
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE, copy / "tfcompress", ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.yaml"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    sidecar = copy / "tfcompress" / "export" / "sidecar.py"
    sidecar.write_text(sidecar.read_text() + "\n\ndef _bad():\n    from tfcompress.techniques import TECHNIQUES  # noqa\n")
    proc = _lint_imports(copy, env_path=copy)
    assert proc.returncode != 0
    assert "tfcompress.export.sidecar" in proc.stdout and "BROKEN" in proc.stdout


def _direct_imports() -> dict[str, set[str]]:
    graph = grimp.build_graph("tfcompress", cache_dir=None)
    return {m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("tfcompress")} for m in graph.modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_anywhere():
    """Function-level imports count too: a cycle is a cycle even when Python tolerates it."""
    edges = _direct_imports()
    edges.pop("tfcompress", None)  # the facade imports lazily, by name, and nothing may import it (next test)
    assert _cycles({m: {i for i in deps if i != "tfcompress"} for m, deps in edges.items()}) == []


def test_inner_modules_never_import_the_facade():
    bad = []
    for path in _modules():
        if path == PACKAGE / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "tfcompress" for a in node.names):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == "tfcompress" and node.level == 0:
                for alias in node.names:
                    if not (PACKAGE / alias.name).is_dir() and not (PACKAGE / f"{alias.name}.py").exists():
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno} ({alias.name})")
    assert not bad, f"import the defining module instead of the facade: {bad}"


def test_only_the_converter_module_uses_the_tflite_converter():
    users = [str(p.relative_to(REPO)) for p in _modules() if re.search(r"TFLiteConverter\.from_|lite\.TFLiteConverter", p.read_text())]
    assert users == ["tfcompress/export/converter.py"], users


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_small_or_say_why(path):
    lines = path.read_text().count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "kept whole" in doc.lower(), f"{path.name}: {lines} lines; split it or say in its docstring why it is kept whole"


def test_grimp_sees_the_package():
    assert sys.modules.get("grimp") is not None and len(_direct_imports()) > 50


def test_facade_names_are_not_shadowed_by_submodules():
    """Importing a submodule binds it on the package: no public name may be a submodule's name."""
    import importlib
    import types

    for path in _modules():
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        if name.count(".") == 1:
            importlib.import_module(name)
    shadowed = [n for n in tfcompress.__all__ if isinstance(getattr(tfcompress, n), types.ModuleType)]
    assert not shadowed, f"tfcompress.{shadowed} is a module, not the public function / class"
