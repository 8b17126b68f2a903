"""The package's layering, checked on the source: no import loop anywhere, the agent knows
nothing of the rooms above it, and the HTTP API, the admin socket and the CLI reach the node
only through the ``Agent`` facade (``corrosion_py.agent``) or the runner.

Imports are read with ``ast`` from every file of ``corrosion_py``: module level, inside
functions (lazy imports are dependencies too) and under ``TYPE_CHECKING``. Each rule is also
shown to catch what it forbids, on a made-up source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "corrosion_py"
HANG = 120.0  # seconds: only catches hangs


@attrs.frozen
class Import:
    importer: str
    module: str
    """The imported module (for ``from M import name``: ``M.name`` when that is a module)."""
    line: int
    type_only: bool
    """Under ``if TYPE_CHECKING:``: never executed."""


def _module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, source: str, is_package: bool = False) -> list[Import]:
    """Every import of ``corrosion_py`` modules in ``source`` (the module ``name``)."""
    out: list[Import] = []

    def add(module: str, line: int, type_only: bool) -> None:
        if module == "corrosion_py" or module.startswith("corrosion_py."):
            out.append(Import(name, module, line, type_only))

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.body:
                    visit_one(sub, True)
                for sub in child.orelse:
                    visit_one(sub, type_only)
            else:
                visit_one(child, type_only)

    def visit_one(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, type_only)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, *([node.module] if node.module else [])])
            add(base, node.lineno, type_only)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    add(f"{base}.{alias.name}", node.lineno, type_only)
        else:
            visit(node, type_only)

    visit(ast.parse(source), False)
    return out


def all_imports() -> list[Import]:
    return [
        imp
        for name, path in MODULES.items()
        for imp in imports_of(name, path.read_text(), path.name == "__init__.py")
    ]


def _within(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


# -- no import loop ------------------------------------------------------------------------------


def import_cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """The import loops among ``modules`` (strongly connected components of more than one
    module), counting imports that run: at module level or inside functions. Importing
    ``a.b.c`` imports the packages ``a`` and ``a.b`` first, except those the importer is
    inside of (they are already being imported)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.type_only:
            continue
        parts = imp.module.split(".")
        for i in range(1, len(parts) + 1):
            target = ".".join(parts[:i])
            inside = imp.importer.startswith(target + ".")
            if target in modules and target != imp.importer and not inside:
                edges[imp.importer].add(target)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    cycles.append(sorted(component))
    return cycles


def test_no_module_of_the_package_is_in_an_import_loop() -> None:
    assert import_cycles(all_imports(), set(MODULES)) == []


def test_the_loop_finder_finds_a_loop_through_a_lazy_import_but_not_a_type_only_one() -> None:
    sources = {
        "corrosion_py.a": "from corrosion_py.b import x\n",
        "corrosion_py.b": "def f():\n    from corrosion_py.c import y\n",
        "corrosion_py.c": "import corrosion_py.a\n",
        "corrosion_py.d": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from corrosion_py.a import z\n",
    }
    imports = [imp for name, src in sources.items() for imp in imports_of(name, src)]
    modules = set(sources) | {"corrosion_py"}
    assert import_cycles(imports, modules) == [
        ["corrosion_py.a", "corrosion_py.b", "corrosion_py.c"]
    ]
    sources["corrosion_py.c"] = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n" + (
        "    import corrosion_py.a\n"
    )
    imports = [imp for name, src in sources.items() for imp in imports_of(name, src)]
    assert import_cycles(imports, modules) == []


def _top_level_names() -> list[str]:
    """``corrosion_py``, each of its packages and top-level modules (``__main__`` runs a
    command when imported, so it is left out)."""
    return sorted(
        name for name in MODULES if name.count(".") <= 1 and not name.endswith("__main__")
    )


@pytest.mark.parametrize("name", _top_level_names())
def test_each_package_imports_on_its_own_in_a_fresh_interpreter(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=HANG
    )
    assert done.returncode == 0, done.stderr


# -- the agent knows nothing above it ------------------------------------------------------------

ABOVE_THE_AGENT = (
    "corrosion_py.api",
    "corrosion_py.cli",
    "corrosion_py.admin",
    "corrosion_py.runner",
)


def test_the_agent_imports_nothing_of_the_api_cli_admin_socket_or_runner() -> None:
    wrong = [
        imp
        for imp in all_imports()
        if _within(imp.importer, "corrosion_py.agent")
        and any(_within(imp.module, room) for room in ABOVE_THE_AGENT)
    ]
    assert wrong == []


def test_importing_the_agent_loads_no_api_cli_admin_socket_or_runner() -> None:
    rooms = ", ".join(repr(r) for r in ABOVE_THE_AGENT)
    script = (
        "import sys\nimport corrosion_py.agent\n"
        f"rooms = ({rooms})\n"
        "loaded = sorted(m for m in sys.modules if any(m == r or m.startswith(r + '.') "
        "for r in rooms))\n"
        "print(loaded)\n"
        "assert 'corrosion_py.agent.agent' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the doors reach the node through the facade only --------------------------------------------

DOORS = ("corrosion_py.api", "corrosion_py.cli", "corrosion_py.admin")
BEHIND_THE_FACADE = (
    "corrosion_py.store",
    "corrosion_py.net",
    "corrosion_py.replication",
    "corrosion_py.swim",
    "corrosion_py.crdt",
    "corrosion_py.subs",
    "corrosion_py.wire",
    "corrosion_py.sim",
    "corrosion_py.testing",
)
"""The rooms of a running node (and its test tools); ``corrosion_py.agent``'s own modules
too, but for the package itself (the facade)."""
SHARED = {
    "corrosion_py.wire.keyring": "the key file format: `corrosion keygen` makes keys, no node",
}
"""Modules of those rooms a door may import, and why."""


def facade_violations(imports: list[Import]) -> list[Import]:
    """Imports of the doors that bypass the facade."""
    return [
        imp
        for imp in imports
        if any(_within(imp.importer, door) for door in DOORS)
        and imp.module not in SHARED
        and (
            any(_within(imp.module, room) for room in BEHIND_THE_FACADE)
            or imp.module.startswith("corrosion_py.agent.")
        )
    ]


def test_the_api_cli_and_admin_socket_reach_the_node_only_through_the_facade() -> None:
    assert facade_violations(all_imports()) == []


def test_the_facade_rule_catches_a_door_that_reaches_into_the_store() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from corrosion_py.agent import Agent\n"
        "from corrosion_py.wire.keyring import Keyring\n"
        "if TYPE_CHECKING:\n    from corrosion_py.agent.agent import AgentConfig\n"
        "def f():\n    from corrosion_py.store.store import connect\n"
        "from ..replication import booked\n"
    )
    found = facade_violations(imports_of("corrosion_py.api.health", source))
    assert [(imp.module, imp.line, imp.type_only) for imp in found] == [
        ("corrosion_py.agent.agent", 5, True),
        ("corrosion_py.store.store", 7, False),
        ("corrosion_py.replication", 8, False),
        ("corrosion_py.replication.booked", 8, False),
    ]


def agent_parts() -> set[str]:
    """What ``Agent.__init__`` keeps on the instance (``self.X = ...``): the parts the facade
    stands in front of, public or not."""
    tree = ast.parse((PACKAGE / "agent" / "agent.py").read_text())
    agent = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Agent")
    init = next(n for n in agent.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {
        target.attr
        for node in ast.walk(init)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }


def part_reaches(source: str, parts: set[str]) -> list[tuple[int, str]]:
    """Where ``source`` reads a part of an agent (``agent.store``, ``node.agent.syncer``): an
    attribute in ``parts`` of something named ``agent``, which every door calls the facade."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in parts:
            receiver = node.value
            name = receiver.id if isinstance(receiver, ast.Name) else None
            if isinstance(receiver, ast.Attribute):
                name = receiver.attr
            if name == "agent":
                found.append((node.lineno, node.attr))
    return sorted(found)


def test_the_api_cli_and_admin_socket_use_no_part_of_the_agent() -> None:
    parts = agent_parts()
    assert {"store", "membership", "subs", "apply_queue"} <= parts  # the rule has teeth
    wrong = {
        name: part_reaches(path.read_text(), parts)
        for name, path in MODULES.items()
        if any(_within(name, door) for door in DOORS)
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_the_part_rule_catches_the_agent_s_parts_however_reached() -> None:
    source = (
        "def f(agent, node, admin):\n"
        "    agent.store.sync_state()\n"
        "    node.agent.membership.core\n"
        "    agent.health()\n"
        "    admin.subs\n"
    )
    assert part_reaches(source, {"store", "membership", "subs"}) == [
        (2, "store"),
        (3, "membership"),
    ]
