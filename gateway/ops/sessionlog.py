"""The log's record of who connected and what happened: one line per SSH connection when it ends,
one per session in the OpenSSH mode, one per refused login, and summaries of floods.

- **Connection** (logger `gateway.sessions`, "connection closed"): written when an SSH connection
  of the asyncssh server ends, with what its session did. A connection that carried several
  sessions (a multiplexing client) writes a "session ended" line for each but the last, so one
  connection with one session is always one line.
- **Session** (`gateway.sessions`, "session ended"): one per session of the OpenSSH mode (the
  replica's `shim_socket`, or `stdio` in process), where sshd owns the connection.
- **Refused login** (`gateway.logins`, "login refused"): a connection that ended without logging
  in, with the user name, the key offered and the reason. Floods are summarised per address: past
  `PER_ADDRESS` lines from one address within `WINDOW` seconds, further refusals are only counted,
  and one "refused logins suppressed" line per address per window says how many.

Fields carry the upload event's names (gateway/registry/events.py: conn_id aside). Never a
token, a password or file content: the user's command is logged only as the name of a known
command, and every value a client chose (user name, banner) is quoted by the formatter.
"""

from __future__ import annotations

import collections
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.ops.logformat import fields
from gateway.phrases import SSH_COMMANDS

if TYPE_CHECKING:
    from gateway.registry import Identity, UploadEvent

SESSIONS = logging.getLogger("gateway.sessions")
LOGINS = logging.getLogger("gateway.logins")

# A person fumbling keys makes a few refused logins a minute; past this many from one address in
# WINDOW seconds it is a flood, and only counted.
PER_ADDRESS = 5
WINDOW = 60.0
# Addresses remembered by the limiter; beyond this, the quiet ones are forgotten first, so a
# spray of random (IPv6) sources cannot grow it without bound.
MAX_ADDRESSES = 10_000
# Client-chosen text is cut to this length in the log.
MAX_TEXT = 100

# Why a login was refused (the `reason` field).
WRONG_USER = "wrong_user"
UNKNOWN_KEY = "unknown_key"
SHA1_SIGNATURE = "sha1_signature"
TOO_MANY_AUTH_TRIES = "too_many_auth_tries"
PENALIZED = "penalized"
TOO_MANY_STARTUPS = "too_many_startups"
TOO_MANY_CONNECTIONS = "too_many_connections"  # the account's cap on logged-in connections
EVICTED = "evicted"
NO_LOGIN = "closed_before_login"
KEY_NOT_ACTIVE = "key_not_active"
REGISTRY_UNAVAILABLE = "registry_unavailable"

# Outcomes of sessions that carried no exchange (exchanges use the upload event's outcomes).
COMMAND = "command"
UNKNOWN_COMMAND = "unknown_command"
TOO_MANY_SESSIONS = "too_many_sessions"
KEY_REVOKED = "key_revoked"  # revoked (or its account disabled) while the connection was open
SESSION_FAILED = "internal_error"
NO_SESSION = "no_session"


def new_conn_id() -> str:
    """A connection's id in the log: random, so it is unique across replicas and restarts."""
    return secrets.token_hex(6)


def command_name(command: str) -> str:
    """The user's command as logged: its name when it is one of ours, else `other` (the text
    itself is the user's and may hold anything, a pasted token included)."""
    words = command.split()
    return words[0] if words and words[0] in SSH_COMMANDS else "other"


def _text(value: str | None) -> str | None:
    return value[:MAX_TEXT] if value else None


@dataclass(frozen=True)
class SessionOutcome:
    """What one session did, in the upload event's names."""

    outcome: str
    action: str | None = None
    command: str | None = None
    project: str | None = None
    version: str | None = None
    filename: str | None = None
    size: int | None = None
    upstream_status: int | None = None
    error: str | None = None
    duration_ms: int | None = None

    @classmethod
    def of_exchange(cls, event: UploadEvent) -> SessionOutcome:
        return cls(outcome=event.outcome, action=event.action, project=event.project, version=event.version,
                   filename=event.filename, size=event.size, upstream_status=event.upstream_status,
                   error=event.error, duration_ms=event.duration_ms)

    @classmethod
    def of_command(cls, command: str, status: int, started: float, now: float) -> SessionOutcome:
        name = command_name(command)
        return cls(outcome=COMMAND if status == 0 else UNKNOWN_COMMAND, command=name,
                   duration_ms=int((now - started) * 1000))

    def fields(self) -> dict:
        return dict(action=self.action, command=self.command, project=self.project, version=self.version,
                    filename=self.filename, size=self.size, upstream_status=self.upstream_status,
                    outcome=self.outcome, error=self.error)


FAILED = SessionOutcome(SESSION_FAILED)


@dataclass
class Connection:
    """One SSH connection of the asyncssh server: its state, shared by the listener (which marks it
    authenticated), the server (the user, the key, the account, a refusal) and the sessions (what
    each did), and what the log tells of it when it ends."""

    conn_id: str
    client_addr: str | None
    started: float
    ssh_client_version: str | None = None
    username: str | None = None
    key_type: str | None = None
    key_fingerprint: str | None = None
    account_name: str | None = None
    authenticated: bool = False  # the client authenticated (it may still be refused: `refusal`)
    refusal: str | None = None  # why the login was refused, once known
    detail: str | None = None  # the refusal as the client was told it, where that says more (a wait)
    running: int = 0  # sessions started and not ended
    sessions: int = 0  # sessions ended
    last: SessionOutcome | None = None
    closed: bool = False
    written: bool = False

    @property
    def logged_in(self) -> bool:
        return self.authenticated and self.refusal is None

    def log_in(self, identity: Identity) -> None:
        self.account_name = identity.account_name
        self.key_fingerprint = identity.fingerprint
        self.key_type = identity.key_type or self.key_type


@dataclass
class _Flood:
    window_start: float
    last_seen: float
    lines: int = 0
    flooding: bool = False
    suppressed: int = 0
    due_at: float | None = None


class RefusalLimiter:
    """Which refused logins are written: the first `per_address` of an address within `window`
    seconds. Past that the address is flooding: refusals are counted until a whole window passes
    without one, and `due` hands out one count per address per window. Pure; `clock` is monotonic.
    With `summaries` off nothing is counted for `due` (for a limit nobody reports on, such as the
    SSH server's refused-key banners)."""

    def __init__(self, per_address: int = PER_ADDRESS, window: float = WINDOW, *,
                 clock: Callable[[], float] = time.monotonic, max_addresses: int = MAX_ADDRESSES,
                 summaries: bool = True):
        self.per_address = per_address
        self.window = window
        self._clock = clock
        self._max = max_addresses
        self._summaries = summaries
        self._floods: dict[str, _Flood] = {}
        self._due: collections.deque[tuple[float, str]] = collections.deque()

    def __len__(self) -> int:
        return len(self._floods)

    def admit(self, address: str) -> bool:
        """True when this refusal gets its own line; False when it is only counted."""
        now = self._clock()
        flood = self._floods.get(address)
        if flood is None:
            if len(self._floods) >= self._max:
                self._forget(now)
            flood = self._floods[address] = _Flood(window_start=now, last_seen=now)
        elif now - flood.last_seen >= self.window and flood.flooding:
            flood.flooding, flood.window_start, flood.lines = False, now, 0  # quiet for a window: over
        elif now - flood.window_start >= self.window and not flood.flooding:
            flood.window_start, flood.lines = now, 0
        flood.last_seen = now
        if not flood.flooding and flood.lines < self.per_address:
            flood.lines += 1
            return True
        flood.flooding = True
        if not self._summaries:
            return False
        flood.suppressed += 1
        if flood.due_at is None:
            flood.due_at = now + self.window
            self._due.append((flood.due_at, address))
        return False

    def due(self, *, everything: bool = False) -> list[tuple[str, int]]:
        """(address, refusals not written) for each address whose summary is due (`everything`:
        each one pending, as a process stops), once each."""
        now = self._clock()
        found: list[tuple[str, int]] = []
        while self._due and (everything or self._due[0][0] <= now):
            due_at, address = self._due.popleft()
            flood = self._floods.get(address)
            if flood is None or flood.due_at != due_at:
                continue
            found.append((address, flood.suppressed))
            flood.suppressed, flood.due_at = 0, None
        return found

    def _forget(self, now: float) -> None:
        quiet = [a for a, f in self._floods.items() if f.due_at is None and now - f.last_seen >= self.window]
        for address in quiet:
            del self._floods[address]
        while len(self._floods) >= self._max:
            oldest = next((a for a, f in self._floods.items() if f.due_at is None), None)
            del self._floods[oldest if oldest is not None else next(iter(self._floods))]


class SessionLog:
    """Writes the lines of one process; the front ends call it at each step of a connection."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, per_address: int = PER_ADDRESS,
                 window: float = WINDOW):
        self._clock = clock
        self.limiter = RefusalLimiter(per_address, window, clock=clock)

    # -- the asyncssh server: one line per connection -------------------------------------------
    def connection(self, client_addr: str | None = None) -> Connection:
        return Connection(new_conn_id(), client_addr, self._clock())

    def session_started(self, conn: Connection) -> None:
        conn.running += 1

    def session_ended(self, conn: Connection, outcome: SessionOutcome) -> None:
        conn.running = max(0, conn.running - 1)
        conn.sessions += 1
        if conn.last is not None:  # a multiplexed connection: the previous session gets its own line
            self._session_line(conn, conn.last)
        conn.last = outcome
        if conn.closed and conn.running == 0:
            self._connection_line(conn)

    def session_refused(self, conn: Connection, outcome: str) -> None:
        """A session a limit refused before it started (e.g. too many of the account's)."""
        self.session_started(conn)
        self.session_ended(conn, SessionOutcome(outcome))

    def connection_closed(self, conn: Connection) -> None:
        conn.closed = True
        if not conn.logged_in:
            self.refused(conn_id=conn.conn_id, client_addr=conn.client_addr, username=conn.username,
                         key_type=conn.key_type, key_fingerprint=conn.key_fingerprint,
                         reason=conn.refusal or NO_LOGIN, ssh_client_version=conn.ssh_client_version,
                         detail=conn.detail)
            conn.written = True
        elif conn.running == 0:
            self._connection_line(conn)

    def _connection_line(self, conn: Connection) -> None:
        if conn.written:
            return
        conn.written = True
        done = conn.last or SessionOutcome(NO_SESSION)
        SESSIONS.info("connection closed", extra=fields(
            conn_id=conn.conn_id, client_addr=conn.client_addr, ssh_client_version=_text(conn.ssh_client_version),
            key_type=conn.key_type, key_fingerprint=conn.key_fingerprint, account_name=conn.account_name,
            sessions=conn.sessions, **done.fields(),
            duration_ms=int((self._clock() - conn.started) * 1000)))

    def _session_line(self, conn: Connection, done: SessionOutcome) -> None:
        SESSIONS.info("session ended", extra=fields(
            conn_id=conn.conn_id, client_addr=conn.client_addr, ssh_client_version=_text(conn.ssh_client_version),
            key_type=conn.key_type, key_fingerprint=conn.key_fingerprint, account_name=conn.account_name,
            **done.fields(), duration_ms=done.duration_ms))

    # -- the OpenSSH mode: one line per session -------------------------------------------------
    def session(self, *, client_addr: str | None, identity: Identity, outcome: SessionOutcome,
                started: float) -> None:
        SESSIONS.info("session ended", extra=fields(
            conn_id=new_conn_id(), client_addr=client_addr or None, ssh_client_version=None,
            key_type=identity.key_type, key_fingerprint=identity.fingerprint, account_name=identity.account_name,
            **outcome.fields(), duration_ms=int((self._clock() - started) * 1000)))

    # -- refused logins -------------------------------------------------------------------------
    def refused(self, *, client_addr: str | None, username: str | None, key_fingerprint: str | None,
                reason: str, key_type: str | None = None, conn_id: str | None = None,
                ssh_client_version: str | None = None, detail: str | None = None) -> None:
        if self.limiter.admit(client_addr or "unknown"):
            LOGINS.info("login refused", extra=fields(
                conn_id=conn_id or new_conn_id(), client_addr=client_addr, ssh_client_version=_text(ssh_client_version),
                username=_text(username), key_type=key_type, key_fingerprint=key_fingerprint, reason=reason,
                detail=detail))
        self.flush()

    def flush(self, *, everything: bool = False) -> None:
        """Write the flood summaries that are due (the replica calls this every few seconds, so the
        last minute of a flood is told when it stops; with `everything` when it stops itself)."""
        for address, suppressed in self.limiter.due(everything=everything):
            LOGINS.warning("refused logins suppressed", extra=fields(
                client_addr=address, suppressed=suppressed, window_seconds=int(self.limiter.window)))
