"""Layering rules checked on the code itself.

Protocol cores: the modules of ``replication/``, ``swim/``, ``wire/``, ``crdt/`` and
``subs/plan.py`` take time and randomness as inputs and do no I/O, so the agent (trio, sockets,
threads) and the simulator (virtual time) can drive the same code. Read from their source, none
of them imports trio, socket, threading, time, random, asyncio or selectors at run time (an
import under ``if TYPE_CHECKING:`` is a type annotation, not a use), and neither does any module
of the project they import, however indirectly. A fresh interpreter that imports every module
of a core package has loaded no event loop and no socket module (stdlib and third-party modules
load threading, time and random for themselves, so those are checked by reading only; so is
``subs/plan.py``, whose package ``__init__`` also loads the trio subscription manager).
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import corrosion_py

ROOT = Path(corrosion_py.__file__).parent
CORES = [
    "corrosion_py.replication",
    "corrosion_py.swim",
    "corrosion_py.wire",
    "corrosion_py.crdt",
    "corrosion_py.subs.plan",
]
IO_MODULES = {"trio", "socket", "threading", "time", "random", "asyncio", "selectors"}


def _path(module: str) -> Path:
    base = ROOT.parent.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _is_module(module: str) -> bool:
    return module.startswith("corrosion_py") and _path(module).exists()


def _modules(name: str) -> list[str]:
    """``name`` and, for a package, every module in it."""
    path = _path(name)
    if path.name != "__init__.py":
        return [name]
    found = pkgutil.walk_packages([str(path.parent)], prefix=f"{name}.")
    return [name, *sorted(info.name for info in found)]


def _runtime_imports(module: str) -> set[str]:
    """Dotted names ``module`` imports when it runs (``if TYPE_CHECKING:`` bodies skipped)."""
    tree = ast.parse(_path(module).read_text(), filename=str(_path(module)))
    package = module if _path(module).name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Import):
                    out.update(alias.name for alias in child.names)
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join([*parts, base] if base else parts)
                    out.add(base)
                    out.update(f"{base}.{alias.name}" for alias in child.names)

    visit(tree.body)
    return out


def _closure(roots: list[str]) -> set[str]:
    """The project modules ``roots`` import at run time, directly or not (roots included)."""
    seen: set[str] = set()
    todo = [m for root in roots for m in _modules(root)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [name for name in _runtime_imports(module) if _is_module(name)]
    return seen


def test_protocol_cores_and_what_they_import_use_no_io_module() -> None:
    reached = _closure(CORES)
    assert "corrosion_py.replication.gossip" in reached and "corrosion_py.subs.plan" in reached
    offenders = {
        module: sorted({name.split(".")[0] for name in _runtime_imports(module)} & IO_MODULES)
        for module in sorted(reached)
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_import_reader_sees_imports_and_type_only_ones() -> None:
    """The rule above could pass by reading nothing: it must see the I/O imports that exist."""
    assert "trio" in _runtime_imports("corrosion_py.net.port")
    assert "threading" in _runtime_imports("corrosion_py.store.store")
    assert "random" not in _runtime_imports("corrosion_py.replication.plumtree")  # typing only
    assert "corrosion_py.wire.codec" in _runtime_imports("corrosion_py.replication.gossip")
    assert "corrosion_py.net.framed" in _closure(["corrosion_py.net.sync_server"])


@pytest.mark.parametrize("package", [c for c in CORES if c != "corrosion_py.subs.plan"])
def test_a_fresh_interpreter_importing_a_core_loads_no_event_loop_or_socket(
    package: str,
) -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for name in {_modules(package)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    assert package.split(".")[0] in loaded  # the probe did import the package
    assert loaded & {"trio", "socket", "asyncio", "selectors"} == set()
