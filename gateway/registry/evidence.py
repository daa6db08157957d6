"""The index's evidence: what its simple API listed for each project uploaded over SSH.

`pypissh-migrate evidence refresh` reads each project's page and records, through `record_read`,
every file on it (marked when it came through the gateway), with the index's upload time when it
gives one, the time the file was first seen, and the previous read that did not list it. Every
listed file is kept, so "not listed at the previous read" stays true whatever happens to the
upload events later (`prune`). Rows are never rewritten except to add an upload time the index
gave later, or to mark a file the gateway's, so a second refresh adds nothing.
The report, `notify` and the gateway's per-use reminder read the accounts' migration state back
(`states`, `state_of`); the rules themselves are pure, in `gateway.lifecycle.migration`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from sqlalchemy import ColumnElement, Connection, Engine, Select, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.lifecycle.migration import IndexRelease, MigrationState, ProjectUploads, migration_state, migration_states
from gateway.registry.engine import aware
from gateway.registry.schema import index_files, index_projects, upload_events

# Uploads over SSH: those the upload server accepted, those whose replica died while forwarding
# them, and those whose answer was lost ("unknown"): the last two may have been published.
# Counting them can only keep an account from looking migrated, never make it look so.
UPLOADED = ("forwarded", "forwarding", "unknown")


class ListedFile(Protocol):
    """A file as the index's page lists it (gateway.upload.index.IndexFile); read only."""

    @property
    def filename(self) -> str: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def upload_time(self) -> dt.datetime | None: ...


def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can skip or update on a unique conflict (both databases spell it alike)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _add_file(conn: Connection, project: str, listed: ListedFile, via_gateway: bool, now: dt.datetime,
              previous: dt.datetime | None) -> int:
    """Insert a file first seen now (`previous`: the read before, which did not list it); 1 if
    it was new, 0 if a concurrent refresh recorded it first."""
    statement = _insert(conn, index_files).values(
        project=project, filename=listed.filename, sha256=listed.sha256, via_gateway=via_gateway,
        upload_time=listed.upload_time, first_seen_at=now, absent_at=previous,
    ).on_conflict_do_nothing(index_elements=["project", "filename"]).returning(index_files.c.id)
    # Counted from RETURNING: on PostgreSQL an INSERT already returns its new key, and its
    # rowcount then reads -1.
    return len(conn.execute(statement).all())


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

    def record_read(self, project: str, files: Sequence[ListedFile], now: dt.datetime, *,
                    via_gateway: Collection[str] = ()) -> int:
        """Record one successful read of `project`'s page listing `files`; `via_gateway` names
        those that came through the gateway. Returns how many new files did not. A file already
        known only gains an upload time the index did not give before, or the gateway's mark."""
        with self.engine.begin() as conn:
            previous = conn.execute(select(index_projects.c.last_read_at)
                                    .where(index_projects.c.project == project)).scalar()
            known = {row.filename: row for row in conn.execute(
                select(index_files.c.filename, index_files.c.upload_time, index_files.c.via_gateway)
                .where(index_files.c.project == project))}
            added = 0
            for listed in files:
                ours = listed.filename in via_gateway
                row = known.get(listed.filename)
                if row is None:
                    new = _add_file(conn, project, listed, ours, now, previous)
                    added += 0 if ours else new
                    continue
                changes: dict[str, object] = {}
                if row.upload_time is None and listed.upload_time is not None:
                    changes["upload_time"] = listed.upload_time
                if ours and not row.via_gateway:
                    changes["via_gateway"] = True
                if changes:
                    conn.execute(update(index_files).where(index_files.c.project == project,
                                                           index_files.c.filename == listed.filename)
                                 .values(**changes))
            read = _insert(conn, index_projects).values(project=project, first_read_at=now, last_read_at=now)
            conn.execute(read.on_conflict_do_update(index_elements=["project"], set_={"last_read_at": now}))
        return added

    def last_read(self) -> dt.datetime | None:
        """When a project's page was last read successfully (None: never)."""
        with self.engine.connect() as conn:
            return aware(conn.execute(select(func.max(index_projects.c.last_read_at))).scalar())

    # -- what the report, notify and the gateway read back ---------------------------------------
    def releases(self, projects: Iterable[str] | None = None) -> dict[str, list[IndexRelease]]:
        """The recorded files that did not come through the gateway, by project (of `projects`,
        or all)."""
        query = (select(index_files).where(index_files.c.via_gateway.is_(False))
                 .order_by(index_files.c.project, index_files.c.id))
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
        conditions: list[ColumnElement[bool]] = [events.outcome.in_(UPLOADED), events.project.is_not(None),
                                                 events.account_id.is_not(None)]
        if until is not None:
            conditions.append(events.at < until)
        accounts: list[int] | Select[tuple[int]]
        if account_ids is not None:
            accounts = list(account_ids)
        else:
            evidence_projects = (select(index_files.c.project).distinct()
                                 .where(index_files.c.via_gateway.is_(False)))
            accounts = (select(events.account_id).distinct()
                        .where(*conditions, events.project.in_(evidence_projects)))
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
            if conn.execute(select(index_files.c.id).where(index_files.c.via_gateway.is_(False))
                            .limit(1)).first() is None:
                return {}  # nothing read yet: spare the reading of the events
        uploads = self.uploads(until=until)
        return migration_states(uploads, self.releases({u.project for u in uploads}), until=until)

    def state_of(self, account_id: int, *, until: dt.datetime | None = None) -> MigrationState:
        """One account's migration state, as of `until` (None: now)."""
        uploads = self.uploads(until=until, account_ids=[account_id])
        return migration_state(uploads, self.releases({u.project for u in uploads}), until=until)
