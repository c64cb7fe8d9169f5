"""Structured logs: one JSON object per line on stderr, with the request or connection id, never a secret.

``configure`` sets up the root logger; ``uvicorn_config`` is the same as a ``logging.config`` dict for uvicorn,
which applies it in each hub process it starts. The level comes from ``TICKER_LOG_LEVEL``. Editor tokens and
bearer credentials are masked in every line, whatever put them there (a library's error message, an exception).
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import re
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# The id of the HTTP request (or reader connection) being handled, added to every line logged meanwhile.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("ticker_request_id", default=None)

_SECRETS = re.compile(r"(tkr_)[A-Za-z0-9_\-]+|((?:bearer|Bearer|BEARER)\s+)[^\s\"',]+")


def _mask(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + "[redacted]"


class TickerJsonFormatter(JsonFormatter):
    """``{"time", "level", "logger", "message", ...extra fields}``, secrets masked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("json_ensure_ascii", False)
        kwargs.setdefault("timestamp", "time")  # ISO 8601, UTC
        # uvicorn adds a copy of each message with terminal colours: not for a log pipeline.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "color_message"])
        super().__init__("{levelname}{name}{message}", *args, style="{", **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return _SECRETS.sub(_mask, super().format(record))


class ContextFilter(logging.Filter):
    """Adds ``request_id`` (when one is being handled) and the process id to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


def uvicorn_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: everything through one JSON handler; uvicorn's access log off (the
    request middleware logs each request once, with its id and without its query string)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": TickerJsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def configure(level: str) -> None:
    logging.config.dictConfig(uvicorn_config(level))
