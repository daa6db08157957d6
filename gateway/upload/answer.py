"""The legacy client's HTTP answer, written in one place: by the exchange (`exchange.Reply`) and by
the OpenSSH mode's shim when there is no replica to answer (gateway/ssh/shim.py). Standard
library only: the shim imports it."""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` is for type checkers only here (see gateway/loginsettings.py)
if TYPE_CHECKING:
    from collections.abc import Sequence

PLAIN_TEXT = "text/plain; charset=utf-8"


def http_answer(status: int, reason: bytes, body: bytes, headers: Sequence[tuple[str, str]] = (),
                content_type: str = PLAIN_TEXT) -> bytes:
    """`HTTP/1.0 <status> <reason>`, the headers and the body. distutils prints
    `Upload failed (<status>): <reason>` from the status line; `reason` is already encoded the
    way the client will print it."""
    head = [f"Content-Type: {content_type}", f"Content-Length: {len(body)}", *(f"{n}: {v}" for n, v in headers)]
    lines = "".join(f"\r\n{line}" for line in head) + "\r\n\r\n"
    return f"HTTP/1.0 {status} ".encode("ascii") + reason + lines.encode("utf-8") + body
