"""cr-sqlite's packed column format (`crsql_pack_columns`), byte for byte.

Layout: one byte N (number of values), then per value a header byte ``(L << 3) | T`` where T is
SQLite's type code (1 INTEGER, 2 FLOAT, 3 TEXT, 4 BLOB, 5 NULL) and L the byte count of the
length/integer field that follows. Integers use the minimal number of bytes of their 64-bit
two's-complement pattern (so every negative takes 8); text and blobs store their byte length in
L bytes, then the bytes; floats are 8 bytes of big-endian IEEE-754 with L = 0.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from corrosion_py.aliases import SqlValue
from corrosion_py.errors import MalformedPkError

INTEGER, FLOAT, TEXT, BLOB, NULL = 1, 2, 3, 4, 5
_MASK64 = (1 << 64) - 1


def _minimal_len(u: int) -> int:
    return (u.bit_length() + 7) // 8


def pack_pk(values: Iterable[SqlValue]) -> bytes:
    """Pack values the way cr-sqlite packs a primary key (the `pk` column of crsql_changes)."""
    vals = list(values)
    if len(vals) > 255:
        raise MalformedPkError(f"cannot pack {len(vals)} values: at most 255")
    out = bytearray([len(vals)])
    for v in vals:
        if v is None:
            out.append(NULL)
        elif isinstance(v, bool | int):
            iv = int(v)
            if not -(1 << 63) <= iv < (1 << 63):
                raise MalformedPkError(f"integer {iv} does not fit in 64 bits")
            u = iv & _MASK64
            n = _minimal_len(u)
            out.append((n << 3) | INTEGER)
            out += u.to_bytes(n, "big")
        elif isinstance(v, float):
            out.append(FLOAT)
            out += struct.pack(">d", v)
        elif isinstance(v, str | bytes | bytearray | memoryview):
            raw = v.encode("utf-8") if isinstance(v, str) else bytes(v)
            n = _minimal_len(len(raw))
            out.append((n << 3) | (TEXT if isinstance(v, str) else BLOB))
            out += len(raw).to_bytes(n, "big")
            out += raw
        else:
            raise MalformedPkError(f"cannot pack a value of type {type(v).__name__}")
    return bytes(out)


def unpack_pk(data: bytes | bytearray | memoryview) -> tuple[SqlValue, ...]:
    """Decode a packed key; raise MalformedPkError on any malformed or truncated input."""
    buf = bytes(data)
    if not buf:
        raise MalformedPkError("empty packed key")
    count = buf[0]
    pos = 1
    out: list[SqlValue] = []
    for _ in range(count):
        if pos >= len(buf):
            raise MalformedPkError("packed key is truncated")
        header = buf[pos]
        pos += 1
        typ, n = header & 0x07, header >> 3
        if n > 8:
            raise MalformedPkError(f"length field of {n} bytes is too long")
        if pos + n > len(buf):
            raise MalformedPkError("packed key is truncated")
        u = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
        if typ == INTEGER:
            out.append(u - (1 << 64) if u >= (1 << 63) else u)
        elif typ == FLOAT:
            if n != 0 or pos + 8 > len(buf):
                raise MalformedPkError("malformed float in packed key")
            out.append(struct.unpack(">d", buf[pos : pos + 8])[0])
            pos += 8
        elif typ in (TEXT, BLOB):
            if pos + u > len(buf):
                raise MalformedPkError("packed key is truncated")
            raw = buf[pos : pos + u]
            pos += u
            if typ == BLOB:
                out.append(raw)
            else:
                try:
                    out.append(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise MalformedPkError("text in packed key is not UTF-8") from exc
        elif typ == NULL:
            if n != 0:
                raise MalformedPkError("malformed NULL in packed key")
            out.append(None)
        else:
            raise MalformedPkError(f"unknown type code {typ} in packed key")
    if pos != len(buf):
        raise MalformedPkError(f"{len(buf) - pos} trailing bytes after packed key")
    return tuple(out)


def pack_columns(*values: SqlValue) -> bytes:
    """SQL-function form of pack_pk (`crsql_pack_columns(a, b, ...)`)."""
    return pack_pk(values)


def type_code(v: SqlValue) -> int:
    """SQLite's storage class code for a Python value."""
    if v is None:
        return NULL
    if isinstance(v, bool | int):
        return INTEGER
    if isinstance(v, float):
        return FLOAT
    if isinstance(v, str):
        return TEXT
    return BLOB


def compare(a: SqlValue, b: SqlValue) -> int:
    """cr-sqlite's value order: by storage class INTEGER > FLOAT > TEXT > BLOB > NULL, then
    numerically, bytewise over UTF-8, or bytewise; returns <0, 0 or >0 for a < b, a == b, a > b."""
    ta, tb = type_code(a), type_code(b)
    if ta != tb:
        return tb - ta
    if ta == NULL:
        return 0
    if ta == TEXT:
        assert isinstance(a, str) and isinstance(b, str)
        ab, bb = a.encode("utf-8"), b.encode("utf-8")
        return (ab > bb) - (ab < bb)
    if ta == BLOB:
        ab2, bb2 = bytes(a), bytes(b)  # type: ignore[arg-type]
        return (ab2 > bb2) - (ab2 < bb2)
    return (a > b) - (a < b)  # type: ignore[operator]
