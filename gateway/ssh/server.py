"""The asyncssh front end: public-key logins for `ssh_user`, one exchange or command per session.

The server object (`GatewayServer`, one per connection) decides authentication and applies the
limits before and after login: per address before it (`limits.py`), per account after it
(connections, sessions), and for the connection's whole life (an idle connection is closed, and
one whose key is revoked or account disabled is refused new sessions and closed once idle, see
`revocation.py`; `LoggedIn`). `session.GatewaySession` does the work of each channel. `start_server` listens
with the gateway's algorithms and host keys.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import asyncssh

from gateway.errors import RegistryDown, key_inactive
from gateway.lifecycle import notices
from gateway.limits import Login
from gateway.ops import metrics, sessionlog
from gateway.registry import Identity
from gateway.services import Services
from gateway.ssh import algorithms, asyncssh_seams, hostkeys, listener, revocation, user_texts
from gateway.ssh.listener import GatewayListener
from gateway.ssh.runner import take_session_slot
from gateway.ssh.session import GatewaySession, RefusedSession, TimedChannel

log = logging.getLogger(__name__)

# How long a refused connection is kept half-open for its client to read the reason.
LINGER_SECONDS = 1.0


class LoggedIn:
    """A logged-in connection's life: its session channels, the idle timer, and revocation (the
    key revoked or the account disabled: new sessions are refused, and the connection is closed
    once it has none). `disconnect` ends the connection with a reason the client prints."""

    def __init__(self, services: Services, login: Login, source: str, disconnect: Callable[[int, str], None]):
        self.login = login
        self.revoked = False
        self.channels = 0  # session channels open now
        self._services = services
        self._source = source
        self._disconnect = disconnect
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._arm_idle_timer()

    def revoke(self) -> None:
        """The key was revoked or the account disabled: refuse new sessions, and close the
        connection now if it is idle, else when its last session ends (an upload already being
        forwarded finishes; one not yet forwarded is refused before it is)."""
        if self.revoked or self._closed:
            return
        self.revoked = True
        log.info("key %s of account %s is no longer active: refusing new sessions of its connection from %s",
                 self.login.fingerprint, self.login.account, self._source)
        if self.channels == 0:
            self._close_revoked()

    def channel_opened(self) -> None:
        self.channels += 1
        self._stop_idle_timer()

    def channel_closed(self) -> None:
        self.channels -= 1
        if self.channels:
            return
        if self.revoked:
            self._close_revoked()
        else:
            self._arm_idle_timer()

    def closed(self) -> None:
        self._closed = True
        self._stop_idle_timer()

    def _close_revoked(self) -> None:
        metrics.CLOSED_BY_GATEWAY.labels(reason="revoked").inc()
        reason = key_inactive(self.login.account, self.login.fingerprint)
        self._disconnect(asyncssh.DISC_BY_APPLICATION, reason)

    def _arm_idle_timer(self) -> None:
        timeout = self._services.settings.idle_timeout
        if timeout > 0 and self.channels == 0 and self._idle_timer is None and not self._closed:
            self._idle_timer = asyncio.get_running_loop().call_later(timeout, self._idle)

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle(self) -> None:
        self._idle_timer = None
        if self.channels or self._closed:
            return
        timeout = self._services.settings.idle_timeout
        log.info("closed the connection of account %s from %s: no session for %.0f s", self.login.account,
                 self._source, timeout)
        metrics.CLOSED_BY_GATEWAY.labels(reason="idle").inc()
        self._disconnect(asyncssh.DISC_BY_APPLICATION, user_texts.idle_disconnect(self.login.account, timeout))


class GatewayServer(asyncssh.SSHServer):
    """Authentication for one connection: public keys of `ssh_user`, looked up in the registry."""

    def __init__(self, services: Services):
        self._services = services
        self._conn: asyncssh.SSHServerConnection | None = None
        self._looked_up: dict[str, Identity | None] = {}
        # asyncssh does not say which key authenticated. It calls validate_public_key for the
        # query and again, just before checking the signature, for the signed attempt; the key
        # validated last before auth completes is therefore the one that signed.
        self._identity: Identity | None = None
        self._source = "unknown"
        self._failures = 0
        self._closed = False
        self._user_signature: str | None = None
        self._banner_sent_for: set[str] = set()  # keys told they are not registered
        self._logged_in: LoggedIn | None = None  # once logged in and counted against the account
        self._channels_refused = 0  # past max_sessions_per_connection
        # The connection's state, shared with the listener and the log (gateway/ops/sessionlog.py).
        self.record = services.sessionlog.connection()

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self.record = conn.get_extra_info(listener.STATE) or self.record
        self._source = self.record.client_addr = _client_address(conn)
        limits = self._services.limits
        admission = limits.startups.admit(self, self._source)
        if not admission.admitted:
            self.record.refusal = sessionlog.TOO_MANY_STARTUPS
            self._refuse(asyncssh.DISC_TOO_MANY_CONNECTIONS, admission.reason or "")
        elif isinstance(admission.evict, GatewayServer):
            admission.evict.record.refusal = sessionlog.EVICTED
            admission.evict._refuse(asyncssh.DISC_TOO_MANY_CONNECTIONS, user_texts.evicted_startup())

    def _refuse(self, code: int, reason: str) -> None:
        """Disconnect with a reason the client prints; deferred so our version line goes first."""
        loop = asyncio.get_running_loop()

        def _disconnect() -> None:
            if self._conn is None or self._closed:
                return
            transport_socket = self._conn.get_extra_info("socket")
            try:
                kept = transport_socket.dup() if transport_socket is not None else None
            except OSError:  # out of file descriptors: close at once, the reason may be lost
                kept = None
            self._conn.disconnect(code, reason)
            if kept is not None:
                _LINGERING.add(task := loop.create_task(_linger_close(kept)))
                task.add_done_callback(_LINGERING.discard)

        loop.call_soon(_disconnect)

    def auth_completed(self) -> None:
        self.record.refusal = None  # keys refused before the one that logged in
        limits = self._services.limits
        limits.startups.release(self)
        identity = self._identity
        assert identity is not None and self._conn is not None
        login = Login(identity.account_id, identity.account_name, identity.fingerprint)
        logged_in = LoggedIn(self._services, login, self._source, self._refuse)
        if not limits.connections.admit(logged_in, login):
            logged_in.closed()
            self.record.refusal = sessionlog.TOO_MANY_CONNECTIONS
            self._refuse(asyncssh.DISC_TOO_MANY_CONNECTIONS,
                         user_texts.too_many_connections(login.account, limits.connections.limit))
            return
        self._logged_in = logged_in
        self.record.log_in(identity)
        self._conn.set_extra_info(legacy_crypto=_legacy_crypto(self._conn, self._services.settings.legacy_algorithms,
                                                               self._user_signature))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        limits = self._services.limits
        limits.startups.release(self)
        if self._logged_in is not None:
            self._logged_in.closed()
            limits.connections.release(self._logged_in)
        if not self.record.authenticated and self._failures:
            limits.penalties.record_failure(self._source)
        if self._conn is not None:
            self.record.ssh_client_version = self._conn.get_extra_info("client_version")
        self._services.sessionlog.connection_closed(self.record)

    async def begin_auth(self, username: str) -> bool:
        self.record.username = username
        banner = await notices.auth_banner(self._services)
        if banner and self._conn is not None:
            self._conn.send_auth_banner(banner)
        return True

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True  # and nothing else: asyncssh's defaults refuse passwords and host-based logins

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self._identity = None
        fingerprint = key.get_fingerprint("sha256")
        self.record.key_fingerprint, self.record.key_type = fingerprint, key.get_algorithm()
        if username == self._services.settings.ssh_user:
            if fingerprint not in self._looked_up:
                try:
                    self._looked_up[fingerprint] = await self._services.identity_for_key(fingerprint)
                except RegistryDown as exc:
                    # A disconnect with the reason, not a dropped connection: OpenSSH prints
                    # "Received disconnect ...: <reason>" even at LogLevel=ERROR.
                    raise asyncssh.ServiceNotAvailable(exc.reason) from None
            self._identity = self._looked_up[fingerprint]
        if self._identity is None:
            wrong_user = username != self._services.settings.ssh_user
            self.record.refusal = sessionlog.WRONG_USER if wrong_user else sessionlog.UNKNOWN_KEY
            self._refuse_key(fingerprint)
            self._tell_unregistered(fingerprint, wrong_user)
            return False
        account = self._identity.account_name
        connections = self._services.limits.connections
        if connections.full(account):
            self.record.refusal = sessionlog.TOO_MANY_CONNECTIONS
            raise asyncssh.DisconnectError(asyncssh.DISC_TOO_MANY_CONNECTIONS,
                                           user_texts.too_many_connections(account, connections.limit))
        self._watch_signature(key, fingerprint)
        return True

    def _refuse_key(self, fingerprint: str) -> None:
        """A key that is not registered (or not for `ssh_user`). From an address in the penalty
        box that ends the connection, with how long such keys stay refused; a registered key
        from the same address is not affected, so a user behind a busy NAT still logs in."""
        self._failures += 1
        limits = self._services.limits
        wait = limits.penalties.blocked_for(self._source)
        if wait:
            self.record.refusal = sessionlog.PENALIZED
            self.record.detail = user_texts.penalty_detail(wait)  # the time the client is told
            raise asyncssh.DisconnectError(asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT,
                                           user_texts.login_penalty(self._source, wait))
        if self._failures >= limits.max_auth_tries > 0:
            self.record.refusal = sessionlog.TOO_MANY_AUTH_TRIES
            raise asyncssh.PermissionDenied(user_texts.too_many_auth_tries(self._failures))

    def _tell_unregistered(self, fingerprint: str, wrong_user: bool) -> None:
        """Before the key is refused, send a banner saying what to do (clients that show banners
        print it; otherwise the user reads only "Permission denied (publickey)"). Once per key and
        connection, and per address no more often than the refused-login log lines are written."""
        if self._conn is None or fingerprint in self._banner_sent_for:
            return
        self._banner_sent_for.add(fingerprint)
        if not self._services.limits.banners.admit(self._source):
            return
        settings = self._services.settings
        self._conn.send_auth_banner(user_texts.unregistered_key_banner(
            fingerprint, settings.help_url, settings.ssh_user if wrong_user else None))

    def _watch_signature(self, key: asyncssh.SSHKey, fingerprint: str) -> None:
        """Refuse a SHA-1 `ssh-rsa` signature (unless legacy_algorithms) and remember which
        algorithm signed, before asyncssh verifies the signed attempt."""
        legacy = self._services.settings.legacy_algorithms

        def check(signature: bytes) -> None:
            algorithm = algorithms.signature_algorithm(signature)
            if algorithm in algorithms.LEGACY and not legacy:
                self._failures += 1
                self.record.refusal = sessionlog.SHA1_SIGNATURE
                raise asyncssh.PermissionDenied(user_texts.sha1_signature_refused(fingerprint))
            self._user_signature = algorithm

        asyncssh_seams.watch_signature(key, check)

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, user_texts.forwarding_refused())

    def unix_connection_requested(self, dest_path):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        user_texts.forwarding_refused("forwarding"))

    def session_requested(self) -> TimedChannel | bool:
        logged_in = self._logged_in
        if self._identity is None or self._conn is None or logged_in is None:
            return False
        account = self._identity.account_name
        cap = self._services.settings.max_sessions_per_connection
        if logged_in.channels >= cap:
            # Refused at the open, as OpenSSH's MaxSessions does: no channel object, no timer, and
            # one log line per connection however many opens a client sends.
            self._channels_refused += 1
            metrics.CHANNELS_REFUSED.inc()
            if self._channels_refused == 1:
                log.info("refusing session channels of account %s past %d open on one connection", account, cap)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            user_texts.too_many_channels(account, cap))
        logged_in.channel_opened()
        timeout = self._services.settings.channel_request_timeout
        if logged_in.revoked:
            fingerprint = logged_in.login.fingerprint
            log.info("refused a session of account %s: key %s is no longer active", account, fingerprint)
            self._services.sessionlog.session_refused(self.record, sessionlog.KEY_REVOKED)
            return RefusedSession(403, key_inactive(account, fingerprint), account=account,
                                  request_timeout=timeout, on_close=logged_in.channel_closed)
        refusal = take_session_slot(self._services, account)
        if refusal is not None:
            self._services.sessionlog.session_refused(self.record, sessionlog.TOO_MANY_SESSIONS)
            return RefusedSession(429, refusal, account=account, request_timeout=timeout,
                                  on_close=logged_in.channel_closed)

        def closed() -> None:
            self._services.limits.sessions.release(account)
            logged_in.channel_closed()

        return GatewaySession(self._services, self._identity, self._conn, on_close=closed,
                              on_revoked=logged_in.revoke, record=self.record)


_LINGERING: set[asyncio.Task] = set()  # refused connections closing gently (the loop keeps weak references)


def _legacy_crypto(conn: asyncssh.SSHServerConnection, legacy: bool, user_signature: str | None) -> bool:
    """Whether the connection uses an algorithm only `legacy_algorithms` allows (for the event)."""
    host_key = conn.get_server_host_key()
    return algorithms.legacy_in_use(
        asyncssh_seams.client_kexinit(conn),
        algorithms.kex_algorithms(legacy),
        asyncssh_seams.offered_host_key_algorithms(host_key) if host_key else [],
        conn.get_extra_info("recv_mac"),
        user_signature,
    )


async def _linger_close(sock: socket.socket) -> None:
    """Close a refused connection gently. asyncssh aborts the socket; with the client's first bytes
    still unread that sends a TCP reset, and the client loses the disconnect reason it was just
    sent. A duplicate descriptor keeps the socket open: send FIN, read until the client closes
    (it does, on reading the reason), then close."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    try:
        await asyncio.sleep(0)  # asyncssh writes the disconnect message first
        sock.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(LINGER_SECONDS):
            while await loop.sock_recv(sock, 4096):
                pass
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


def _client_address(conn: asyncssh.SSHServerConnection) -> str:
    """The address limits are keyed by (behind a trusted balancer, the PROXY header's)."""
    peer = conn.get_extra_info("peername")
    return str(peer[0]) if peer else "unknown"


def server_options(services: Services) -> dict:
    settings = services.settings
    legacy = settings.legacy_algorithms
    host_keys = asyncssh.load_keypairs(hostkeys.load(settings.host_key_dir))
    for keypair in host_keys:
        # An RSA host key would otherwise also offer SHA-1 `ssh-rsa` signatures.
        offered = asyncssh_seams.offered_host_key_algorithms(keypair)
        asyncssh_seams.offer_host_key_algorithms(keypair, algorithms.host_key_algorithms(offered, legacy))
    return dict(
        server_host_keys=[keypair for keypair in host_keys if asyncssh_seams.offered_host_key_algorithms(keypair)],
        kex_algs=algorithms.kex_algorithms(legacy),
        encryption_algs=algorithms.ciphers(),
        mac_algs=algorithms.mac_algorithms(legacy),
        signature_algs=algorithms.signature_algorithms(legacy),
        compression_algs=["none"],  # uploads are compressed archives; zlib would only cost CPU
        gss_kex=False,
        gss_auth=False,
        # Every key in host_key_dir is announced after login (OpenSSH's hostkeys-00 extension), so
        # clients with UpdateHostKeys learn a new key before it replaces the old one.
        send_server_host_keys=True,
        server_version="pypissh_gateway",
        encoding=None,
        allow_pty=False,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        line_editor=False,
        login_timeout=settings.login_timeout,
        keepalive_interval=60,
        keepalive_count_max=3,
    )


async def connection_options(services: Services) -> asyncssh.SSHServerConnectionOptions:
    """The options of every new connection: the host keys as host_key_dir holds them now."""
    return await asyncssh.SSHServerConnectionOptions.construct(
        server_factory=lambda: GatewayServer(services), **server_options(services))


async def start_server(services: Services, *, host: str | None = None, port: int | None = None,
                       sock: socket.socket | None = None) -> GatewayListener:
    """Listen on `listen` (or `sock`, an already bound listening socket) and serve SSH.

    The port is bound with SO_REUSEPORT (several worker processes share it); with
    `proxy_protocol` on, each connection's PROXY header is read before SSH starts.
    """
    settings = services.settings
    options = await connection_options(services)
    if sock is None:
        sock = listener.bind(host if host is not None else settings.listen_host,
                             port if port is not None else settings.listen_port)
    proxy = listener.ProxySettings(settings.proxy_protocol, listener.networks(settings.proxy_allowed))
    started = listener.GatewayListener(sock, options, proxy, services.sessionlog.connection).start()
    started.alongside(revocation.watch_logins(services))
    return started
