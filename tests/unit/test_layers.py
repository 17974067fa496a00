"""The layer contract, checked on the source (every import, module level or inside a function):

- the library core (models, media, index) never imports grpc, the generated stubs, serving,
  services, applications or training;
- services never import applications or training;
- nothing outside the applications imports them;
- no import cycles among modules (module-level imports)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOTS = {
    "synesthesia": ROOT / "shared" / "synesthesia",
    "synesthesia.services": ROOT / "services",
}

CORE = ("synesthesia.models", "synesthesia.media", "synesthesia.index")
RULES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    # (importers, what they must never import)
    (
        CORE,
        (
            "grpc",
            "grpc_health",
            "grpc_reflection",
            "synesthesia.v1",
            "synesthesia.serving",
            "synesthesia.services",
            "synesthesia.apps",
            "synesthesia.train",
        ),
    ),
    (("synesthesia.services",), ("synesthesia.apps", "synesthesia.train")),
    (
        (
            "synesthesia.models",
            "synesthesia.media",
            "synesthesia.index",
            "synesthesia.serving",
            "synesthesia.services",
            "synesthesia.client",
            "synesthesia.protoconv",
            "synesthesia.errors",
            "synesthesia.modality",
        ),
        ("synesthesia.apps",),
    ),
]


def module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for prefix, folder in PACKAGE_ROOTS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts]) if parts else prefix
            if "_pb2" in name:
                continue
            out[name] = path
    return out


def imports_of(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, all imports) of one module, as absolute dotted names."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top: set[str] = set()
    every: set[str] = set()

    def add(target: str, is_top: bool) -> None:
        every.add(target)
        if is_top:
            top.add(target)

    def visit(node: ast.AST, is_top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = is_top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.If
            )
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, is_top)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[: len(up) - (child.level - 1)]
                    base = ".".join([*up, base] if base else up)
                add(base, is_top)
                for alias in child.names:
                    add(f"{base}.{alias.name}", is_top)
            visit(child, inner if not isinstance(child, ast.If) else is_top)

    visit(tree, True)
    return top, every


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for importers, banned in RULES:
        for module, targets in sorted(graph.items()):
            if not _under(module, importers):
                continue
            for target in sorted(targets):
                if _under(target, banned):
                    out.append(f"{module} imports {target}")
    return sorted(set(out))


def cycles(graph: dict[str, set[str]], modules: set[str]) -> list[list[str]]:
    """Import cycles among ``modules`` (a target 'a.b.C' counts as module 'a.b' if that is one)."""
    edges = {
        m: {t if t in modules else t.rpartition(".")[0] for t in graph.get(m, ())} & modules
        for m in modules
    }
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if n == m:
                continue
            if state.get(n) == 1:
                found.append([*stack[stack.index(n) :], n])
            elif n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            dfs(m)
    return found


def _graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    top, every = {}, {}
    for name, path in module_files().items():
        top[name], every[name] = imports_of(name, path)
    return top, every


def test_layers_import_only_what_they_may() -> None:
    _, every = _graphs()
    assert violations(every) == []


def test_no_import_cycles() -> None:
    top, _ = _graphs()
    # a package's __init__ importing its own submodules is not a cycle of layers
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in top.items()}
    assert cycles(graph, set(graph)) == []


def test_the_checks_catch_a_violation_and_a_cycle() -> None:
    graph = {
        "synesthesia.index.store": {"grpc", "synesthesia.apps.cli.main"},
        "synesthesia.services.search.flow": {"synesthesia.train.loop"},
        "synesthesia.a": {"synesthesia.b.f"},
        "synesthesia.b": {"synesthesia.a"},
    }
    assert violations(graph) == [
        "synesthesia.index.store imports grpc",
        "synesthesia.index.store imports synesthesia.apps.cli.main",
        "synesthesia.services.search.flow imports synesthesia.train.loop",
    ]
    assert cycles(graph, set(graph)) == [["synesthesia.a", "synesthesia.b", "synesthesia.a"]]


def test_every_module_is_seen() -> None:
    names = set(module_files())
    assert {"synesthesia.index.store", "synesthesia.services.search.flow"} <= names
