"""Liveness, readiness and metrics over HTTP on `health_listen` (default 127.0.0.1:9122).

    GET /healthz   200 while the process runs
    GET /readyz    200 when the database answers, the replica is not draining and its thread
                   pools are not saturated (the upload queue full, or registry_queue lookups
                   waiting), else 503 with the reason
    GET /metrics   Prometheus text format

A tiny HTTP/1.0 server on the replica's own event loop: the balancer's checks and a Prometheus
scraper are its only clients, so it reads one request per connection and closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from gateway.ops import metrics

log = logging.getLogger(__name__)

# A database that takes longer than this to answer `SELECT 1` is as good as down for a balancer.
PING_TIMEOUT = 2.0
REQUEST_TIMEOUT = 5.0
MAX_REQUEST_BYTES = 8 * 1024


@dataclass
class Readiness:
    ready: bool
    reason: str


@dataclass
class ReplicaState:
    """What readiness needs to know about the process besides the database."""

    draining: bool = False


class DatabaseProbe:
    """`SELECT 1` in its own small thread pool, so a hung database cannot fill the replica's."""

    def __init__(self, ping: Callable[[], object], timeout: float = PING_TIMEOUT):
        self._ping = ping
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pypissh-probe")

    async def check(self) -> Readiness:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._executor, self._ping), self._timeout)
        except TimeoutError:
            return Readiness(False, f"database did not answer within {self._timeout:.0f} s")
        except (SQLAlchemyError, OSError) as exc:  # the database is down or unreachable: not ready
            return Readiness(False, f"database unreachable ({type(exc).__name__})")
        return Readiness(True, "ready")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def readiness_check(state: ReplicaState, probe: DatabaseProbe, *,
                    saturation: Callable[[], str | None] | None = None) -> Callable[[], Awaitable[Readiness]]:
    """Not ready while draining, while `saturation()` names a reason, or when the database fails."""
    async def check() -> Readiness:
        if state.draining:
            return Readiness(False, "draining: finishing uploads in flight, taking no new connections")
        busy = saturation() if saturation is not None else None
        if busy:
            return Readiness(False, f"saturated: {busy}")
        return await probe.check()

    return check


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], Awaitable[Readiness]], *,
                 metrics_dir: str | None = None):
        self.host = host
        self.port = port
        self._ready = ready
        self._metrics_dir = metrics_dir
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> HealthServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True,
                                                  limit=MAX_REQUEST_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            status, content_type, body = await self._answer(head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        except Exception:
            log.exception("health endpoint failed")
            status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
                  503: "Service Unavailable", 400: "Bad Request"}[status]
        method = head.split(b" ", 1)[0] if head else b""
        writer.write(
            f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
            + (b"" if method == b"HEAD" else body))
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        text = "text/plain; charset=utf-8"
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3:
            return 400, text, b"bad request line\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, text, b"only GET\n"
        if target == b"/healthz":
            return 200, text, b"ok\n"
        if target == b"/readyz":
            result = await self._ready()
            return (200 if result.ready else 503), text, (result.reason + "\n").encode()
        if target == b"/metrics":
            body, content_type = metrics.exposition(self._metrics_dir)
            return 200, content_type, body
        return 404, text, b"not found; try /healthz, /readyz or /metrics\n"
