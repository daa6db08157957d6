"""One legacy HTTP exchange: read the request, decide, forward, answer, record.

Run by the session runner (gateway/ssh/runner.py) for every front end: it hands over a byte source
and the peer, and gets back the `Reply` to write out, the event recorded and the notice to print.
Nothing reaches the upstream until the whole request has arrived and passed every check, so a
client that stops half-way publishes nothing.

This module sits below gateway/services.py: it names what it uses of the services in
`ExchangeServices`, which `Services` provides.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import errno
import logging
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

import trove_classifiers
from packaging.utils import canonicalize_name

from gateway import phrases
from gateway.errors import (
    UNKNOWN,
    BadRequest,
    ClientTimeout,
    ConfigError,
    CredentialError,
    GatewayError,
    KeyInactive,
    PolicyRefusal,
    RegistryDown,
    RequestTooLarge,
)
from gateway.lifecycle import notices
from gateway.lifecycle.schedule import Decision, Schedule, decide
from gateway.ops import metrics
from gateway.registry import Identity, Registry, UploadEvent
from gateway.settings import Settings
from gateway.tokens import TokenBox
from gateway.upload import artifact as artifacts
from gateway.upload import refusals
from gateway.upload.answer import PLAIN_TEXT, http_answer
from gateway.upload.coremetadata import UTF8
from gateway.upload.form import MultipartBody, check_client_digests, disagreements, rebuild
from gateway.upload.framing import Request, RequestFramer
from gateway.upload.multipart import Form, MultipartParser, Spool, boundary_from_content_type
from gateway.upload.upstream import UploadedFile, UpstreamClient

log = logging.getLogger(__name__)

# Room for the form's text fields around the file itself.
FORM_OVERHEAD = 1024 * 1024
READ_SIZE = 256 * 1024

T = TypeVar("T")


class ExchangeServices(Protocol):
    """What an exchange uses of the replica's services (gateway/services.py:Services)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def tokens(self) -> TokenBox: ...
    @property
    def upstream(self) -> UpstreamClient: ...
    @property
    def replica(self) -> str: ...
    @property
    def clock(self) -> Callable[[], dt.datetime]: ...

    async def run(self, func: Callable[..., T], *args: Any) -> T: ...
    async def run_registry(self, func: Callable[..., T], *args: Any) -> T: ...
    async def current_schedule(self) -> Schedule: ...
    async def current_identity(self, account: str, fingerprint: str) -> Identity | None: ...


class ByteSource(Protocol):
    async def read(self, max_bytes: int) -> bytes:
        """Some bytes, or b"" at end of input. May wait indefinitely: callers time it."""


@dataclass
class Peer:
    """What the front end knows about the connection, for the event record."""

    identity: Identity
    client_addr: str | None = None
    ssh_client_version: str | None = None
    legacy_crypto: bool = False


# How a legacy client reads the reply's reason phrase, which is all it prints of a refusal.
REASON_LATIN1 = "latin-1"
REASON_UTF8 = "utf-8"
# Characters outside Latin-1 that have a plain stand-in (the rest decompose, or become "?").
_STAND_INS = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
              "\u2026": "..."}


def reason_charset(user_agent: str | None) -> str:
    """The encoding in which the client will print the reason phrase correctly.

    Python 3's http.client decodes the status line as ISO-8859-1, as HTTP specifies. Python 2's
    httplib keeps the bytes and distutils writes them to the terminal as they are, which today
    means UTF-8. Python 2 clients say `Python-urllib/2.x`, or (some old ones) nothing at all."""
    if user_agent is None or user_agent.startswith("Python-urllib/2."):
        return REASON_UTF8
    return REASON_LATIN1


def _latin1(ch: str) -> str:
    if ord(ch) < 256:
        return ch
    if ch in _STAND_INS:
        return _STAND_INS[ch]
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if ord(c) < 128)
    return base or "?"


def encode_reason(reason: str, charset: str) -> bytes:
    """The reason phrase's bytes; in Latin-1, a character it lacks becomes its nearest letter
    (ś becomes s) or "?": the reply body and the stderr line carry the exact text."""
    if charset == REASON_UTF8:
        return reason.encode("utf-8")
    return "".join(_latin1(ch) for ch in reason).encode("latin-1")


@dataclass
class Reply:
    status: int
    reason: str
    body: str = ""
    content_type: str = PLAIN_TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason_charset: str = REASON_LATIN1
    # A failure after which the upload may have been published all the same (the reason names
    # where to look): the user must not read "not published".
    maybe_published: bool = False

    @classmethod
    def refusal(cls, status: int, reason: str, *, maybe_published: bool = False) -> Reply:
        """The answer to a refused or failed request: the reason is also the body."""
        return cls(status, reason, reason + "\n", maybe_published=maybe_published)

    @property
    def exit_status(self) -> int:
        return 0 if 200 <= self.status < 300 else 1

    def to_bytes(self) -> bytes:
        return http_answer(self.status, encode_reason(self.reason, self.reason_charset), self.body.encode("utf-8"),
                           self.headers, self.content_type)


@dataclass(frozen=True)
class Exchanged:
    """What one exchange comes to: the answer, the event recorded, the notice for stderr."""

    reply: Reply
    event: UploadEvent
    notice: notices.Notice


class Exchange:
    def __init__(self, source: ByteSource, peer: Peer, services: ExchangeServices):
        self.source = source
        self.peer = peer
        self.services = services
        self.settings = services.settings
        self.place = phrases.Place.from_settings(services.settings)
        self.started = time.monotonic()
        self.event = UploadEvent(
            at=services.clock(),
            outcome="bad_request",
            account_id=peer.identity.account_id,
            account_name=peer.identity.account_name,
            key_fingerprint=peer.identity.fingerprint,
            client_addr=peer.client_addr,
            ssh_client_version=peer.ssh_client_version,
            legacy_crypto=peer.legacy_crypto,
            replica=services.replica,
        )
        self._framer = RequestFramer(
            max_header_bytes=self.settings.max_header_bytes,
            max_body_bytes=self.settings.max_upload_bytes + FORM_OVERHEAD,
            max_file_bytes=self.settings.max_upload_bytes,
            place=self.place,
        )
        self._deadline = self.started + self.settings.read_timeout * 4
        self.schedule = Schedule()
        self.decision: Decision | None = None
        # Set once the upload is handed to the upload server: from then on a failure of ours
        # cannot claim the upload went nowhere.
        self.forwarded: UploadedFile | None = None
        # What the event should say beyond the outcome: how the artifact's metadata was read.
        self.notes: list[str] = []
        # Set from the request's User-Agent once its head is read.
        self.reason_charset = REASON_LATIN1

    # -- the whole exchange ---------------------------------------------------------------------
    async def run(self) -> Exchanged:
        form: Form | None = None
        try:
            self.schedule = await self.services.current_schedule()
            request = await self._read_head()
            self._note(user_agent=(request.user_agent or "")[:255] or None)
            self.reason_charset = reason_charset(request.user_agent)
            if request.method == "GET":
                reply = self._answer_get(request)
            else:
                form = await self._read_form(request)
                reply = await self._answer_post(request, form)
        except GatewayError as exc:
            self._note(outcome=exc.outcome, error=exc.reason)
            reply = Reply.refusal(exc.status, exc.reason, maybe_published=exc.maybe_published)
        except Exception as exc:  # a bug or an outage of ours: the user gets no internals
            log.exception("exchange failed for account %s", self.peer.identity.account_name)
            self._note(outcome="internal_error" if self.forwarded is None else UNKNOWN, error=type(exc).__name__)
            if self.forwarded is None:
                reason = refusals.exchange_failed()
            else:
                check_url = self.services.upstream.index.project_url(self.forwarded.project)
                reason = refusals.internal_error_after_forwarding(self.forwarded.filename, check_url)
            reply = Reply.refusal(500, reason, maybe_published=self.forwarded is not None)
        finally:
            if form is not None:
                form.close()
        notice = self._notice(self.services.clock())
        reply.headers += notices.header_lines(notice)
        reply.reason_charset = self.reason_charset
        if self.notes:
            self._note(error="; ".join([*filter(None, [self.event.error]), *self.notes]))
        self._note(duration_ms=int((time.monotonic() - self.started) * 1000))
        metrics.exchange_finished(self.event.outcome, self.event.size, time.monotonic() - self.started)
        try:
            await self.services.run_registry(self.services.registry.events.record, self.event)
        except Exception:  # the answer matters more than the record; the log keeps the failure
            log.exception("could not record the upload event")
        return Exchanged(reply, self.event, notice)

    def _note(self, **facts: Any) -> None:
        """What the exchange learnt, into the event it records (in place: the "forwarding" row is
        completed, not added to)."""
        for name, value in facts.items():
            setattr(self.event, name, value)

    # -- reading --------------------------------------------------------------------------------
    async def _receive(self) -> None:
        remaining = self._deadline - time.monotonic()
        timeout = min(self.settings.read_timeout, remaining)
        too_long = ClientTimeout(refusals.request_too_slow())
        if timeout <= 0:
            raise too_long
        try:
            data = await asyncio.wait_for(self.source.read(READ_SIZE), timeout)
        except TimeoutError:
            if timeout < self.settings.read_timeout:  # the whole-request deadline, not silence
                raise too_long from None
            raise ClientTimeout(refusals.client_silent(timeout)) from None
        self._framer.receive(data or b"")

    async def _read_head(self) -> Request:
        while True:
            request = self._framer.read_head()
            if request is None:
                await self._receive()
                continue
            if request.content_length is not None:
                # A generous floor on the transfer rate bounds slow-drip clients without hurting
                # slow links.
                self._deadline = (self.started + self.settings.read_timeout * 4
                                  + request.content_length / (32 * 1024))
            return request

    async def _read_form(self, request: Request) -> Form:
        boundary = boundary_from_content_type(request.headers.get("content-type", ""))
        spool_dir = self.settings.spool_dir
        parser = MultipartParser(boundary, spool_factory=lambda: Spool(spool_dir))
        try:
            while True:
                chunk = self._framer.read_body()
                if chunk is None:
                    await self._receive()
                elif chunk:
                    parser.feed(chunk)
                else:
                    return parser.close()
        except OSError as exc:
            parser.form.close()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                log.error("the spool (%s) is full: %s", spool_dir or "the temporary directory", exc)
                raise GatewayError(refusals.spool_full(), status=503, outcome="internal_error") from None
            raise
        except BaseException:
            parser.form.close()
            raise

    # -- answering ------------------------------------------------------------------------------
    def _answer_get(self, request: Request) -> Reply:
        query = dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True))
        action = query.get(":action", "")
        self._note(action=action or "GET")
        self._check_schedule()
        if action == "list_classifiers":
            self._note(outcome="local")
            return Reply(200, "OK", "\n".join(trove_classifiers.sorted_classifiers) + "\n")
        raise BadRequest(refusals.unknown_action(action or "GET"), status=405)

    async def _answer_post(self, request: Request, form: Form) -> Reply:
        action = form.get(":action")
        name = form.get("name")
        self._note(action=(action or "")[:32] or None,
                   project=canonicalize_name(name)[:255] if name and name not in artifacts.PLACEHOLDERS else None,
                   version=(form.get("version") or "")[:100] or None)
        if action is None:
            raise BadRequest(refusals.missing_action())
        self._check_schedule()
        if action in ("submit", "verify"):
            self._note(outcome="local")
            return Reply(200, "OK", refusals.register_note(name) + "\n")
        if action == "doc_upload":
            raise GatewayError(refusals.doc_upload_gone(), status=410)
        if action != "file_upload":
            raise BadRequest(refusals.unknown_action(action))
        return await self._upload(request, form)

    async def _upload(self, request: Request, form: Form) -> Reply:
        part = form.files.get("content")
        if part is None:
            raise BadRequest(refusals.no_content_part())
        spool = part.spool
        self._note(filename=part.filename[:255] or None)
        if spool.size > self.settings.max_upload_bytes:
            raise RequestTooLarge(spool.size, self.settings.max_upload_bytes)
        digests = spool.settle(form.get("md5_digest"))
        self._note(size=digests.size, sha256=digests.sha256)
        check_client_digests(form, digests)
        artifacts.check_filetype(form.get("filetype"), artifacts.clean_filename(part.filename))
        found = await self.services.run(artifacts.inspect, spool.file, part.filename)
        self._note(project=found.project, version=found.version, filename=found.upload_filename)
        _check_form_matches(form, found)
        self._note_metadata(form, found)
        await self._check_still_active()
        _check_project_allowed(self.peer.identity, found.project)
        token = self._credential(request)
        body = MultipartBody(rebuild(form, found, digests), spool.file, digests.size)
        await self._record_forwarding()
        uploaded = self.forwarded = UploadedFile(found.project, found.upload_filename, digests.sha256)
        response = await self.services.run(self.services.upstream.forward_upload, body, token, uploaded)
        if response.ok:
            self._note(upstream_status=response.status, outcome="forwarded", error=response.note)
            return Reply(response.status, response.reason,
                         refusals.upload_done_body(found.upload_filename, digests.sha256,
                                                   self.peer.identity.account_name))
        outcome = UNKNOWN if response.maybe_published else (
            "upstream_error" if response.status >= 500 else "refused_upstream")
        self._note(upstream_status=response.status, outcome=outcome, error=response.reason)
        return Reply.refusal(response.status, response.reason, maybe_published=response.maybe_published)

    async def _check_still_active(self) -> None:
        """The key may have been revoked, or its account disabled, while the request arrived:
        look again (through the key cache) before anything is forwarded."""
        identity = self.peer.identity
        current = await self.services.current_identity(identity.account_name, identity.fingerprint)
        if current is None:
            raise KeyInactive(identity.account_name, identity.fingerprint)
        self.peer.identity = current

    async def _record_forwarding(self) -> None:
        """Write the event as "forwarding" before the upload server sees the upload, so that even a
        replica killed while forwarding leaves a row (the report counts it as unknown); `run`
        completes the same row. Without that row nothing is forwarded."""
        self._note(outcome="forwarding")
        try:
            await self.services.run_registry(self.services.registry.events.record, self.event)
        except Exception:
            log.exception("could not record the upload of account %s before forwarding it",
                          self.peer.identity.account_name)
            raise RegistryDown() from None

    def _check_schedule(self) -> None:
        """Brownout, sunset or pause: refuse before anything is forwarded (exempt accounts pass
        brownouts and the sunset, not a pause). Every legacy HTTP action is refused alike (upload,
        register, list_classifiers): a brownout rehearses the sunset, when the whole legacy path
        stops. The SSH commands (guide, whoami, help) never reach here and work in every phase."""
        now = self.services.clock()
        self.decision = decide(self.schedule, now, exempt=self.peer.identity.exempt)
        if not self.decision.allowed:
            raise PolicyRefusal(notices.refusal_reason(self._notice(now)))

    def _notice(self, now: dt.datetime) -> notices.Notice:
        """The deprecation notice for this session as of `now`: what stderr and the reply's headers
        say, and the reason of a refusal by the schedule."""
        return notices.build_notice(self.settings, self.schedule, now, identity=self.peer.identity,
                                    project=self.event.project, decision=self.decision)

    def _note_metadata(self, form: Form, found: artifacts.Artifact) -> None:
        if found.metadata_encoding != UTF8:
            self.notes.append(refusals.metadata_not_utf8_note(found.metadata_encoding))
        differing = disagreements(form, found)
        if differing:
            self.notes.append(refusals.form_disagrees_note(differing))

    def _credential(self, request: Request) -> str:
        """The account's stored token; else the client's own, only if it is an API token.

        The SSH key decides the account: a stored token always wins over whatever the legacy
        client's Authorization header says (usually the user's old password).
        """
        identity = self.peer.identity
        username, password = _basic_credentials(request.authorization)
        if identity.token_ciphertext:
            try:
                return self.services.tokens.open(identity.token_ciphertext)
            except ConfigError:  # sealed under a secret key this replica no longer has
                log.error("%s", refusals.stored_token_unopenable_log(identity.account_name))
                if not _is_api_token(username, password):
                    raise GatewayError(refusals.stored_token_unopenable(identity.account_name), status=503,
                                       outcome="no_credential") from None
        if _is_api_token(username, password) and password:
            return password
        raise CredentialError(identity.account_name, identity.fingerprint, self.settings.token_url)


def _check_form_matches(form: Form, found: artifacts.Artifact) -> None:
    """The form's name, when it gives one, is the artifact's project."""
    claimed = form.get("name")
    if claimed and claimed not in artifacts.PLACEHOLDERS and canonicalize_name(claimed) != found.project:
        raise BadRequest(refusals.form_names_other_project(claimed, found.name, found.version))


def _check_project_allowed(identity: Identity, project: str) -> None:
    """A key limited to some projects (`allowed_projects`) uploads only to those."""
    allowed = identity.allowed_projects
    if allowed and project not in allowed:
        raise GatewayError(refusals.project_not_allowed(project, identity.fingerprint, allowed),
                           status=403, outcome="refused_policy")


def _is_api_token(username: str | None, password: str | None) -> bool:
    return username == "__token__" and password is not None and password.startswith("pypi-")


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else (None, None)
