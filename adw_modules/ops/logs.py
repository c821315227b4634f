"""Structured logs: ``text`` for people, ``json`` (one object per line) for machines.

Library code logs with ``extra={"data": {...}}``; the JSON formatter puts those fields at
the top level next to ``ts``, ``level``, ``logger`` and ``msg``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            out.update({k: v for k, v in data.items() if v is not None})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: str = "text", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("adw")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # APScheduler reports a skipped run of a job that is still busy: expected here, not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


class RedactingFilter(logging.Filter):
    """Masks known secrets in a record's message, arguments and structured fields."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            record.data = {k: self.redact(v) if isinstance(v, str) else v for k, v in data.items()}
        return True


def install_redaction(redact: Callable[[str], str]) -> None:
    """Mask secrets in everything the ``adw`` loggers write from now on."""
    for handler in logging.getLogger("adw").handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(RedactingFilter(redact))
