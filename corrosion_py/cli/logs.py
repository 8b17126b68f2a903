"""Logging of ``corrosion agent``: to stderr, as text or one JSON object per line (``[log]``)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corrosion_py.config import LogSection


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the ``fields`` given as extra, and
    the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(section: LogSection) -> None:
    """Log to stderr in the format and at the level of ``[log]``."""
    handler = logging.StreamHandler(sys.stderr)
    if section.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name("corrosion")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "corrosion"] + [handler]
    root.setLevel(section.level.upper())
