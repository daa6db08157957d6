"""HTTP/1.x framing of the one request a legacy session carries: h11 plus the gateway's rules.

Pure: bytes in (`receive`, b"" for end of input), the request head and then the body out. Every
failure is a `GatewayError` whose reason is ours, never h11's wording or a Python repr. The rules
on top of h11: HTTP/1.0 or 1.1 only, GET or POST, a POST needs one Content-Length within the size
limit, no chunked encoding (no legacy client sent it, and refusing it leaves no doubt about where
the body ends), no second Content-Type or Authorization.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

from gateway import phrases
from gateway.errors import BadRequest, ClientAborted, GatewayError, RequestTooLarge
from gateway.phrases import NOTHING_PUBLISHED
from gateway.upload import refusals

MAX_HEADER_LINES = 100
SINGLE_HEADERS = ("content-type", "authorization", "content-length", "host")


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    user_agent: str | None
    authorization: str | None
    content_length: int | None = None


class RequestFramer:
    """Feed the session's bytes; take the head once (`read_head`), then the body (`read_body`)."""

    def __init__(self, *, max_header_bytes: int, max_body_bytes: int, max_file_bytes: int,
                 place: phrases.Place):
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_file_bytes = max_file_bytes
        self.place = place
        self.received = 0
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._head_seen = False
        self._done = False

    def receive(self, data: bytes) -> None:
        """More input; b"" means the client sent EOF."""
        self.received += len(data)
        self._h11.receive_data(data)

    def read_head(self) -> Request | None:
        """The request head, or None until enough input has arrived."""
        event = self._next_event()
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.ConnectionClosed):
            raise ClientAborted(no_request())
        if not isinstance(event, h11.Request):
            raise BadRequest(refusals.not_http("unexpected data", self.place))
        self._head_seen = True
        # h11 bounds an *incomplete* head only; a complete one that arrived in one read is
        # measured here.
        head_size = self.received - len(self._h11.trailing_data[0])
        if head_size > self.max_header_bytes or len(event.headers) > MAX_HEADER_LINES:
            raise BadRequest(headers_too_large(self.max_header_bytes // 1024, MAX_HEADER_LINES), status=431)
        return self._check_head(event)

    def read_body(self) -> bytes | None:
        """The next piece of the body; b"" once it is complete; None until more input arrives."""
        if self._done:
            return b""
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
                continue
            if isinstance(event, h11.EndOfMessage):
                self._done = True
                return b""
            raise BadRequest(data_after_body())

    # -- rules ----------------------------------------------------------------------------------
    def _next_event(self):
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: h11.RemoteProtocolError) -> GatewayError:
        text = str(exc)
        if "closed" in text:
            if self._head_seen:
                return ClientAborted(body_cut_short())
            return ClientAborted(head_cut_short())
        if exc.error_status_hint == 431:
            return BadRequest(headers_too_large(self.max_header_bytes // 1024), status=431)
        # h11's own words name the fault ("illegal request line"); what follows a colon is a
        # repr of the client's bytes, which the client does not need echoed.
        detail = text.split(":", 1)[0].strip()[:60] or "malformed"
        return BadRequest(refusals.not_http(detail, self.place))

    def _check_head(self, event: h11.Request) -> Request:
        if event.http_version not in (b"1.0", b"1.1"):
            raise BadRequest(refusals.not_http(f"HTTP/{event.http_version.decode('latin-1')[:8]}", self.place))
        method = event.method.decode("latin-1").upper()
        if method not in ("GET", "POST"):
            raise BadRequest(method_not_accepted(method), status=405)
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            if key in headers and key in SINGLE_HEADERS:
                raise BadRequest(duplicate_header(key))
            headers[key] = value.decode("latin-1")
        if "transfer-encoding" in headers:
            raise BadRequest(chunked_refused(), status=411)
        length = None
        if method == "POST":
            if "content-length" not in headers:
                raise BadRequest(no_content_length(), status=411)
            length = int(headers["content-length"])  # h11 has checked it is digits
            if length > self.max_body_bytes:
                raise RequestTooLarge(length, self.max_file_bytes)
        return Request(
            method=method,
            target=event.target.decode("latin-1"),
            headers=headers,
            user_agent=headers.get("user-agent"),
            authorization=headers.get("authorization"),
            content_length=length,
        )


# -- reason phrases -------------------------------------------------------------------------------
def no_request() -> str:
    return "the client closed the session without sending a request"


def headers_too_large(kib: int, lines: int | None = None) -> str:
    if lines is not None:
        return f"the request headers exceed {kib} KiB or {lines} lines; send a normal upload request"
    return f"the request headers exceed {kib} KiB; send a normal upload request"


def data_after_body() -> str:
    return "unexpected data after the request body"


def body_cut_short() -> str:
    return (
        "the request ended before Content-Length bytes arrived; the upload was cut short "
        f"and {NOTHING_PUBLISHED}; try again"
    )


def head_cut_short() -> str:
    return f"the session ended before the request headers were complete; {NOTHING_PUBLISHED}"


def method_not_accepted(method: str) -> str:
    return f"method {method[:10]} is not accepted; the legacy upload API takes POST"


def duplicate_header(name: str) -> str:
    return f"the request has two {name} headers; send one"


def chunked_refused() -> str:
    return "chunked uploads are not accepted; send Content-Length"


def no_content_length() -> str:
    return "the upload has no Content-Length; send one"
