"""The gateway's log lines, captured as production writes them (JSON, through the app's redaction)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from app.observability.logs import JsonFormatter


@contextmanager
def json_log_lines(level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """What the gateway writes to stderr in production (JSON lines), captured from the root logger
    at `level`, installed before the app starts as `image-gateway serve` does."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = root.level
    # uvicorn's loggers stop propagating once any uvicorn server in this process configured them.
    loggers = [root, *(lg for lg in map(logging.getLogger, ("uvicorn", "uvicorn.access")) if not lg.propagate)]
    for logger in loggers:
        logger.addHandler(handler)
    root.setLevel(level)
    try:
        yield out
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        root.setLevel(saved)


def parsed(text: str) -> list[dict[str, Any]]:
    """Every line as its JSON object (a line that is not one fails the test)."""
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def from_logger(lines: io.StringIO | str, name: str) -> list[dict[str, Any]]:
    text = lines if isinstance(lines, str) else lines.getvalue()
    return [record for record in parsed(text) if record["logger"] == name]
