"""The HTTPS client that forwards rebuilt uploads to the modern upload API.

One pooled `requests` session per process: connections (and their TLS handshakes) are reused across
SSH sessions, which is where a gateway wins back the cost of each SSH handshake. Certificates are
always verified, against `upstream_ca_bundle` when set.
"""

from __future__ import annotations

import base64
import html
import http
import re
import time
from dataclasses import dataclass
from typing import Callable

import requests
from requests.adapters import HTTPAdapter

from gateway import __version__, messages
from gateway.errors import UpstreamError, one_line
from gateway.ops import metrics
from gateway.settings import Settings
from gateway.upload.form import MultipartBody

RETRY_STATUSES = (502, 503, 504)
USER_AGENT = f"pypissh-gateway/{__version__}"


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    reason: str
    attempts: int
    seconds: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _generic_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


_PRE = re.compile(r"<pre>(.*?)</pre>", re.S | re.I)
_TAGS = re.compile(r"<[^>]+>")


def explain(status: int, reason: str, body: str) -> str:
    """The upstream's own words for the user: its reason phrase, or the body's message if the
    phrase is only the generic one (the real index puts its message in the phrase; pypiserver and
    proxies in the body)."""
    reason = one_line(reason.encode("latin-1", "replace").decode("utf-8", "replace")) or _generic_phrase(status)
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
    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep):
        self.url = settings.upstream_url
        self.timeout = (10.0, settings.upstream_timeout)
        self.retries = max(0, settings.upstream_retries)
        self._sleep = sleep
        self.session = requests.Session()
        self.session.verify = settings.upstream_ca_bundle or True
        self.session.trust_env = False  # the gateway's own settings decide, not the environment
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=64, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def close(self) -> None:
        self.session.close()

    def forward_upload(self, body: MultipartBody, token: str) -> UpstreamResponse:
        """POST the upload; retry 502/503/504 and connection failures a bounded number of times."""
        headers = {
            "Authorization": basic_auth("__token__", token),
            "Content-Type": body.content_type,
            "Content-Length": str(len(body)),
            "User-Agent": USER_AGENT,
        }
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                with metrics.UPSTREAM_SECONDS.time():
                    response = self.session.post(
                        self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.SSLError:
                raise UpstreamError(messages.upstream_certificate(self.url)) from None
            except requests.exceptions.Timeout:
                raise UpstreamError(messages.upstream_timeout(self.timeout[1]), status=504) from None
            except requests.exceptions.ConnectionError:
                if attempt <= self.retries:
                    self._sleep(0.5 * 2 ** (attempt - 1))
                    continue
                raise UpstreamError(messages.upstream_unreachable(self.url)) from None
            with response:
                body_text = response.text[:65536] if response.status_code >= 300 else ""
            if 300 <= response.status_code < 400:
                # As twine does: never follow (the body and the credentials would go where the
                # redirect says), and name the target so the operator can decide to trust it.
                target = one_line(response.headers.get("Location", "")) or None
                raise UpstreamError(messages.upstream_redirect(self.url, response.status_code, target))
            if response.status_code in RETRY_STATUSES and attempt <= self.retries:
                self._sleep(0.5 * 2 ** (attempt - 1))
                continue
            return UpstreamResponse(
                status=response.status_code,
                reason=explain(response.status_code, response.reason or "", body_text),
                attempts=attempt,
                seconds=time.monotonic() - started,
            )
