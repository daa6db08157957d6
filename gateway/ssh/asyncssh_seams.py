"""Every use of asyncssh beyond its public API, in one place.

The gateway needs a few things asyncssh does not offer publicly: which key exchange a connection
negotiated, which algorithm signed a user's login, an RSA host key that offers only SHA-2
signatures, an RSA login signature PuTTY sent without its leading zero byte accepted as OpenSSH
accepts it, two costs per login removed and TCP back-pressure on a connection, a client's guessed
key-exchange packet judged as RFC 4253 says (Dropbear's dbclient could not log in otherwise), and
SSH started on a socket the gateway accepted itself (to read a PROXY header first). Each is done
here, and only here, and each has a focused test in tests/test_asyncssh_seams.py, so an asyncssh
release that changes one of these details fails there, by name, instead of somewhere in a login.

What is relied on, read from asyncssh 2.24's source:
- `SSHConnection._client_kexinit` and `_server_kexinit`: both sides' KEXINIT payloads, kept for
  the exchange hash;
- `SSHConnection._process_kexinit` handles a KEXINIT, reached through the class table
  `_packet_handlers[MSG_KEXINIT]`; it sets `_ignore_first_kex`, which the receive loop reads to drop
  the next key-exchange packet, and the packets after a KEXINIT wait until its handler returns;
- `SSHKey.verify(data, signature)` is what the server calls, on the key object it passed to
  `validate_public_key`, to check the signed login attempt, and it refuses an RSA signature
  shorter than the modulus (which OpenSSH accepts, and PuTTY sends);
- `SSHKeyPair.host_key_algorithms`: the list a host key is offered under;
- `asyncssh.kex/encryption/mac/public_key.get_*_algs()`: what this build can negotiate;
- `SSHServerConnection(loop, options, acceptor=...)` is an asyncio protocol (`connection_made`,
  `data_received(data, datatype)`), and `acceptor` is called once the login succeeded;
- `SSHServerConnection.reload_config()` is awaited at the start of every login.

The version pin (pyproject: `asyncssh>=2.24,<3`): 2.24 is the release these details were read from
and the first with everything the gateway offers (ML-KEM key exchange, `send_server_host_keys`);
the upper bound is asyncssh's next major version. The details above are private, so asyncssh may
change them in any release, even a minor one; rather than pin to one minor release (and miss its
security fixes), the seam tests run against whatever is installed and name the detail that moved.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

import asyncssh
from asyncssh.constants import MSG_KEXINIT
from asyncssh.encryption import get_encryption_algs
from asyncssh.kex import get_kex_algs
from asyncssh.mac import get_mac_algs
from asyncssh.packet import SSHPacket
from asyncssh.public_key import get_public_key_algs

from gateway.ssh import kexinit


# -- what this asyncssh can negotiate ---------------------------------------------------------------
def known_kex_algorithms() -> list[str]:
    return _names(get_kex_algs())


def known_ciphers() -> list[str]:
    return _names(get_encryption_algs())


def known_mac_algorithms() -> list[str]:
    return _names(get_mac_algs())


def known_signature_algorithms() -> list[str]:
    return _names(get_public_key_algs())


def _names(algorithms: list[bytes]) -> list[str]:
    return [alg.decode("ascii") for alg in algorithms]


# -- host keys --------------------------------------------------------------------------------------
def offered_host_key_algorithms(keypair: asyncssh.SSHKeyPair) -> list[str]:
    return _names(list(keypair.host_key_algorithms))


def offer_host_key_algorithms(keypair: asyncssh.SSHKeyPair, algorithms: list[str]) -> None:
    """Offer `keypair` only under `algorithms` (an RSA key would also offer SHA-1 `ssh-rsa`)."""
    keypair.host_key_algorithms = [alg.encode("ascii") for alg in algorithms]


# -- what a connection negotiated ---------------------------------------------------------------------
def client_kexinit(conn: asyncssh.SSHServerConnection) -> bytes:
    """The client's KEXINIT payload (b"" before it arrived). asyncssh keeps no public record of the
    negotiated key exchange; the client's list and ours determine it (see algorithms.legacy_in_use)."""
    return getattr(conn, "_client_kexinit", b"")


def watch_signature(key: asyncssh.SSHKey, check: Callable[[bytes], None]) -> None:
    """Call `check(signature)` before asyncssh verifies the signed login attempt with `key`.

    asyncssh accepts any signature algorithm the key type knows, SHA-1 `ssh-rsa` included, whatever
    the server's signature_algs, and does not say which one signed. It verifies with the key object
    it handed to `validate_public_key`, so wrapping that object's verify sees the signature; `check`
    may raise (asyncssh.PermissionDenied) to refuse it.

    An RSA signature shorter than the key's modulus is padded with leading zero bytes first, as
    OpenSSH's sshd does. PuTTY (plink 0.78 measured) drops the leading zero byte of a signature
    whose first byte is zero, about one login in 256 with an RSA key; asyncssh passes it to
    OpenSSL unchanged, which refuses any length but the modulus's, and the user reads "Server
    refused public-key signature despite accepting key!".
    """
    verify = key.verify
    modulus_size = _rsa_modulus_size(key)

    def checked(data: bytes, sig: bytes) -> bool:  # SSHKey.verify's own parameters
        check(sig)
        if modulus_size:
            sig = _pad_rsa_signature(sig, modulus_size)
        return verify(data, sig)

    # Replacing the method on this one key object is the seam: asyncssh verifies with it.
    key.verify = checked  # type: ignore[method-assign]


RSA_SIGNATURES = (b"ssh-rsa", b"rsa-sha2-256", b"rsa-sha2-512")


def _ssh_strings(blob: bytes) -> list[bytes]:
    """The SSH wire strings (uint32 length, bytes) `blob` is made of; [] if it is not only those."""
    strings, offset = [], 0
    while offset + 4 <= len(blob):
        size = int.from_bytes(blob[offset:offset + 4], "big")
        offset += 4
        if offset + size > len(blob):
            return []
        strings.append(blob[offset:offset + size])
        offset += size
    return strings if offset == len(blob) else []


def _rsa_modulus_size(key: asyncssh.SSHKey) -> int:
    """The modulus's length in bytes for an RSA key (0 for any other key), from its public blob:
    string "ssh-rsa", mpint e, mpint n."""
    fields = _ssh_strings(key.public_data)
    if len(fields) != 3 or fields[0] != b"ssh-rsa":
        return 0
    return len(fields[2].lstrip(b"\0"))


def _pad_rsa_signature(blob: bytes, modulus_size: int) -> bytes:
    """The signature blob (string algorithm, string signature) with an RSA signature shorter than
    the modulus left-padded with zero bytes; anything else unchanged."""
    fields = _ssh_strings(blob)
    if len(fields) != 2 or fields[0] not in RSA_SIGNATURES or len(fields[1]) >= modulus_size:
        return blob
    padded = fields[1].rjust(modulus_size, b"\0")
    return b"".join(len(field).to_bytes(4, "big") + field for field in (fields[0], padded))


# -- the server connection -----------------------------------------------------------------------------
QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
# What asyncssh's packet tables hold: handler(connection, packet type, packet id, packet).
PacketHandler = Callable[[Any, int, int, SSHPacket], Awaitable[None] | None]


class ServerConnection(asyncssh.SSHServerConnection):
    """asyncssh's server connection, less two costs every login paid (bench/small_uploads.py).

    - Every read is acknowledged at once (Linux TCP_QUICKACK). OpenSSH's client leaves Nagle on
      for non-interactive sessions, and asyncssh sends EXT_INFO before, not after, the client's
      NEWKEYS: the server then has nothing to answer NEWKEYS with, the kernel delays its ACK by
      40 ms, and the client's next message waits for that ACK. One setsockopt per read.
    - No per-login rebuild of the options: asyncssh re-evaluates its sshd-style config file's
      Match blocks for the login's user and address, but the gateway passes no such file, so
      the rebuild (about 5% of the gateway's CPU per upload) always gave the same options.

    It also offers `pause_reading`/`resume_reading` of the socket, the back-pressure a session's
    reader applies (see session.ChannelReader), and judges a client's guessed key-exchange packet
    as RFC 4253 section 7 says (see `_process_kexinit`).
    """

    _sock: socket.socket | None = None
    _tcp: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tcp = cast(asyncio.Transport, transport)  # a socket's transport: it reads and writes
        if QUICKACK is not None:
            self._sock = transport.get_extra_info("socket")
        super().connection_made(transport)

    def pause_reading(self) -> None:
        """Stop reading the socket (TCP back-pressure on the client); see session.ChannelReader."""
        if self._tcp is not None and not self._tcp.is_closing():
            self._tcp.pause_reading()

    def resume_reading(self) -> None:
        if self._tcp is not None and not self._tcp.is_closing():
            self._tcp.resume_reading()

    def data_received(self, data: bytes, datatype: asyncssh.DataType = None) -> None:
        super().data_received(data, datatype)
        if self._sock is not None and QUICKACK is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:
                self._sock = None

    async def reload_config(self) -> None:
        return

    async def _process_kexinit(self, pkttype: int, pktid: int, packet: SSHPacket) -> None:
        """asyncssh's KEXINIT handling, with RFC 4253 section 7's verdict on a guessed packet.

        A client may send its first key-exchange packet right after its KEXINIT, guessing the
        algorithm (`first_kex_packet_follows`; Dropbear's dbclient always does). The RFC: the guess
        is wrong when the two sides' *first* key exchange or host key algorithms differ; the
        server then ignores the guessed packet and the client sends it again. asyncssh 2.24 calls
        the guess right whenever the *negotiated* key exchange is the client's first: with
        mlkem768x25519-sha256 first on our list, a client that does not know it (dbclient
        2022.83) guesses curve25519-sha256, which is negotiated. asyncssh answers the guess, the
        client sends the packet again as the RFC tells it to, and asyncssh disconnects with "Key
        exchange not in progress" before the login starts.

        Reordering our list cannot fix this for every client: any client whose first choice is one
        we offer, but not our first, is misjudged. So the verdict is replaced, after asyncssh has
        read the client's KEXINIT and sent ours, and before the guessed packet is read (asyncssh
        holds later packets until this handler returns), by the RFC's rule applied to the two
        KEXINIT payloads (kexinit.guess_is_wrong), the rule OpenSSH and Dropbear apply too.
        """
        await super()._process_kexinit(pkttype, pktid, packet)
        self._ignore_first_kex = kexinit.guess_is_wrong(self._client_kexinit, self._server_kexinit)

    # A class-level table, as in asyncssh, which declares it without ClassVar (hence the ignore).
    _packet_handlers: ClassVar[dict[int, PacketHandler]] = {  # type: ignore[misc]
        **asyncssh.SSHServerConnection._packet_handlers, MSG_KEXINIT: _process_kexinit}


async def connect_accepted_socket(sock: socket.socket, options: asyncssh.SSHServerConnectionOptions, *,
                                  extra: dict[str, Any], on_login: Callable[[], None]) -> ServerConnection:
    """Start SSH on a socket the gateway accepted itself, as asyncssh's own listener does per
    connection, with `extra` connection info (the client's address from a PROXY header) set before
    the connection starts, so authentication, limits and events all see it. `on_login` is called
    once the client has logged in."""
    loop = asyncio.get_running_loop()
    conn = ServerConnection(loop, options, acceptor=lambda _conn: on_login())
    if extra:
        conn.set_extra_info(**extra)
    await loop.connect_accepted_socket(lambda: conn, sock)
    return conn
