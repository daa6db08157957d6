"""How the gateway's log lines look (`log_format`: `text` or `json`) and where they go (`log_file`
or stderr).

A line may carry structured fields, passed as `extra=fields(name=value, ...)`: the JSON format
writes one object per line with `ts` (UTC, ISO 8601), `level`, `logger`, `msg` and the fields; the
text format writes the same timestamp, level and logger, the message, then the fields as
`name=value`. Values that are not plain words are quoted (JSON string syntax), so a client's
banner or a user name with spaces or newlines can never split a line or forge a field.

Hand-written rather than python-json-logger: both formats are a few lines over the standard
library's Formatter around one `json.dumps`, and the text format's key=value is ours either way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from gateway.errors import ConfigError

FIELDS_ATTRIBUTE = "pypissh_fields"
_PLAIN = re.compile(r"[A-Za-z0-9_.:/@+,\-\[\]]+\Z")
_RESERVED = ("ts", "level", "logger", "msg")


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call that carries structured fields."""
    return {FIELDS_ATTRIBUTE: values}


def record_fields(record: logging.LogRecord) -> Mapping[str, Any]:
    return getattr(record, FIELDS_ATTRIBUTE, None) or {}


def utc_timestamp(created: float) -> str:
    """A record's time as UTC ISO 8601 with milliseconds, e.g. 2026-11-24T09:30:00.123Z."""
    when = dt.datetime.fromtimestamp(created, dt.UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if _PLAIN.match(text) else json.dumps(text)


class TextFormatter(logging.Formatter):
    """`<ts> <LEVEL> <logger>: <message> name=value ...`"""

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.prefix}{utc_timestamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        extra = " ".join(f"{name}={text_value(value)}" for name, value in record_fields(record).items()
                         if value is not None)
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's fields (ASCII only, so
    no character of a client's can end the line)."""

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": utc_timestamp(record.created), "level": record.levelname,
                                "logger": record.name, "msg": record.getMessage()}
        for name, value in record_fields(record).items():
            if name not in _RESERVED:
                data[name] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return self.prefix + json.dumps(data, ensure_ascii=True, default=str, separators=(",", ":"))


def formatter(log_format: str, prefix: str = "") -> logging.Formatter:
    return JsonFormatter(prefix) if log_format == "json" else TextFormatter(prefix)


def file_handler(path: str) -> logging.Handler:
    """Append to `path` (made 0640 when new); a one-line ConfigError when it cannot be opened."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as exc:
        raise ConfigError(log_file_unusable(path, exc.strerror or str(exc))) from None
    os.close(fd)
    return logging.FileHandler(path, mode="a", encoding="utf-8")


def reopen_log_file() -> str | None:
    """Reopen the root logger's log file by its name (after logrotate moved the old one away, as
    sshd and nginx do on SIGHUP); the file's path, or None when the log goes elsewhere."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            continue
        path = handler.baseFilename
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)  # a new file is 0640, as at start
        old = handler.setStream(os.fdopen(fd, "a", encoding="utf-8"))
        if old is not None:
            old.close()
        return path
    return None


def install(handler: logging.Handler, level: str) -> None:
    """Make `handler` the root logger's only handler (a second call replaces the first's)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())


def configure(level: str, log_format: str = "text", log_file: str | None = None) -> None:
    """The log of a long-running process: `log_file` when set, else stderr."""
    handler = file_handler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    install(handler, level)


# -- what the operator reads about the log --------------------------------------------------------
def log_file_unusable(path: str, detail: str) -> str:
    return f"cannot append to log_file {path}: {detail}; fix its folder's permissions or choose another log_file"
