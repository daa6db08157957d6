"""`pypissh-migrate prune`: delete old upload events, in bounded batches, keeping last use known."""

from __future__ import annotations

import datetime as dt
import re

import click

from gateway.cliutil import Context, confirm_irreversible, pass_context, reason_option, yes_option
from gateway.registry import audit
from migrate import admin_texts
from migrate.output import stamp, when

DEFAULT_BATCH = 1000
_SPAN = re.compile(r"(\d+)([dw])\Z")


def cut_off(text: str, now: dt.datetime) -> dt.datetime:
    """`--before`: a date or time (UTC), or a span back from now such as 400d or 57w; not later than now."""
    from migrate.report.logic import parse_instant

    span = _SPAN.match(text.strip().lower())
    if span:
        amount = int(span.group(1))
        return now - (dt.timedelta(days=amount) if span.group(2) == "d" else dt.timedelta(weeks=amount))
    when = parse_instant(text.strip())
    if when > now:
        raise ValueError(admin_texts.prune_cut_off_future(text.strip()))
    return when


@click.command("prune")
@click.option("--before", "before_text", required=True, metavar="DATE|Nd|Nw",
              help="Delete upload events recorded before this date (YYYY-MM-DD, UTC) or this long ago (400d).")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--batch", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH, show_default=True,
              help="Events deleted per transaction (smaller batches hold locks for less time).")
@yes_option
@reason_option
@pass_context
def prune(obj: Context, before_text: str, dry_run: bool, batch: int, yes: bool) -> None:
    """Delete upload events older than --before, in batches of --batch, each its own transaction.

    Each account's latest event is always kept, so its last use stays known to reports,
    campaigns and `accounts show`. Deleting cannot be undone: asks first on a terminal, --yes in
    scripts. Recorded in the admin journal with the counts.
    """
    now = obj.now()
    try:
        before = cut_off(before_text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--before") from None
    events = obj.registry().events
    prunable, kept = events.prune_counts(before)
    if dry_run:
        click.echo(admin_texts.prune_dry_run(prunable, when(before), kept))
        return
    if not prunable:
        click.echo(admin_texts.prune_nothing(when(before), kept))
        return
    confirm_irreversible(admin_texts.confirm_prune(prunable, when(before)), "deleting upload events", yes)
    deleted = batches = 0
    while True:
        done = events.prune_batch(before, batch)
        if not done:
            break
        deleted += done
        batches += 1
    remaining = events.count()
    obj.registry().audit.record(obj.actor(), target_kind=audit.EVENTS, target="upload_events", after={
        "before": stamp(before), "deleted": deleted, "batches": batches, "kept_latest": kept, "remaining": remaining})
    click.echo(admin_texts.prune_done(deleted, when(before), batches, kept, remaining))
