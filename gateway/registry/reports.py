"""The deprecation report's queries: aggregates computed by the database, never row by row.

Every query here aggregates inside the database and returns at most one row per group (a week,
an account and project, a client banner), so a report over millions of upload events moves only a
few thousand rows into Python. The report's outcome categories are passed in, never hard-coded
(`migrate.report.model.OUTCOME_CATEGORIES` is their one definition).

Weekly figures come from one range query per week on the `at` index rather than from one GROUP BY
over a computed week: SQLite has no hash aggregation, so grouping a million rows by week and
account means sorting them all, while a week's range is read in index order and its distinct
accounts fit in a small temporary b-tree; on PostgreSQL a computed week also defeats the planner's
estimates. Both databases answer these queries with the schema's own indexes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, case, distinct, exists, func, select, text
from sqlalchemy.sql.expression import ColumnElement

from gateway.registry.schema import accounts, notification_sends, ssh_keys, upload_events

# -- rows the queries return --------------------------------------------------------------------
Categories = Mapping[str, Sequence[str]]  # report category -> the event outcomes it counts


@dataclass(frozen=True)
class RangeTotals:
    """Sessions in one time range: the total, per category, and distinct accounts."""

    sessions: int
    accounts: int
    by_category: dict[str, int]


@dataclass(frozen=True)
class AccountProjectUse:
    """Sessions of one account with one project (None: the request named none) and one outcome."""

    account_id: int | None
    project: str | None
    outcome: str
    sessions: int
    last_at: dt.datetime


@dataclass(frozen=True)
class AccountClient:
    """One combination of key and client banners an account used in the period."""

    account_id: int | None
    key_fingerprint: str | None
    ssh_client_version: str | None
    user_agent: str | None


@dataclass(frozen=True)
class AccountOverview:
    id: int
    name: str
    email: str | None
    disabled: bool
    exempt: bool
    created_at: dt.datetime
    last_use: dt.datetime | None
    active_keys: int
    weak_key: bool


@dataclass(frozen=True)
class Delivery:
    account_id: int
    campaign: str
    first_sent_at: dt.datetime


@dataclass(frozen=True)
class CampaignDelivery:
    campaign: str
    first_sent_at: dt.datetime
    last_sent_at: dt.datetime
    delivered: int


class ReportQueries:
    """The aggregate queries of `pypissh-migrate report` (they only read, so a report can run
    against a standby).

    Periods are half-open: `since <= at < until`, aware UTC datetimes.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def _in_period(self, since: dt.datetime, until: dt.datetime) -> list[ColumnElement]:
        return [upload_events.c.at >= since, upload_events.c.at < until]

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Room to hash-aggregate a large period in memory instead of sorting on disk.
                conn.execute(text("SET LOCAL work_mem = '64MB'"))
            yield conn

    def weekly(self, ranges: Sequence[tuple[dt.datetime, dt.datetime]],
               categories: Categories) -> list[RangeTotals]:
        """For each (start, end) range, typically a week: sessions in `start <= at < end` in
        total, per category and distinct accounts. One transaction, so one consistent view."""
        sums = [func.sum(case((upload_events.c.outcome.in_(list(outcomes)), 1), else_=0)).label(f"c{i}")
                for i, outcomes in enumerate(categories.values())]
        query = select(func.count().label("sessions"),
                       func.count(distinct(upload_events.c.account_id)).label("accounts"), *sums)
        found = []
        with self._connect() as conn:
            for start, end in ranges:
                row = conn.execute(query.where(*self._in_period(start, end))).one()
                found.append(RangeTotals(row.sessions, row.accounts,
                                         {name: int(row._mapping[f"c{i}"] or 0) for i, name in enumerate(categories)}))
        return found

    def account_projects(self, since: dt.datetime, until: dt.datetime) -> list[AccountProjectUse]:
        """Per account, project and outcome: sessions and the last one. Serves both the account
        and the project sections; the grouping keys are short, so even SQLite's sort is quick."""
        columns = (upload_events.c.account_id, upload_events.c.project, upload_events.c.outcome)
        query = (select(*columns, func.count().label("n"), func.max(upload_events.c.at).label("last_at"))
                 .where(*self._in_period(since, until))
                 .group_by(*columns))
        with self._connect() as conn:
            return [AccountProjectUse(row.account_id, row.project, row.outcome, row.n, row.last_at)
                    for row in conn.execute(query)]

    def account_clients(self, since: dt.datetime, until: dt.datetime) -> list[AccountClient]:
        """The distinct (account, key, SSH banner, User-Agent) combinations of the period."""
        query = (select(upload_events.c.account_id, upload_events.c.key_fingerprint,
                        upload_events.c.ssh_client_version, upload_events.c.user_agent)
                 .where(*self._in_period(since, until))
                 .distinct())
        with self._connect() as conn:
            return [AccountClient(row.account_id, row.key_fingerprint, row.ssh_client_version, row.user_agent)
                    for row in conn.execute(query)]

    def accounts_overview(self, until: dt.datetime) -> list[AccountOverview]:
        """Every account with its last session before `until` (one index probe per account)."""
        last_use = (select(func.max(upload_events.c.at))
                    .where(upload_events.c.account_id == accounts.c.id, upload_events.c.at < until)
                    .scalar_subquery())
        active_keys = (select(func.count()).select_from(ssh_keys)
                       .where(ssh_keys.c.account_id == accounts.c.id, ssh_keys.c.revoked_at.is_(None))
                       .scalar_subquery())
        weak = exists().where(ssh_keys.c.account_id == accounts.c.id, ssh_keys.c.weak.is_(True),
                              ssh_keys.c.revoked_at.is_(None))
        query = (select(accounts.c.id, accounts.c.name, accounts.c.email, accounts.c.disabled,
                        accounts.c.exempt, accounts.c.created_at, last_use.label("last_use"),
                        active_keys.label("active_keys"), weak.label("weak"))
                 .order_by(accounts.c.name))
        with self._connect() as conn:
            return [AccountOverview(row.id, row.name, row.email, bool(row.disabled), bool(row.exempt),
                                    row.created_at, row.last_use, row.active_keys, bool(row.weak))
                    for row in conn.execute(query)]

    def deliveries(self, until: dt.datetime) -> list[Delivery]:
        """Notices delivered before `until`: the first delivery per account and campaign."""
        query = (select(notification_sends.c.account_id, notification_sends.c.campaign,
                        func.min(notification_sends.c.sent_at).label("first"))
                 .where(notification_sends.c.status == "sent", notification_sends.c.sent_at < until)
                 .group_by(notification_sends.c.account_id, notification_sends.c.campaign))
        with self._connect() as conn:
            return [Delivery(row.account_id, row.campaign, row.first) for row in conn.execute(query)]

    def campaigns(self, until: dt.datetime) -> list[CampaignDelivery]:
        """Each campaign's delivered messages before `until`, oldest campaign first."""
        first = func.min(notification_sends.c.sent_at)
        query = (select(notification_sends.c.campaign, first.label("first"),
                        func.max(notification_sends.c.sent_at).label("last"),
                        func.count(distinct(notification_sends.c.account_id)).label("n"))
                 .where(notification_sends.c.status == "sent", notification_sends.c.sent_at < until)
                 .group_by(notification_sends.c.campaign)
                 .order_by(first))
        with self._connect() as conn:
            return [CampaignDelivery(row.campaign, row.first, row.last, row.n) for row in conn.execute(query)]

    def key_count(self) -> int:
        """Every SSH key ever registered, revoked ones included (none: an empty registry)."""
        with self._connect() as conn:
            return conn.execute(select(func.count()).select_from(ssh_keys)).scalar_one()
