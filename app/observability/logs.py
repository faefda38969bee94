"""Logging: one JSON object per line, carrying the request id, and no secrets (every line passes
through app/observability/redaction.py first).

`GATEWAY_LOG_LEVEL` sets the root level. Each HTTP request ends with one access line (logger
`app.access`, INFO; health and metrics probes at DEBUG) built from the facts the request's code
noted on its way through (`note`): who called, which model and channel, what it cost.

Some libraries log what they send at INFO or DEBUG: httpx logs each request URL (a channel using
`?key=` auth would put its key there), the database drivers log statement parameters (channel
credentials are written to the database). They are held at WARNING whatever the root level.
"""

from __future__ import annotations

import contextvars
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

CHATTY_LIBRARIES = ("httpx", "httpcore", "aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The current HTTP request's facts for its access line. A mutable dict: tasks the request starts
# copy the context, and what they note must still reach the line the middleware writes.
request_facts_var: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("request_facts", default=None)
# uvicorn adds an ANSI-coloured copy of its message for terminals; JSON lines do not want it.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


def note(**facts: Any) -> None:
    """Add facts to the current HTTP request's access line (nothing outside a request)."""
    current = request_facts_var.get()
    if current is not None:
        current.update(facts)


def quiet_secret_bearing_loggers() -> None:
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        # exc_text first: the redaction filter leaves the scrubbed traceback there.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry, default=str).decode()


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A logging.config dict for uvicorn and our own loggers: JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        # uvicorn's access line is replaced by ours (app.access), which names the route template
        # and the caller and never the query string.
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            **{name: {"level": "WARNING"} for name in CHATTY_LIBRARIES},
        },
    }
