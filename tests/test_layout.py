"""The library's layout: subpackages by concept, imports only downwards, no import circle, short functions."""

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "textrec"
# Lower layers never import higher ones: the foundation, then data, the model, evaluation, training, the
# protocols built on training, and serving on top.
LAYERS = {"config": 0, "files": 0, "data": 1, "model": 2, "evaluate": 3, "train": 4, "protocols": 5, "serve": 6}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """textrec modules imported anywhere in the file (module level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textrec"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from textrec.model import hub`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("textrec"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_library_module_is_in_a_known_layer():
    unknown = [m for m in _modules() if m != "textrec" and _layer(m) is None]
    assert unknown == []


def test_no_library_module_imports_a_higher_layer():
    upward = [
        f"{a} -> {b}"
        for a, deps in _graph().items()
        for b in deps
        if a != "textrec" and _layer(b) is not None and _layer(b) > _layer(a)
    ]
    assert upward == []


def test_no_import_circle():
    graph = {a: {b for b in deps if b != "textrec" and not a.startswith(b + ".")} for a, deps in _graph().items()}
    graph = {a: {b for b in deps if graph.get(b) is not None} for a, deps in graph.items() if a != "textrec"}
    # package __init__ files re-export their submodules: an edge into a package means an edge into its __init__
    seen, on_path, circles = set(), [], []

    def visit(node):
        if node in on_path:
            circles.append(on_path[on_path.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        on_path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        on_path.pop()

    for node in sorted(graph):
        visit(node)
    assert circles == []


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_library_functions_are_under_80_lines(path):
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80
    ]
    assert long == []


def test_the_subpackages_group_the_library_by_concept():
    packages = sorted(p.name for p in LIBRARY.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["config", "data", "evaluate", "model", "protocols", "serve", "train"]
    flat = sorted(p.stem for p in LIBRARY.glob("*.py"))
    assert flat == ["__init__", "files"]


def test_every_subpackage_ships_in_the_wheel():
    import tomllib

    listed = set(tomllib.loads((LIBRARY.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {f"textrec.{p.name}" for p in LIBRARY.iterdir() if (p / "__init__.py").is_file()}
    assert packages - listed == set()


def test_no_library_module_is_over_300_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > 300}
    assert long == {}
