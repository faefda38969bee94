"""Redaction of every log line, whoever logs it: message, arguments, extra fields, traceback.

Error texts are scrubbed where they are made (app/providers/credentials.py), but a log line can
carry a credential from anywhere: a traceback quoting a header an upstream sent back, an access log
line with `?key=` in its query string, a library's debug message. So the last stage before a line
is written cuts out (1) every channel secret the gateway currently knows and (2) anything shaped
like a credential (Bearer tokens, `key=` query values, API-key headers, gateway keys, private keys).

The lifespan owns the redactor: it installs a filter on every configured log handler at start,
feeds it the catalog's secrets on each reload, and removes it at shutdown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

REDACTED = "[redacted]"
FRAGMENT_CHARS = 8  # an echoed key cut to its first 8+ characters is still redacted
MIN_SECRET_CHARS = 4  # a shorter "secret" would redact ordinary words

# Credential shapes, each `(kept lead)value`: the lead stays so that a line still says what was cut.
_CREDENTIAL_CHARS = r"[A-Za-z0-9\-._~+/]{8,}=*"  # 8+: "Bearer token" in a sentence is left alone
_CREDENTIAL_SHAPES = (
    rf"(?i:(\bbearer\s+)){_CREDENTIAL_CHARS}",
    r"(?i:([?&](?:key|api_key|apikey|access_token|token)=))[^&\s\"'#]+",
    r"(?i:((?:x-goog-api-key|x-api-key|api[-_]key)[\"']?\s*[:=]\s*[\"']?))[^\s\"',;}]+",
    # Gateway keys are igw_ + 43 characters; the 12-character prefix shown in listings stays readable.
    r"(igw_)[A-Za-z0-9_\-]{16,}",
    r"()ya29\.[A-Za-z0-9_\-.]+",  # Google OAuth access tokens minted from service accounts
    r"()-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[A-Za-z0-9+/=\s]|\\n)*(?:-----END [A-Z ]*PRIVATE KEY-----)?",
)
# The rest of a token once a secret's first characters matched: an upstream may echo a key cut short.
_REST_OF_WORD = r"[^\s\"'&,;)}\]]*"


def _secret_pattern(secret: str) -> str:
    if len(secret) < FRAGMENT_CHARS:
        return re.escape(secret)
    return re.escape(secret[:FRAGMENT_CHARS]) + _REST_OF_WORD


def _compile(secrets: frozenset[str]) -> re.Pattern[str]:
    # Longest first, so that a short secret that is a prefix of a long one cannot cut it in two.
    known = "|".join(_secret_pattern(s) for s in sorted(secrets, key=len, reverse=True))
    shapes = [f"()(?:{known})"] if known else []
    return re.compile("|".join([*shapes, *_CREDENTIAL_SHAPES]))


def _keep_lead(match: re.Match[str]) -> str:
    lead = next((group for group in match.groups() if group is not None), "")
    return lead + REDACTED


class SecretRedactor:
    """One compiled pattern for the known secrets and the credential shapes, rebuilt only when
    the set of secrets changes. Safe to read from any thread: the pattern is swapped whole."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._pattern = _compile(self._secrets)
        self.remember(secrets)

    def remember(self, secrets: Iterable[str]) -> None:
        """Redact exactly these secrets from now on (the catalog's current set)."""
        known = frozenset(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        if known != self._secrets:
            self._pattern = _compile(known)
            self._secrets = known

    def scrub(self, text: str) -> str:
        return self._pattern.sub(_keep_lead, text)


# Attributes every LogRecord has; anything else on a record came from `extra=` (or a library).
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_PLAIN = (int, float, bool, type(None))
_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Scrubs a record in place before its handler formats it. Installed on every handler (a
    handler's filters see records propagated from any logger; a logger's would not)."""

    def __init__(self, redactor: SecretRedactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        # The same record reaches several handlers; one pass per redactor is enough.
        if record.__dict__.get("_redacted_by") is self.redactor:
            return True
        scrub = self.redactor.scrub
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: logging would report it anyway
            message = f"{record.msg!s} (arguments not formattable)"
        record.msg, record.args = scrub(message), None
        for name, value in list(record.__dict__.items()):
            if name in _RECORD_FIELDS or name.startswith("_") or isinstance(value, _PLAIN):
                continue
            text = value if isinstance(value, str) else str(value)
            scrubbed = scrub(text)
            if scrubbed != text or isinstance(value, str):
                record.__dict__[name] = scrubbed
        if record.exc_info:
            # Rendered once here and kept as exc_text (every formatter prints that); the live
            # exception is dropped so that no formatter can render it again, unscrubbed.
            record.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record.__dict__["_redacted_by"] = self.redactor
        return True


def _configured_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    handlers: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            handlers[id(handler)] = handler
    if logging.lastResort is not None:  # what Python writes to when nothing is configured
        handlers[id(logging.lastResort)] = logging.lastResort
    return list(handlers.values())


@contextmanager
def redacting_logs(redactor: SecretRedactor) -> Iterator[None]:
    """Every handler configured when the process starts (root, uvicorn's, Python's last resort)
    scrubs with `redactor` until the block ends."""
    redaction = RedactingFilter(redactor)
    handlers = _configured_handlers()
    for handler in handlers:
        handler.addFilter(redaction)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redaction)
