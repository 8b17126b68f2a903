"""A node refuses a database file it cannot trust, before writing anything: empty, not SQLite,
truncated, a damaged page (``PRAGMA quick_check``), a log without its database, a check that
does not finish in time. Each refusal is one line naming the file and what to do."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from corrosion_py.errors import UnusableDatabase
from corrosion_py.store.store import Store

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY NOT NULL, v TEXT);\n"
CHECK = 60.0  # seconds: the agent's default bound


def make_db(tmp: Path, rows: int = 3000) -> Path:
    (tmp / "schema.sql").write_text(SCHEMA)
    store = Store.open(tmp / "node.db", schema_paths=[tmp / "schema.sql"])
    try:
        for start in range(0, rows, 500):
            store.transaction_sync(
                [("INSERT INTO kv VALUES (?, ?)", [k, f"value {k} " * 8])
                 for k in range(start, min(rows, start + 500))]
            )  # fmt: skip
    finally:
        store.close()  # a clean close: no -wal left beside it
    return tmp / "node.db"


def kv_leaf_page(path: Path) -> tuple[int, int]:
    """(page number, page size) of a leaf page of ``kv`` in the middle of the table: a page
    nothing reads while a node opens."""
    conn = sqlite3.connect(path)
    try:
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'kv' AND pagetype = 'leaf' ORDER BY pageno"
        )]  # fmt: skip
        return pages[len(pages) // 2], conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def flip_page(path: Path) -> str:
    page, size = kv_leaf_page(path)
    with open(path, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(random.Random(7).randbytes(size))
    return "it is corrupt ("


def empty(path: Path) -> str:
    path.write_bytes(b"")
    return "the file is empty (0 bytes)"


def text(path: Path) -> str:
    path.write_text("name,value\nalpha,1\n" * 200)
    return "it is not a SQLite database"


def half(path: Path) -> str:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2 // 4096 * 4096)
    return "it is truncated ("


def ragged(path: Path) -> str:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    return "bytes, not a whole number of pages)"


def log_only(path: Path) -> str:
    path.with_name(path.name + "-wal").write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 28)
    path.unlink()
    return "the file is missing but its write-ahead log"


DAMAGES: dict[str, Callable[[Path], str]] = {
    "a page overwritten in the middle": flip_page,
    "truncated to 0 bytes": empty,
    "a text file": text,
    "truncated at a page boundary": half,
    "truncated inside a page": ragged,
    "a log without its database": log_only,
}


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_database_is_refused_in_one_line_and_left_alone(
    tmp_path: Path, damage: str
) -> None:
    path = make_db(tmp_path)
    expected = DAMAGES[damage](path)
    before = digest(path)
    with pytest.raises(UnusableDatabase) as caught:
        Store.open(path, schema_paths=[tmp_path / "schema.sql"], integrity_check_timeout=CHECK)
    message = str(caught.value)
    assert message.startswith(f"cannot open the database {path}: ") and "\n" not in message
    assert expected in message
    assert "restore" in message or "remove the log" in message  # what to do
    assert caught.value.path == path
    assert digest(path) == before  # nothing written, no new actor made of an empty file


def test_a_healthy_database_passes_the_check_and_keeps_its_data(tmp_path: Path) -> None:
    path = make_db(tmp_path)
    with Store.open(path, integrity_check_timeout=CHECK) as store:
        assert store.reader().execute("SELECT count(*) FROM kv").fetchone() == (3000,)


def test_skipping_the_check_opens_a_file_whose_damage_nothing_read_yet(tmp_path: Path) -> None:
    """The flag is for huge files on slow disks: the damage is then found by the first write
    that touches it (a runtime fault), not at start."""
    path = make_db(tmp_path)
    flip_page(path)
    with Store.open(path, integrity_check_timeout=None) as store:
        assert store.transaction_sync([("INSERT INTO kv VALUES (-1, 'x')", [])]).version


def test_a_check_that_does_not_finish_in_time_refuses_and_says_how_to_skip(
    tmp_path: Path,
) -> None:
    path = make_db(tmp_path, rows=20_000)
    with pytest.raises(UnusableDatabase) as caught:
        Store.open(path, integrity_check_timeout=1e-9)
    assert str(caught.value) == (
        f"cannot open the database {path}: the integrity check did not finish in 1e-09 s; set "
        "[db] integrity_check_timeout higher, or skip the check with [db] skip_integrity_check "
        "= true (`corrosion agent --skip-integrity-check`)"
    )
    with Store.open(path, integrity_check_timeout=CHECK) as store:  # nothing was changed
        assert store.reader().execute("SELECT count(*) FROM kv").fetchone() == (20_000,)
