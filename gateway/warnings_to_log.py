"""Python warnings go to the log at debug level, never to a user's terminal as raw text.

A library's deprecation notice (cryptography's "DSA is deprecated", printed when asyncssh is
imported) says nothing an operator or an uploader can act on, yet Python prints it on stderr,
where it breaks JSON logs and the one-line answers the commands promise. The entry points call
`send_warnings_to_log()` before they import any library; developers see the warnings in the test
suite, where they are errors (pyproject.toml), and operators with `log_level = "debug"`.
"""

from __future__ import annotations

import warnings

TYPE_CHECKING = False  # the login fast paths import this module: no `typing`, no `logging` yet
if TYPE_CHECKING:
    from typing import TextIO


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    import logging

    logging.getLogger("py.warnings").debug("%s:%s: %s: %s", filename, lineno, category.__name__, message)


def send_warnings_to_log() -> None:
    """Show every warning (once per place, Python's default) as a debug line of the log."""
    warnings.showwarning = _log_warning
