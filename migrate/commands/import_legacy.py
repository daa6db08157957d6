"""`pypissh-migrate import-legacy`: load the old service's users and keys into the registry."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gateway.cliutil import Context, pass_context, reason_option
from gateway.registry import AdminInputError, Registry, audit
from gateway.sshkeys import looks_like_private_key
from migrate import admin_texts
from migrate.legacy_import import (
    ImportPlan,
    KeyLine,
    Rejected,
    UserRow,
    parse_authorized_keys,
    parse_keys_csv,
    parse_users_csv,
    plan_import,
)
from migrate.output import console

NOTE = "imported from the legacy service"


def read_text(path: Path) -> str:
    """Old dumps are UTF-8 or, from older systems, Latin-1; either is read without failing. A
    private key given by mistake is refused whole, without a word of its content."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if looks_like_private_key(text):
        raise click.ClickException(admin_texts.private_key_file(str(path)))
    return text


def _read_sources(authorized_keys: Path | None, users: Path | None,
                  keys_csv: Path | None) -> tuple[list[UserRow], list[KeyLine], list[Rejected]]:
    rows: list[UserRow] = []
    lines: list[KeyLine] = []
    rejected: list[Rejected] = []
    if users is not None:
        found_rows, bad = parse_users_csv(read_text(users), users.name)
        rows += found_rows
        rejected += bad
    # authorized_keys first: it is what the old sshd actually used, so its owners win.
    if authorized_keys is not None:
        found, bad = parse_authorized_keys(read_text(authorized_keys), authorized_keys.name)
        lines += found
        rejected += bad
    if keys_csv is not None:
        found, bad = parse_keys_csv(read_text(keys_csv), keys_csv.name)
        lines += found
        rejected += bad
    return rows, lines, rejected


def make_plan(registry: Registry, rows: Iterable[UserRow], lines: Iterable[KeyLine], rejected: Iterable[Rejected], *,
              allow_weak_keys: bool) -> ImportPlan:
    accounts = {account.name: account.email for account in registry.accounts.list_accounts()}
    known = registry.keys.list_keys()
    return plan_import(
        rows, lines,
        existing_accounts=accounts,
        existing_keys={key.fingerprint: key.account_name for key in known},
        revoked_keys={key.fingerprint for key in known if key.revoked_at is not None},
        allow_weak_keys=allow_weak_keys,
        rejected=rejected,
    )


@dataclass
class Failed:
    """What could not be written although planned (another admin got there first)."""

    accounts: list[Rejected] = field(default_factory=list)
    keys: list[Rejected] = field(default_factory=list)


def apply_plan(registry: Registry, plan: ImportPlan, *, show_progress: bool = True) -> Failed:
    failed = Failed()
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False, disable=not show_progress) as progress:
        task = progress.add_task("", total=plan.changes)
        for account in plan.accounts:
            progress.update(task, description=f"account {account.name}")
            try:
                registry.accounts.add_account(account.name, email=account.email, note=NOTE)
            except AdminInputError as exc:
                failed.accounts.append(Rejected(account.where, str(exc)))
            progress.advance(task)
        for name, email in plan.emails:
            progress.update(task, description=f"email of {name}")
            registry.accounts.update_account(name, email=email)
            progress.advance(task)
        for new in plan.keys:
            progress.update(task, description=f"key of {new.account}")
            try:
                registry.keys.add_key(new.account, new.key, source="legacy")
            except AdminInputError as exc:
                failed.keys.append(Rejected(new.where, f"user '{new.account}': {exc}"))
            progress.advance(task)
        progress.update(task, description="done")
    return failed


def _skipped(plan: ImportPlan, failed: Failed) -> list[Rejected]:
    return sorted([*plan.skipped, *failed.accounts, *failed.keys], key=lambda r: (r.where.source, r.where.line))


def summary_data(plan: ImportPlan, failed: Failed, *, dry_run: bool) -> dict[str, Any]:
    """The summary for scripts (`--format json`) and the admin journal; on a dry run, the counts
    are what would be done."""
    return {
        "dry_run": dry_run,
        "accounts_created": len(plan.accounts) - len(failed.accounts),
        "accounts_present": plan.accounts_present,
        "emails_filled_in": len(plan.emails),
        "keys_added": len(plan.keys) - len(failed.keys),
        "keys_present": plan.keys_present,
        "weak_keys": [{"account": k.account, "fingerprint": k.key.fingerprint} for k in plan.weak_keys],
        "accounts_without_email": plan.accounts_without_email,
        "skipped": [{"file": r.where.source, "line": r.where.line, "reason": r.reason} for r in _skipped(plan, failed)],
    }


def summary_lines(plan: ImportPlan, failed: Failed, *, dry_run: bool) -> list[str]:
    def verb(done: str, would: str) -> str:
        return would if dry_run else done

    skipped = _skipped(plan, failed)
    lines = [
        f"accounts: {len(plan.accounts) - len(failed.accounts)} {verb('created', 'to create')}, "
        f"{plan.accounts_present} already present",
        f"emails:   {len(plan.emails)} {verb('filled in', 'to fill in')} on existing accounts",
        f"keys:     {len(plan.keys) - len(failed.keys)} {verb('added', 'to add')}, "
        f"{plan.keys_present} already present, {len(skipped)} line(s) skipped",
    ]
    if plan.weak_keys:
        lines.append("weak keys accepted by allow_weak_keys (flagged 'weak' in reports): "
                     + ", ".join(f"{k.account} {k.key.fingerprint}" for k in plan.weak_keys))
    if plan.accounts_without_email:
        lines.append(f"accounts without an email (they will miss notices): {', '.join(plan.accounts_without_email)}; "
                     "add one with `pypissh-migrate accounts update NAME --email ADDRESS`")
    if skipped:
        lines.append("skipped:")
        lines += [f"  {r.where}: {r.reason}" for r in skipped]
    if dry_run:
        lines.append("dry run: nothing was written; run again without --dry-run to import")
    return lines


@click.command("import-legacy")
@click.option("--authorized-keys", "authorized_keys", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='The old server\'s authorized_keys (lines of command="<handler> -r <user>",... <key>).')
@click.option("--users", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV dump of users: name,email (a header row is optional).")
@click.option("--keys", "keys_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV dump of keys: name,key (a header row is optional).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True,
              help="text for people; json for scripts (the summary as one object, no progress bar).")
@reason_option
@pass_context
def import_legacy(obj: Context, authorized_keys: Path | None, users: Path | None, keys_csv: Path | None,
                  dry_run: bool, fmt: str) -> None:
    """Import the old service's users and keys; running it again changes nothing.

    Lines that cannot be imported (malformed, weak keys, a key already owned by another account)
    are listed with their file and line number; everything else is imported. Weak keys (DSA, RSA
    under 2048 bits) are refused unless the allow_weak_keys setting is on.
    """
    if not (authorized_keys or users or keys_csv):
        raise click.UsageError("give at least one of --authorized-keys, --users, --keys")
    settings = obj.settings()
    registry = obj.registry()
    rows, lines, rejected = _read_sources(authorized_keys, users, keys_csv)
    plan = make_plan(registry, rows, lines, rejected, allow_weak_keys=settings.allow_weak_keys)
    progress = fmt == "text" and console.is_terminal  # never a progress bar into a pipe or a file
    failed = Failed() if dry_run or not plan.changes else apply_plan(registry, plan, show_progress=progress)
    summary = summary_data(plan, failed, dry_run=dry_run)
    if not dry_run and plan.changes:  # one summary row, right after the import's many transactions
        sources = [path.name for path in (authorized_keys, users, keys_csv) if path is not None]
        journalled = {k: v for k, v in summary.items() if k not in ("dry_run", "weak_keys", "skipped")}
        registry.audit.record(obj.actor(), target_kind=audit.IMPORT, target=", ".join(sources),
                              after={**journalled, "skipped": len(summary["skipped"]),
                                     "weak_keys": len(summary["weak_keys"])})
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    for line in summary_lines(plan, failed, dry_run=dry_run):
        click.echo(line)

