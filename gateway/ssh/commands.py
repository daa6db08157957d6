"""What an SSH session does, for both front ends: the asyncssh server and OpenSSH's `stdio` mode.

A session is either a user command (`help`, `whoami`, `guide`: the exec request's command, or
sshd's SSH_ORIGINAL_COMMAND) or one legacy HTTP exchange. Both come back as what to write to
stdout and stderr and the exit status, so each front end only moves bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import messages
from gateway.lifecycle import notices
from gateway.lifecycle.guide import guide_text
from gateway.ops import metrics
from gateway.registry import Identity, UploadEvent
from gateway.services import Services
from gateway.upload.exchange import ByteSource, Exchange, Peer


@dataclass(frozen=True)
class CommandResult:
    stdout: str = ""
    stderr: str = ""
    status: int = 0


@dataclass(frozen=True)
class ExchangeResult:
    stdout: bytes
    stderr: str
    status: int
    event: UploadEvent | None = None  # what was recorded (for the session's log line)


async def run_command(command: str, identity: Identity, services: Services) -> CommandResult:
    """Run one user command as `identity`."""
    place = messages.Place.from_settings(services.settings)
    words = command.split()
    name = words[0] if words else ""
    if name == "help":
        result = CommandResult(messages.help_text(place))
    elif name == "whoami":
        result = CommandResult(messages.whoami_text(
            identity.account_name, identity.email, identity.fingerprint, identity.key_comment,
            identity.token_ciphertext is not None, identity.exempt))
    elif name == "guide":
        text = await services.run_registry(guide_text, services.registry, services.settings, identity, services.clock())
        result = CommandResult(text)
    else:
        result = CommandResult(stderr=messages.unknown_command(command), status=2)
    metrics.SESSIONS.labels(outcome="command" if result.status == 0 else "unknown_command").inc()
    return result


async def run_exchange(source: ByteSource, peer: Peer, services: Services) -> ExchangeResult:
    """One legacy HTTP exchange: the answer for stdout, the notices for stderr, the exit status.

    The notice is written once the request is read, so it can name the project.
    """
    exchange = Exchange(source, peer, services)
    reply = await exchange.run()
    stderr = ""
    if exchange.notice is not None:
        stderr += notices.session_text(exchange.notice)
    if reply.exit_status:
        # stderr reaches the user's terminal even when the client stopped reading stdout.
        stderr += messages.refusal_line(reply.status, reply.reason, maybe_published=reply.maybe_published)
    return ExchangeResult(reply.to_bytes(), stderr, reply.exit_status, exchange.event)
