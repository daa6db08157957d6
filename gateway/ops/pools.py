"""Thread pools for the blocking work of a replica, each with its own threads and a known backlog.

A replica runs two: one for uploads (reading the archive, forwarding to the upload server, which
may take minutes) and one for the registry (key lookups at login, event rows, the schedule). They
are separate so that logins never queue behind uploads: with every upload thread waiting on a slow
upload server, a key lookup still gets a thread at once.

`concurrent.futures.ThreadPoolExecutor` queues without bound and says nothing about its backlog;
`WorkerPool` wraps one to count the work submitted and not yet finished (counted in the worker
thread, so a caller that stops waiting does not make the count lie), to refuse new work once
`queue_limit` tasks are waiting, and to say when it is saturated (for /readyz).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from gateway.ops import metrics


class PoolFull(Exception):
    """The pool's queue is full: the work was not started."""

    def __init__(self, pool: WorkerPool):
        super().__init__(f"the {pool.name} pool is full: {pool.running} running, {pool.waiting} waiting")
        self.pool = pool


class WorkerPool(Executor):
    """`threads` worker threads; at most `queue_limit` tasks waiting for one (None: no limit, only
    `saturation_bound` for readiness)."""

    def __init__(self, name: str, threads: int, *, queue_limit: int | None = None,
                 saturation_bound: int | None = None):
        self.name = name
        self.threads = max(1, threads)
        self.queue_limit = queue_limit
        # Without a queue limit: waiting tasks from which the pool counts as saturated.
        self.saturation_bound = saturation_bound
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=f"pypissh-{name}")
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished: running plus waiting
        self._busy = metrics.POOL_TASKS.labels(pool=name)
        self._saturated = metrics.POOL_SATURATED.labels(pool=name)

    @property
    def running(self) -> int:
        return min(self._pending, self.threads)

    @property
    def waiting(self) -> int:
        return max(0, self._pending - self.threads)

    @property
    def full(self) -> bool:
        """The next task would be refused."""
        return self.queue_limit is not None and self._pending >= self.threads + self.queue_limit

    def saturation(self) -> str | None:
        """Why the pool counts as saturated now (full, or its backlog at the bound), or None."""
        if self.full or (self.saturation_bound is not None and self.waiting >= max(1, self.saturation_bound)):
            return (f"the {self.name} pool is saturated: {self.running} of {self.threads} threads busy, "
                    f"{self.waiting} tasks waiting")
        return None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            if self.full:
                raise PoolFull(self)
            self._pending += 1
            self._published()

        def work() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self._finished()

        try:
            return self._executor.submit(work)
        except BaseException:
            self._finished()
            raise

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1
            self._published()

    def _published(self) -> None:
        self._busy.set(self._pending)
        self._saturated.set(1 if self.saturation() else 0)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)
