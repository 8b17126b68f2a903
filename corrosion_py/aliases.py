"""Type aliases every layer shares, defined once (stdlib only, so the CRR engine and the
client can import them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

SqlValue: TypeAlias = int | float | str | bytes | None
"""A value as SQLite stores it: INTEGER, REAL, TEXT, BLOB or NULL."""

Params: TypeAlias = Sequence[Any] | Mapping[str, Any]
"""Parameters of one statement: positional, or by name."""

Statement: TypeAlias = str | tuple[str, Params]
"""One SQL statement, with its parameters when it has any."""

Range: TypeAlias = tuple[int, int]
"""An inclusive range of integers (versions, seqs), ``start <= end``."""
