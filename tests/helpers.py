"""Small helpers the test modules share: waiting for what another thread or process does,
registering an account the way an admin would, and a `pypissh-gateway serve` process with accounts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from click.testing import CliRunner, Result
from sqlalchemy import select

from gateway.registry import Registry, UploadEvent
from gateway.registry.migrate_db import upgrade
from gateway.registry.schema import upload_events
from gateway.settings import Settings
from gateway.sshkeys import parse_public_key
from gateway.tokens import TokenBox, create_key_file
from testbed import wait_until  # noqa: F401  (tests import it from here)
from testbed.clock import invoke_at
from testbed.gatewayprocess import GatewayProcess
from testbed.harness import GatewayHarness

if TYPE_CHECKING:
    from tests.conftest import UserKey


def reply_status(stdout: bytes) -> tuple[int, str]:
    """The status code and reason of the legacy HTTP reply a session wrote on stdout."""
    _, code, reason = stdout.split(b"\r\n", 1)[0].decode().split(" ", 2)
    return int(code), reason


def cli_runner(command: Any, *, now: str | None = None, **settings: object) -> Callable[..., Result]:
    """A runner of the click `command` with each of `settings` as `--set NAME=VALUE` before the
    arguments, its clock pinned to `now` (testbed/clock.py) unless a call gives its own `now`.
    The runner's `sets` are those options."""
    sets = [arg for name, value in settings.items() for arg in ("--set", f"{name}={value}")]

    def invoke(*args: str, input: str | None = None, now: str | None = now) -> Result:
        if now is not None:
            return invoke_at(now, command, [*sets, *args], input=input)
        return CliRunner().invoke(command, [*sets, *args], input=input)

    invoke.sets = sets  # type: ignore[attr-defined]
    return invoke


def recorded_events(registry: Registry, *, account_name: str | None = None) -> list[UploadEvent]:
    """The upload events stored, oldest first (all of them, or one account's)."""
    query = select(upload_events).order_by(upload_events.c.at, upload_events.c.id)
    if account_name is not None:
        query = query.where(upload_events.c.account_name == account_name)
    names = list(UploadEvent.__dataclass_fields__)
    with registry.engine.connect() as conn:
        return [UploadEvent(**{n: row._mapping[n] for n in names}) for row in conn.execute(query)]


def register_account(gateway: GatewayHarness, name: str, key: "UserKey | None", *, token: str | None = None,
                     **account) -> None:
    """Add account `name` with `key`, and its upstream `token` sealed as `accounts set-token` stores it."""
    accounts = gateway.registry.accounts
    accounts.add_account(name, **account)
    if key is not None:
        gateway.registry.keys.add_key(name, parse_public_key(key.public_line))
    if token is not None:
        accounts.set_token_ciphertext(name, TokenBox.from_settings(gateway.settings).seal(token))


def serve_process(folder: Path, upstream, host_key_dir: Path, keys: dict[str, "UserKey"], *,
                  preexec: Callable[[], None] | None = None, **changes) -> GatewayProcess:
    """`pypissh-gateway serve` as its own process (log in `folder`/gateway.log), with an account per
    entry of `keys` (its name, that key, the upstream's token), started and listening."""
    settings = Settings(
        database_url=f"sqlite:///{folder / 'registry.sqlite3'}",
        upstream_url=upstream.url,
        index_url=upstream.simple_url,
        upstream_ca_bundle=str(upstream.ca_file),
        host_key_dir=str(host_key_dir),
        secret_key_file=str(folder / "secret.key"),
        public_host="127.0.0.1",
        **changes,
    )
    upgrade(settings.database_url)  # what `db upgrade` and `keygen` make
    create_key_file(folder / "secret.key")
    registry = Registry.from_url(settings.database_url)
    box = TokenBox.from_settings(settings)
    for name, key in keys.items():
        registry.accounts.add_account(name, email=f"{name}@example.org")
        registry.keys.add_key(name, parse_public_key(key.public_line))
        registry.accounts.set_token_ciphertext(name, box.seal(upstream.token))
    registry.close()
    return GatewayProcess(settings, folder / "gateway.log", preexec=preexec).start()


# Characters of rich's box drawing, which piped tables must not contain.
BOX_DRAWING = frozenset(chr(code) for code in range(0x2500, 0x2580))


def ok(result) -> None:
    """A click command run by CliRunner succeeded (its output shown when not)."""
    assert result.exit_code == 0, result.output


# A request that promises 100 bytes of body and stops after six, the connection left open.
STALLED_REQUEST = (b"POST /legacy/ HTTP/1.1\r\nHost: gateway\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
                   b"Content-Length: 100\r\n\r\n--xyz\r\n")


def answers_a_stalled_request(proc: subprocess.Popen) -> tuple[int, bytes]:
    """Write STALLED_REQUEST to `proc` (a session process on pipes), keep its stdin open, and
    return its exit status and what it wrote once it gives up on the client by itself. Its pipes
    are closed and it is reaped however this ends."""
    with proc:
        try:
            proc.stdin.write(STALLED_REQUEST)
            proc.stdin.flush()
            status = proc.wait(timeout=30)
            return status, proc.stdout.read()
        finally:
            proc.kill()  # nothing to do if it has exited; otherwise the wait on leaving `with` would hang


def start_held_upload(process: GatewayProcess, key: "UserKey", upstream, project_name: str, folder: Path, *,
                      hold: float) -> tuple[subprocess.Popen, bytes]:
    """One legacy upload through the real ssh client to `process`, which the upload server holds for
    `hold` seconds; returns (the client, the sdist's bytes) once the upload has reached the upload
    server. The caller reads the answer (`communicate`) and kills the client if it must."""
    from testbed import legacyrequests as lr
    from tests.conftest import SshClient

    known = folder / "known_hosts"
    known.write_text(process.known_hosts_line())
    client = SshClient(process, key, known)  # type: ignore[arg-type]
    content = lr.make_sdist(project_name, "1.0")
    upstream.clear_recordings()
    upstream.set_fault(delay=hold, count=1)
    uploading = subprocess.Popen([*client.argv("-T", "-l", "submit"), "127.0.0.1"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert uploading.stdin is not None
        uploading.stdin.write(lr.python3_upload(project_name, "1.0", content))
        uploading.stdin.flush()
        wait_until(lambda: any(r.method == "POST" and r.faulted for r in upstream.recordings()),
                   what="the upload to reach the upload server")
    except BaseException:
        uploading.kill()
        uploading.communicate()
        raise
    return uploading, content
