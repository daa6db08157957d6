"""Errors as values: each carries the HTTP status and the one-line reason the legacy client prints.

The legacy distutils client shows only the HTTP reason phrase (`Upload failed (400): <reason>`),
so the reason is the user's whole explanation: it says what happened and what to do next. The
`outcome` names the event category recorded for reports.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


# The event outcome of an upload that may or may not have been published.
UNKNOWN = "unknown"


class GatewayError(Exception):
    status: int = 400
    outcome: str = "bad_request"
    # True when the upload may have been published all the same (the upload server took the whole
    # upload and its answer was lost): the user must not read "not published".
    maybe_published: bool = False

    def __init__(self, reason: str, *, status: int | None = None, outcome: str | None = None,
                 maybe_published: bool = False):
        super().__init__(reason)
        self.reason = one_line(reason)
        if status is not None:
            self.status = status
        if outcome is not None:
            self.outcome = outcome
        if maybe_published:
            self.maybe_published = True
            self.outcome = UNKNOWN


class BadRequest(GatewayError):
    """The request is malformed: framing, multipart or form fields."""


class RequestTooLarge(GatewayError):
    status = 413


class ClientTimeout(GatewayError):
    status = 408
    outcome = "client_aborted"


class ClientAborted(GatewayError):
    """The client went away before the request was complete; nobody is left to answer."""

    status = 400
    outcome = "client_aborted"


class ArtifactError(GatewayError):
    """The uploaded file cannot be forwarded as it is (name, format or metadata)."""


class CredentialError(GatewayError):
    status = 403
    outcome = "no_credential"


class PolicyRefusal(GatewayError):
    """Refused by the deprecation schedule: brownout, sunset or pause."""

    status = 410
    outcome = "refused_schedule"


class ServiceBusy(GatewayError):
    """The replica has no room for this work now; nothing was started."""

    status = 503
    outcome = "busy"


class KeyInactive(GatewayError):
    """The key was revoked, or its account disabled, after the connection logged in."""

    status = 403
    outcome = "refused_policy"


class UpstreamError(GatewayError):
    """The upstream could not be reached or failed: the file was not published, unless
    `maybe_published` says it may have been."""

    status = 502
    outcome = "upstream_error"


def one_line(text: str, limit: int = 400) -> str:
    """Collapse text to one printable line: a reason phrase must not carry CR, LF or controls."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 3].rstrip() + "..."
    return cleaned
