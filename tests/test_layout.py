"""The house rules of the layout, checked on the source: no import cycles, the simulator and the
product apart, panoramisk only inside the transport."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PRODUCT = REPO / "callback_dialer"
SIMULATOR = REPO / "sim" / "simpbx"
# What the simulator may use of the product: the wire codec and Asterisk's vocabulary.
SIM_MAY_IMPORT = {"callback_dialer.ami.frames", "callback_dialer.ami.asterisk"}


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, function-level imports included."""
    me = _module(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph(root: Path) -> dict[str, set[str]]:
    modules = {_module(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path, root) if t in modules and t != name}
        # A package's __init__ re-exporting its own children is not a cycle of design.
        graph[name] = {
            t
            for t in targets
            if not (path.name == "__init__.py" and t.startswith(name + "."))
            and not (modules[t].name == "__init__.py" and name.startswith(t + "."))
        }
    return graph


def _first_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_product_has_no_import_cycle() -> None:
    assert _first_cycle(_graph(PRODUCT)) == []


def test_the_simulator_has_no_import_cycle() -> None:
    assert _first_cycle(_graph(SIMULATOR)) == []


def test_the_simulator_uses_only_the_codec_and_the_vocabulary_of_the_product() -> None:
    used = {
        (path.name, name)
        for path in SIMULATOR.rglob("*.py")
        for name in _imports(path, SIMULATOR)
        if name.split(".")[0] == "callback_dialer"
        and name not in SIM_MAY_IMPORT
        and name.rpartition(".")[0] not in SIM_MAY_IMPORT
        and name not in ("callback_dialer", "callback_dialer.ami")
    }
    assert used == set()


def test_only_the_demo_glue_imports_the_simulator() -> None:
    importers = {
        path.relative_to(PRODUCT).as_posix()
        for path in PRODUCT.rglob("*.py")
        if any(name.split(".")[0] == "simpbx" for name in _imports(path, PRODUCT))
    }
    assert importers <= {"demo.py", "cli.py"}
    # cli.py only to say, in one line, that the demo needs the simulator installed.
    cli = (PRODUCT / "cli.py").read_text("utf-8")
    assert cli.count("from simpbx") == 1


def test_panoramisk_stays_inside_the_transport() -> None:
    importers = {
        path.relative_to(REPO).as_posix()
        for root in (PRODUCT, SIMULATOR)
        for path in root.rglob("*.py")
        if any(name.split(".")[0] == "panoramisk" for name in _imports(path, root))
    }
    assert importers
    assert all(name.startswith("callback_dialer/ami/") for name in importers)
