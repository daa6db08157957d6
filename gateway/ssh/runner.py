"""One session, whatever carries it: the asyncssh server's channels (gateway/ssh/session.py) and the
OpenSSH mode's shim socket (gateway/ssh/shimserver.py).

A front end hands over who logged in (`Peer`) and what it did before (`FrontEnd`), the command
(`help`, `whoami`, `guide`: the exec request's command, or sshd's SSH_ORIGINAL_COMMAND; empty for
one legacy HTTP exchange), where the session's stdin comes from (`ByteSource`) and where its
stdout and stderr go (`ByteSink`), and gets back the exit status and what the session did
(`Ended`). Done here, once for every front end:

- the identity check: the key is looked up again (through the key cache, so at most
  `key_cache_seconds` old) and must still be the account's;
- the per-account session limit (`max_sessions_per_account`; the SSH server takes the slot when
  the channel opens, with `take_session_slot`);
- the answer to a refused or failed session, and its line on stderr;
- the outcome for the session log, and the log line of a refused login (sshd let in a key that is
  no longer active);
- the reminder email an upload in the notice phase queues.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from gateway import phrases
from gateway.errors import GatewayError, KeyInactive
from gateway.lifecycle import notices
from gateway.lifecycle.guide import guide_text
from gateway.ops import metrics, sessionlog
from gateway.registry import Identity
from gateway.services import Services
from gateway.ssh import user_texts
from gateway.upload.exchange import ByteSource, Exchange, Peer, Reply

log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client closed its end before the answer was written: normal, never a failure."""


class ByteSink(Protocol):
    async def write(self, *, stdout: bytes = b"", stderr: bytes = b"") -> None:
        """stderr, then stdout. Raises ClientGone when the client is no longer there."""


@dataclass(frozen=True)
class Ended:
    """How a session ended: its exit status and what it did (None: it was a refused login)."""

    status: int
    outcome: sessionlog.SessionOutcome | None


@dataclass(frozen=True)
class FrontEnd:
    """What the front end did before the session. `key_checked`: the SSH server checked the key at
    login, so a key inactive now was revoked while connected; else sshd let it in, and a failed
    check is a refused login of `username`."""

    key_checked: bool
    username: str | None = None
    # The SSH server takes the account's session slot when the channel opens (a channel holds it
    # until it closes, asking for a command or not); for sshd's sessions the runner takes it.
    holds_slot: bool = False


def claimed(account: str, fingerprint: str) -> Identity:
    """The identity sshd's forced command claims (an account and its key), until the session's
    identity check replaces it with the registry's."""
    return Identity(account_id=0, account_name=account, email=None, exempt=False, fingerprint=fingerprint,
                    key_comment=None, token_ciphertext=None, allowed_projects=None)


async def run_session(services: Services, peer: Peer, command: str, source: ByteSource, sink: ByteSink,
                      front: FrontEnd, record: sessionlog.Connection | None = None) -> Ended:
    """Run one session and write it to the log: into `record` (the asyncssh server's connection)
    or, without one, as its own line."""
    started = time.monotonic()
    ended = Ended(1, sessionlog.FAILED)
    if record is not None:
        services.sessionlog.session_started(record)
    try:
        ended, answer = await _checked_session(services, peer, command, source, front)
        await sink.write(stdout=answer.stdout, stderr=answer.stderr)
    except ClientGone as exc:
        log.info("account %s closed the session before its answer was written (%s)",
                 peer.identity.account_name, exc)
    except Exception:
        log.exception("session failed")
        await _try_write(sink, stderr=user_texts.session_failed())
    finally:
        if ended.outcome is not None:
            if record is not None:
                services.sessionlog.session_ended(record, ended.outcome)
            else:
                services.sessionlog.session(client_addr=peer.client_addr, identity=peer.identity,
                                            outcome=ended.outcome, started=started)
    return ended


@dataclass(frozen=True)
class _Answer:
    stdout: bytes = b""
    stderr: bytes = b""


async def _checked_session(services: Services, peer: Peer, command: str, source: ByteSource,
                           front: FrontEnd) -> tuple[Ended, _Answer]:
    """How the session ended, and what to write: worked out before anything is written, so a
    client gone by then still leaves the session's outcome in the log."""
    identity = peer.identity
    try:
        current = await services.current_identity(identity.account_name, identity.fingerprint)
    except GatewayError as exc:
        if not front.key_checked:
            return _refused_login(services, peer, front, sessionlog.REGISTRY_UNAVAILABLE)
        return _refused(exc, sessionlog.SessionOutcome(exc.outcome, error=exc.reason))
    if current is None:
        if not front.key_checked:
            return _refused_login(services, peer, front, sessionlog.KEY_NOT_ACTIVE)
        inactive = KeyInactive(identity.account_name, identity.fingerprint)
        return _refused(inactive, sessionlog.SessionOutcome(sessionlog.KEY_REVOKED, error=inactive.reason))
    peer.identity = current
    if not front.holds_slot:
        refusal = take_session_slot(services, current.account_name)
        if refusal is not None:
            return _refused(GatewayError(refusal, status=429), sessionlog.SessionOutcome(sessionlog.TOO_MANY_SESSIONS))
    try:
        if command:
            return await _command(services, current, command)
        return await _exchange(services, peer, source)
    finally:
        if not front.holds_slot:
            services.limits.sessions.release(current.account_name)


def take_session_slot(services: Services, account: str) -> str | None:
    """Take one of the account's `max_sessions_per_account` slots: None, else why not."""
    sessions = services.limits.sessions
    if sessions.acquire(account):
        return None
    log.info("refused a session of account %s: %d in progress", account, sessions.held(account))
    return user_texts.too_many_sessions(account, sessions.limit)


async def _command(services: Services, identity: Identity, command: str) -> tuple[Ended, _Answer]:
    """One user command as `identity`."""
    started = time.monotonic()
    words = command.split()
    name = words[0] if words else ""
    stdout, stderr, status = "", "", 0
    if name == "help":
        stdout = user_texts.help_text(phrases.Place.from_settings(services.settings))
    elif name == "whoami":
        stdout = user_texts.whoami_text(
            identity.account_name, identity.email, identity.fingerprint, identity.key_comment,
            identity.token_ciphertext is not None, identity.exempt)
    elif name == "guide":
        stdout = await services.run_registry(guide_text, services.registry, services.settings, identity,
                                             services.clock())
    else:
        stderr, status = user_texts.unknown_command(command), 2
    metrics.SESSIONS.labels(outcome="command" if status == 0 else "unknown_command").inc()
    outcome = sessionlog.SessionOutcome.of_command(command, status, started, time.monotonic())
    return Ended(status, outcome), _Answer(stdout.encode(), stderr.encode())


async def _exchange(services: Services, peer: Peer, source: ByteSource) -> tuple[Ended, _Answer]:
    """One legacy HTTP exchange. The notice is written once the request is read, so it can name
    the project; stderr also carries a refusal, as it reaches the user's terminal even when the
    client stopped reading stdout."""
    done = await Exchange(source, peer, services).run()
    reply = done.reply
    stderr = notices.session_text(done.notice)
    if reply.exit_status:
        stderr += user_texts.refusal_line(reply.status, reply.reason, maybe_published=reply.maybe_published)
    identity = peer.identity
    if done.event.action == "file_upload" and notices.wants_reminder(services.settings, identity, done.notice):
        notices.queue_reminder_soon(services, identity, done.event.at)
    ended = Ended(reply.exit_status, sessionlog.SessionOutcome.of_exchange(done.event))
    return ended, _Answer(reply.to_bytes(), stderr.encode())


def _refused(refusal: GatewayError, outcome: sessionlog.SessionOutcome) -> tuple[Ended, _Answer]:
    reply = Reply.refusal(refusal.status, refusal.reason)
    line = user_texts.refusal_line(reply.status, reply.reason)
    return Ended(reply.exit_status, outcome), _Answer(reply.to_bytes(), line.encode())


def _refused_login(services: Services, peer: Peer, front: FrontEnd, reason: str) -> tuple[Ended, _Answer]:
    """sshd let the key in, but it is no longer active (or cannot be checked): a refused login."""
    identity = peer.identity
    services.sessionlog.refused(client_addr=peer.client_addr, username=front.username,
                                key_fingerprint=identity.fingerprint or None, reason=reason)
    if reason == sessionlog.REGISTRY_UNAVAILABLE:
        log.warning("session of %s: the registry is unavailable", identity.account_name)
        text = user_texts.registry_unavailable_line()
    else:
        text = user_texts.no_active_key(identity.account_name, identity.fingerprint or None)
    return Ended(1, None), _Answer(stderr=text.encode())


async def _try_write(sink: ByteSink, *, stderr: str) -> None:
    with contextlib.suppress(ClientGone):
        await sink.write(stderr=stderr.encode())
