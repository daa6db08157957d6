"""What the package index publishes for a project, read from its simple API.

    files = IndexClient(settings).files("pypissh-demo")   # [IndexFile(filename, sha256, upload_time)]

The page is fetched with requests, asking for PEP 691 JSON and accepting PEP 503 HTML, and parsed
by `mousebender` (which needs only `packaging`; a parser built on pydantic would double the core
install for two fields). Certificates are always verified, against `upstream_ca_bundle` when set (a
private index usually has one CA for its upload and its simple API). Anything that keeps the page
from being read raises `IndexUnavailable`, whose `reason` says what happened in one line.

What the index says decides who counts as migrated and whether a lost upload is confirmed, and a
replica reads it in the middle of an exchange, so every read is bounded and stays where it was
sent:

- a page is at most `index_max_page_bytes` (20 MB by default: PyPI's largest pages are a few MB),
  read within PAGE_SECONDS however slowly it trickles, and lists at most MAX_FILES files;
- `index_url` itself must be https, and a redirect is followed (MAX_REDIRECTS at most) only to
  https on the index's own host: never to plain http, where the page could be forged, and never
  to another host;
- each file is checked on its own and refused with a named reason, the others kept: a name with a
  path separator, a NUL or a control character, longer than MAX_FILENAME, or of another project;
  an upload time without a time zone, or later than the clock plus CLOCK_SKEW.

One client may be shared by threads (`pypissh-migrate evidence refresh` reads many projects at
once): give it a connection pool at least as large as the number of threads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from mousebender import simple
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from gateway.errors import ConfigError
from gateway.settings import Settings, mask_url
from gateway.upload.connections import Attempt, Deadline, verified_session
from gateway.upload.failures import classify

log = logging.getLogger(__name__)

# A file entry of the page as parsed: untrusted, so every value is checked before use.
FileEntry = Mapping[str, object]

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
# The whole page, however slowly it arrives (READ_TIMEOUT bounds each silence within it).
PAGE_SECONDS = 60.0
# Files one page may list: PyPI's busiest projects list tens of thousands.
MAX_FILES = 200_000
MAX_REDIRECTS = 3
# A file name longer than this is no distribution's (the index refuses such uploads).
MAX_FILENAME = 255
# How far ahead of this machine's clock an index's upload time may be (clocks disagree a little).
CLOCK_SKEW = dt.timedelta(minutes=10)
CHUNK = 64 * 1024


@dataclass(frozen=True)
class IndexFile:
    filename: str
    sha256: str | None  # None when the index gives no sha256 for it
    upload_time: dt.datetime | None  # PEP 700; only JSON pages carry it


@dataclass(frozen=True)
class RefusedFile:
    """A file the page listed and the client left out: its name (shown safely) and why."""

    filename: str
    reason: str


@dataclass(frozen=True)
class IndexPage:
    files: list[IndexFile]
    refused: list[RefusedFile] = field(default_factory=list)


class IndexUnavailable(Exception):
    """The index's page at `url` could not be read; `detail` says why, `reason` is the whole line."""

    def __init__(self, url: str, detail: str):
        self.reason = index_unreadable(url, detail)
        super().__init__(self.reason)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class IndexClient:
    def __init__(self, settings: Settings, *, session: requests.Session | None = None, pool_maxsize: int = 4,
                 clock: Callable[[], dt.datetime] = _utcnow, page_seconds: float = PAGE_SECONDS,
                 max_files: int = MAX_FILES):
        if urlsplit(settings.index_url).scheme.lower() != "https":
            # A plain-http page could be forged on the way: nothing read from it may count.
            raise ConfigError(index_not_https(mask_url(settings.index_url) or ""))
        self.url = settings.index_url
        self.max_bytes = settings.index_max_page_bytes
        self.page_seconds = page_seconds
        self.max_files = max_files
        self._clock = clock  # for upload times in the future
        self._own_session = session is None
        self.session = session or verified_session(settings.upstream_ca_bundle, pool_maxsize=pool_maxsize)

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def project_url(self, project: str) -> str:
        """The project's page on the simple API (what a person can open to check)."""
        return simple.create_project_url(self.url, project)

    def files(self, project: str, *, timeout: float = READ_TIMEOUT) -> list[IndexFile]:
        """Every acceptable file the index lists for `project` (none for a project it does not
        know); the refused ones are logged."""
        page = self.page(project, timeout=timeout)
        for refused in page.refused:
            log.warning("index page of %s: file %s left out: %s", project, refused.filename, refused.reason)
        return page.files

    def page(self, project: str, *, timeout: float = READ_TIMEOUT) -> IndexPage:
        """The files the index lists for `project`, and those refused (see the module notes)."""
        url = self.project_url(project)
        seconds = min(self.page_seconds, max(timeout, 0.001))
        # A page trickled a byte at a time never trips a socket timeout: at the deadline the
        # connection is shut down under the read.
        with Deadline(seconds) as deadline, deadline.watch(Attempt()):
            response = self._get(url, deadline)
            try:
                if response.status_code == 404:
                    return IndexPage([])
                if response.status_code != 200:
                    raise IndexUnavailable(url, f"it answered {response.status_code}")
                text = self._body(url, response, deadline)
            finally:
                response.close()
        try:
            entries = _entries_of(text, response.headers.get("Content-Type", ""), project)
        except (simple.UnsupportedMIMEType, simple.UnsupportedAPIVersion, ValueError, KeyError, TypeError) as exc:
            raise IndexUnavailable(url, f"unreadable page: {exc}") from None
        if len(entries) > self.max_files:
            too_many = index_too_many_files(len(entries), self.max_files)
            raise IndexUnavailable(url, too_many)
        return self._checked(entries, project)

    # -- reading, bounded ---------------------------------------------------------------------
    def _get(self, url: str, deadline: Deadline) -> requests.Response:
        """The answer for `url`, following redirects only to https on the index's own host."""
        host = urlsplit(self.url).hostname
        for _hop in range(MAX_REDIRECTS + 1):
            remaining = max(0.001, deadline.remaining())
            try:
                response = self.session.get(url, headers={"Accept": simple.ACCEPT_SUPPORTED}, stream=True,
                                            allow_redirects=False,
                                            timeout=(min(CONNECT_TIMEOUT, remaining), min(READ_TIMEOUT, remaining)))
            except (requests.RequestException, OSError) as exc:
                if deadline.expired:
                    raise IndexUnavailable(url, index_page_too_slow(
                        deadline.seconds)) from None
                failure = classify(exc)
                detail = (f"its certificate cannot be verified: {failure.detail}" if failure.certificate
                          else failure.detail)
                raise IndexUnavailable(url, detail) from None
            if not response.is_redirect:
                return response
            target = urljoin(url, response.headers.get("Location", ""))
            response.close()
            where = urlsplit(target)
            if where.scheme != "https" or where.hostname != host:
                raise IndexUnavailable(url, index_redirect_refused(target, host))
            url = target
        raise IndexUnavailable(url, index_too_many_redirects(MAX_REDIRECTS))

    def _body(self, url: str, response: requests.Response, deadline: Deadline) -> str:
        too_large = IndexUnavailable(url, index_page_too_large(self.max_bytes))
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        data = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=CHUNK):
                data += chunk
                if len(data) > self.max_bytes:
                    raise too_large
        except (requests.RequestException, OSError) as exc:
            if deadline.expired:
                raise IndexUnavailable(url, index_page_too_slow(
                    deadline.seconds)) from None
            raise IndexUnavailable(url, classify(exc).detail) from None
        if deadline.expired:  # cut off at the deadline: what arrived is not the whole page
            raise IndexUnavailable(url, index_page_too_slow(deadline.seconds))
        return bytes(data).decode(response.encoding or "utf-8", "replace")

    # -- each file on its own -------------------------------------------------------------------
    def _checked(self, entries: list[FileEntry], project: str) -> IndexPage:
        now = self._clock()
        files: list[IndexFile] = []
        refused: list[RefusedFile] = []
        for entry in entries:
            name = entry.get("filename")
            name = name if isinstance(name, str) else ""
            problem = filename_problem(name, project)
            upload_time = None
            if problem is None:
                upload_time, problem = _upload_time(entry, now)
            if problem is not None:
                refused.append(RefusedFile(ascii(name)[1:-1][:80], problem))
                continue
            files.append(IndexFile(name, _sha256(entry), upload_time))
        return IndexPage(files, refused)


def _entries_of(text: str, content_type: str, project: str) -> list[FileEntry]:
    # The media type without parameters ("text/html; charset=utf-8"): mousebender compares it whole.
    details = simple.parse_project_details(text, content_type.split(";")[0].strip(), project)
    version = str(details.get("meta", {}).get("api-version", "1.0"))
    if version.split(".")[0] != "1":
        raise simple.UnsupportedAPIVersion(version)
    return list(details["files"])


def _sha256(entry: FileEntry) -> str | None:
    hashes = entry.get("hashes") or {}
    value = hashes.get("sha256") if isinstance(hashes, dict) else None
    return value if isinstance(value, str) else None


def filename_problem(filename: str, project: str) -> str | None:
    """Why `filename` cannot be a file of `project` on the index, or None."""
    if not filename:
        return "no file name"
    if len(filename) > MAX_FILENAME:
        return f"the file name is longer than {MAX_FILENAME} characters"
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        return "the file name holds a path separator"
    if not filename.isprintable():
        return "the file name holds a NUL or a control character"
    if not belongs_to(filename, project):
        return f"the file is not one of {canonicalize_name(project)}'s"
    return None


def belongs_to(filename: str, project: str) -> bool:
    """Whether `filename` names a distribution of `project` (normalised names compared): a wheel or
    an sdist by their specifications, an older format (.egg, .exe, .tar.bz2...) by the name
    before one of its dashes."""
    wanted = canonicalize_name(project)
    try:
        return parse_wheel_filename(filename)[0] == wanted
    except InvalidWheelFilename:
        pass
    try:
        return parse_sdist_filename(filename)[0] == wanted
    except InvalidSdistFilename:
        pass
    return any(canonicalize_name(filename[:i]) == wanted for i, char in enumerate(filename) if char == "-")


def _upload_time(entry: FileEntry, now: dt.datetime) -> tuple[dt.datetime | None, str | None]:
    """(PEP 700 upload time or None, None), or (None, why the file is refused)."""
    stamp = entry.get("upload-time")
    if not stamp:
        return None, None
    try:
        when = dt.datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        when = None
    if when is None:
        return None, "the upload time is not an ISO 8601 time"
    if when.tzinfo is None or when.utcoffset() is None:
        return None, "the upload time has no time zone"
    if when > now + CLOCK_SKEW:
        return None, f"the upload time {when.isoformat()} is in the future"
    return when, None


# -- reason phrases -------------------------------------------------------------------------------
def index_unreadable(url: str, detail: str) -> str:
    return f"cannot read the index page {url} ({detail})"


def index_not_https(url: str) -> str:
    return (f"index_url {url} is plain http: what it lists could be forged on the way, and it decides "
            "who counts as migrated; use the index's https:// address")


def index_redirect_refused(target: str, host: str | None) -> str:
    return (f"it redirects to {target[:200]}, and only https on {host} is followed; point index_url "
            "at the page's real address")


def index_page_too_large(limit: int) -> str:
    return f"the page is larger than index_max_page_bytes ({limit} bytes); raise it if the index is right"


def index_page_too_slow(seconds: float) -> str:
    return f"the page did not arrive within {seconds:.0f} s"


def index_too_many_files(count: int, limit: int) -> str:
    return f"the page lists {count} files, more than the {limit} a page may list"


def index_too_many_redirects(limit: int) -> str:
    return f"more than {limit} redirects"
