"""The index's evidence: what its simple API listed for each project uploaded over SSH.

`pypissh-migrate evidence refresh` reads each project's page and records, through `record_read`,
every file on it that the gateway did not forward, with the index's upload time when it gives
one, the time the file was first seen, and the previous read that did not list it. Rows are never
rewritten except to add an upload time the index gave later, so a second refresh adds nothing.
The report, `notify` and the gateway's per-use reminder read the accounts' migration state back
(`states`, `state_of`); the rules themselves are pure, in `gateway.lifecycle.migration`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Iterable, Protocol, Sequence

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.lifecycle.migration import IndexRelease, MigrationState, ProjectUploads, migration_state, migration_states
from gateway.registry.engine import aware
from gateway.registry.schema import index_files, index_projects, upload_events

# Uploads over SSH: those the upload server accepted, and those whose replica died while
# forwarding them (they may have been published). Counting the latter can only keep an account
# from looking migrated, never make it look so.
UPLOADED = ("forwarded", "forwarding")


class ListedFile(Protocol):
    """A file as the index's page lists it (gateway.upload.index.IndexFile)."""

    filename: str
    sha256: str | None
    upload_time: dt.datetime | None


def _insert(conn: Connection, table):
    """An INSERT that can skip or update on a unique conflict (both databases spell it alike)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class EvidenceStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # -- what the refresh reads and writes ----------------------------------------------------------
    def ssh_projects(self) -> list[str]:
        """Every project ever uploaded over SSH, by canonical name."""
        query = (select(upload_events.c.project).distinct()
                 .where(upload_events.c.outcome.in_(UPLOADED), upload_events.c.project.is_not(None))
                 .order_by(upload_events.c.project))
        with self.engine.connect() as conn:
            return [row.project for row in conn.execute(query)]

    def forwarded_files(self, project: str) -> dict[str, set[str | None]]:
        """The files of `project` that came over SSH: file name -> their sha256s. Every session
        that carried a file counts, whatever its outcome: one whose answer was lost, or whose
        replica died, may have published it, and a file the gateway may have published is never
        evidence of a release made another way."""
        query = (select(upload_events.c.filename, upload_events.c.sha256).distinct()
                 .where(upload_events.c.project == project, upload_events.c.filename.is_not(None)))
        found: dict[str, set[str | None]] = defaultdict(set)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found[row.filename].add(row.sha256)
        return dict(found)

    def record_read(self, project: str, files: Sequence[ListedFile], now: dt.datetime) -> int:
        """Record one successful read of `project`'s page: `files` are those on it the gateway did
        not forward. Returns how many were new. A file already known gets only an upload time the
        index did not give before."""
        with self.engine.begin() as conn:
            previous = conn.execute(select(index_projects.c.last_read_at)
                                    .where(index_projects.c.project == project)).scalar()
            known = {row.filename: row.upload_time for row in conn.execute(
                select(index_files.c.filename, index_files.c.upload_time).where(index_files.c.project == project))}
            added = 0
            for listed in files:
                if listed.filename not in known:
                    statement = _insert(conn, index_files).values(
                        project=project, filename=listed.filename, sha256=listed.sha256,
                        upload_time=listed.upload_time, first_seen_at=now, absent_at=previous,
                    ).on_conflict_do_nothing(index_elements=["project", "filename"]).returning(index_files.c.id)
                    # Counted from RETURNING: on PostgreSQL an INSERT already returns its new key,
                    # and its rowcount then reads -1.
                    added += len(conn.execute(statement).all())
                elif known[listed.filename] is None and listed.upload_time is not None:
                    conn.execute(update(index_files).where(index_files.c.project == project,
                                                           index_files.c.filename == listed.filename)
                                 .values(upload_time=listed.upload_time))
            read = _insert(conn, index_projects).values(project=project, first_read_at=now, last_read_at=now)
            conn.execute(read.on_conflict_do_update(index_elements=["project"], set_={"last_read_at": now}))
        return added

    def last_read(self) -> dt.datetime | None:
        """When a project's page was last read successfully (None: never)."""
        with self.engine.connect() as conn:
            return aware(conn.execute(select(func.max(index_projects.c.last_read_at))).scalar())

    # -- what the report, notify and the gateway read back ---------------------------------------
    def releases(self, projects: Iterable[str] | None = None) -> dict[str, list[IndexRelease]]:
        """The recorded files the gateway did not forward, by project (of `projects`, or all)."""
        query = select(index_files).order_by(index_files.c.project, index_files.c.id)
        if projects is not None:
            query = query.where(index_files.c.project.in_(sorted(set(projects))))
        found: dict[str, list[IndexRelease]] = defaultdict(list)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found[row.project].append(IndexRelease(row.project, row.filename, row.sha256, row.upload_time,
                                                       row.first_seen_at, row.absent_at))
        return dict(found)

    def uploads(self, *, until: dt.datetime | None = None,
                account_ids: Sequence[int] | None = None) -> list[ProjectUploads]:
        """First and last upload (UPLOADED) per account and project, before `until`: of the
        accounts given, else of every account that uploaded a project the index has files of
        (the others have no evidence, so their events need not be read)."""
        events = upload_events.c
        conditions = [events.outcome.in_(UPLOADED), events.project.is_not(None), events.account_id.is_not(None)]
        if until is not None:
            conditions.append(events.at < until)
        if account_ids is not None:
            accounts = list(account_ids)
        else:
            accounts = (select(events.account_id).distinct()
                        .where(*conditions, events.project.in_(select(index_files.c.project).distinct())))
        # Both parts are read from the schema's covering indexes on upload_events (project first,
        # account first): over a million events, a tenth of a second instead of more than one.
        query = (select(events.account_id, events.project, func.min(events.at).label("first_at"),
                        func.max(events.at).label("last_at"))
                 .where(*conditions, events.account_id.in_(accounts))
                 .group_by(events.account_id, events.project))
        with self.engine.connect() as conn:
            return [ProjectUploads(row.account_id, row.project, aware(row.first_at), aware(row.last_at))
                    for row in conn.execute(query)]

    def states(self, *, until: dt.datetime | None = None) -> dict[int, MigrationState]:
        """Every account the index has something to say about, as of `until` (None: now)."""
        with self.engine.connect() as conn:
            if conn.execute(select(index_files.c.id).limit(1)).first() is None:
                return {}  # nothing read yet: spare the reading of the events
        uploads = self.uploads(until=until)
        return migration_states(uploads, self.releases({u.project for u in uploads}), until=until)

    def state_of(self, account_id: int, *, until: dt.datetime | None = None) -> MigrationState:
        """One account's migration state, as of `until` (None: now)."""
        uploads = self.uploads(until=until, account_ids=[account_id])
        return migration_state(uploads, self.releases({u.project for u in uploads}), until=until)
