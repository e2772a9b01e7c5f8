"""The layering of DESIGN.md, pinned from the import graph.

Every ``cti/**/*.py`` is read with :mod:`ast` (imports inside functions and under
``TYPE_CHECKING`` included: a lazy import is still a dependency) and the rules below are
checked on the graph. The rule functions are tested on small made-up graphs too, so a rule
that could never fail would show here.

Rules:
* no import cycle between modules of ``cti``;
* a pure package (the sans-IO core and its parts) imports no I/O library, no
  ``cti.adapters``, ``cti.app``, ``cti.settings``, ``cti.cli``, yaml or the dialplan
  generator, directly or through another ``cti`` module;
* an adapter knows of ``cti.core`` only its messages (``cti.core.messages``);
* only the CLI imports the daemon (``cti.app``).

And, as a check of the checker: importing every module of the pure packages in a fresh
interpreter loads no I/O library.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "cti"

PURE = (
    "cti.core",
    "cti.calls",
    "cti.queue",
    "cti.routing",
    "cti.seats",
    "cti.dispatch110",
    "cti.numberplan",
    "cti.events",
    "cti.workorders",
    "cti.dialplan.contract",
    "cti.dialplan.dialstrings",
    "cti.ivr",
    "cti.kpis",
)
# what a pure module may never reach: I/O libraries (asyncio included: the core never
# awaits), the YAML parser, and the parts of cti that do I/O or read configuration
IO_LIBRARIES = (
    "asyncio",
    "panoramisk",
    "aiomqtt",
    "paho",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "alembic",
    "fastapi",
    "uvicorn",
    "starlette",
    "httpx",
    "yaml",
    "socket",
    "sqlite3",
)
FORBIDDEN_FOR_PURE = (
    "cti.adapters",
    "cti.app",
    "cti.settings",
    "cti.cli",
    "cti.dialplan.generate",
)
# structlog (which the core logs through) loads asyncio and socket itself, so the run-time
# check below looks for the I/O libraries proper; the import-graph rule still bans a pure
# module's own `import asyncio`
LOADED_IO_LIBRARIES = tuple(m for m in IO_LIBRARIES if m not in ("asyncio", "socket"))
CORE_MESSAGES = "cti.core.messages"

Graph = Mapping[str, frozenset[str]]  # module -> everything it imports (cti or not)


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative (banned by ruff, but resolve it anyway)
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod == "__future__":
                continue
            # `from cti.x import y` imports the submodule cti.x.y when there is one
            subs = {f"{mod}.{a.name}" for a in node.names} & modules
            found.update(subs or {mod})
            if subs and mod in modules and len(subs) < len(node.names):
                found.add(mod)
    return frozenset(found)


def build_graph(root: Path = ROOT) -> dict[str, frozenset[str]]:
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {name: _imports(path, name, modules) for name, path in files.items()}


def _in(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def find_cycles(graph: Graph) -> list[list[str]]:
    """Import cycles between cti modules (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def edges(m: str) -> list[str]:
        return sorted(d for d in graph.get(m, ()) if d in graph and d != m)

    def visit(m: str) -> None:  # recursion depth = the longest import chain: small
        nonlocal counter
        index[m] = low[m] = counter
        counter += 1
        stack.append(m)
        on_stack.add(m)
        for d in edges(m):
            if d not in index:
                visit(d)
                low[m] = min(low[m], low[d])
            elif d in on_stack:
                low[m] = min(low[m], index[d])
        if low[m] == index[m]:
            comp = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                comp.append(top)
                if top == m:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return cycles


def _reach(graph: Graph, start: str) -> dict[str, str]:
    """Every module `start` loads (its own imports, theirs, and the packages around
    them), each with the cti module that imports it: {reached: importer}."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        m = todo.pop()
        for d in sorted(graph.get(m, ())):
            for target in [*_parents(d), d]:
                if target not in seen and target != start:
                    seen[target] = m
                    if target in graph:
                        todo.append(target)
    return seen


def purity_violations(graph: Graph) -> list[str]:
    out = []
    for m in sorted(graph):
        if not _in(m, PURE):
            continue
        for reached, via in sorted(_reach(graph, m).items()):
            # a library once, by its top-level name (sqlalchemy, not sqlalchemy.ext too)
            if reached in IO_LIBRARIES or _in(reached, FORBIDDEN_FOR_PURE):
                out.append(f"{m} loads {reached} (imported by {via})")
    return out


def adapter_violations(graph: Graph) -> list[str]:
    return [
        f"{m} imports {d}: an adapter knows only {CORE_MESSAGES}"
        for m in sorted(graph)
        if _in(m, ("cti.adapters",))
        for d in sorted(graph[m])
        if _in(d, ("cti.core",)) and not _in(d, (CORE_MESSAGES,))
    ]


def app_violations(graph: Graph) -> list[str]:
    return [
        f"{m} imports {d}: only cti.cli starts the daemon"
        for m in sorted(graph)
        if not _in(m, ("cti.app", "cti.cli"))
        for d in sorted(graph[m])
        if _in(d, ("cti.app",))
    ]


# ---------------------------------------------------------------- the real tree


@pytest.fixture(scope="module")
def graph() -> dict[str, frozenset[str]]:
    return build_graph()


def test_the_graph_is_read(graph: Graph) -> None:
    # a walker that found nothing would pass every rule below
    assert len(graph) > 60
    assert "cti.core.messages" in graph
    assert "cti.calls.model" in graph["cti.calls.tracker"]


def test_no_import_cycles(graph: Graph) -> None:
    assert find_cycles(graph) == []


def test_pure_packages_load_no_io(graph: Graph) -> None:
    assert purity_violations(graph) == []


def test_adapters_know_only_the_core_messages(graph: Graph) -> None:
    assert adapter_violations(graph) == []


def test_only_the_cli_imports_the_daemon(graph: Graph) -> None:
    assert app_violations(graph) == []


def test_importing_every_pure_module_loads_no_io_library(graph: Graph) -> None:
    pure = sorted(m for m in graph if _in(m, PURE))
    code = (
        "import importlib, sys\n"
        f"for m in {pure!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(','.join(sorted(m for m in {LOADED_IO_LIBRARIES!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"the pure packages pull in: {out}"


# ---------------------------------------------------------------- the rules can fail


def _g(**edges: Iterable[str]) -> dict[str, frozenset[str]]:
    return {k.replace("__", "."): frozenset(v) for k, v in edges.items()}


def test_a_cycle_is_found() -> None:
    g = _g(cti__a=["cti.b"], cti__b=["cti.c"], cti__c=["cti.a"], cti__d=["cti.a"])
    assert find_cycles(g) == [["cti.a", "cti.b", "cti.c"]]


def test_an_io_import_in_the_core_is_found_even_through_another_module() -> None:
    g = _g(
        cti__core__hold=["cti.calls.model"],
        cti__calls__model=["cti.logs"],
        cti__logs=["sqlalchemy.ext"],
    )
    assert purity_violations(g) == [
        "cti.calls.model loads sqlalchemy (imported by cti.logs)",
        "cti.core.hold loads sqlalchemy (imported by cti.logs)",
    ]


def test_settings_or_adapters_in_the_core_are_found() -> None:
    g = _g(cti__routing__policy=["cti.settings"], cti__seats__x=["cti.adapters.ami"])
    found = purity_violations(g)
    assert "cti.routing.policy loads cti.settings (imported by cti.routing.policy)" in found
    assert "cti.seats.x loads cti.adapters.ami (imported by cti.seats.x)" in found


def test_an_adapter_reaching_into_the_core_is_found() -> None:
    g = _g(cti__adapters__mqtt=["cti.core.messages", "cti.core.screen"])
    assert adapter_violations(g) == [
        "cti.adapters.mqtt imports cti.core.screen: an adapter knows only cti.core.messages"
    ]


def test_importing_the_daemon_outside_the_cli_is_found() -> None:
    g = _g(cti__cli=["cti.app"], cti__adapters__http=["cti.app.daemon"], cti__app__x=["cti.app"])
    assert app_violations(g) == [
        "cti.adapters.http imports cti.app.daemon: only cti.cli starts the daemon"
    ]


def test_lazy_imports_count(tmp_path: Path) -> None:
    pkg = tmp_path / "cti"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "hold.py").write_text("def f():\n    import aiomqtt\n    return aiomqtt\n")
    g = build_graph(pkg)
    assert purity_violations(g) == ["cti.core.hold loads aiomqtt (imported by cti.core.hold)"]
