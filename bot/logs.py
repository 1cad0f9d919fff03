"""Logging set-up: a log file under the data directory, and secrets kept out of it.

Tokens can reach a log line by accident (an exception that prints a URL or request
headers, a library's debug output), so every record is scrubbed of the configured
secret values and of token-shaped strings before any handler writes it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

REDACTED = "[redacted]"

# Token shapes worth hiding even when they are not ours (a user pasting one, say):
# Slack xoxb-/xapp-/xoxp- tokens and Discord bot tokens (three base64url parts).
_TOKEN_SHAPES = re.compile(
    r"\bx(?:ox[abpesr]|app)-[A-Za-z0-9-]{10,}"
    r"|\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}\b"
)
# Interaction tokens travel in URL paths (/interactions/<id>/<token>/callback,
# /webhooks/<app id>/<token>), which HTTP clients log at debug level.
_TOKEN_PATHS = re.compile(
    r"(/(?:interactions|webhooks)/\d+/)[^/\s?\"']+"
    # Slack's response_url is a bearer capability too.
    r"|(hooks\.slack\.com/(?:commands|actions|services)/)[^\s\"']+"
)
# …and in payloads that libraries dump: {'token': '…'} / "token": "…".
_TOKEN_FIELDS = re.compile(r"""(['"](?:token|access_token)['"]\s*:\s*['"])[^'"]+""")
# Libraries that log whole payloads, and so message content, which is personal data.
# discord.py dumps gateway events at DEBUG: never below INFO. SQLAlchemy logs every
# statement with its parameters at INFO (its echo level) and aiosqlite every call at
# DEBUG: never below WARNING.
PAYLOAD_LOGGERS = {
    "discord.gateway": logging.INFO,
    "discord.state": logging.INFO,
    "aiosqlite": logging.WARNING,
    "sqlalchemy": logging.WARNING,
}


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is hidden whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _TOKEN_PATHS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)
        text = _TOKEN_FIELDS.sub(lambda m: m.group(1) + REDACTED, text)
        return _TOKEN_SHAPES.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        # Format once, scrub, and freeze the result so handlers cannot re-render the
        # raw arguments; the traceback text is scrubbed too.
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


class OneLine(logging.Formatter):
    """For the terminal: the message only; tracebacks go to the log file."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def configure_logging(level: str, log_file: Path | None, secrets: Iterable[str]) -> None:
    """Warnings and worse on stderr; everything at `level` in the log file."""
    redact = RedactSecrets(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    for name, floor in PAYLOAD_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, logging.getLevelName(level)))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(OneLine())
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(fmt)
        handlers.append(file_handler)
    for handler in handlers:
        # On the handler, not the logger: records from every library logger reach it.
        handler.addFilter(redact)
        root.addHandler(handler)
