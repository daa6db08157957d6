"""`pypissh-migrate audit`: the admin journal, who changed what, when and why."""

from __future__ import annotations

import json
from typing import Any

import click

from gateway.cliutil import Context, pass_context
from gateway.registry import AuditEntry
from migrate import admin_texts
from migrate.output import emit_csv, emit_json, format_option, print_table, stamp, table, when

AUDIT_COLUMNS = ["id", "at", "actor", "actor_host", "reason", "command", "target_kind", "target", "account_name",
                 "before", "after"]


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def describe_change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """The change in one line: `name: old -> new` for each value that changed; a new target's
    values; `removed` for one that is gone."""
    if before is None:
        if after is None:
            return "-"
        return ", ".join(f"{name}: {_shown(value)}" for name, value in sorted(after.items()) if value is not None)
    if after is None:
        return "removed (was " + ", ".join(f"{name}: {_shown(value)}" for name, value in sorted(before.items())
                                           if value is not None) + ")"
    names = sorted(set(before) | set(after))
    changed = [f"{name}: {_shown(before.get(name))} -> {_shown(after.get(name))}" for name in names
               if before.get(name) != after.get(name)]
    return ", ".join(changed) or "no change"


def entry_data(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": stamp(entry.at), "actor": entry.actor, "actor_host": entry.actor_host,
            "reason": entry.reason, "command": entry.command, "target_kind": entry.target_kind,
            "target": entry.target, "account_name": entry.account_name, "before": entry.before,
            "after": entry.after}


@click.command("audit")
@click.option("--since", default="90d", show_default=True, metavar="DATE|Nd|Nw",
              help="From a date (YYYY-MM-DD), an ISO time, or a span back from now such as 90d or 12w.")
@click.option("--until", metavar="DATE", help="Up to a date (that whole day included) or an ISO time.")
@click.option("--account", metavar="NAME", help="Only changes to this account, its keys, and campaign runs "
              "sent to it alone.")
@format_option()
@pass_context
def audit(obj: Context, since: str, until: str | None, account: str | None, fmt: str) -> None:
    """List the admin journal: every change made through pypissh-migrate and pypissh-gateway.

    Each entry has its time (UTC), the OS user and host that made it, the command, the --reason
    given, the target and its values before and after (a token only as `stored` or `set`, never
    its value). As csv, before and after are JSON objects.
    """
    from migrate.report.logic import parse_instant, parse_period

    now = obj.now()
    try:
        start = parse_period(since, until, now).since
        end = parse_instant(until, end_of_day=True) if until else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    entries = obj.registry().audit.entries(since=start, until=end, account=account)
    rows = [entry_data(entry) for entry in entries]
    if fmt == "json":
        return emit_json(rows)
    if fmt == "csv":
        return emit_csv(AUDIT_COLUMNS, [{**row, "before": _json_cell(row["before"]), "after": _json_cell(row["after"])}
                                        for row in rows])
    out = table(None, ["at (UTC)", "actor", "command", "target", "change", "reason"])
    for entry in entries:
        actor = f"{entry.actor}@{entry.actor_host}" if entry.actor_host else entry.actor
        target = f"{entry.target_kind} {entry.target}" if entry.target else entry.target_kind
        out.add_row(when(entry.at).removesuffix(" UTC"), actor, entry.command, target,
                    describe_change(entry.before, entry.after), entry.reason or "-")
    print_table(out, whole=("at (UTC)",))
    if not entries:
        click.echo(admin_texts.audit_empty(when(start), account))


def _json_cell(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value, sort_keys=True) if value is not None else None
