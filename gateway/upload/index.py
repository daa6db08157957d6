"""What the package index publishes for a project, read from its simple API.

    files = IndexClient(settings).files("pypissh-demo")   # [IndexFile(filename, sha256, upload_time)]

The page is fetched and parsed by `pypi-simple`, which asks for PEP 691 JSON and falls back to PEP
503 HTML. Certificates are always verified, against `upstream_ca_bundle` when set (a private
index usually has one CA for its upload and its simple API). Anything that keeps the page from
being read raises `IndexUnavailable`, whose `reason` says what happened in one line.

One client may be shared by threads (`pypissh-migrate evidence refresh` reads many projects at
once): give it a connection pool at least as large as the number of threads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import requests
from pypi_simple import NoSuchProjectError, PyPISimple, UnsupportedContentTypeError, UnsupportedRepoVersionError

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
        self._client = PyPISimple(endpoint=self.url, session=self.session)

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def project_url(self, project: str) -> str:
        """The project's page on the simple API (what a person can open to check)."""
        return self._client.get_project_url(project)

    def files(self, project: str, *, timeout: float = READ_TIMEOUT) -> list[IndexFile]:
        """Every file the index lists for `project` (none for a project it does not know)."""
        try:
            page = self._client.get_project_page(project, timeout=(min(CONNECT_TIMEOUT, timeout), timeout))
        except NoSuchProjectError:
            return []
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "an error"
            raise IndexUnavailable(messages.index_unreadable(self.project_url(project), f"it answered {status}")) from None
        except (UnsupportedContentTypeError, UnsupportedRepoVersionError, ValueError) as exc:
            raise IndexUnavailable(messages.index_unreadable(self.project_url(project), f"unreadable page: {exc}")) from None
        except (requests.RequestException, OSError) as exc:
            failure = classify(exc)
            detail = f"its certificate cannot be verified: {failure.detail}" if failure.certificate else failure.detail
            raise IndexUnavailable(messages.index_unreadable(self.project_url(project), detail)) from None
        return [IndexFile(package.filename, (package.digests or {}).get("sha256"), package.upload_time)
                for package in page.packages]
