"""The gateway's exceptions: each carries the HTTP status and the one-line reason the legacy client
prints.

The legacy distutils client shows only the HTTP reason phrase (`Upload failed (400): <reason>`),
so the reason is the user's whole explanation: it says what happened and what to do next. The
`outcome` names the event category recorded for reports.
"""

from __future__ import annotations

import re

from gateway.phrases import NOTHING_PUBLISHED, human_size


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

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(request_too_large(size, limit))


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

    def __init__(self, account: str, fingerprint: str, token_url: str) -> None:
        super().__init__(no_credential(account, fingerprint, token_url))


class PolicyRefusal(GatewayError):
    """Refused by the deprecation schedule: brownout, sunset or pause."""

    status = 410
    outcome = "refused_schedule"


class ServiceBusy(GatewayError):
    """The replica has no room for this work now; nothing was started."""

    status = 503
    outcome = "busy"

    def __init__(self) -> None:
        super().__init__(gateway_busy())


class KeyInactive(GatewayError):
    """The key was revoked, or its account disabled, after the connection logged in."""

    status = 403
    outcome = "refused_policy"

    def __init__(self, account: str, fingerprint: str | None) -> None:
        super().__init__(key_inactive(account, fingerprint))


class UpstreamFailure(GatewayError):
    """The upload server could not be reached, or failed. Whether the file was published depends on
    when: `maybe_published` is set when the upload server took the whole upload first."""

    status = 502
    outcome = "upstream_error"


class RegistryDown(GatewayError):
    """The account registry (the database) cannot be read or written: nothing was started."""

    status = 503
    outcome = "internal_error"

    def __init__(self) -> None:
        super().__init__(registry_unavailable())


# A URL runs to the next blank; a closing bracket or final punctuation is the sentence's.
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"]+[^\s<>\"().,;:!?'\]]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
ELLIPSIS = "..."


def one_line(text: str, limit: int = 400) -> str:
    """Collapse text to one printable line: a reason phrase must not carry CR, LF or controls.

    A longer line is shortened at sentence boundaries, never through a URL: the help URL the
    index puts at the end of a refusal is the user's next step (see `shorten`)."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    return shorten(cleaned, limit)


def shorten(line: str, limit: int) -> str:
    """`line` in at most `limit` characters: whole sentences from the start, and every sentence
    that holds a URL; "..." marks what was left out. A first sentence too long for the room left
    is cut between words. If the sentences with URLs alone are too long, the text before the first
    URL is cut between words and the URLs follow; if not even the URLs fit (no reason of the
    index's is like that), the line is cut between words like any other."""
    if len(line) <= limit:
        return line
    sentences = _SENTENCE_END.split(line)
    linked = [s for s in sentences if _URL.search(s)]
    needed = sum(len(s) + 1 for s in linked) + len(ELLIPSIS)
    if linked and needed <= limit:
        return _with_sentences(sentences, limit - needed)
    urls = " ".join(m.group(0) for m in _URL.finditer(line))
    room = limit - len(urls) - 1
    if urls and room > len(ELLIPSIS):
        first = _URL.search(line)
        assert first is not None
        return f"{_cut(line[: first.start()].rstrip(), room)} {urls}".lstrip()
    return _cut(line, limit)


def _with_sentences(sentences: list[str], room: int) -> str:
    """Every sentence with a URL, and the others from the start while `room` lasts."""
    parts: list[str] = []
    skipped = False
    for sentence in sentences:
        if _URL.search(sentence):
            parts.append(sentence)
        elif not skipped and len(sentence) + 1 <= room:
            parts.append(sentence)
            room -= len(sentence) + 1
        elif not skipped:
            skipped = True
            # Nothing kept yet: the start of the first sentence says more than "..." alone.
            parts.append(_cut(sentence, room) if not parts and room > 20 else ELLIPSIS)
    return " ".join(parts)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - len(ELLIPSIS)]
    if " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip() + ELLIPSIS


# -- the reason phrases the errors above carry ----------------------------------------------------
def request_too_large(size: int, limit: int) -> str:
    return (
        f"the upload is {human_size(size)}, above this gateway's limit of {human_size(limit)} "
        "per file; upload large files with twine, or ask the index for a larger limit"
    )


def no_credential(account: str, fingerprint: str, token_url: str) -> str:
    return (
        f"no API token is stored for account '{account}' (key {fingerprint}) and the client sent none; "
        f"create a token at {token_url} and have it stored with "
        f"`pypissh-migrate accounts set-token {account}`, or set username = __token__ and "
        "password = <the token> in ~/.pypirc"
    )


def key_inactive(account: str, fingerprint: str | None) -> str:
    if fingerprint:
        return (f"key {fingerprint} is no longer active for account '{account}' (revoked, or the account is "
                f"disabled); {NOTHING_PUBLISHED}; ask the index admins")
    return (f"this key is no longer active for account '{account}' (revoked, or the account is disabled); "
            f"{NOTHING_PUBLISHED}; ask the index admins")


def gateway_busy() -> str:
    return (
        f"this gateway is busy with other uploads right now; {NOTHING_PUBLISHED}; try again in a "
        "minute"
    )


def registry_unavailable() -> str:
    return (
        "the gateway cannot reach its account registry right now, so no key can be checked; "
        f"{NOTHING_PUBLISHED}; try again in a minute"
    )
