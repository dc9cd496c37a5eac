"""No import cycles in src/uptimewatch: neither between subpackages nor between modules.

Every import statement counts, wherever it stands (inside a function, under ``TYPE_CHECKING``):
a lazy import hides a cycle from the interpreter, not from the reader. ``from . import x`` inside
a package depends on that package's ``__init__`` as well as on ``x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "uptimewatch"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, module: str) -> set[str]:
    """Dotted names a file imports (absolute), each ``from m import n`` as both ``m`` and ``m.n``."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


def module_graph(root: Path, package: str) -> dict[str, set[str]]:
    files = {_module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        deps: set[str] = set()
        for imported in _imported(path, module):
            name = imported
            while name and name not in files:  # `pkg.mod.Class` -> `pkg.mod`
                name = name.rpartition(".")[0]
            if name and name not in (module, package):
                deps.add(name)
        graph[module] = deps
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Modules folded into their first-level unit: ``uptimewatch.config.models`` -> ``uptimewatch.config``."""

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        out.setdefault(unit(module), set()).update(unit(d) for d in deps if unit(d) != unit(module))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member, each sorted."""
    reach: dict[str, set[str]] = {}
    for start, direct in graph.items():
        seen: set[str] = set()
        todo = list(direct)
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        reach[start] = seen
    found: list[list[str]] = []
    placed: set[str] = set()
    for node in sorted(graph):
        if node in placed:
            continue
        component = sorted({node} | {other for other in reach[node] if node in reach.get(other, set())})
        placed.update(component)
        if len(component) > 1:
            found.append(component)
    return found


def test_no_package_level_import_cycle() -> None:
    found = cycles(package_graph(module_graph(SRC, PACKAGE)))
    assert found == [], "package cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_level_import_cycle() -> None:
    found = cycles(module_graph(SRC, PACKAGE))
    assert found == [], "module cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("files", "expected_packages", "expected_modules"),
    [
        (  # a lazy import inside a function still closes the ring
            {
                "a/__init__.py": "",
                "a/x.py": "def f():\n    from ..b.y import g\n",
                "b/__init__.py": "",
                "b/y.py": "from ..a import x\n",
            },
            [["p.a", "p.b"]],
            [["p.a.x", "p.b.y"]],
        ),
        (  # `from . import sibling` depends on the package __init__, which imports the sibling back
            {"a/__init__.py": "from .x import f\n", "a/x.py": "from . import y\n", "a/y.py": ""},
            [],
            [["p.a", "p.a.x"]],
        ),
        (  # one direction only: no cycle
            {
                "a/__init__.py": "",
                "a/x.py": "from ..b import y\n",
                "b/__init__.py": "",
                "b/y.py": "import os\n",
            },
            [],
            [],
        ),
    ],
)
def test_the_walker_finds_planted_cycles(
    tmp_path: Path,
    files: dict[str, str],
    expected_packages: list[list[str]],
    expected_modules: list[list[str]],
) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = module_graph(tmp_path, "p")
    assert cycles(package_graph(graph)) == expected_packages
    assert cycles(graph) == expected_modules
