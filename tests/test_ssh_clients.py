"""Every common SSH client a legacy user may have, against a real gateway: OpenSSH `ssh`, PuTTY
`plink`, Dropbear `dbclient` and paramiko, each with an ed25519 and an RSA key.

For each: the gateway's pinned host key is accepted and a wrong one refused by the client; `whoami`
and `guide` work; a legacy upload (the raw request distutils sends) reaches the upstream with the
file byte-identical and the notice on stderr; an unregistered key is refused and nothing is
forwarded, and the key's user is shown what to do in the authentication banner, which every one
of these clients shows. Each client gets its own HOME, so no machine's settings or known hosts leak in.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from gateway.sshkeys import parse_public_key
from testbed.harness import GatewayHarness
from testbed.legacyrequests import make_sdist, python3_upload
from tests.helpers import register_account


# Client -> (program, the Debian package that installs it).
PROGRAMS = {
    "openssh": ("ssh", "openssh-client"),
    "plink": ("plink", "putty-tools"),
    "dbclient": ("dbclient", "dropbear-bin"),
}
# Programs that convert an OpenSSH private key for the clients that cannot read one.
CONVERTERS = {"plink": ("puttygen", "putty-tools"), "dbclient": ("dropbearconvert", "dropbear-bin")}
CLIENTS = ("openssh", "plink", "dbclient", "paramiko")
# How each client says it refused the host key it was shown.
HOST_KEY_REFUSED = {
    "openssh": "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "plink": "Host key not in manually configured list",
    "dbclient": "host key mismatch for 127.0.0.1",
    "paramiko": "BadHostKeyException",
}
KEY_KINDS = ("ed25519", "rsa")
TIMEOUT = 30


def _missing(client: str) -> str | None:
    """Why `client` cannot run here (a program missing, with its Debian package), or None."""
    for table in (PROGRAMS, CONVERTERS):
        if client in table and shutil.which(table[client][0]) is None:
            program, package = table[client]
            return f"{program} is not installed (Debian package {package}; ./dev test installs it)"
    return None


# -- keys -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientKey:
    """One user key pair in each client's format."""

    kind: str
    openssh: Path  # OpenSSH private key (ssh, paramiko)
    public_line: str

    @property
    def fingerprint(self) -> str:
        return parse_public_key(self.public_line).fingerprint

    @property
    def putty(self) -> Path:
        return self._converted(".ppk", ["puttygen", str(self.openssh), "-O", "private", "-o"])

    @property
    def dropbear(self) -> Path:
        return self._converted(".dropbear", ["dropbearconvert", "openssh", "dropbear", str(self.openssh)])

    def _converted(self, suffix: str, argv: list[str]) -> Path:
        """The key converted once (on first use, so a missing converter only skips its client)."""
        target = self.openssh.with_name(self.openssh.name + suffix)
        if not target.exists():
            subprocess.run([*argv, str(target)], check=True, capture_output=True, timeout=TIMEOUT)
        return target


def _make_key(folder: Path, name: str, kind: str) -> ClientKey:
    path = folder / name
    bits = ["-b", "3072"] if kind == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-C", f"{name}@test", "-f", str(path)],
                   check=True, timeout=TIMEOUT)
    return ClientKey(kind, path, (folder / f"{name}.pub").read_text().strip())


@pytest.fixture(scope="module")
def client_keys(tmp_path_factory) -> dict[tuple[str, str], ClientKey]:
    """(kind, 'registered' | 'stranger') -> a key; strangers are never registered."""
    folder = tmp_path_factory.mktemp("clientkeys")
    return {(kind, role): _make_key(folder, f"{role}_{kind}", kind)
            for kind in KEY_KINDS for role in ("registered", "stranger")}


@pytest.fixture(scope="module")
def impostor_host_key(tmp_path_factory) -> str:
    """An ed25519 host key that is not the gateway's: 'ssh-ed25519 <base64>'."""
    folder = tmp_path_factory.mktemp("impostor")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "key")], check=True,
                   timeout=TIMEOUT)
    return " ".join((folder / "key.pub").read_text().split()[:2])


# -- host key pins ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostPin:
    """The host keys a client is told to expect for 127.0.0.1:port ('<type> <base64>' each)."""

    port: int
    keys: tuple[str, ...]

    def known_hosts(self, *, with_port: bool = True) -> str:
        host = f"[127.0.0.1]:{self.port}" if with_port else "127.0.0.1"
        return "".join(f"{host} {key}\n" for key in self.keys)

    def fingerprints(self) -> list[str]:
        """SHA256 fingerprints, as `plink -hostkey` takes them."""
        return ["SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(key.split()[1])).digest())
                .decode().rstrip("=") for key in self.keys]


def gateway_pin(gateway: GatewayHarness) -> HostPin:
    lines = gateway.known_hosts_line().splitlines()
    return HostPin(gateway.port, tuple(" ".join(line.split()[1:3]) for line in lines))


# -- the clients -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What one session gave the user: exit status, stdout, stderr, and the authentication banner
    where the client hands it to the program (paramiko) rather than printing it."""

    client: str
    status: int
    stdout: bytes
    stderr: str
    banner: str | None = None


@dataclass
class Client:
    """One client program, one key, one pin, a HOME of its own; `run` is one session."""

    name: str
    key: ClientKey
    pin: HostPin
    home: Path

    def run(self, command: str | None = None, data: bytes = b"") -> Outcome:
        if self.name == "paramiko":
            return self._paramiko(command, data)
        argv = getattr(self, f"_{self.name}_argv")(command)
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        # A new session: no controlling terminal for a client to ask a question on.
        result = subprocess.run(argv, input=data, capture_output=True, timeout=TIMEOUT, env=env,
                                start_new_session=True)
        return Outcome(self.name, result.returncode, result.stdout, result.stderr.decode("utf-8", "replace"))

    def _openssh_argv(self, command: str | None) -> list[str]:
        known = self.home / "known_hosts"
        known.write_text(self.pin.known_hosts())
        # LogLevel INFO, the default: OpenSSH prints the authentication banner only at INFO or above.
        return ["ssh", "-F", "/dev/null", "-p", str(self.pin.port), "-i", str(self.key.openssh),
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=INFO",
                "-T", "-l", "submit", "127.0.0.1", *([command] if command else [])]

    def _plink_argv(self, command: str | None) -> list[str]:
        pins = [arg for fingerprint in self.pin.fingerprints() for arg in ("-hostkey", fingerprint)]
        return ["plink", "-ssh", "-batch", "-noagent", "-no-antispoof", "-T", "-P", str(self.pin.port),
                "-i", str(self.key.putty), *pins, "-l", "submit", "127.0.0.1", *([command] if command else [])]

    def _dbclient_argv(self, command: str | None) -> list[str]:
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        # dbclient 2022.83 looks a host up by name alone: "[host]:port" lines never match.
        (ssh_dir / "known_hosts").write_text(self.pin.known_hosts(with_port=False))
        # Never -y: that would accept any host key, and the pin would prove nothing.
        return ["dbclient", "-T", "-p", str(self.pin.port), "-i", str(self.key.dropbear),
                "-l", "submit", "127.0.0.1", *([command] if command else [])]

    def _paramiko(self, command: str | None, data: bytes) -> Outcome:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        for line in self.pin.known_hosts().splitlines():
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            client.get_host_keys().add(entry.hostnames[0], entry.key.get_name(), entry.key)
        try:
            try:
                client.connect("127.0.0.1", self.pin.port, username="submit", key_filename=str(self.key.openssh),
                               look_for_keys=False, allow_agent=False, timeout=TIMEOUT, banner_timeout=TIMEOUT,
                               auth_timeout=TIMEOUT)
            except (paramiko.SSHException, OSError) as exc:
                transport = client.get_transport()
                banner = transport.get_banner() if transport is not None else None
                return Outcome(self.name, 255, b"", f"{type(exc).__name__}: {exc}", _text(banner))
            transport = client.get_transport()
            channel = transport.open_session(timeout=TIMEOUT)
            channel.settimeout(TIMEOUT)
            if command:
                channel.exec_command(command)
            else:
                channel.invoke_shell()  # what `ssh -T host` sends: a shell request, no PTY
            channel.sendall(data)
            channel.shutdown_write()
            stdout, stderr = _drain(channel)
            return Outcome(self.name, channel.recv_exit_status(), stdout, stderr.decode("utf-8", "replace"),
                           _text(transport.get_banner()))
        finally:
            client.close()


def _drain(channel) -> tuple[bytes, bytes]:
    """Everything the channel's stdout and stderr carry, until both reach EOF."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        if channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
            continue
        chunk = channel.recv(65536)
        if not chunk:
            break
        stdout += chunk
    while True:
        chunk = channel.recv_stderr(65536)
        if not chunk:
            break
        stderr += chunk
    return bytes(stdout), bytes(stderr)


def shown_banner(outcome: Outcome) -> str:
    """The authentication banner as the user sees it: OpenSSH and dbclient print it on stderr,
    plink too, framed and wrapped at 78 columns ("| " starts a line, "> " continues one), and
    paramiko hands it to the program."""
    if outcome.client == "paramiko":
        return outcome.banner or ""
    if outcome.client != "plink":
        return outcome.stderr
    framed = re.search(r"banner message from server:\r?\n(.*?)End of banner message", outcome.stderr, re.S)
    if framed is None:
        return ""
    text = re.sub(r"\r?\n> ", "", framed.group(1))
    return re.sub(r"^\| ", "", text, flags=re.M)


def _text(banner: bytes | str | None) -> str | None:
    if isinstance(banner, bytes):
        return banner.decode("utf-8", "replace")
    return banner


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(params=CLIENTS)
def client_name(request) -> str:
    reason = _missing(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture(params=KEY_KINDS)
def key_kind(request) -> str:
    return request.param


@pytest.fixture
def registered(gateway, client_keys, key_kind, upstream) -> ClientKey:
    """Account 'alice' with the registered key of this kind and the upstream token."""
    key = client_keys[(key_kind, "registered")]
    register_account(gateway, "alice", key, token=upstream.token, email="alice@example.org")
    return key


@pytest.fixture
def make_client(gateway, client_name, tmp_path):
    def _make(key: ClientKey, pin: HostPin | None = None) -> Client:
        home = tmp_path / f"home-{client_name}"
        home.mkdir(exist_ok=True)
        return Client(client_name, key, pin or gateway_pin(gateway), home)

    return _make


def _upload_request(project: str) -> tuple[bytes, bytes]:
    """(the sdist, the raw HTTP request Python 3.11's distutils `upload` sends for it)."""
    sdist = make_sdist(project, "1.0")
    return sdist, python3_upload(project, "1.0", sdist)


def _stored_name(project: str) -> str:
    return project.lower().replace("-", "_") + "-1.0.tar.gz"


# -- the behaviours --------------------------------------------------------------------------------
def test_pinned_host_key_is_accepted_and_whoami_names_the_key(registered, make_client):
    """With the gateway's host keys pinned, `whoami` logs in and names the account and the key."""
    outcome = make_client(registered).run("whoami")
    assert outcome.status == 0, outcome.stderr
    assert b"account:  alice" in outcome.stdout
    assert registered.fingerprint.encode() in outcome.stdout


def test_a_wrong_pinned_host_key_is_refused_by_the_client(registered, make_client, gateway, impostor_host_key):
    """Pinned to another ed25519 host key, the client refuses the gateway before logging in."""
    outcome = make_client(registered, HostPin(gateway.port, (impostor_host_key,))).run("whoami")
    assert outcome.status != 0
    assert b"account:" not in outcome.stdout
    assert HOST_KEY_REFUSED[outcome.client] in outcome.stderr


def test_guide_shows_the_users_own_steps(registered, make_client):
    """`guide` prints the switch-to-twine steps naming the key of this login."""
    outcome = make_client(registered).run("guide")
    assert outcome.status == 0, outcome.stderr
    text = outcome.stdout.decode()
    assert "python -m pip install --upgrade build twine" in text
    assert registered.fingerprint in text


def test_legacy_upload_arrives_byte_identical(registered, make_client, upstream, project_name):
    """The raw distutils request on stdin: the HTTP 200 answer on stdout, the file stored upstream
    with the very bytes that were sent."""
    sdist, request = _upload_request(project_name)
    outcome = make_client(registered).run(data=request)
    assert outcome.status == 0, outcome.stderr
    assert outcome.stdout.startswith(b"HTTP/1.0 200 ")
    assert upstream.files()[_stored_name(project_name)] == hashlib.sha256(sdist).hexdigest()


def test_upload_shows_the_notice_on_stderr(registered, make_client, project_name):
    """An upload session's stderr carries the notice: account, key, project and the guide command."""
    _sdist, request = _upload_request(project_name)
    outcome = make_client(registered).run(data=request)
    assert outcome.status == 0, outcome.stderr
    assert f"pypissh-gateway: account 'alice', key {registered.fingerprint}" in outcome.stderr
    assert "Your personal steps: `ssh -p 2222 submit@127.0.0.1 guide`" in outcome.stderr


def test_an_unregistered_key_is_refused_and_nothing_is_forwarded(registered, client_keys, key_kind, make_client,
                                                                  upstream, project_name):
    """A key nobody registered does not log in, and its upload never reaches the upstream."""
    before = len(upstream.recordings())
    _sdist, request = _upload_request(project_name)
    outcome = make_client(client_keys[(key_kind, "stranger")]).run(data=request)
    assert outcome.status != 0
    assert b"HTTP/" not in outcome.stdout
    assert len(upstream.recordings()) == before
    assert _stored_name(project_name) not in upstream.files()


def test_a_refused_key_is_shown_what_to_do(registered, client_keys, key_kind, make_client, gateway, project_name):
    """An upload with a key nobody registered: the banner before the refusal names the key, says
    it is not registered here, and names the guide as the next step. (plink shows banners in
    sessions without a command, which is how the legacy client runs it.)"""
    stranger = client_keys[(key_kind, "stranger")]
    outcome = make_client(stranger).run(data=_upload_request(project_name)[1])
    assert outcome.status != 0
    banner = shown_banner(outcome)
    assert f"this key is not registered for uploads here:\n    {stranger.fingerprint}\n" in banner
    assert f"your next step is in the guide:\n    {gateway.settings.help_url}\n" in banner
