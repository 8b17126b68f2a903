"""Nothing outside `crdt/` writes the engine's tables, checked on the source."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import corrosion_py

PACKAGE = Path(corrosion_py.__file__).parent

# SQL that writes or reshapes a table, and the table it names: INSERT/REPLACE INTO, UPDATE,
# DELETE FROM, CREATE/DROP of a table, index (its name and the table after ON), trigger or
# view, ALTER TABLE.
_NAME = r"""(?P<{}>"[^"]*"|`[^`]*`|\[[^\]]*\]|\{{[^}}]*\}}|[\w$.]+)"""
_WRITE = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM"
    r"|ALTER\s+TABLE|DROP\s+(?:TABLE|INDEX|TRIGGER|VIEW)(?:\s+IF\s+EXISTS)?"
    r"|CREATE\s+(?:UNIQUE\s+|TEMP\s+|TEMPORARY\s+|VIRTUAL\s+)?(?:TABLE|INDEX|TRIGGER|VIEW)"
    r"(?:\s+IF\s+NOT\s+EXISTS)?)\s+"
    + _NAME.format("target")
    + r"(?:\s+ON\s+"
    + _NAME.format("on")
    + ")?",
    re.IGNORECASE,
)
# An engine table by name (crsql_site_id, kv__crsql_clock), or an interpolated name built by
# the engine's helpers (clock_table(t), info.clock, info.lookaside, pks_table(t)).
_ENGINE_TABLE = re.compile(r"(?:^|[^\w])(?:crsql_|\w*__crsql_)|clock|lookaside|pks_table", re.I)


def _sql_texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string literal of a module, f-strings with each interpolation as ``{source}``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append(str(value.value))
                elif isinstance(value, ast.FormattedValue):
                    parts.append("{" + ast.unparse(value.value) + "}")
            yield node.lineno, "".join(parts)


def engine_table_writes(path: Path) -> list[str]:
    """``file:line: statement`` for each write of an engine table found in ``path``."""
    found = []
    for line, text in _sql_texts(ast.parse(path.read_text(), str(path))):
        for m in _WRITE.finditer(text):
            names = [m.group("target"), m.group("on") or ""]
            if any(_ENGINE_TABLE.search(name) for name in names):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {m.group(0)}")
    return found


def test_nothing_outside_crdt_writes_engine_tables() -> None:
    """The engine's tables (``crsql_*``, ``*__crsql_*``) are written only by ``crdt/``: the rest
    of the package goes through its API (site identity, versions, merges)."""
    crdt_dir = PACKAGE / "crdt"
    offenders = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if crdt_dir not in path.parents
        for hit in engine_table_writes(path)
    ]
    assert offenders == []


def test_the_engine_table_scan_finds_the_engines_own_writes() -> None:
    """The scan above can fail: run on ``crdt/`` it finds the writes the engine does make, in
    plain strings and in f-strings that name tables through its helpers."""
    hits = "\n".join(
        w for path in sorted((PACKAGE / "crdt").glob("*.py")) for w in engine_table_writes(path)
    )
    assert "INSERT INTO crsql_site_id" in hits
    assert "INSERT INTO crsql_db_versions" in hits
    assert "UPDATE {clock}" in hits  # moving the local site: an interpolated clock table
    assert re.search(r"CREATE TABLE IF NOT EXISTS \{info\.lookaside\}", hits)
    assert engine_table_writes(PACKAGE / "store" / "guard.py") == []  # mentions, no writes
