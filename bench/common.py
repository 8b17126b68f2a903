"""What every benchmark script shares: its command line and the machine line it prints first."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3


def start(description: str | None) -> int:
    """Parse `--quick` and print the machine; return the size divisor (10 when quick)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )
    return 10 if args.quick else 1
