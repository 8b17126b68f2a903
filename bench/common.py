"""What every benchmark script shares: its command line and the machine line it prints first."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3

FLAGS: set[str] = set()
"""The script's own flags (``start(flags=...)``) given on this command line."""


def start(description: str | None, flags: dict[str, str] | None = None) -> int:
    """Parse `--quick` (and the script's own ``flags``: name -> help, into ``FLAGS``) and
    print the machine; return the size divisor (10 when quick)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    for name, text in (flags or {}).items():
        parser.add_argument(name, action="store_true", help=text)
    args = parser.parse_args()
    FLAGS.update(n for n in flags or {} if getattr(args, n.lstrip("-").replace("-", "_")))
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )
    return 10 if args.quick else 1
