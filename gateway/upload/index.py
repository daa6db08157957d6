"""What the package index publishes for a project, read from its simple API.

    files = IndexClient(settings).files("pypissh-demo")   # [IndexFile(filename, sha256, upload_time)]

The page is fetched with requests, asking for PEP 691 JSON and accepting PEP 503 HTML, and parsed
by `mousebender` (which needs only `packaging`; a parser built on pydantic would double the core
install for two fields). Certificates are always verified, against `upstream_ca_bundle` when set (a
private index usually has one CA for its upload and its simple API). Anything that keeps the page
from being read raises `IndexUnavailable`, whose `reason` says what happened in one line.

One client may be shared by threads (`pypissh-migrate evidence refresh` reads many projects at
once): give it a connection pool at least as large as the number of threads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import requests
from mousebender import simple

from gateway import messages
from gateway.upload.connections import verified_session
from gateway.upload.failures import classify
from gateway.settings import Settings

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class IndexFile:
    filename: str
    sha256: str | None  # None when the index gives no sha256 for it
    upload_time: dt.datetime | None  # PEP 700; only JSON pages carry it


class IndexUnavailable(Exception):
    """The index's page for a project could not be read."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class IndexClient:
    def __init__(self, settings: Settings, *, session: requests.Session | None = None, pool_maxsize: int = 4):
        self.url = settings.index_url
        self._own_session = session is None
        self.session = session or verified_session(settings.upstream_ca_bundle, pool_maxsize=pool_maxsize)

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def project_url(self, project: str) -> str:
        """The project's page on the simple API (what a person can open to check)."""
        return simple.create_project_url(self.url, project)

    def files(self, project: str, *, timeout: float = READ_TIMEOUT) -> list[IndexFile]:
        """Every file the index lists for `project` (none for a project it does not know)."""
        url = self.project_url(project)
        try:
            response = self.session.get(url, headers={"Accept": simple.ACCEPT_SUPPORTED},
                                        timeout=(min(CONNECT_TIMEOUT, timeout), timeout))
        except (requests.RequestException, OSError) as exc:
            failure = classify(exc)
            detail = f"its certificate cannot be verified: {failure.detail}" if failure.certificate else failure.detail
            raise IndexUnavailable(messages.index_unreadable(url, detail)) from None
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise IndexUnavailable(messages.index_unreadable(url, f"it answered {response.status_code}"))
        try:
            return _files_of(response, project)
        except (simple.UnsupportedMIMEType, simple.UnsupportedAPIVersion, ValueError, KeyError, TypeError) as exc:
            raise IndexUnavailable(messages.index_unreadable(url, f"unreadable page: {exc}")) from None


def _files_of(response: requests.Response, project: str) -> list[IndexFile]:
    # The media type without parameters ("text/html; charset=utf-8"): mousebender compares it whole.
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    details = simple.parse_project_details(response.text, content_type, project)
    version = str(details.get("meta", {}).get("api-version", "1.0"))
    if version.split(".")[0] != "1":
        raise simple.UnsupportedAPIVersion(version)
    return [IndexFile(entry["filename"], (entry.get("hashes") or {}).get("sha256"), _upload_time(entry))
            for entry in details["files"]]


def _upload_time(entry: dict) -> dt.datetime | None:
    stamp = entry.get("upload-time")
    return dt.datetime.fromisoformat(stamp) if stamp else None
