"""The vocabulary and the client load without the server: imported in a fresh interpreter, they
pull in no trio, no store, no subscription engine, no HTTP server (and the vocabulary no HTTP
client either)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVER_SIDE = [
    "trio",
    "starlette",
    "hypercorn",
    "sqlite3",
    "corrosion_py.store",
    "corrosion_py.subs",
    "corrosion_py.agent",
    "corrosion_py.api",
    "corrosion_py.crdt",
]


def loaded_after(module: str) -> set[str]:
    """The top modules and corrosion_py packages a fresh interpreter holds after importing
    ``module``."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    names = json.loads(done.stdout)
    out = set()
    for name in names:
        parts = name.split(".")
        out.add(parts[0])
        if parts[0] == "corrosion_py" and len(parts) > 1:
            out.add(".".join(parts[:2]))
    return out


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("corrosion_py.api_types", [*SERVER_SIDE, "httpx", "anyio", "corrosion_py.client"]),
        ("corrosion_py.client", SERVER_SIDE),
    ],
)
def test_imports_in_isolation(module: str, forbidden: list[str]) -> None:
    loaded = loaded_after(module)
    assert module in loaded
    assert sorted(loaded & set(forbidden)) == []
