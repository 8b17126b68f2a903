"""`corrosion agent` as a real process refuses a database it cannot trust in one line naming the
file and what to do (no traceback, the file untouched); ``--skip-integrity-check`` and
``[db] skip_integrity_check`` start it anyway when the damage is where nothing reads at start;
the two new keys are checked like every other."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from cli_harness import HANG, ROOT, AgentRun, clean_env, corrosion, poll, short_dir, write_config

from corrosion_py.store.store import Store


def make_db(directory: Path) -> Path:
    """A node's database with 3,000 rows, closed cleanly (no log beside it)."""
    path = directory / "node.db"
    for leftover in directory.glob("node.db*"):
        leftover.unlink()
    with Store.open(path, schema_paths=[directory / "schema.sql"]) as store:
        for start in range(0, 3000, 500):
            store.transaction_sync(
                [("INSERT INTO kv VALUES (?, ?)", [k, f"value {k} " * 8])
                 for k in range(start, start + 500)]
            )  # fmt: skip
    return path


def overwrite_a_kv_page(path: Path) -> None:
    """Random bytes over a leaf page of ``kv`` in the middle of the file."""
    conn = sqlite3.connect(path)
    try:
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'kv' AND pagetype = 'leaf' ORDER BY pageno"
        )]  # fmt: skip
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with open(path, "r+b") as f:
        f.seek((pages[len(pages) // 2] - 1) * size)
        f.write(random.Random(3).randbytes(size))


def refused(config: Path, *args: str) -> str:
    done = corrosion("agent", *args, config=config)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_database_is_refused_in_one_line() -> None:
    with short_dir() as directory:
        config = write_config(directory)
        db = directory / "node.db"
        damages = {
            "it is corrupt (": overwrite_a_kv_page,
            "the file is empty (0 bytes); restore it from a backup": lambda p: p.write_bytes(b""),
            "it is not a SQLite database; restore": lambda p: p.write_text("a text file\n" * 99),
        }
        for expected, damage in damages.items():
            damage(make_db(directory))
            before = digest(db)
            line = refused(config)
            assert line.startswith(f"Error: cannot open the database {db}: {expected}"), line
            assert line.endswith(
                "(`corrosion restore BACKUP`), or move it away to start a new node"
            )
            assert digest(db) == before
            assert not (directory / "node.db.subs.db").exists()  # nothing else started


def test_the_check_can_be_skipped_by_flag_or_key() -> None:
    with short_dir() as directory:
        config = write_config(directory)
        overwrite_a_kv_page(make_db(directory))
        assert "it is corrupt (" in refused(config)

        log = directory / "flag.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "corrosion_py", "-c", str(config), "agent",
                 "--skip-integrity-check"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=clean_env(), cwd=ROOT,
            )  # fmt: skip
            try:
                poll(lambda: "agent started" in log.read_text() or proc.poll() is not None)
                assert proc.poll() is None, log.read_text()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=HANG) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

        text = config.read_text()
        config.write_text(text.replace("[db]\n", "[db]\nskip_integrity_check = true\n"))
        run = AgentRun(config)
        try:
            assert run.started["db_path"] == str(directory / "node.db")
            assert run.stop(signal.SIGTERM) == 0
        finally:
            run.kill()


def test_the_integrity_keys_are_checked() -> None:
    with short_dir() as directory:
        config = write_config(directory)
        text = config.read_text()
        config.write_text(text.replace("[db]\n", '[db]\nskip_integrity_check = "yes"\n'))
        assert refused(config) == (
            f"Error: {config}: db.skip_integrity_check: expected true or false, got 'yes' "
            "(a string)"
        )
        config.write_text(text.replace("[db]\n", "[db]\nintegrity_check_timeout = 0\n"))
        line = refused(config)
        assert line.startswith(f"Error: {config}: db.integrity_check_timeout: must be > 0")
