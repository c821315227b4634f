"""The layout's rules, checked on the source with ``ast`` (nothing here imports the code it checks).

* No module-level import cycle among ``adw_modules`` modules.  A package's ``__init__`` is a
  module; importing ``a.b.c`` also imports ``a.b`` and ``a``; ``from pkg import name`` where
  ``name`` is a submodule imports that submodule.  Imports inside a function or under
  ``if TYPE_CHECKING:`` do not run at import time and are not counted.
* ``adw_modules`` never imports ``adws`` (anywhere, functions included).
* No ``adw_modules`` module imports another module's ``_private`` name.
* At most 12 ``.py`` files directly under ``adw_modules/``.
* No module over 700 lines and no function over 100 lines in ``adw_modules``, ``adws``, ``tools``
  (``migrations/versions`` excepted: a revision is what it is).
* Every package under ``adw_modules`` has an ``__init__.py`` whose docstring says what it owns
  (``Owns:``) and what it may import (``May import:``).
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.paths import REPO

LIBRARY = REPO / "adw_modules"
SIZE_CHECKED = [LIBRARY, REPO / "adws", REPO / "tools"]
SIZE_EXEMPT = [LIBRARY / "queue" / "migrations" / "versions"]
MAX_TOP_LEVEL_FILES = 12
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 100


@dataclass(frozen=True)
class Module:
    name: str  # dotted, a package under its own name (``adw_modules.queue`` for queue/__init__.py)
    path: Path
    is_package: bool
    tree: ast.Module

    @property
    def where(self) -> str:
        return str(self.path.relative_to(REPO))

    @property
    def ancestors(self) -> set[str]:
        """The packages Python has already started importing before this module's code runs."""
        parts = self.name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}


@functools.cache
def library() -> dict[str, Module]:
    modules = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, is_package, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return modules


# ---------------------------------------------------------------------------- import graph
def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (class bodies do, functions do not)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(child, ast.If) and is_type_checking(child.test):
            for stmt in child.orelse:
                yield from module_level_imports(ast.Module(body=[stmt], type_ignores=[]))
        elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
            yield from module_level_imports(child)


def absolute_base(module: Module, stmt: ast.ImportFrom) -> str:
    """The module a from-import names, with a relative import resolved against ``module``."""
    if stmt.level == 0:
        return stmt.module or ""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for _ in range(stmt.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{stmt.module}" if stmt.module else package


def with_ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_by(module: Module, stmt: ast.Import | ast.ImportFrom) -> set[str]:
    """The library modules one import statement runs.

    The importer's own ancestor packages are left out when only implied by a dotted path:
    Python starts them before the importer, so e.g. ``store/__init__`` importing
    ``store.attempts``, which imports ``store.base``, is not a cycle through ``store``.
    Importing a *name* from an ancestor package (``from adw_modules.queue.store import Store``
    inside the store) still counts: that does depend on the ancestor having run.
    """
    modules = library()
    implied: set[str] = set()
    explicit: set[str] = set()
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            *parents, leaf = with_ancestors(alias.name)
            implied.update(parents)
            explicit.add(leaf)
    else:
        base = absolute_base(module, stmt)
        *parents, leaf = with_ancestors(base)
        implied.update(parents)
        submodules = {f"{base}.{alias.name}" for alias in stmt.names} & modules.keys()
        explicit.update(submodules)
        if len(submodules) < len(stmt.names):
            explicit.add(leaf)  # at least one name is an attribute of ``base`` itself
        else:
            implied.add(leaf)
    found = explicit | (implied - module.ancestors)
    return (found & modules.keys()) - {module.name}


@functools.cache
def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports at module level: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for module in library().values():
        edges = graph.setdefault(module.name, {})
        for stmt in module_level_imports(module.tree):
            for target in imported_by(module, stmt):
                edges.setdefault(target, stmt.lineno)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): every component with more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in within:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")


def describe_cycle(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    modules = library()
    steps = [f"    {a} ({modules[a].where}:{graph[a][b]}) imports {b}" for a, b in itertools.pairwise(cycle)]
    return "\n".join([" -> ".join(cycle), *steps])


def test_no_module_level_import_cycle() -> None:
    graph = import_graph()
    reports = []
    for component in strongly_connected(graph):
        members = set(component)
        reports.append(f"cycle among {len(component)} modules: {', '.join(component)}")
        for start in component:  # one shortest cycle through each member shows every edge that matters
            cycle = shortest_cycle(graph, start, members)
            text = describe_cycle(graph, cycle)
            if text not in reports:
                reports.append(text)
    assert not reports, "module-level import cycles in adw_modules:\n" + "\n".join(reports)


def test_cycle_finder_on_a_known_graph() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2, "a": 3}, "c": {"a": 4}, "d": {"a": 5}, "e": {"f": 6}, "f": {"e": 7}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e", "f"]]
    assert shortest_cycle(graph, "a", {"a", "b", "c"}) == ["a", "b", "a"]
    assert shortest_cycle(graph, "c", {"a", "b", "c"}) == ["c", "a", "b", "c"]


def test_the_graph_sees_what_python_runs() -> None:
    """Guards the checker itself: the implied and the named edges it must find."""
    graph = import_graph()
    # ``from adw_modules.queue.store.base import StoreBase``: the module, and the store's
    # __init__ only from outside the store.
    assert "adw_modules.queue.store.base" in graph["adw_modules.queue.store.attempts"]
    assert "adw_modules.queue.store" not in graph["adw_modules.queue.store.attempts"]
    assert "adw_modules.queue.store" in graph["adw_modules.coordinator"]
    # a package's __init__ importing its submodules
    assert "adw_modules.queue.store.attempts" in graph["adw_modules.queue.store"]
    # routing/__init__ imports the router inside a function only
    assert "adw_modules.routing.router" not in graph["adw_modules.routing"]


# ---------------------------------------------------------------------------- what may be imported
def imports_anywhere(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) for every import statement and literal ``import_module`` / ``__import__`` call."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def test_adw_modules_never_imports_adws() -> None:
    found = [
        f"{module.where}:{line} imports {name}"
        for module in library().values()
        for line, name in imports_anywhere(module.tree)
        if name == "adws" or name.startswith("adws.")
    ]
    assert not found, "adw_modules must not import the CLI (adws):\n" + "\n".join(found)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names_used(module: Module) -> Iterator[str]:
    """``from m import _name`` anywhere, and ``m._name`` on a library module ``m`` bound by an import."""
    library_modules: dict[str, str] = {}  # local name -> library module it is bound to
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            base = absolute_base(module, node)
            for alias in node.names:
                if is_private(alias.name):
                    yield f"{module.where}:{node.lineno} imports {alias.name} from {base}"
                if f"{base}.{alias.name}" in library():
                    library_modules[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in library():
                    library_modules[alias.asname] = alias.name
    for node in ast.walk(module.tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in library_modules
            and is_private(node.attr)
        ):
            yield f"{module.where}:{node.lineno} uses {node.attr} of {library_modules[node.value.id]}"


def test_no_private_name_imported_from_another_module() -> None:
    found = [line for module in library().values() for line in private_names_used(module)]
    assert not found, (
        "private names imported across modules (make the name public where it is defined, "
        "or keep its use inside that module):\n" + "\n".join(found)
    )


# ---------------------------------------------------------------------------- sizes
def test_few_modules_directly_under_adw_modules() -> None:
    top_level = sorted(p.name for p in LIBRARY.glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_FILES, (
        f"{len(top_level)} .py files directly under adw_modules/ (at most {MAX_TOP_LEVEL_FILES}): "
        f"{', '.join(top_level)}; put the new one in the stage package it belongs to"
    )


def size_checked_files() -> list[Path]:
    return sorted(
        path
        for root in SIZE_CHECKED
        for path in root.rglob("*.py")
        if not any(path.is_relative_to(exempt) for exempt in SIZE_EXEMPT)
    )


def functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) for every function and method, nested ones included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{child.name}", child
            yield from functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from functions(child, f"{prefix}{child.name}.")
        else:
            yield from functions(child, prefix)


def test_no_module_over_700_lines() -> None:
    found = []
    for path in size_checked_files():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not found, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(found)


def test_no_function_over_100_lines() -> None:
    found = []
    for path in size_checked_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name, node in functions(tree):
            # From ``def`` to the last line of the body (decorators not counted).
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}: {length} lines")
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


# ---------------------------------------------------------------------------- package docstrings
def package_dirs() -> list[Path]:
    return sorted(d for d in LIBRARY.rglob("*") if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")))


def test_every_package_says_what_it_owns_and_may_import() -> None:
    found = []
    for directory in package_dirs():
        where = directory.relative_to(REPO)
        init = directory / "__init__.py"
        if not init.exists():
            found.append(f"{where}: no __init__.py")
            continue
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        missing = [marker for marker in ("Owns:", "May import:") if marker not in docstring]
        if missing:
            found.append(f"{where}/__init__.py: docstring lacks {' and '.join(repr(m) for m in missing)}")
    assert not found, "package docstrings must say what the package owns and may import:\n" + "\n".join(found)


STAGES = ("config", "routing", "workers", "queue", "sources", "workspace", "ops")


def allowed_imports(stage: str) -> list[str]:
    """The ``module`` names a stage's docstring lists after "May import:" (before "Never")."""
    docstring = ast.get_docstring(ast.parse((LIBRARY / stage / "__init__.py").read_text(encoding="utf-8"))) or ""
    text = docstring.split("May import:", 1)[1]
    text = text.split("Never", 1)[0].split("Nothing else", 1)[0]
    names = text.split("``")[1::2]  # what stands between double backquotes
    return [n for n in names if n.replace(".", "").replace("_", "").isalnum()]


def test_each_stage_imports_only_what_its_docstring_allows() -> None:
    """The "May import:" line of each stage package is the rule, not a wish."""
    found = []
    for stage in STAGES:
        allowed = [f"adw_modules.{name}" for name in allowed_imports(stage)]
        for path in sorted((LIBRARY / stage).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                    continue
                target = node.module
                if not target.startswith("adw_modules.") or target.startswith(f"adw_modules.{stage}"):
                    continue
                if not any(target == a or target.startswith(a + ".") for a in allowed):
                    found.append(
                        f"{path.relative_to(REPO)}:{node.lineno}: {stage} imports {target} (allowed: {allowed})"
                    )
    assert not found, "\n".join(found)


def test_the_allow_lists_are_read() -> None:
    assert allowed_imports("workspace") == ["config", "WorkspaceConfig", "ops.redact"]
    assert "queue.tasks" in allowed_imports("workers") and "sources" not in allowed_imports("workers")
