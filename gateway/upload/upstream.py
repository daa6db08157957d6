"""The HTTPS client that forwards rebuilt uploads to the modern upload API.

One pooled `requests` session per process: connections (and their TLS handshakes) are reused across
SSH sessions, which is where a gateway wins back the cost of each SSH handshake. Certificates are
always verified, against `upstream_ca_bundle` when set.

The status line decides the outcome; the body is read only up to a bound, for the explanation of
a refusal, and a broken or endless body never turns a 2xx into a failure. A failed attempt is
judged by how far it got (gateway/connections.py) and by its cause (gateway/failures.py):

- a certificate that cannot be verified: reported at once, never retried;
- a pooled connection the server had dropped, before any answer: retried at once, on a new one;
- no connection (refused, timed out, TLS handshake cut off), or one dropped while the request
  was still being sent: nothing can have been published; retried with backoff, like 502/503/504;
- the whole request sent and no answer: the file may have been published. Retried; if the retry
  (after this, or after a 5xx, which a server may give having stored the file) is refused because
  the file already exists, the index's simple API decides: the same file name
  with the same sha256 means it was this upload, confirmed; the same name with another sha256
  means another file holds the name, a refusal; a page that does not list the file (yet: an index
  lags, and a new project's page is missing) or cannot be read leaves the outcome unknown.

What the user is told follows what is known (`maybe_published`): "not published" only when
nothing was sent, or when the upload server refused the first whole attempt with a 4xx; a 5xx
after the whole upload was sent, or any failure after an unanswered attempt, "may have been
published", with the project's page on the index to check.

`upstream_deadline` bounds all of it; past it, the answer says whether the outcome is unknown.
"""

from __future__ import annotations

import base64
import html
import http
import http.client
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from gateway import __version__
from gateway.errors import ConfigError, UpstreamFailure, one_line
from gateway.ops import metrics
from gateway.settings import Settings, insecure_upstream
from gateway.upload import refusals
from gateway.upload.connections import CONNECTING, Attempt, Deadline, verified_session
from gateway.upload.failures import CLOSED, TLS, TransportFailure, classify
from gateway.upload.form import MultipartBody
from gateway.upload.index import IndexClient, IndexUnavailable

log = logging.getLogger(__name__)

RETRY_STATUSES = (502, 503, 504)
USER_AGENT = f"pypissh-gateway/{__version__}"
CONNECT_TIMEOUT = 10.0
# Enough of a reply body for the explanation of a refusal; the rest is never read.
BODY_LIMIT = 64 * 1024
# The body only explains: after the status line it gets this long at most.
BODY_SECONDS = 10.0
# Failures that carry an exception but no answer from the upload server.
TRANSPORT_ERRORS = (requests.RequestException, http.client.HTTPException, OSError)


@dataclass(frozen=True)
class UploadedFile:
    """What the client sent, to recognise it on the index: project, file name as published, sha256."""

    project: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    reason: str
    attempts: int
    seconds: float
    # Published, known from the index because the upload server's own answer was lost.
    confirmed: bool = False
    note: str | None = None
    # Not published as far as the answer says, but it may have been all the same (see the module
    # notes): the user reads "may have been published", the event records "unknown".
    maybe_published: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def already_exists(status: int, reason: str) -> bool:
    """The upload server's "this file is already there": pypiserver says 409, the real index
    400 with "File already exists" in the reason phrase."""
    return status == 409 or (status == 400 and "already exists" in reason.lower())


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _generic_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


_PRE = re.compile(r"<pre>(.*?)</pre>", re.S | re.I)
_TAGS = re.compile(r"<[^>]+>")


def decode_reason_phrase(phrase: str) -> str:
    """The reason phrase as its sender wrote it. The HTTP client hands it over decoded as
    ISO-8859-1, which is what HTTP specifies and what the index sends (its `'Natural Language ::
    Français' is not a valid classifier` arrives as the byte E7). Some servers send UTF-8 instead:
    bytes that are valid UTF-8, and not plain ASCII, are read as UTF-8. Latin-1 text is hardly
    ever valid UTF-8 too: that takes an accented letter followed by one to three symbols such as
    « ° ± or C1 controls."""
    try:
        raw = phrase.encode("latin-1")
    except UnicodeEncodeError:  # already decoded by something else than the HTTP client
        return phrase
    if raw.isascii():
        return phrase
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return phrase


def explain(status: int, reason: str, body: str) -> str:
    """The upstream's own words for the user: its reason phrase, or the body's message if the
    phrase is only the generic one (the real index puts its message in the phrase; pypiserver and
    proxies in the body)."""
    reason = one_line(decode_reason_phrase(reason)) or _generic_phrase(status)
    if reason.lower() != _generic_phrase(status).lower() or not body:
        return reason
    match = _PRE.search(body)
    text = match.group(1) if match else _TAGS.sub("\n", body)
    for line in html.unescape(text).splitlines():
        line = line.strip()
        if line and not line.lower().startswith(("error", "<!doctype")) and reason.lower() not in line.lower():
            return one_line(f"{reason}: {line}")
    return reason


class UpstreamClient:
    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep,
                 index: IndexClient | None = None):
        # The one gate for the upstream's address: every path that can forward (serve, its
        # workers, stdio in process, `check`, test harnesses) builds this client, so none can
        # send a token over plain http.
        cleartext = insecure_upstream(settings)
        if cleartext:
            raise ConfigError(cleartext)
        self.url = settings.upstream_url
        self.read_timeout = settings.upstream_timeout
        self.retries = max(0, settings.upstream_retries)
        self.deadline_seconds = settings.upstream_deadline
        self._sleep = sleep
        self.session = verified_session(settings.upstream_ca_bundle, pool_maxsize=64)
        self.index = index or IndexClient(settings)

    def close(self) -> None:
        self.session.close()
        self.index.close()

    def forward_upload(self, body: MultipartBody, token: str, upload: UploadedFile | None = None) -> UpstreamResponse:
        """POST the upload and say how it ended; `upload` lets a dropped connection be resolved on
        the index. Raises UpstreamFailure when there is no answer to pass on."""
        headers = {
            "Authorization": basic_auth("__token__", token),
            "Content-Type": body.content_type,
            "Content-Length": str(len(body)),
            "User-Agent": USER_AGENT,
        }
        # One observation per upload, every attempt included; the attempts are counted apart.
        with Deadline(self.deadline_seconds) as deadline, metrics.UPSTREAM_SECONDS.time():
            return _Forwarding(self, body, headers, upload, deadline).run()


@dataclass
class _Answer:
    status: int
    reason: str
    location: str


class _Forwarding:
    """One upload's way to the upload server: the attempts, the pauses, the check on the index."""

    def __init__(self, client: UpstreamClient, body: MultipartBody, headers: dict[str, str],
                 upload: UploadedFile | None, deadline: Deadline):
        self.client = client
        self.body = body
        self.headers = headers
        self.upload = upload
        self.deadline = deadline
        self.started = time.monotonic()
        self.attempts = 0
        self.pauses = 0
        self.fresh_only = False
        # Some attempt sent the whole request and got no answer: the file may be published.
        self.maybe_published = False
        # Some attempt got a 5xx after the whole request: the server may have stored it all the same.
        self.server_failed = False

    @property
    def unsure(self) -> bool:
        """Some earlier attempt may have published the file: nothing later can say it was not."""
        return self.maybe_published or self.server_failed

    def run(self) -> UpstreamResponse:
        while True:
            if self.deadline.expired:
                raise self._deadline_passed()
            attempt = Attempt(fresh_only=self.fresh_only)
            self.attempts += 1
            try:
                answer = self._send(attempt)
            except TRANSPORT_ERRORS as exc:
                metrics.UPSTREAM_ATTEMPTS.labels(result=metrics.attempt_result(None)).inc()
                self._after_failure(attempt, classify(exc))
                continue
            metrics.UPSTREAM_ATTEMPTS.labels(result=metrics.attempt_result(answer.status)).inc()
            if attempt.answer_cut_short:
                raise self._deadline_passed(sent=attempt.request_sent)
            if 300 <= answer.status < 400:
                raise self._redirected(answer)
            if answer.status >= 500:
                self.server_failed = True
            if answer.status in RETRY_STATUSES and self._pause():
                continue
            if self.unsure and already_exists(answer.status, answer.reason):
                return self._resolve(answer)
            if self.maybe_published and not 200 <= answer.status < 300:
                return self._response(answer.status, refusals.refusal_after_lost_answer(answer.reason, *self._where()),
                                      maybe_published=True)
            if answer.status >= 500:
                # The upload server had the whole upload and failed: it may have stored the file.
                reason = refusals.upstream_failed_after_upload(answer.reason, *self._where())
                return self._response(answer.status, reason, maybe_published=True)
            return self._response(answer.status, answer.reason)

    # -- one attempt ----------------------------------------------------------------------------
    def _send(self, attempt: Attempt) -> _Answer:
        remaining = self.deadline.remaining()
        timeout = (min(CONNECT_TIMEOUT, remaining), min(self.client.read_timeout, remaining))
        with self.deadline.watch(attempt):
            response = self.client.session.post(self.client.url, data=self.body, headers=self.headers,
                                                timeout=timeout, allow_redirects=False, stream=True)
            status, raw_reason = response.status_code, response.reason or ""
            with _cut_after(attempt, BODY_SECONDS):
                body = _read_bounded(response, BODY_LIMIT)
        text = body.decode(response.encoding or "utf-8", "replace") if status >= 300 else ""
        return _Answer(status, explain(status, raw_reason, text), response.headers.get("Location", ""))

    def _after_failure(self, attempt: Attempt, failure: TransportFailure) -> None:
        """Decide what a failed attempt leads to: go on (return) or give up (raise)."""
        if failure.certificate:
            if self.unsure:  # an earlier attempt may have published it all the same
                raise self._gave_up(attempt, failure)
            raise UpstreamFailure(refusals.upstream_certificate(self.client.url, failure.detail))
        if attempt.request_sent:
            self.maybe_published = True
        if attempt.cut_off or self.deadline.expired:
            raise self._deadline_passed(sent=attempt.request_sent)
        retry_at_once = attempt.reused
        # From now on only new connections: the pool may hold more that the server has dropped.
        self.fresh_only = True
        if retry_at_once:
            log.info("the upload server dropped a pooled connection (%s); retrying on a new one", failure.detail)
            return
        if self._pause():
            return
        raise self._gave_up(attempt, failure)

    def _pause(self) -> bool:
        """Back off before the next attempt, if the retry budget and the deadline allow one."""
        if self.pauses >= self.client.retries:
            return False
        delay = 0.5 * 2 ** self.pauses
        if delay >= self.deadline.remaining():
            return False
        self.pauses += 1
        self.client._sleep(delay)
        return True

    # -- endings --------------------------------------------------------------------------------
    def _response(self, status: int, reason: str, *, confirmed: bool = False, note: str | None = None,
                  maybe_published: bool = False) -> UpstreamResponse:
        return UpstreamResponse(status=status, reason=reason, attempts=self.attempts,
                                seconds=time.monotonic() - self.started, confirmed=confirmed, note=note,
                                maybe_published=maybe_published)

    def _resolve(self, answer: _Answer) -> UpstreamResponse:
        """The retry was refused as already existing after an attempt that may have published the
        file: the index says whether the existing file is this upload."""
        if self.upload is None:
            return self._response(answer.status, refusals.refusal_after_lost_answer(answer.reason, *self._where()),
                                  maybe_published=True)
        index = self.client.index
        check_url = index.project_url(self.upload.project)
        try:
            with self.deadline.watch(Attempt()):
                files = index.files(self.upload.project, timeout=max(0.001, self.deadline.remaining()))
        except IndexUnavailable as exc:
            if self.deadline.expired:
                raise self._deadline_passed() from None
            log.warning("could not check the index after a dropped connection: %s", exc.reason)
            return self._response(answer.status, refusals.refusal_unconfirmed(
                answer.reason, exc.reason, self.upload.filename, check_url), maybe_published=True)
        for found in files:
            if found.filename != self.upload.filename:
                continue
            if (found.sha256 or "").lower() == self.upload.sha256.lower():
                return self._response(200, refusals.confirmed_after_drop(self.upload.filename), confirmed=True,
                                      note=refusals.confirmed_after_drop_note(check_url))
            if found.sha256:  # another file holds the name: this upload cannot be the one stored
                return self._response(answer.status, answer.reason)
        # Not listed (yet): the index may lag behind the upload server, and a brand-new project's
        # page is missing until its first file shows. The refusal proves nothing either way.
        reason = refusals.exists_unconfirmed(answer.reason, self.upload.filename, check_url)
        return self._response(answer.status, reason, maybe_published=True)

    def _where(self) -> tuple[str, str]:
        """The file to look for and the page to look on."""
        if self.upload is None:
            return "the uploaded file", "the project's page on the index"
        return self.upload.filename, self.client.index.project_url(self.upload.project)

    def _deadline_passed(self, *, sent: bool = False) -> UpstreamFailure:
        url, seconds = self.client.url, self.client.deadline_seconds
        if sent or self.unsure:
            filename, check_url = self._where()
            return UpstreamFailure(refusals.upstream_deadline_unknown(url, seconds, filename, check_url), status=504,
                                 maybe_published=True)
        return UpstreamFailure(refusals.upstream_deadline_unsent(url, seconds), status=504)

    def _gave_up(self, attempt: Attempt, failure: TransportFailure) -> UpstreamFailure:
        url = self.client.url
        if self.unsure:
            filename, check_url = self._where()
            return UpstreamFailure(refusals.upstream_no_answer(url, failure.detail, filename, check_url), status=504,
                                 maybe_published=True)
        if attempt.phase == CONNECTING:
            detail = failure.detail
            if failure.kind in (TLS, CLOSED):
                detail = f"the TLS handshake failed: {detail}"
            return UpstreamFailure(refusals.upstream_unreachable(url, detail))
        return UpstreamFailure(refusals.upstream_dropped_upload(url, failure.detail))

    def _redirected(self, answer: _Answer) -> UpstreamFailure:
        # As twine does: never follow (the body and the credentials would go where the redirect
        # says), and name the target so the operator can decide to trust it.
        target = one_line(answer.location) or None
        if self.unsure:
            detail = refusals.retry_redirected(target)
            return UpstreamFailure(refusals.upstream_no_answer(self.client.url, detail, *self._where()), status=504,
                                 maybe_published=True)
        return UpstreamFailure(refusals.upstream_redirect(self.client.url, answer.status, target))


class _cut_after:
    """`with _cut_after(attempt, seconds):` the attempt's socket is shut down if the block is still
    running after `seconds` (the deadline may come sooner)."""

    def __init__(self, attempt: Attempt, seconds: float):
        self._timer = threading.Timer(seconds, attempt.cut)
        self._timer.daemon = True

    def __enter__(self) -> None:
        self._timer.start()

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _read_bounded(response: requests.Response, limit: int) -> bytes:
    """At most `limit` bytes of the body. Any failure to read it (a broken chunked encoding, a
    reset, a cut-off) ends the reading, never the exchange: the status line has already said how
    the upload went. A body read to its end leaves the connection in the pool; any other is closed."""
    data = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=16 * 1024):
            data += chunk
            if len(data) >= limit:
                break
    except TRANSPORT_ERRORS as exc:
        log.info("the upload server's reply body could not be read (%s); its status line stands",
                 classify(exc).detail)
    finally:
        response.close()
    return bytes(data[:limit])
