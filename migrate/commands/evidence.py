"""`pypissh-migrate evidence refresh`: what the index shows about who has switched to another
upload path (the report's `migrated` and `mixed-use` statuses come from it)."""

from __future__ import annotations

import json

import click
from packaging.utils import canonicalize_name
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gateway.cliutil import Context, pass_context, reason_option
from gateway.errors import ConfigError
from gateway.registry import audit
from gateway.upload.index import IndexClient, RefusedFile
from migrate import admin_texts
from migrate import evidence as refreshing
from migrate.evidence import DEFAULT_CONCURRENCY, Failure, RefreshSummary


@click.group("evidence")
def evidence() -> None:
    """Evidence from the index of which accounts have switched to another upload path."""


@evidence.command("refresh")
@click.option("--project", "projects", metavar="NAME", multiple=True,
              help="Read only this project (repeatable). Default: every project ever uploaded over SSH.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=DEFAULT_CONCURRENCY, show_default=True,
              help="How many project pages are read at once.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one summary line; json: the summary as one JSON object.")
@reason_option
@pass_context
def refresh(obj: Context, projects: tuple[str, ...], concurrency: int, fmt: str) -> None:
    """Read the index's simple API for every project uploaded over SSH, and record who has switched.

    For each project the gateway ever forwarded an upload of, reads its page at index_url (PEP 691
    JSON when the index offers it, else PEP 503 HTML; certificates verified against
    upstream_ca_bundle) and records every file on it, with the upload time the index gives (PEP
    700) or else the time this refresh first saw it. Files that match one an SSH session carried
    (file name and sha256) are the gateway's and never count; the others are the evidence. A
    second run adds only what is new. The report then shows as `migrated`
    the accounts whose every SSH project has such a file published after their last SSH upload
    of it, and leaves them off the accounts that would break; `notify` skips them.

    An index without upload times (PEP 503 HTML) cannot date the files that were already there
    the first time a project is read: they count for nothing. Run the refresh regularly (daily,
    say): a release a later run finds was published after the run before it, and counts.

    A project whose page cannot be read gets one line on standard error and is counted; the
    others are still read. Exit status: 0 when every page was read, 1 when any could not be
    (nothing was recorded for it), 2 for a usage error.
    """
    registry = obj.registry()
    wanted = _chosen(projects, registry.evidence.ssh_projects())
    settings = obj.settings()
    if not wanted:
        _report(RefreshSummary(settings.index_url, obj.now(), obj.now(), concurrency, 0, 0, 0, ()), fmt)
        return
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        client = IndexClient(settings, pool_maxsize=concurrency, clock=obj.now)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    progress = Progress(TextColumn("reading the index"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=errors, transient=True, disable=not errors.is_terminal)

    def done(project: str, failure: Failure | None) -> None:
        if failure is not None:
            progress.console.print(admin_texts.evidence_project_failed(project, failure.reason), markup=False)
        progress.advance(task)

    def refused(project: str, file: RefusedFile) -> None:
        progress.console.print(admin_texts.evidence_file_refused(project, file.filename, file.reason), markup=False)

    try:
        with progress:
            task = progress.add_task("read", total=len(wanted))
            summary = refreshing.refresh(registry, client, wanted, concurrency=concurrency, clock=obj.now,
                                         on_done=done, on_refused=refused)
    finally:
        client.close()
    # One journal entry per run, with the counts and the projects that could not be read.
    registry.audit.record(obj.actor(), target_kind=audit.EVIDENCE, target=summary.index_url,
                          after=refreshing.audit_record(summary))
    _report(summary, fmt)
    if not summary.ok:
        raise SystemExit(1)


def _report(summary: RefreshSummary, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(refreshing.audit_record(summary), ensure_ascii=False))
    elif summary.projects == 0:
        click.echo(admin_texts.evidence_nothing_to_read())
    else:
        click.echo(admin_texts.evidence_summary(summary.read, summary.projects, summary.files_recorded,
                                             len(summary.failures), summary.index_url))


def _chosen(projects: tuple[str, ...], known: list[str]) -> list[str]:
    if not projects:
        return known
    wanted: list[str] = list(dict.fromkeys(canonicalize_name(p) for p in projects))
    for project in wanted:
        if project not in known:
            raise click.BadParameter(admin_texts.evidence_project_not_ssh(project), param_hint="--project")
    return wanted
