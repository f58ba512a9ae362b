"""The service's code keeps the shape the README promises: short functions, simple branches,
imports in one direction, no cycles, and nothing of the sandboxes inside the service.

"The service" is ``magsync`` without ``magsync/sandbox`` (the stand-ins and the demo) and the
alembic migrations.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "magsync"
MAX_FUNCTION_LINES = 50


def package_files():
    """Every module of the package, the sandboxes included, but not the alembic migrations."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" not in path.relative_to(PACKAGE).parts:
            yield path


def service_files():
    for path in package_files():
        if path.relative_to(PACKAGE).parts[0] != "sandbox":
            yield path


def module_name(path):
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path, modules=()):
    """Every ``magsync...`` module ``path`` imports, at the top or inside a function.

    ``from package import module`` counts as an import of the module (of ``modules``), not of
    the package's ``__init__``.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            children = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules = children & set(modules)
            found.update(submodules)
            if submodules != children:
                found.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # lazily loaded commands name their module as "module:attribute"
            module = node.value.partition(":")[0]
            if module.startswith("magsync.") and ":" in node.value:
                found.add(module)
    return {name for name in found if name.split(".")[0] == "magsync"}


def import_graph(files=service_files):
    modules = {module_name(p): p for p in files()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path, modules):
            # "from magsync.x import y" names y, which may be a module or an attribute
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def test_no_service_function_is_longer_than_50_lines():
    long = []
    for path in service_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length})")
    assert long == []


def test_service_complexity_is_at_most_10():
    """ruff's mccabe rule (C901) with the limit in ruff.toml."""
    pytest.importorskip("ruff")
    files = [str(p) for p in service_files()]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "C901", "--no-cache", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_never_imports_the_sandboxes():
    offenders = [
        f"{name} -> {target}"
        for name, path in ((module_name(p), p) for p in service_files())
        for target in imported_modules(path)
        if target.startswith("magsync.sandbox") and not name.startswith("magsync.cli")
    ]
    assert offenders == []


# What each part of the service may import, in the order an order travels. A part imports only
# parts to its right, and the shared modules (settings, errors, logs, alerts, redaction).
LAYERS = {
    "magsync.web": {"magsync.messaging", "magsync.magento"},
    "magsync.messaging": set(),
    "magsync.worker": {"magsync.messaging", "magsync.sync", "magsync.salesforce", "magsync.ledger"},
    "magsync.sync": {"magsync.magento", "magsync.mapping", "magsync.salesforce", "magsync.ledger"},
    "magsync.magento": set(),
    "magsync.mapping": {"magsync.magento"},  # Magento's field types (ids, amounts, times)
    "magsync.salesforce": set(),
    "magsync.ledger": set(),
}


def part_of(module):
    return next((part for part in LAYERS if module == part or module.startswith(part + ".")), None)


def test_parts_import_in_one_direction():
    wrong = []
    for name, targets in import_graph().items():
        part = part_of(name)
        if part is None:
            continue
        for target in targets:
            other = part_of(target)
            if other is not None and other != part and other not in LAYERS[part]:
                wrong.append(f"{name} -> {target}")
    assert sorted(wrong) == []


def test_no_import_cycles():
    """Anywhere in the package: the service and the sandboxes."""
    graph = import_graph(package_files)
    # Package __init__ modules re-export their children; an import of the package is an edge to
    # its __init__ only, so cycles through re-exports are real cycles too.
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []
