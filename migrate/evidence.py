"""`evidence refresh`: read the index's page of every project uploaded over SSH and record the
files on it, marking those that came through the gateway (`gateway.registry.evidence` stores
them, `gateway.lifecycle.migration` judges them).

Pages are fetched by a bounded pool of threads sharing one `IndexClient`; each result is matched
against the gateway's forwarded uploads and written by the calling thread, so the registry has
one writer however many pages are in flight. A project whose page cannot be read is reported and
counted, and the others proceed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from gateway.lifecycle.migration import forwarded_by_gateway
from gateway.registry import Registry
from gateway.upload.index import IndexClient, IndexFile, IndexPage, IndexUnavailable, RefusedFile, index_unreadable

DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class Failure:
    project: str
    reason: str


@dataclass(frozen=True)
class RefreshSummary:
    index_url: str
    started_at: dt.datetime
    finished_at: dt.datetime
    concurrency: int
    projects: int  # pages to read
    read: int  # pages read
    files_recorded: int  # new files that did not come through the gateway
    failures: tuple[Failure, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def refresh(registry: Registry, client: IndexClient, projects: Sequence[str], *, concurrency: int,
            clock: Callable[[], dt.datetime],
            on_done: Callable[[str, Failure | None], None] | None = None,
            on_refused: Callable[[str, RefusedFile], None] | None = None) -> RefreshSummary:
    """Read each project's page, `concurrency` at a time, and record what the gateway did not
    forward. `on_done(project, failure)` is called as each page is dealt with (for progress),
    `on_refused(project, file)` for each file a page listed and the client refused (the page's
    other files are recorded)."""
    started = clock()
    read = recorded = 0
    failures: list[Failure] = []
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="evidence")
    try:
        futures: dict[Future[IndexPage], str] = {pool.submit(client.page, p): p for p in projects}
        for future in as_completed(futures):
            project = futures[future]
            failure = _unreadable(client, project, future)
            if failure is None:
                page = future.result()
                for refused in page.refused:
                    if on_refused is not None:
                        on_refused(project, refused)
                recorded += _record(registry, project, page.files, clock())
                read += 1
            else:
                failures.append(failure)
            if on_done is not None:
                on_done(project, failure)
    finally:
        # On an error of ours (the registry gone, Ctrl-C) the pages not yet fetched are dropped.
        pool.shutdown(wait=True, cancel_futures=True)
    return RefreshSummary(index_url=client.url, started_at=started, finished_at=clock(), concurrency=concurrency,
                          projects=len(projects), read=read, files_recorded=recorded,
                          failures=tuple(sorted(failures, key=lambda f: f.project)))


def _unreadable(client: IndexClient, project: str, future: Future) -> Failure | None:
    exc = future.exception()
    if exc is None:
        return None
    if isinstance(exc, IndexUnavailable):
        return Failure(project, exc.reason)
    # Anything else is a page the simple API parser could not make sense of: one project's problem.
    return Failure(project, index_unreadable(client.project_url(project), f"{type(exc).__name__}: {exc}"))


def _record(registry: Registry, project: str, files: list[IndexFile], now: dt.datetime) -> int:
    forwarded = registry.evidence.forwarded_files(project)
    ours = {f.filename for f in files if forwarded_by_gateway(f.filename, f.sha256, forwarded)}
    return registry.evidence.record_read(project, files, now, via_gateway=ours)


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def audit_record(summary: RefreshSummary) -> dict[str, Any]:
    """What one refresh did, as a value: what the admin audit journal records for it, and what
    `evidence refresh --format json` prints."""
    return {
        "action": "evidence refresh",
        "index_url": summary.index_url,
        "started_at": _stamp(summary.started_at),
        "finished_at": _stamp(summary.finished_at),
        "concurrency": summary.concurrency,
        "projects": summary.projects,
        "projects_read": summary.read,
        "files_recorded": summary.files_recorded,
        "failed": len(summary.failures),
        "failures": [{"project": f.project, "reason": f.reason} for f in summary.failures],
    }
