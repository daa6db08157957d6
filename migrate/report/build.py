"""Gather the aggregates from the registry and assemble the report (the only I/O of the report)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from gateway.lifecycle.schedule import Schedule
from gateway.registry import Registry, audit
from gateway.registry.reports import AccountOverview, ReportQueries
from migrate import admin_texts
from migrate.report import logic
from migrate.report.model import OUTCOME_CATEGORIES, AccountReport, Period, Report, Trend, Verdict, Week


def build_report(registry: Registry, period: Period, *, generated_at: dt.datetime, database: str = "") -> Report:
    """The report as of the end of `period`: later events, notices, windows and releases on the
    index are ignored, except a sunset still to come (the date the verdict is about). `database`
    names the registry (its URL, password masked); a registry with no accounts or no keys gets the
    `empty` verdict."""
    queries = registry.reports
    windows = [w for w in registry.schedule.windows() if w.starts_at < period.until or w.kind == "sunset"]
    schedule = Schedule.from_windows([w for w in windows if w.starts_at < period.until])
    sunset = Schedule.from_windows(windows).sunset

    ranges = sorted({span for _, span in logic.table_weeks(period) + logic.trend_weeks(period)})
    totals = dict(zip(ranges, queries.weekly(ranges, OUTCOME_CATEGORIES), strict=True))
    overview = queries.accounts_overview(period.until)
    uses = queries.account_projects(period.since, period.until)
    accounts = logic.account_reports(overview, uses, queries.account_clients(period.since, period.until),
                                     queries.deliveries(period.until),
                                     notice_start=schedule.notice_start, period=period,
                                     migrations=registry.evidence.states(until=period.until))
    campaigns = queries.campaigns(period.until)
    weeks = logic.weeks(period, totals, logic.migrations_per_week(accounts, period))
    samples = logic.week_samples(period, totals)
    markers = logic.markers(windows, campaigns)
    trends = [t for t in (logic.trend(m, samples, period) for m in markers) if t is not None]
    return Report(
        generated_at=generated_at,
        period=period,
        weeks=weeks,
        accounts=accounts,
        projects=logic.project_reports(uses, {a.id: a.name for a in overview}),
        markers=markers,
        verdict=_verdict(queries, overview, accounts, trends, weeks, sunset, period, database),
        totals=logic.totals(weeks),
        unattributed_sessions=logic.unattributed_sessions(uses, {a.id for a in overview}),
        evidence_read_at=registry.evidence.last_read(),
        database=database,
        changes=logic.changes(registry.audit.entries(since=period.since, until=period.until,
                                                     kinds=(audit.SCHEDULE, audit.CAMPAIGN))),
    )


def _verdict(queries: ReportQueries, overview: Sequence[AccountOverview], accounts: Sequence[AccountReport],
             trends: Sequence[Trend], weeks: Sequence[Week], sunset: dt.datetime | None, period: Period,
             database: str) -> Verdict:
    keys = queries.key_count()
    if not overview or not keys:
        return logic.empty_verdict(admin_texts.report_empty_registry(database, len(overview), keys), weeks)
    return logic.verdict(accounts, trends, weeks, sunset=sunset, until=period.until)
