"""The largest clock value the engine accepts or produces.

Every integer a change carries (col_version, db_version, cl, seq) and every version the engine
claims is at most ``MAX_CLOCK`` = 2**53 - 1. Why that number: it is exact as a double (JSON and
JavaScript clients read it unchanged), and it leaves 2**10 times headroom below SQLite's 64-bit
integers, so no ``+ 1`` or ``+ 2`` anywhere in the engine can overflow into a REAL (the failure
a clock of 2**63 - 1 caused: every later write of the row failed with "cannot store REAL value
in INTEGER column"). Honest use never comes near it: a cell written a million times a second
would need 285 years.

What happens at the limit:
- a remote change with a field above it is refused (``MalformedChangeError``) before anything
  is written, like any other malformed change;
- a local write whose column clock or causal length would pass it fails with
  ``CLOCK_LIMIT_MESSAGE`` (the statement's savepoint rolls back; the row keeps its value);
- a local transaction whose version would pass it fails with ``ClockLimitError`` and is rolled
  back (``crsql_next_db_version(n)`` with n above the limit included).
"""

from __future__ import annotations

MAX_CLOCK = 2**53 - 1

CLOCK_LIMIT_MESSAGE = f"a clock of this row reached its limit ({MAX_CLOCK}): it cannot change"
