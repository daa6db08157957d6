"""`pypissh-migrate notify`: personalised email campaigns and the queued per-use reminders.

Each message is claimed in the registry before it goes to the mail server and marked sent after,
so a re-run (or a run after a crash) sends only what is still missing and never sends twice; see
`migrate/campaigns.py` for what a message left "sending" by a crash means.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gateway.cliutil import Context, pass_context, reason_option
from gateway.errors import ConfigError
from gateway.lifecycle.migration import MIGRATED
from gateway.lifecycle.schedule import Schedule, ScheduleError, format_utc
from gateway.registry import Account, Registry, audit
from gateway.settings import Settings
from migrate import campaigns as plans
from migrate.campaigns import ALREADY_SENT, SKIP_ORDER, Audience, CampaignPlan, Evidence, Planned
from migrate.mail import (
    Mailer,
    MailError,
    RateLimit,
    Refused,
    SmtpTarget,
    Uncertain,
    Unreachable,
    build_message,
    new_message_id,
)
from migrate.output import console, print_table, table
from migrate.schedule_input import parse_duration

REMINDER = "reminder"
T = TypeVar("T")


@dataclass
class Tally:
    sent: int = 0
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    uncertain: list[tuple[str, str, str]] = field(default_factory=list)
    raced: int = 0
    aborted: str | None = None


def _option_value(parse: Callable[[str], T], text: str | None, option: str) -> T | None:
    if text is None:
        return None
    try:
        return parse(text)
    except ScheduleError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command()
@click.option("--campaign", metavar="NAME", help="The campaign to send: announce, brownout, final, reminder "
              "(a folder of templates under templates/email/).")
@click.option("--reminders", is_flag=True, help="Send the per-use reminders the gateway queued.")
@click.option("--all", "everyone", is_flag=True, help="Every account.")
@click.option("--active-since", metavar="DURATION", help="Accounts that used the SSH path within e.g. 90d.")
@click.option("--account", "names", metavar="NAME", multiple=True, help="This account (repeatable).")
@click.option("--repeat-after", metavar="DURATION",
              help="Send again to accounts last sent this campaign longer ago than e.g. 30d (reminder "
                   "campaigns); without it an account gets each campaign once.")
@click.option("--dry-run", "dry_run", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Write the messages as .eml files into DIR; send nothing, record nothing.")
@click.option("--rate", metavar="N/s", help="At most this many messages per second (or /m, /h).")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many messages in this run.")
@click.option("--retry-interrupted", is_flag=True,
              help="Also send messages an earlier run left 'maybe sent' (check the mail log for their "
                   "Message-ID first: the recipient may get it twice).")
@click.option("--include-migrated", is_flag=True,
              help="Also mail accounts the index shows have migrated (skipped by default; see "
                   "`pypissh-migrate evidence refresh`).")
@reason_option
@pass_context
def notify(obj: Context, campaign: str | None, reminders: bool, everyone: bool, active_since: str | None,
           names: tuple[str, ...], repeat_after: str | None, dry_run: Path | None, rate: str | None,
           limit: int | None, retry_interrupted: bool, include_migrated: bool) -> None:
    """Email accounts about the end of SSH uploads, personalised with their own use.

    \b
    pypissh-migrate notify --campaign announce --active-since 90d --dry-run out/
    pypissh-migrate notify --campaign announce --active-since 90d --rate 5/s
    pypissh-migrate notify --campaign reminder --all --repeat-after 30d
    pypissh-migrate notify --reminders

    Each account gets a campaign once (or once per --repeat-after window): a re-run, or a run
    after a crash, sends only what is still missing. Accounts that are disabled, exempt, migrated
    (every project they uploaded over SSH has a release on the index made another way since; see
    `evidence refresh`) or have no email are skipped and counted in the summary.
    """
    if bool(campaign) == reminders:
        raise click.UsageError("give either --campaign NAME or --reminders")
    per_second = _option_value(plans.parse_rate, rate, "--rate")
    repeat = _option_value(parse_duration, repeat_after, "--repeat-after")
    period = _option_value(parse_duration, active_since, "--active-since")
    settings = obj.settings()
    registry = obj.registry()
    now = obj.now()
    accounts = registry.accounts.list_accounts()
    migrated = () if include_migrated else {
        account_id for account_id, state in registry.evidence.states(until=now).items() if state.status == MIGRATED}

    if reminders:
        if everyone or period or names or retry_interrupted:
            raise click.UsageError("--reminders sends what the gateway queued; it takes no --all, "
                                   "--active-since, --account or --retry-interrupted")
        name = REMINDER
        repeat = repeat or dt.timedelta(days=settings.reminder_repeat_days or 30)
        queued = registry.outbox.sends(campaign=REMINDER, statuses=["queued"])
        delivered = registry.outbox.sends(statuses=["sent", "sending"])
        plan = plans.plan_reminders(queued, accounts, delivered, now, repeat, limit=limit, migrated=migrated)
    else:
        known = plans.campaigns()
        if campaign not in known:
            raise click.BadParameter(f"no campaign '{campaign}'; the campaigns with templates are: "
                                     f"{', '.join(known)}", param_hint="--campaign")
        if sum([everyone, period is not None, bool(names)]) != 1:
            raise click.UsageError("choose who gets it: --all, --active-since DURATION or --account NAME")
        name = campaign
        audience = Audience(everyone=everyone, active_since=period, names=names)
        plan = plans.plan_campaign(accounts, registry.events.last_use_by_account(),
                                   registry.outbox.sends(campaign=campaign), audience, now,
                                   repeat_after=repeat, retry_interrupted=retry_interrupted, limit=limit,
                                   migrated=migrated)
        if plan.unknown:
            raise click.ClickException(f"no account named {', '.join(plan.unknown)}; nothing was sent; "
                                       "`pypissh-migrate accounts list` shows them")

    schedule = registry.schedule.current()
    console.print(f"[bold]{name}[/bold]: {len(plan.send)} to {'write' if dry_run else 'send'}, "
                  f"{sum(plan.skipped.values())} skipped")
    composer = Composer(registry, settings, name, schedule, now, repeat)
    if dry_run is not None:
        tally = _write_all(plan, composer, dry_run)
    else:
        tally = _send_all(plan, composer, registry, settings, per_second, repeat, obj.now)
    _summary(name, plan, tally, dry_run)
    if dry_run is None:  # one row for the run, right after it (each message has its own transactions)
        _journal(obj, registry, name, plan, tally, audience=_audience(reminders, everyone, active_since, names))
    if tally.failed or tally.uncertain or tally.aborted:
        raise SystemExit(1)


def _audience(reminders: bool, everyone: bool, active_since: str | None, names: tuple[str, ...]) -> str:
    if reminders:
        return "queued reminders"
    if everyone:
        return "all accounts"
    if active_since:
        return f"accounts active in the last {active_since}"
    return "accounts " + ", ".join(names)


def _journal(obj: Context, registry: Registry, campaign: str, plan: CampaignPlan, tally: Tally, *,
             audience: str) -> None:
    skipped = dict(plan.skipped)
    if tally.raced:
        skipped[ALREADY_SENT] = skipped.get(ALREADY_SENT, 0) + tally.raced
    names = {planned.account.name for planned in plan.send}
    registry.audit.record(obj.actor(), target_kind=audit.CAMPAIGN, target=campaign,
                          account_name=next(iter(names)) if len(names) == 1 else None,
                          after={"audience": audience, "planned": len(plan.send), "sent": tally.sent,
                                 "failed": len(tally.failed), "maybe_sent": len(tally.uncertain),
                                 "skipped": {reason: count for reason, count in skipped.items() if count},
                                 "stopped": tally.aborted})


class Composer:
    """Builds one account's message: its evidence, the schedule, the campaign's templates."""

    def __init__(self, registry: Registry, settings: Settings, campaign: str, schedule: Schedule,
                 now: dt.datetime, repeat: dt.timedelta | None):
        self.registry = registry
        self.settings = settings
        self.campaign = campaign
        self.schedule = schedule
        self.now = now
        self.repeat = repeat

    def evidence(self, account: Account) -> Evidence:
        keys = self.registry.keys.list_keys(account.name, include_revoked=False)
        activity = self.registry.events.account_activity(account.id)
        uses = [t for t in [activity["last_use"], *(k.last_used_at for k in keys)] if t is not None]
        return Evidence(keys=keys, projects=activity["projects"], last_use=max(uses) if uses else None,
                        clients=self.registry.events.client_versions(account.id))

    def message(self, planned: Planned) -> tuple[EmailMessage, str]:
        account = planned.account
        assert account.email, "planned without an address"  # the plan skips those (campaigns.NO_EMAIL)
        used_at = planned.queued.created_at if planned.queued is not None else None
        context = plans.email_context(self.campaign, account, self.evidence(account), self.schedule,
                                      self.settings, self.now, repeat_after=self.repeat, used_at=used_at)
        subject, text, html = plans.render_email(self.campaign, context)
        message_id = new_message_id(self.settings.mail_from)
        message = build_message(
            sender=self.settings.mail_from, recipient=email.utils.formataddr((account.name, account.email)),
            subject=subject, text=text, html=html, message_id=message_id,
            headers={"X-PyPISSH-Campaign": self.campaign})
        return message, message_id


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def _write_all(plan: CampaignPlan, composer: Composer, folder: Path) -> Tally:
    folder.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    with _progress() as progress:
        task = progress.add_task("writing", total=len(plan.send))
        for number, planned in enumerate(plan.send, 1):
            message, _message_id = composer.message(planned)
            path = folder / f"{number:04d}-{composer.campaign}-{plans.safe_filename(planned.account.name)}.eml"
            path.write_bytes(message.as_bytes(policy=email.policy.SMTP))
            tally.written += 1
            progress.advance(task)
    return tally


def _send_all(plan: CampaignPlan, composer: Composer, registry: Registry, settings: Settings,
              per_second: float | None, repeat: dt.timedelta | None, clock: Callable[[], dt.datetime]) -> Tally:
    tally = Tally()
    for row, reason in plan.dropped:  # queued reminders that will never go out
        registry.outbox.finish_send(row.id, "skipped", error=reason)
    if not plan.send:
        return tally
    try:
        target = SmtpTarget.from_url(settings.smtp_url)
        mailer = Mailer(target)
        mailer.connect()
    except (ConfigError, MailError) as exc:
        raise click.ClickException(f"{exc}; nothing was sent") from None
    limiter = RateLimit(per_second)
    since = clock() - repeat if repeat else None
    with mailer, _progress() as progress:
        task = progress.add_task(f"sending {composer.campaign}", total=len(plan.send))
        for planned in plan.send:
            limiter.wait()
            account = planned.account
            message, message_id = composer.message(planned)
            send_id = _claim(registry, composer.campaign, planned, message_id, since, clock())
            if send_id is None:  # another run took it meanwhile
                tally.raced += 1
                progress.advance(task)
                continue
            # A queued reminder that could not go out waits for the next run; a campaign
            # message is `failed`, which the next run of the campaign sends again.
            not_sent = "queued" if planned.queued is not None else "failed"
            try:
                mailer.send(message)
            except Refused as exc:
                registry.outbox.finish_send(send_id, not_sent, error=str(exc))
                tally.failed.append((account.name, str(exc)))
            except Uncertain as exc:
                registry.outbox.finish_send(send_id, "sending", error=str(exc))
                tally.uncertain.append((account.name, message_id, str(exc)))
            except Unreachable as exc:
                registry.outbox.finish_send(send_id, not_sent, error=str(exc))
                tally.failed.append((account.name, str(exc)))
                tally.aborted = str(exc)
                break
            else:
                registry.outbox.finish_send(send_id, "sent", sent_at=clock())
                tally.sent += 1
            progress.advance(task)
    return tally


def _claim(registry: Registry, campaign: str, planned: Planned, message_id: str,
           since: dt.datetime | None, now: dt.datetime) -> int | None:
    account = planned.account
    if planned.queued is not None:
        taken = registry.outbox.claim_queued(planned.queued.id, account.email or "", message_id)
        return planned.queued.id if taken else None
    for old in planned.retry_of:
        registry.outbox.finish_send(old, "failed", error="interrupted; sent again with --retry-interrupted")
    return registry.outbox.claim_send(campaign, account.id, account.email or "", message_id, now, since=since)


def _summary(name: str, plan: CampaignPlan, tally: Tally, dry_run: Path | None) -> None:
    out = table(f"{name}: summary", ["result", "accounts"])
    if dry_run is not None:
        out.add_row(f"written to {dry_run} (nothing sent)", str(tally.written))
    else:
        out.add_row("sent", str(tally.sent))
        out.add_row("failed (sent again by the next run)", str(len(tally.failed)))
        out.add_row("maybe sent (connection broke mid-message)", str(len(tally.uncertain)))
    skipped = dict(plan.skipped)
    if tally.raced:
        skipped[ALREADY_SENT] = skipped.get(ALREADY_SENT, 0) + tally.raced
    for reason in SKIP_ORDER:
        if skipped.get(reason):
            out.add_row(f"skipped: {reason}", str(skipped[reason]))
    print_table(out)
    for account, error in tally.failed:
        console.print(f"failed: {account}: {error}", markup=False)
    for account, message_id, error in tally.uncertain:
        console.print(f"maybe sent: {account} {message_id}: {error}", markup=False)
    if plan.interrupted:
        console.print("not sent again, maybe delivered by an interrupted run (look up the Message-ID in "
                      "the mail server's log; --retry-interrupted sends them again):")
        for account, row in plan.interrupted:
            console.print(f"  {account} <{row.email}> {row.message_id} "
                          f"claimed {format_utc(row.created_at)}", markup=False)
    if tally.aborted:
        console.print(f"stopped: {tally.aborted}. Run the same command again to resume; what was sent "
                      "is not sent again.", markup=False)
