"""The package's layers hold for every import: none loops, none goes up a layer, and every module has a layer.

Read from the code with ``ast`` (nothing is run): imports at the top, inside functions and under TYPE_CHECKING all
count, and so does an import by string (a string that names one of the package's modules, as ``importlib`` and a
lazy table such as ``ray_runtime.__init__._LAZY`` use). The layers are the README's ("Layout"), lowest first; a
package's face (its ``__init__``) sits just above what it re-exports, so no module inside a package may import its
own face.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ray_runtime"

# (module or prefix, layer); the longest match wins. "ray_runtime._" is every private ground-floor module.
LAYERS: list[tuple[str, float]] = [
    ("ray_runtime.config", 1),
    ("ray_runtime.errors", 1),
    ("ray_runtime._", 1),  # _ids, _twins, _unset, _net, _version, _parts, _local_state, _placement
    ("ray_runtime.checks", 2),
    ("ray_runtime.keys", 2),
    ("ray_runtime._ray", 2),
    ("ray_runtime.models.", 2),
    ("ray_runtime.models", 2.5),  # the face of models
    ("ray_runtime.client.", 2.6),  # stands apart on 1-2: httpx and pydantic only
    ("ray_runtime.client", 2.7),
    ("ray_runtime.coordinator.", 3),
    ("ray_runtime.coordinator", 3.5),
    ("ray_runtime.plugins.", 4),
    ("ray_runtime.plugins", 4.5),
    ("ray_runtime.sessions.", 5),
    ("ray_runtime.sessions", 5.5),
    ("ray_runtime.local", 6),
    ("ray_runtime.api.", 7),
    ("ray_runtime.api", 7.5),
    ("ray_runtime.cli.", 8),
    ("ray_runtime.cli", 8.5),
    ("ray_runtime.__main__", 9),
    ("ray_runtime", 9),  # the package's face, with its lazy table
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer(module: str) -> float | None:
    best: tuple[str, float] | None = None
    for prefix, level in LAYERS:
        exact = prefix == module
        below = prefix.endswith((".", "_")) and module.startswith(prefix)
        if (exact or below) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, level)
    return best[1] if best else None


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of the package ``module`` imports, by statement or by string."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    by_string = {  # importlib.import_module("..."), and a lazy table's values ({"name": "module"})
        value.value
        for node in ast.walk(tree)
        for value in (
            node.args[:1]
            if isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            else node.values
            if isinstance(node, ast.Dict)
            else []
        )
        if isinstance(value, ast.Constant) and isinstance(value.value, str)
    }
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and node.value in by_string and node.value in known:
            names = [node.value]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name not in (module, "ray_runtime"):  # the root's face: every submodule's parent anyway
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports(module, path, known) for module, path in known.items()}


def loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    assert [m for m in sorted(modules()) if layer(m) is None] == []


def test_no_import_loops():
    assert loops(graph()) == []


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if (layer(target) or 0) > (layer(module) or 0)
    ]
    assert upward == []


def test_the_client_imports_nothing_that_needs_ray_or_fastapi():
    for module, targets in graph().items():
        if module.startswith("ray_runtime.client"):
            assert all((layer(t) or 9) <= 2.7 for t in targets), (module, targets)
            source = modules()[module].read_text()
            assert "import ray" not in source and "fastapi" not in source, module


def test_the_checker_sees_lazy_typing_and_string_imports(tmp_path):
    """The walk itself: an import in a function, under TYPE_CHECKING, and by string are all edges."""
    (tmp_path / "ray_runtime" / "low").mkdir(parents=True)
    (tmp_path / "ray_runtime" / "__init__.py").write_text("")
    (tmp_path / "ray_runtime" / "low" / "__init__.py").write_text("")
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ray_runtime.a import x\n"
        "def f():\n    import ray_runtime.b\n"
        "TABLE = {'y': 'ray_runtime.c'}\n"
        "import importlib\nimportlib.import_module('ray_runtime.d')\n"
        "import logging\nlogging.getLogger('ray_runtime.e')\n"
    )
    (tmp_path / "ray_runtime" / "low" / "m.py").write_text(code)
    known = {name: tmp_path / "x.py" for name in ("ray_runtime.a", "ray_runtime.b", "ray_runtime.c", "ray_runtime.d")}
    known["ray_runtime.e"] = tmp_path / "x.py"  # a logger's name is not an import
    known["ray_runtime.low.m"] = tmp_path / "ray_runtime" / "low" / "m.py"
    assert imports("ray_runtime.low.m", known["ray_runtime.low.m"], known) == {
        "ray_runtime.a",
        "ray_runtime.b",
        "ray_runtime.c",
        "ray_runtime.d",
    }
