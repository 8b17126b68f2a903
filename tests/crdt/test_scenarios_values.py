"""Value comparison, packed keys (cr-sqlite's byte format) and mixed-type replication.

The merge compares values only at equal cl and col_version; the order is by storage class
INTEGER > FLOAT > TEXT > BLOB > NULL, then numeric / bytewise. Local UPDATEs use the same
comparison to decide whether a column changed.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from corrosion_py.errors import MalformedPkError

VALUE_SCHEMA = "CREATE TABLE v (id INTEGER PRIMARY KEY NOT NULL, x)"


# (winner, loser) at equal clocks
ORDERED_PAIRS = [
    pytest.param(1, 2.5, id="int-beats-larger-float"),
    pytest.param(1, 1.0, id="int-beats-equal-float"),
    pytest.param(-5, 1e300, id="negative-int-beats-float"),
    pytest.param(2.5, "zzz", id="float-beats-text"),
    pytest.param(-1.5, "", id="negative-float-beats-empty-text"),
    pytest.param("a", b"\xff\xff", id="text-beats-blob"),
    pytest.param("", b"\xff", id="empty-text-beats-blob"),
    pytest.param(b"", None, id="empty-blob-beats-null"),
    pytest.param(0, None, id="zero-beats-null"),
    pytest.param(3, 2, id="int-numeric"),
    pytest.param(-1, -2, id="negative-int-numeric"),
    pytest.param(2**63 - 1, 2**62, id="large-int-numeric"),
    pytest.param(0, -(2**63), id="min-int64"),
    pytest.param(2.5, 2.25, id="float-numeric"),
    pytest.param(-1e-300, -0.5, id="negative-float-numeric"),
    pytest.param("b", "a", id="text-bytewise"),
    pytest.param("a", "B", id="text-no-case-folding"),
    pytest.param("ab", "a", id="text-longer-prefix-wins"),
    pytest.param("é", "z", id="text-utf8-bytes"),
    pytest.param("\U0001f600", "\uffff", id="text-astral-utf8"),
    pytest.param(b"\x01\x02", b"\x01", id="blob-longer-prefix-wins"),
    pytest.param(b"\x02", b"\x01\xff", id="blob-lexicographic"),
]


def _peer(make_db: Any, h: Any, value: Any, schema: str = VALUE_SCHEMA) -> Any:
    c = make_db(schema, crr=["v"])
    h.write(c, ("INSERT INTO v VALUES (1, ?)", [value]))
    return c


def _x(c: Any) -> tuple[Any, str]:
    return tuple(c.execute("SELECT x, typeof(x) FROM v WHERE id = 1").fetchone())


@pytest.mark.parametrize(("winner", "loser"), ORDERED_PAIRS)
def test_value_order_at_equal_clocks(make_db: Any, h: Any, winner: Any, loser: Any) -> None:
    w, lo = _peer(make_db, h, winner), _peer(make_db, h, loser)
    expected = _x(w)
    w_changes = h.changes(w)
    # the loser's value never replaces the winner's
    assert h.sync(lo, w) == 0
    assert _x(w) == expected
    assert h.changes(w) == w_changes
    # the winner's value replaces the loser's, keeping its storage class
    assert h.sync(w, lo) == 1
    assert _x(lo) == expected
    assert h.changes(lo) == w_changes


def test_text_comparison_ignores_column_collation(make_db: Any, h: Any) -> None:
    schema = "CREATE TABLE v (id INTEGER PRIMARY KEY NOT NULL, x TEXT COLLATE NOCASE)"
    w, lo = _peer(make_db, h, "a", schema), _peer(make_db, h, "A", schema)
    assert h.sync(lo, w) == 0
    assert h.sync(w, lo) == 1
    assert _x(lo) == ("a", "text")


def test_equal_null_values_tie_break_on_metadata(make_db: Any, h: Any) -> None:
    lo, hi = h.lo_hi(_peer(make_db, h, None), _peer(make_db, h, None))
    hi_changes = h.changes(hi)
    assert h.sync(lo, hi) == 0
    assert h.sync(hi, lo) == 1  # difference 2: metadata-only win
    assert h.changes(lo) == hi_changes


def test_nan_free_float_roundtrip_is_bit_exact(make_db: Any, h: Any) -> None:
    values = [0.1, -0.0, 1e-310, 1.7976931348623157e308, -1.1754943508222875e-38, math.pi]
    src = make_db(VALUE_SCHEMA, crr=["v"])
    dst = make_db(VALUE_SCHEMA, crr=["v"])
    h.write(src, *[("INSERT INTO v VALUES (?, ?)", [i, x]) for i, x in enumerate(values)])
    h.sync(src, dst)
    got = [r[0] for r in dst.execute("SELECT x FROM v ORDER BY id")]
    assert [math.copysign(1, g) for g in got] == [math.copysign(1, x) for x in values]
    assert [g.hex() for g in got] == [x.hex() for x in values]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(1, 1.0, id="int-to-equal-float"),
        pytest.param("a", "A", id="text-case"),
        pytest.param(None, 0, id="null-to-zero"),
        pytest.param(b"", "", id="empty-blob-to-empty-text"),
        pytest.param(1.5, 1.5000000000000002, id="float-ulp"),
    ],
)
def test_local_update_detects_storage_class_and_value_changes(
    make_db: Any, h: Any, old: Any, new: Any
) -> None:
    c = _peer(make_db, h, old)
    assert h.write(c, ("UPDATE v SET x = ? WHERE id = 1", [new])) == 2
    assert h.cols(c, "val", "col_version", "db_version") == [(new, 2, 2)]


@pytest.mark.parametrize("value", [1, 1.0, "a", b"a", None, -(2**63), 2**63 - 1])
def test_local_update_to_identical_value_is_no_op(make_db: Any, h: Any, value: Any) -> None:
    c = _peer(make_db, h, value)
    assert h.write(c, ("UPDATE v SET x = ? WHERE id = 1", [value])) is None
    assert h.cols(c, "col_version", "db_version") == [(1, 1)]


MIXED_ROWS = [
    (1, None, None, None),
    (2, 0, 0.0, ""),
    (3, -1, -1.5, "text"),
    (4, 2**63 - 1, 1e300, b"\x00\x01\xff"),
    (5, -(2**63), -1e-300, "ünïcödé ✓"),
    (6, 256, float("inf"), b""),
    (7, 2**31, float("-inf"), "x" * 1000),
    (8, 1, 1.0, "1"),
]


def test_mixed_types_replicate_exactly(make_db: Any, h: Any) -> None:
    schema = "CREATE TABLE m (id INTEGER PRIMARY KEY NOT NULL, i, f, t)"
    src = make_db(schema, crr=["m"])
    dst = make_db(schema, crr=["m"])
    h.write(src, *[("INSERT INTO m VALUES (?, ?, ?, ?)", r) for r in MIXED_ROWS])
    assert h.sync(src, dst) == len(MIXED_ROWS) * 3
    assert h.typed_rows(dst, "m") == h.typed_rows(src, "m")
    # the changes carry the current values with their storage classes
    vals = {(r[1], r[2]): r[3] for r in h.changes(src)}
    assert vals[(h.pk(4), "t")] == b"\x00\x01\xff"
    assert vals[(h.pk(8), "f")] == 1.0 and isinstance(vals[(h.pk(8), "f")], float)
    assert vals[(h.pk(5), "i")] == -(2**63)
    assert vals[(h.pk(1), "i")] is None


MIXED_PKS = [
    (0, "", b""),
    (-1, "a", b"\x00"),
    (2**63 - 1, "ünï", b"\xff" * 40),
    (-(2**63), "x" * 300, b"\x01\x02"),
    (255, "b", b"\x03"),
    (256, "b", b"\x03"),
]


def test_composite_mixed_type_pks_replicate(make_db: Any, h: Any) -> None:
    schema = (
        "CREATE TABLE k (i INTEGER NOT NULL, t TEXT NOT NULL, b BLOB NOT NULL, v,"
        " PRIMARY KEY (i, t, b))"
    )
    src = make_db(schema, crr=["k"])
    dst = make_db(schema, crr=["k"])
    h.write(src, *[("INSERT INTO k VALUES (?, ?, ?, ?)", (*p, i)) for i, p in enumerate(MIXED_PKS)])
    assert {r[1] for r in h.changes(src)} == {h.pk(*p) for p in MIXED_PKS}
    assert all(h.crdt.unpack_pk(r[1]) in MIXED_PKS for r in h.changes(src))
    h.sync(src, dst)
    assert h.typed_rows(dst, "k") == h.typed_rows(src, "k")
    h.write(src, ("DELETE FROM k WHERE i = ?", [-(2**63)]))
    h.write(src, ("UPDATE k SET v = 'u' WHERE b = ?", [b"\x00"]))
    h.sync(src, dst, 1)
    assert h.typed_rows(dst, "k") == h.typed_rows(src, "k")


def test_text_and_float_pks(make_db: Any, h: Any) -> None:
    schema = "CREATE TABLE p (id NOT NULL PRIMARY KEY, v)"
    src = make_db(schema, crr=["p"])
    dst = make_db(schema, crr=["p"])
    ids = ["1", 1, 1.5, b"1", "é"]
    h.write(src, *[("INSERT INTO p VALUES (?, ?)", (x, n)) for n, x in enumerate(ids)])
    h.sync(src, dst)
    assert h.typed_rows(dst, "p") == h.typed_rows(src, "p")
    assert len(h.typed_rows(dst, "p")) == 5


# packed keys as cr-sqlite writes them (checked against upstream)
PACK_EXAMPLES = [
    ((1,), "010901"),
    ((42,), "01092a"),
    ((0,), "0101"),
    ((-1,), "0141ffffffffffffffff"),
    ((256,), "01110100"),
    ((2**31,), "012180000000"),
    (("a",), "010b0161"),
    ((1, 2), "0209010902"),
    ((12, "str", b"\x01\x02\x03"), "03090c0b037374720c03010203"),
    ((4, 5), "0209040905"),
    ((None,), "0105"),
    ((1.5,), "0102" + "3ff8000000000000"),
    (("",), "0103"),
    ((b"",), "0104"),
]


@pytest.mark.parametrize(("values", "hexed"), PACK_EXAMPLES)
def test_pack_pk_examples(h: Any, values: tuple[Any, ...], hexed: str) -> None:
    assert h.crdt.pack_pk(values).hex() == hexed
    assert h.crdt.unpack_pk(bytes.fromhex(hexed)) == values


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x01", id="missing-value"),
        pytest.param(b"\x01\x06", id="type-6"),
        pytest.param(b"\x01\x07", id="type-7"),
        pytest.param(b"\x01\x00", id="type-0"),
        pytest.param(b"\x01\x11\x01", id="truncated-int"),
        pytest.param(b"\x01\x0b\x05ab", id="truncated-text"),
        pytest.param(b"\x01\x02\x00\x00", id="truncated-float"),
    ],
)
def test_unpack_pk_rejects_malformed(h: Any, blob: bytes) -> None:
    with pytest.raises(MalformedPkError):
        h.crdt.unpack_pk(blob)


def test_composite_pk_in_changes(make_db: Any, h: Any) -> None:
    c = make_db(
        "CREATE TABLE foo (a INTEGER NOT NULL, b INTEGER NOT NULL, c, PRIMARY KEY (a, b))",
        crr=["foo"],
    )
    h.write(c, "INSERT INTO foo VALUES (4, 5, 6)")
    assert h.cols(c, "pk", "cid", "val") == [(bytes.fromhex("0209040905"), "c", 6)]


def test_pk_order_follows_primary_key_clause(make_db: Any, h: Any) -> None:
    # pk columns are packed in PRIMARY KEY order, not column order
    c = make_db(
        "CREATE TABLE foo (a INTEGER NOT NULL, b TEXT NOT NULL, c, PRIMARY KEY (b, a))",
        crr=["foo"],
    )
    h.write(c, "INSERT INTO foo VALUES (1, 'x', 2)")
    assert h.cols(c, "pk") == [(h.pk("x", 1),)]
    cols = [r[1] for r in c.execute("PRAGMA table_info(foo__crsql_pks)")]
    assert cols == ["__crsql_key", "b", "a"]
