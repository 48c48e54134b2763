"""The shape of the code, kept from drifting: which package may import which, no import
circles, short functions, a readable folder list, and docs that name every folder."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("receiver", "store", "submitter")
MAX_LINES = 60
DDL = {"store.migrations", "store.pg_schema"}  # schema statements read best whole


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, at any depth in the file (function-level included)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import module` imports that module
                child = f"{target}.{alias.name}"
                found.add(child if child in MODULES else target)
    return found


def _ours(target: str) -> str | None:
    """The module of ours `target` names (a name inside a module counts as the module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


GRAPH = {
    name: {m for t in _imports(name, path) if (m := _ours(t)) and m != name}
    for name, path in MODULES.items()
}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_between_our_modules():
    assert _cycles() == []


@pytest.mark.parametrize(
    "prefix, forbidden",
    [
        ("store", ("flask", "werkzeug", "receiver", "submitter")),
        ("receiver.providers", ("flask", "werkzeug", "store", "submitter")),
        ("submitter", ("flask", "werkzeug", "receiver")),
    ],
)
def test_dependencies_point_one_way(prefix, forbidden):
    wrong = {
        (name, target)
        for name, path in MODULES.items()
        if name == prefix or name.startswith(prefix + ".")
        for target in _imports(name, path)
        if target.split(".")[0] in forbidden
        or (target.startswith("receiver") and "receiver" in forbidden)
    }
    assert not wrong


def test_no_function_is_longer_than_a_screen():
    long = []
    for name, path in MODULES.items():
        if name in DDL:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long


def test_the_app_package_reads_as_its_folders():
    top = [p.stem for p in (ROOT / "receiver").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 10, sorted(top)
    folders = {p.name for p in (ROOT / "receiver").iterdir() if (p / "__init__.py").exists()}
    assert {"inbound", "providers", "background", "ops", "serving"} <= folders


def test_the_docs_name_every_folder_of_code():
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    readme = (ROOT / "README.md").read_text()
    folders = {
        path.parent.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("__init__.py")
    }
    for folder in sorted(folders):
        assert f"`{folder}/`" in architecture, folder
        assert f"`{folder}/`" in readme, folder
