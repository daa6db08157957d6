"""`pypissh-migrate schedule`: the notice, brownouts, the sunset and the emergency pause.

Every change is written to the registry; running replicas obey it within `schedule_cache_seconds`
(2 s by default), without a restart. All times are UTC.
"""

from __future__ import annotations

import datetime as dt

import click

from gateway import cli_texts
from gateway.cliutil import Context, confirm_irreversible, pass_context, reason_option, yes_option
from gateway.lifecycle.schedule import (
    Schedule,
    ScheduleError,
    describe_now,
    format_duration,
    format_utc,
    timeline,
)
from gateway.registry import AdminInputError
from migrate.output import console, emit_csv, emit_json, format_option, print_table, table
from migrate.schedule_input import (
    check_brownout,
    check_notice,
    check_pause,
    check_sunset,
    parse_duration,
    parse_utc,
)

STATE_STYLE = {"past": "dim", "in force": "bold red", "now": "bold", "next": "bold yellow", "later": ""}


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def _time(text: str, now: dt.datetime) -> dt.datetime:
    try:
        return parse_utc(text, now)
    except ScheduleError as exc:
        raise click.BadParameter(str(exc)) from None


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def _obeyed(obj: Context) -> str:
    seconds = obj.settings().schedule_cache_seconds
    return f"every running replica obeys this within {seconds:g} s"


@click.group()
def schedule() -> None:
    """Show and change the deprecation schedule (times are UTC).

    \b
    Phases, in order: normal -> notice (sessions show the dates) -> brownouts (short windows
    in which uploads are refused with 410, exempt accounts pass) -> sunset (uploads refused for
    good, exempt accounts pass). `pause` refuses every upload at once, exempt accounts too,
    until `resume`.
    """


@schedule.command("show")
@click.option("--at", "at", metavar="TIME", help="Show the state at this UTC time instead of now.")
@click.option("--preview", is_flag=True, help="Also print the notice and banner users see at that time.")
@format_option()
@pass_context
def show(obj: Context, at: str | None, preview: bool, fmt: str) -> None:
    """List what happens when, with 'now' in its place.

    As json: now, what it means, the sunset and the timeline (with --preview, what users see); as
    csv: the timeline.
    """
    now = _time(at, obj.now()) if at else obj.now()
    current = obj.registry().schedule.current()
    if fmt != "table":
        return _show_data(obj, current, now, preview, fmt)
    console.print(f"[bold]now[/bold] ({format_utc(now)}): {describe_now(current, now)}")
    out = table(None, ["when (UTC)", "until", "id", "what", "state"])
    for entry in timeline(current, now):
        style = STATE_STYLE.get(entry.state, "")
        out.add_row(format_utc(entry.when), format_utc(entry.until) if entry.until else "",
                    str(entry.window_id) if entry.window_id is not None else "", entry.what, entry.state,
                    style=style)
    print_table(out, whole=("when (UTC)", "until"))
    if current.sunset is not None and now < current.sunset:
        console.print(f"sunset in {format_duration(current.sunset - now)}")
    if preview:
        from gateway.lifecycle import notices

        settings = obj.settings()
        notice = notices.build_notice(settings, current, now)
        console.print("\n[bold]login banner[/bold] (shown by ssh before login):")
        console.print(notices.banner_text(notice) or "(none before the notice starts)", markup=False)
        console.print("[bold]reply header[/bold]:")
        for name, value in notices.header_lines(notice):
            console.print(f"{name}: {value}", markup=False)
        if not notice.allowed:
            console.print("[bold]410 reason[/bold] (printed by `setup.py upload`):")
            console.print(notices.refusal_reason(notice), markup=False)


TIMELINE_COLUMNS = ["when", "until", "id", "kind", "what", "state"]


def _show_data(obj: Context, current: Schedule, now: dt.datetime, preview: bool, fmt: str) -> None:
    rows = [{"when": entry.when, "until": entry.until, "id": entry.window_id, "kind": entry.kind,
             "what": entry.what, "state": entry.state} for entry in timeline(current, now)]
    if fmt == "csv":
        return emit_csv(TIMELINE_COLUMNS, rows)
    data = {"now": now, "phase": describe_now(current, now), "sunset": current.sunset, "timeline": rows}
    if preview:
        from gateway.lifecycle import notices

        notice = notices.build_notice(obj.settings(), current, now)
        data["preview"] = {"banner": notices.banner_text(notice) or None,
                           "headers": dict(notices.header_lines(notice)),
                           "refusal": None if notice.allowed else notices.refusal_reason(notice)}
    emit_json(data)


def _set_single(obj: Context, kind: str, when: str | None, clear: bool, note: str | None,
                yes: bool = False) -> None:
    registry = obj.registry()
    if clear:
        registry.schedule.replace_window(kind, None, audit=obj.actor())
        click.echo(f"{kind} removed; {_obeyed(obj)}")
        return
    if when is None:
        raise click.UsageError(f"give the {kind} time (UTC), or --clear")
    now = obj.now()
    start = _time(when, now)
    current = registry.schedule.current()
    try:
        warnings = check_notice(current, start) if kind == "notice" else check_sunset(current, start, now)
    except ScheduleError as exc:
        _fail(exc)
    if kind == "sunset" and current.sunset is not None and start < current.sunset:
        confirm_irreversible(cli_texts.confirm_sunset_earlier(format_utc(current.sunset), format_utc(start)),
                             "moving the sunset earlier", yes)
    registry.schedule.replace_window(kind, start, note, audit=obj.actor())
    _warn(warnings)
    click.echo(f"{kind} set to {format_utc(start)}; {_obeyed(obj)}")


@schedule.command("set-notice")
@click.argument("when", required=False)
@click.option("--clear", is_flag=True, help="Remove the notice start.")
@click.option("--note", help="Free text for admins (e.g. where it was announced).")
@reason_option
@pass_context
def set_notice(obj: Context, when: str | None, clear: bool, note: str | None) -> None:
    """From WHEN (UTC, or 'now') on, sessions, the login banner and replies carry the dates."""
    _set_single(obj, "notice", when, clear, note)


@schedule.command("set-sunset")
@click.argument("when", required=False)
@click.option("--clear", is_flag=True, help="Remove the sunset.")
@click.option("--note", help="Free text for admins.")
@yes_option
@reason_option
@pass_context
def set_sunset(obj: Context, when: str | None, clear: bool, note: str | None, yes: bool) -> None:
    """From WHEN (UTC) on, uploads are refused with 410 for good (exempt accounts pass).

    Moving a sunset earlier than users were told asks first (--yes in scripts).
    """
    _set_single(obj, "sunset", when, clear, note, yes)


@schedule.command("add-brownout")
@click.argument("start")
@click.argument("end", required=False)
@click.option("--for", "length", metavar="DURATION", help="Length instead of END, e.g. 2h or 30min.")
@click.option("--note", help="Free text shown in the listing (e.g. why this time of day).")
@reason_option
@pass_context
def add_brownout(obj: Context, start: str, end: str | None, length: str | None, note: str | None) -> None:
    """Refuse uploads from START to END (UTC; or START --for 2h); exempt accounts pass.

    Run brownouts at different times of day so forgotten jobs in every time zone fail loudly
    before the sunset.
    """
    if (end is None) == (length is None):
        raise click.UsageError("give either END or --for DURATION")
    now = obj.now()
    begins = _time(start, now)
    try:
        if length is not None:
            ends = begins + parse_duration(length)
        else:
            assert end is not None  # exactly one of the two is given (checked above)
            ends = _time(end, now)
        registry = obj.registry()
        warnings = check_brownout(registry.schedule.current(), begins, ends, now)
    except ScheduleError as exc:
        _fail(exc)
    window_id = registry.schedule.add_window("brownout", begins, ends, note, audit=obj.actor())
    _warn(warnings)
    click.echo(f"brownout {window_id} added: {format_utc(begins)} to {format_utc(ends)} "
               f"({format_duration(ends - begins)}); {_obeyed(obj)}")


@schedule.command("cancel-brownout")
@click.argument("window_id", metavar="ID", type=int)
@reason_option
@pass_context
def cancel_brownout(obj: Context, window_id: int) -> None:
    """Cancel brownout ID (see `schedule show`); one in force ends now."""
    registry = obj.registry()
    now = obj.now()
    found = [w for w in registry.schedule.current().brownouts if w.id == window_id]
    if not found:
        _fail(ScheduleError(f"no brownout {window_id}; `pypissh-migrate schedule show` lists them with their id"))
    window = found[0]
    if window.ends_at is not None and window.ends_at <= now:
        _fail(ScheduleError(f"brownout {window_id} is already over (it ended {format_utc(window.ends_at)})"))
    try:
        if window.starts_at <= now:
            registry.schedule.end_window(window_id, now, audit=obj.actor())
            click.echo(f"brownout {window_id} ended now ({format_utc(now)}); {_obeyed(obj)}")
        else:
            registry.schedule.cancel_window(window_id, audit=obj.actor())
            click.echo(f"brownout {window_id} cancelled; {_obeyed(obj)}")
    except AdminInputError as exc:
        _fail(exc)


@schedule.command("pause")
@click.option("--note", help="Why: shown to users in the refusal (e.g. 'incident, see status page').")
@yes_option
@reason_option
@pass_context
def pause(obj: Context, note: str | None, yes: bool) -> None:
    """Refuse every upload now, exempt accounts too, until `schedule resume`.

    Asks first on a terminal; --yes in scripts.
    """
    registry = obj.registry()
    try:
        check_pause(registry.schedule.current())
    except ScheduleError as exc:
        _fail(exc)
    confirm_irreversible(cli_texts.confirm_pause(), "pausing every upload", yes)
    now = obj.now()
    registry.schedule.add_window("pause", now, None, note, audit=obj.actor())
    click.echo(f"uploads paused since {format_utc(now)}; {_obeyed(obj)}; "
               "`pypissh-migrate schedule resume` ends the pause")


@schedule.command("resume")
@reason_option
@pass_context
def resume(obj: Context) -> None:
    """End the pause: uploads follow the schedule again."""
    registry = obj.registry()
    current = registry.schedule.current()
    if current.pause is None:
        _fail(ScheduleError("uploads are not paused; nothing to resume"))
    now = obj.now()
    for window in current.windows:  # every open pause, should two admins have paused at once
        if window.kind == "pause" and window.ends_at is None:
            registry.schedule.end_window(window.id, now, audit=obj.actor())
    click.echo(f"pause ended at {format_utc(now)}; now: {describe_now(registry.schedule.current(), now)}")
