"""Backup and restore of a node's database (Corrosion's ``corrosion backup`` and
``corrosion restore``, with the identity rules below).

    backup(Path("node.db"), Path("/backups/node-2026-01-01.db"), progress=bar)
    actor = restore(Path("/backups/node-2026-01-01.db"), Path("node.db"))  # node stopped

Rules of a backup (everything here follows from them):

- **Consistent and online.** The copy is one snapshot of the source (the WAL included): a read
  transaction is held on a read-only connection while SQLite's online backup API copies the
  pages in steps of `STEP_PAGES`, so a running node keeps writing meanwhile and the copy holds
  every change of a transaction or none. The source is never written (it is opened read-only).
- **No node identity.** A backup may seed any node, so it names none: the local site becomes
  an ordinary remote site (`crdt.detach_local_site`: its clock rows follow it). The engine's
  versions and the bookkeeping are keyed by the actor id itself, so they keep that actor's
  versions as a remote actor's. ``__corro_members`` is
  emptied; subscriptions live in another file (``<db>.subs.db``) and are not copied.
- **Marked.** ``__corro_state`` holds the key `MARKER_KEY` (format, source actor, time), so
  `restore` can refuse a file that is not a backup. The copy is a plain rollback-journal file
  (no ``-wal`` beside it); `Store.open` turns it into WAL again.
- **Never overwrite.** The copy is written next to ``dest`` under a temporary name, fsynced,
  then linked into place; an existing ``dest`` is refused.

Rules of a restore:

- **Only on a stopped node.** When a node runs on the path (its ``<db>.lock`` is held),
  `restore` raises `DatabaseInUse` and touches nothing; it holds that lock itself meanwhile, so
  no node can start during the swap.
- **Atomic swap.** The backup is copied next to the database, rewritten there, fsynced; then the
  old database's ``-wal``/``-shm``/``-journal`` are removed (a stale WAL must never be replayed
  onto the new file) and the copy is renamed over the database. The subscriptions' file
  (``<db>.subs.db`` and its WAL) is removed: clients re-create their subscriptions.
- **Identity** (the actor id is the site id at ordinal 0):

  - *Default: a new random actor id*, never seen in the backup. Nothing the cluster knows can
    collide with it. The old identity's versions that reached peers come back by sync as a
    remote actor's; writes of the old node that never left it are lost.
  - *keep_actor_id*: keep the actor id of the database being replaced (Corrosion's
    ``--self-actor-id``); *actor_id=*: take the given one. Either way, the chosen actor ``A``
    must never issue a version number that some node already holds for ``A``, and this node
    must hold every version of ``A`` up to where it resumes, because a node never takes its own
    versions back from peers (sync skips its own actor). So: ``A``'s site moves to ordinal 0 (its
    clock rows follow); the next version is ``floor + 1`` with ``floor`` = the highest version of
    ``A`` known to the backup or to the database being replaced; every version of ``A`` up to
    ``floor`` that the backup lacks (a gap, a partial, or past its head) is copied from the
    database being replaced, which holds all of them when it was ``A``'s own node; if some
    cannot be found there, the restore is refused (naming them) rather than lose them
    (`crdt.move_local_site` makes ``A`` the local site). The old
    database's own member record is kept, so the node rejoins with a higher incarnation.
  - *The risk* of keeping an id: the versions checked are those the backup and the replaced
    database know. If ``A``'s history went further elsewhere (the replaced file is itself an
    old copy, or a node with id ``A`` still runs), version numbers would be issued twice and
    peers would silently keep the old changes under them. Keep an id only for the node that
    owned it, with its latest database in place; in doubt, take the default.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs

from corrosion_py import crdt
from corrosion_py.aliases import Range
from corrosion_py.crdt.tables import q
from corrosion_py.errors import CorrosionError, UnknownColumnError, UnknownTableError
from corrosion_py.replication.booked import BookedVersions
from corrosion_py.replication.ranges import RangeSet
from corrosion_py.store import bookkeeping, lock
from corrosion_py.store.migrations import SchemaError, apply_schema_statements
from corrosion_py.store.store import STORE_SCHEMA

__all__ = ["MARKER_KEY", "BackupError", "Progress", "backup", "restore"]

Progress = Callable[[int, int], None]
"""Called after each copy step with (pages done, pages in total)."""

MARKER_KEY = "corrosion_py.backup"
FORMAT = 1
STEP_PAGES = 1024  # pages per step of the online backup (4 MiB at SQLite's default page size)
FILL_WINDOW = 64  # versions of the own actor read per query when carrying them over


class BackupError(CorrosionError):
    """A backup or a restore cannot be made; nothing was changed. One line naming the file."""


# -- backup -------------------------------------------------------------------------------------


def backup(db_path: Path, dest: Path, progress: Progress | None = None) -> None:
    """Write a consistent, identity-free copy of the node database ``db_path`` to ``dest``.

    Safe while a node runs and writes on ``db_path``. Raises `BackupError` when ``dest``
    exists, when ``db_path`` is missing or not a corrosion_py database.
    """
    db_path, dest = Path(db_path), Path(dest)
    if dest.exists() or dest.is_symlink():
        raise BackupError(f"{dest}: already exists; a backup never overwrites a file")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest}: directory {dest.parent} does not exist")
    if not db_path.is_file():
        raise BackupError(f"{db_path}: no such database")
    tmp = _temp_path(dest, "partial")
    try:
        with _open_readonly(db_path) as source:
            _require_store(source, db_path)
            with _open_target(tmp) as target:
                _copy(source, target, progress, db_path)
                _strip_identity(target, db_path)
        _fsync(tmp)
        _publish(tmp, dest)
    except BaseException:
        _remove(tmp, tmp.with_name(tmp.name + "-journal"))
        raise


def _strip_identity(conn: sqlite3.Connection, db_path: Path) -> None:
    """Turn the copy of a node database into a backup: no site at ordinal 0, no members."""
    conn.execute("BEGIN IMMEDIATE")
    source_actor = crdt.detach_local_site(conn)
    for ddl in STORE_SCHEMA:
        if "__corro_state" in ddl or "__corro_members" in ddl:
            conn.execute(ddl)
    conn.execute("DELETE FROM __corro_members")
    marker = {
        "format": FORMAT,
        "source": str(db_path),
        "source_actor_id": str(uuid.UUID(bytes=source_actor)) if source_actor else None,
        "created_at": time.time(),
    }
    conn.execute(
        "INSERT INTO __corro_state (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (MARKER_KEY, json.dumps(marker)),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=DELETE")


# -- restore ------------------------------------------------------------------------------------


@attrs.frozen
class _Current:
    """The database a restore replaces, as far as it can be read."""

    actor_id: bytes
    bookie: dict[bytes, BookedVersions]
    own_member: tuple[object, ...] | None


def restore(
    src: Path,
    db_path: Path,
    *,
    actor_id: bytes | None = None,
    keep_actor_id: bool = False,
    progress: Progress | None = None,
) -> bytes:
    """Put the backup ``src`` in place of the node database ``db_path``; return its actor id.

    The node must be stopped (else `DatabaseInUse`). Identity: a new random actor id by
    default; ``keep_actor_id`` keeps ``db_path``'s own; ``actor_id`` (16 bytes) sets one. See
    the module's rules for what keeping an id requires. Raises `BackupError` otherwise.
    """
    src, db_path = Path(src), Path(db_path)
    if actor_id is not None:
        if keep_actor_id:
            raise BackupError("restore: give an actor id or keep the current one, not both")
        if len(actor_id) != 16:
            raise BackupError(
                f"restore: an actor id is 16 bytes (a UUID), got {len(actor_id)} bytes"
            )
    pid = lock.holder(db_path)
    if pid is not None:
        who = f"pid {pid}" if pid > 0 else "pid unknown"
        raise lock.DatabaseInUse(f"a node is running on {db_path} ({who}); stop it first")
    if not src.is_file():
        raise BackupError(f"{src}: no such backup file")
    if db_path.exists() and src.resolve() == db_path.resolve():
        raise BackupError(f"{src}: is the database being restored")
    with lock.hold(db_path):
        with _open_readonly(src) as source:
            ours = _check_backup(source, src)
            current = _read_current(db_path, required=keep_actor_id)
            if keep_actor_id:
                assert current is not None
                actor = current.actor_id
            elif actor_id is not None:
                actor = bytes(actor_id)
            else:
                actor = _fresh_actor(ours, current)
            floor, missing = _own_versions(actor, ours, current, src, db_path)
            tmp = _temp_path(db_path, "restore")
            try:
                with _open_target(tmp) as target:
                    _copy(source, target, progress, src)
                    target.execute("PRAGMA journal_mode=DELETE")  # one file until it is renamed
                    _take_identity(target, actor, floor, current)
                    if missing:
                        _carry_over(target, db_path, actor, missing)
                    _check_integrity(target, src)
                _fsync(tmp)
                _remove(*_companions(db_path))
                os.replace(tmp, db_path)
                _fsync_dir(db_path.parent)
            except BaseException:
                _remove(tmp, tmp.with_name(tmp.name + "-journal"))
                raise
        subs = db_path.with_name(db_path.name + ".subs.db")
        _remove(subs, *_companions(subs))
    return actor


def _check_backup(conn: sqlite3.Connection, src: Path) -> dict[bytes, BookedVersions]:
    """Refuse what is not a corrosion_py backup; return its bookkeeping."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        needed = {"crsql_site_id", "crsql_db_versions", "__corro_state", "__corro_bookkeeping_gaps"}
        if not needed <= tables:
            raise BackupError(f"{src}: not a corrosion_py backup (made by `corrosion backup`)")
        row = conn.execute("SELECT value FROM __corro_state WHERE key = ?", (MARKER_KEY,))
        marker = row.fetchone()
        if marker is None:
            raise BackupError(
                f"{src}: not a corrosion_py backup (a node database? make one with "
                "`corrosion backup`)"
            )
        try:
            fmt = json.loads(marker[0]).get("format")
        except (TypeError, ValueError, AttributeError):
            fmt = None
        if not isinstance(fmt, int) or fmt > FORMAT:
            raise BackupError(f"{src}: a backup of an unknown format ({fmt!r})")
        local = crdt.local_site(conn)  # opened as a node since: fine only if it never wrote
        if local is not None and crdt.site_versions(conn).get(local, 0) > 0:
            raise BackupError(
                f"{src}: a node wrote to this backup after it was made; it is no longer a backup"
            )
        return bookkeeping.load(conn)
    except sqlite3.Error as exc:
        raise BackupError(f"{src}: not a corrosion_py backup ({exc})") from None


def _read_current(db_path: Path, *, required: bool) -> _Current | None:
    """Identity and bookkeeping of the database being replaced (None if none or unreadable,
    unless ``required``)."""
    if not db_path.exists():
        if required:
            raise BackupError(f"{db_path}: does not exist, so there is no actor id to keep")
        return None
    try:
        with _open_readonly(db_path) as conn:
            actor = crdt.local_site(conn)
            if actor is None:
                raise sqlite3.DatabaseError("it has no local site id")
            member = None
            with contextlib.suppress(sqlite3.OperationalError):  # no members table yet
                member = conn.execute(
                    "SELECT actor_id, address, state, incarnation, updated_at "
                    "FROM __corro_members WHERE actor_id = ?",
                    (actor,),
                ).fetchone()
            return _Current(actor, _load_bookie(conn), member)
    except (sqlite3.Error, CorrosionError) as exc:
        if required:
            raise BackupError(
                f"{db_path}: cannot read the actor id to keep ({exc}); restore with a new "
                "actor id or give one"
            ) from None
        return None


def _load_bookie(conn: sqlite3.Connection) -> dict[bytes, BookedVersions]:
    try:
        return bookkeeping.load(conn)
    except sqlite3.OperationalError:  # a database of the bare engine, without bookkeeping
        return {a: BookedVersions(max=v) for a, v in crdt.site_versions(conn).items()}


def _fresh_actor(ours: dict[bytes, BookedVersions], current: _Current | None) -> bytes:
    taken = set(ours) | (set(current.bookie) | {current.actor_id} if current else set())
    while True:
        actor = crdt.random_site_id()
        if actor not in taken:
            return actor


def _own_versions(
    actor: bytes,
    ours: dict[bytes, BookedVersions],
    current: _Current | None,
    src: Path,
    db_path: Path,
) -> tuple[int, RangeSet]:
    """Where ``actor`` resumes (``floor``) and its versions up to there that the backup lacks;
    refuse when some of them are not in the database being replaced either."""
    booked = ours.get(actor, BookedVersions())
    theirs = current.bookie.get(actor) if current is not None else None
    floor = max(booked.max, theirs.max if theirs is not None else 0)
    missing = booked.gaps.copy()
    for version in booked.partials:
        missing.add(version, version)
    if floor > booked.max:
        missing.add(booked.max + 1, floor)
    lost = RangeSet()
    for start, end in missing:
        if theirs is None:
            lost.add(start, end)
            continue
        for version in range(start, end + 1):
            if not theirs.knows(version):
                lost.add(version, version)
    if lost:
        raise BackupError(
            f"{src}: actor {uuid.UUID(bytes=actor)} would resume after version {floor}, but its "
            f"versions {_show(lost)} are in neither the backup nor {db_path}; peers may hold "
            "them and a node never takes its own versions back, so they would be missing here "
            "for good. Restore with a new actor id (the default) instead"
        )
    return floor, missing


def _take_identity(
    conn: sqlite3.Connection, actor: bytes, floor: int, current: _Current | None
) -> None:
    """Make ``actor`` the local site of the copy, resuming after ``floor``."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM __corro_state WHERE key = ?", (MARKER_KEY,))
    # a backup opened as a node that never wrote has an id of its own: it is forgotten; a site
    # the backup knows as ``actor`` becomes the local site with its rows
    crdt.move_local_site(conn, actor, resume_after=floor)
    # A node has no gaps, partials or quarantine of its own: what was missing is carried over.
    conn.execute("DELETE FROM __corro_bookkeeping_gaps WHERE actor_id = ?", (actor,))
    for table, column in (
        ("__corro_seq_bookkeeping", "site_id"),
        ("__corro_buffered_changes", "site_id"),
        ("__corro_quarantine", "actor_id"),
    ):
        with contextlib.suppress(sqlite3.OperationalError):  # table missing: nothing to drop
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (actor,))
    conn.execute("DELETE FROM __corro_members")
    if current is not None and current.actor_id == actor and current.own_member is not None:
        conn.execute(
            "INSERT INTO __corro_members (actor_id, address, state, incarnation, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            current.own_member,
        )
    conn.execute("COMMIT")


def _carry_over(target: sqlite3.Connection, db_path: Path, actor: bytes, missing: RangeSet) -> None:
    """Merge ``actor``'s versions ``missing`` from the database being replaced into the copy."""
    with _open_readonly(db_path) as old:
        try:
            for window in _windows(missing):
                changes = crdt.changes(
                    old, site_id=actor, min_version=window[0], max_version=window[1]
                )
                try:
                    crdt.merge(target, changes)
                except (UnknownTableError, UnknownColumnError):
                    _adopt_schema(target, old, db_path)  # the old database's schema is newer
                    crdt.merge(target, changes)
        except (sqlite3.Error, CorrosionError) as exc:
            raise BackupError(
                f"{db_path}: cannot carry this node's own versions {_show(missing)} over into "
                f"the restored database ({exc})"
            ) from None


def _adopt_schema(target: sqlite3.Connection, old: sqlite3.Connection, db_path: Path) -> None:
    """Apply the tables, columns and indexes the old database has and the copy lacks."""
    recorded = {
        (str(t), str(n))
        for t, n in target.execute("SELECT type, name FROM __corro_schema").fetchall()
    }
    statements = []
    for kind, name, sql in old.execute("SELECT type, name, sql FROM __corro_schema ORDER BY rowid"):
        if (kind, name) not in recorded or (kind == "table" and _more_columns(old, target, name)):
            statements.append(str(sql))
    try:
        apply_schema_statements(target, statements, source=f"<restore from {db_path.name}>")
    except SchemaError as exc:
        raise BackupError(
            f"{db_path}: its schema cannot be applied to the backup ({exc})"
        ) from None


def _more_columns(old: sqlite3.Connection, new: sqlite3.Connection, table: str) -> bool:
    def columns(conn: sqlite3.Connection) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_xinfo({q(table)})")}

    return not columns(old) <= columns(new)


def _check_integrity(conn: sqlite3.Connection, src: Path) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        raise BackupError(f"{src}: the restored copy fails SQLite's check ({result})")


# -- shared -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open ({exc})") from None
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _open_target(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _require_store(conn: sqlite3.Connection, path: Path) -> None:
    try:
        row = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
            "AND name IN ('crsql_site_id', 'crsql_db_versions')"
        ).fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: not a corrosion_py database ({exc})") from None
    if row[0] != 2:
        raise BackupError(f"{path}: not a corrosion_py database (no crsql_site_id table)")


def _copy(
    source: sqlite3.Connection, target: sqlite3.Connection, progress: Progress | None, name: Path
) -> None:
    """Copy every page of one snapshot of ``source`` (WAL included) into ``target``.

    The read transaction held across the steps pins the snapshot: writers of other connections
    go on appending to the WAL, and the backup never restarts because of them."""

    def step(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)

    try:
        source.execute("BEGIN")
        try:
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # snapshot begins
            source.backup(target, pages=STEP_PAGES, progress=step, sleep=0.01)
        finally:
            source.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise BackupError(f"{name}: copy failed ({exc})") from None


def _windows(ranges: RangeSet) -> Iterator[Range]:
    for start, end in ranges:
        for lo in range(start, end + 1, FILL_WINDOW):
            yield lo, min(end, lo + FILL_WINDOW - 1)


def _show(ranges: RangeSet) -> str:
    return ", ".join(str(s) if s == e else f"{s}..{e}" for s, e in ranges)


def _temp_path(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}")


def _companions(db: Path) -> list[Path]:
    return [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync(path)


def _publish(tmp: Path, dest: Path) -> None:
    """Move the finished copy to ``dest`` without ever replacing a file there."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise BackupError(f"{dest}: already exists; a backup never overwrites a file") from None
    except OSError:  # no hard links here: check, then rename
        if dest.exists():
            raise BackupError(f"{dest}: already exists; a backup never overwrites a file") from None
        os.replace(tmp, dest)
    else:
        tmp.unlink()
    _fsync_dir(dest.parent)
