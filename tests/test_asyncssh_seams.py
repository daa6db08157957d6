"""The asyncssh details the gateway relies on beyond its public API (gateway/ssh/asyncssh_seams.py),
one test each, against the installed asyncssh: an upgrade that changes one fails here, by name."""

from __future__ import annotations

import asyncio
import socket

import asyncssh
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.ssh import asyncssh_seams as seams
from gateway.ssh.algorithms import kexinit_namelists, signature_algorithm
from testbed.guessingclient import GuessOutcome, guess_key_exchange


@pytest.fixture(scope="module")
def host_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="module")
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


class Recorder(asyncssh.SSHServer):
    """A server that lets `client_key` in and remembers its connection; `check` watches signatures."""

    def __init__(self, client_key: asyncssh.SSHKey | None = None, check=None):
        self.client_key = client_key
        self.check = check
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer_at_auth = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        self.peer_at_auth = self.conn.get_extra_info("peername")
        return self.client_key is not None

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.check is not None:
            seams.watch_signature(key, self.check)
        return key.public_data == self.client_key.public_data


async def _serve(server: Recorder, host_keys, **options):
    return await asyncssh.create_server(lambda: server, "127.0.0.1", 0, server_host_keys=host_keys, **options)


def _connect(port: int, **options):
    return asyncssh.connect("127.0.0.1", port, username="submit", known_hosts=None, agent_path=None,
                            config=None, **options)


def test_client_kexinit_is_the_clients_key_exchange_offer(host_key):
    """`_client_kexinit` holds the client's KEXINIT: its first name-list is the client's kex order."""
    async def scenario():
        server = Recorder()
        acceptor = await _serve(server, [host_key])
        try:
            async with _connect(acceptor.get_port(), kex_algs=["curve25519-sha256", "ecdh-sha2-nistp256"]):
                return kexinit_namelists(seams.client_kexinit(server.conn))
        finally:
            acceptor.close()

    lists = asyncio.run(scenario())
    assert lists[0][:2] == ["curve25519-sha256", "ecdh-sha2-nistp256"]


def test_wrapped_verify_sees_the_signature_and_can_refuse_it(host_key, client_key):
    """asyncssh verifies the signed login with the key object given to validate_public_key, so the
    wrapper sees the signing algorithm, and an exception from it refuses the login."""
    seen: list[str | None] = []

    def refuse(signature: bytes) -> None:
        raise asyncssh.PermissionDenied("refused by the check")

    async def login(check) -> None:
        acceptor = await _serve(Recorder(client_key, check), [host_key])
        try:
            async with _connect(acceptor.get_port(), client_keys=[client_key]):
                pass
        finally:
            acceptor.close()

    asyncio.run(login(lambda signature: seen.append(signature_algorithm(signature))))
    assert seen == ["ssh-ed25519"]
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(login(refuse))


def _short_rsa_signature() -> tuple[asyncssh.SSHKey, bytes, bytes]:
    """(an RSA public key, data, an rsa-sha2-512 signature blob of the data whose signature has
    lost its leading zero byte, as PuTTY sends it about one time in 256)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = asyncssh.import_public_key(asyncssh.import_private_key(pem).export_public_key())
    for n in range(20_000):  # PKCS#1 v1.5 is deterministic: some data gives a leading zero
        data = b"login %d" % n
        signature = private.sign(data, padding.PKCS1v15(), hashes.SHA512())
        if signature[0] == 0:
            return public, data, _blob(b"rsa-sha2-512", signature[1:])
    raise AssertionError("no signature with a leading zero byte in 20,000")


def _blob(algorithm: bytes, signature: bytes) -> bytes:
    """An SSH signature blob: string algorithm, string signature."""
    return b"".join(len(part).to_bytes(4, "big") + part for part in (algorithm, signature))


def test_asyncssh_still_refuses_an_rsa_signature_shorter_than_the_modulus():
    """asyncssh hands an RSA signature to OpenSSL as it came, and OpenSSL refuses one shorter than
    the modulus, which OpenSSH accepts and PuTTY sends. When this fails, asyncssh pads it itself
    and watch_signature's padding can go."""
    public, data, short = _short_rsa_signature()
    assert public.verify(data, short) is False


def test_wrapped_verify_pads_a_short_rsa_signature_as_openssh_does():
    """Through watch_signature the same short signature verifies (the check still sees it), while
    a signature of other data, or one longer than the modulus, is still refused."""
    public, data, short = _short_rsa_signature()
    seen: list[str | None] = []
    seams.watch_signature(public, lambda signature: seen.append(signature_algorithm(signature)))
    assert public.verify(data, short) is True
    assert seen == ["rsa-sha2-512"]
    assert public.verify(data + b"!", short) is False
    algorithm, signature = short[4:16], short[20:]
    too_long = _blob(algorithm, b"\0\0" + signature)  # 257 bytes for a 256-byte modulus
    assert public.verify(data, too_long) is False


def test_host_key_algorithms_limit_what_a_host_key_is_offered_under(client_key):
    """An RSA key pair restricted to rsa-sha2-256 no longer offers ssh-rsa (SHA-1) signatures."""
    keypair = asyncssh.load_keypairs([asyncssh.generate_private_key("ssh-rsa", key_size=2048)])[0]
    assert "ssh-rsa" in seams.offered_host_key_algorithms(keypair)
    seams.offer_host_key_algorithms(keypair, ["rsa-sha2-256"])
    assert seams.offered_host_key_algorithms(keypair) == ["rsa-sha2-256"]

    async def login(host_key_algs: list[str]) -> None:
        acceptor = await _serve(Recorder(client_key), [keypair])
        try:
            async with _connect(acceptor.get_port(), client_keys=[client_key], server_host_key_algs=host_key_algs):
                pass
        finally:
            acceptor.close()

    asyncio.run(login(["rsa-sha2-256"]))
    with pytest.raises(asyncssh.KeyExchangeFailed):
        asyncio.run(login(["ssh-rsa"]))


def test_known_algorithm_lists_name_what_this_asyncssh_negotiates():
    """The submodules' get_*_algs() still list what the gateway offers, as names."""
    assert "curve25519-sha256" in seams.known_kex_algorithms()
    assert "aes128-ctr" in seams.known_ciphers()
    assert "hmac-sha2-256-etm@openssh.com" in seams.known_mac_algorithms()
    assert "ssh-ed25519" in seams.known_signature_algorithms()


async def _accepted_login(host_key, client_key, extra: dict):
    """Accept a socket ourselves, start SSH on it with connect_accepted_socket, log a client in."""
    logins: list[str] = []
    server = Recorder(client_key)
    options = await asyncssh.SSHServerConnectionOptions.construct(
        server_factory=lambda: server, server_host_keys=[host_key])
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    loop = asyncio.get_running_loop()
    client = loop.create_task(_connect(listening.getsockname()[1], client_keys=[client_key]).__aenter__())
    sock, _address = await loop.sock_accept(listening)
    sock.setblocking(False)
    conn = await seams.connect_accepted_socket(sock, options, extra=extra, on_login=lambda: logins.append("in"))
    client_conn = await client
    return conn, client_conn, server, logins, listening


def _login_then_close(host_key, client_key, extra: dict | None = None):
    """One login over `_accepted_login`, then the client leaves: (server connection, server, logins)."""
    async def scenario():
        conn, client_conn, server, logins, listening = await _accepted_login(host_key, client_key, extra or {})
        client_conn.close()
        await conn.wait_closed()
        listening.close()
        return conn, server, logins

    return asyncio.run(scenario())


def test_connect_accepted_socket_runs_ssh_with_the_extra_info_set_first(host_key, client_key):
    """A connection built by hand on an accepted socket logs in, calls the acceptor once, and
    carries the extra info (the PROXY header's client address) from its first packet on."""
    conn, server, logins = _login_then_close(host_key, client_key, {"peername": ("192.0.2.9", 4242)})
    assert isinstance(conn, seams.ServerConnection)
    assert logins == ["in"]
    assert server.peer_at_auth == ("192.0.2.9", 4242)


def test_reload_config_is_awaited_at_login_and_ours_skips_it(host_key, client_key, monkeypatch):
    """asyncssh awaits reload_config() once per login; the gateway's override is what runs."""
    calls: list[str] = []
    ours = seams.ServerConnection.reload_config

    async def counted(self) -> None:
        calls.append("reload")
        await ours(self)

    monkeypatch.setattr(seams.ServerConnection, "reload_config", counted)

    _conn, _server, logins = _login_then_close(host_key, client_key)
    assert logins == ["in"]
    assert calls == ["reload"]


def test_bytes_arrive_through_data_received(host_key, client_key, monkeypatch):
    """asyncssh's connection is the socket's protocol: every read passes data_received(data,
    datatype), where the gateway sets TCP_QUICKACK."""
    reads: list[int] = []
    ours = seams.ServerConnection.data_received

    def counted(self, data: bytes, datatype=None) -> None:
        reads.append(len(data))
        ours(self, data, datatype)

    monkeypatch.setattr(seams.ServerConnection, "data_received", counted)

    conn, _server, _logins = _login_then_close(host_key, client_key)
    assert reads and sum(reads) > 0
    if seams.QUICKACK is not None:
        assert conn._sock is not None, "setting TCP_QUICKACK on asyncssh's socket failed"


def test_pause_reading_pauses_the_connections_socket_transport(host_key, client_key):
    """The transport asyncssh's connection is made with is the socket's: pausing it stops reads."""
    async def scenario():
        conn, client_conn, _server, _logins, listening = await _accepted_login(host_key, client_key, {})
        try:
            conn.pause_reading()
            paused = conn._tcp.is_reading()
            conn.resume_reading()
            return paused, conn._tcp.is_reading()
        finally:
            client_conn.close()
            await conn.wait_closed()
            listening.close()

    assert asyncio.run(scenario()) == (False, True)


# -- a client's guessed key exchange (RFC 4253 section 7) -------------------------------------------
async def _judge_guess(host_key, connection_class, *, server_kex: list[str], client_kex: list[str],
                       client_host_keys: list[str]) -> GuessOutcome:
    """One key exchange of the guessing client against a server connection of `connection_class`
    started on an accepted socket: what the client saw."""
    options = await asyncssh.SSHServerConnectionOptions.construct(
        server_factory=Recorder, server_host_keys=[host_key], kex_algs=server_kex)
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    loop = asyncio.get_running_loop()
    client = loop.create_task(guess_key_exchange("127.0.0.1", listening.getsockname()[1], kex=client_kex,
                                                 host_keys=client_host_keys))
    sock, _address = await loop.sock_accept(listening)
    sock.setblocking(False)
    conn = connection_class(loop, options)
    await loop.connect_accepted_socket(lambda: conn, sock)
    try:
        return await client
    finally:
        conn.close()
        await conn.wait_closed()
        listening.close()


def _guess(host_key, connection_class, **lists) -> GuessOutcome:
    return asyncio.run(_judge_guess(host_key, connection_class, **lists))


# The client prefers curve25519-sha256, which the server offers but not first: it is negotiated.
GUESS_NEGOTIATED_NOT_FIRST = dict(server_kex=["ecdh-sha2-nistp256", "curve25519-sha256"],
                                  client_kex=["curve25519-sha256", "ecdh-sha2-nistp256"],
                                  client_host_keys=["ssh-ed25519"])


def test_kexinit_reaches_the_handler_through_the_class_table():
    """asyncssh dispatches KEXINIT through `_packet_handlers[MSG_KEXINIT]` to `_process_kexinit`;
    ServerConnection's table routes it to the override."""
    from asyncssh.connection import SSHConnection
    from asyncssh.constants import MSG_KEXINIT

    assert asyncssh.SSHServerConnection._packet_handlers[MSG_KEXINIT] is SSHConnection._process_kexinit
    assert seams.ServerConnection._packet_handlers[MSG_KEXINIT] is seams.ServerConnection._process_kexinit


def test_asyncssh_itself_still_answers_a_guess_the_rfc_calls_wrong(host_key):
    """Stock asyncssh judges a guess by the negotiated algorithm: a client whose first choice is
    the server's second is answered on its guess (what ServerConnection corrects). If this fails,
    asyncssh applies the RFC's rule itself and the override can go."""
    outcome = _guess(host_key, asyncssh.SSHServerConnection, **GUESS_NEGOTIATED_NOT_FIRST)
    assert outcome == GuessOutcome(guess_was_wrong=True, answered="guess")


def test_a_wrong_guess_is_ignored_and_the_repeat_answered(host_key):
    """First key exchanges differ: the guessed packet is ignored, the client's repeat is answered."""
    outcome = _guess(host_key, seams.ServerConnection, **GUESS_NEGOTIATED_NOT_FIRST)
    assert outcome == GuessOutcome(guess_was_wrong=True, answered="repeat")


def test_a_guess_is_wrong_when_the_first_host_key_algorithms_differ(host_key):
    """Same first key exchange, but the client prefers a host key algorithm the server lacks."""
    outcome = _guess(host_key, seams.ServerConnection, server_kex=["curve25519-sha256", "ecdh-sha2-nistp256"],
                     client_kex=["curve25519-sha256"], client_host_keys=["ecdsa-sha2-nistp256", "ssh-ed25519"])
    assert outcome == GuessOutcome(guess_was_wrong=True, answered="repeat")


def test_a_right_guess_is_answered(host_key):
    """Both sides prefer curve25519-sha256 and ssh-ed25519: the guessed packet is the exchange."""
    outcome = _guess(host_key, seams.ServerConnection, server_kex=["curve25519-sha256", "ecdh-sha2-nistp256"],
                     client_kex=["curve25519-sha256"], client_host_keys=["ssh-ed25519"])
    assert outcome == GuessOutcome(guess_was_wrong=False, answered="guess")
