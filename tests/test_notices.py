"""The deprecation notice rendered for each channel from one source: stderr, banner, header, 410."""

from __future__ import annotations

import datetime as dt

from gateway.lifecycle.notices import banner_text, build_notice, header_lines, refusal_reason, session_text
from gateway.lifecycle.schedule import Schedule, Window
from gateway.registry import Identity
from gateway.settings import Settings

UTC = dt.timezone.utc
SETTINGS = Settings(public_host="upload.example.org", public_port=22, help_url="https://example.org/ssh-end")
SCHEDULE = Schedule.from_windows([
    Window(1, "notice", dt.datetime(2026, 8, 1, tzinfo=UTC)),
    Window(2, "brownout", dt.datetime(2026, 10, 1, 14, tzinfo=UTC), dt.datetime(2026, 10, 1, 16, tzinfo=UTC)),
    Window(3, "sunset", dt.datetime(2026, 12, 1, 14, tzinfo=UTC)),
])
NOTICE_TIME = dt.datetime(2026, 9, 1, tzinfo=UTC)
BROWNOUT_TIME = dt.datetime(2026, 10, 1, 15, tzinfo=UTC)
AFTER_SUNSET = dt.datetime(2026, 12, 2, tzinfo=UTC)


def identity(exempt: bool = False) -> Identity:
    return Identity(account_id=1, account_name="alice", email="alice@example.org", exempt=exempt,
                    fingerprint="SHA256:abcdef", key_comment=None, token_ciphertext=None, allowed_projects=None)


def test_session_notice_says_who_what_when_how_where():
    """The stderr notice names account, key, project, exact UTC dates, the twine commands and a URL."""
    text = session_text(build_notice(SETTINGS, SCHEDULE, NOTICE_TIME, identity=identity(), project="foo"))
    assert "account 'alice', key SHA256:abcdef, project 'foo'" in text
    assert "end on 2026-12-01 14:00 UTC" in text
    assert "Next brownout" in text and "2026-10-01 14:00 UTC to 16:00 UTC" in text
    assert "twine upload dist/*" in text and "python -m build" in text
    assert "https://example.org/ssh-end" in text and "ssh submit@upload.example.org guide" in text
    assert all(line.startswith("pypissh-gateway: ") for line in text.splitlines())


def test_before_the_notice_only_the_short_line_and_no_banner():
    """Before the notice phase no dates are shown and there is no login banner."""
    notice = build_notice(SETTINGS, SCHEDULE, dt.datetime(2026, 7, 1, tzinfo=UTC), identity=identity())
    assert "2026-12-01" not in session_text(notice)
    assert "deprecated" in session_text(notice)
    assert banner_text(notice) is None
    assert ("Sunset" not in dict(header_lines(notice)))


def test_banner_names_nobody_and_carries_the_dates():
    """The login banner (before login) carries the dates and steps but no account."""
    banner = banner_text(build_notice(SETTINGS, SCHEDULE, NOTICE_TIME))
    assert "2026-12-01 14:00 UTC" in banner and "twine upload dist/*" in banner
    assert "alice" not in banner


def test_headers_carry_the_dates_in_standard_forms():
    """Every reply carries our header plus RFC 8594 Sunset and RFC 9745 Deprecation."""
    headers = dict(header_lines(build_notice(SETTINGS, SCHEDULE, NOTICE_TIME, identity=identity())))
    assert headers["X-PyPI-SSH-Deprecation"].startswith("deprecated; phase=notice; sunset=2026-12-01T14:00:00Z")
    assert "next-brownout=2026-10-01T14:00:00Z/2026-10-01T16:00:00Z" in headers["X-PyPI-SSH-Deprecation"]
    assert headers["Sunset"] == "Tue, 01 Dec 2026 14:00:00 GMT"
    assert headers["Deprecation"] == f"@{int(dt.datetime(2026, 8, 1, tzinfo=UTC).timestamp())}"


def test_brownout_reason_says_until_when_and_what_to_run():
    """The 410 reason in a brownout: one printable ASCII line with the end, the sunset and twine."""
    notice = build_notice(SETTINGS, SCHEDULE, BROWNOUT_TIME, identity=identity(), project="foo")
    reason = refusal_reason(notice)
    assert "brownout until 2026-10-01 16:00 UTC" in reason
    assert "end for good on 2026-12-01 14:00 UTC" in reason
    assert "'foo' was not published" in reason and "twine upload dist/*" in reason
    assert reason.isascii() and "\n" not in reason and len(reason) <= 400


def test_sunset_and_pause_reasons():
    """After the sunset and during a pause the reason says so, with the pause's note."""
    assert "SSH uploads ended on 2026-12-01 14:00 UTC" in refusal_reason(
        build_notice(SETTINGS, SCHEDULE, AFTER_SUNSET, identity=identity()))
    paused = Schedule.from_windows([*SCHEDULE.windows, Window(9, "pause", NOTICE_TIME, note="incident 42")])
    reason = refusal_reason(build_notice(SETTINGS, paused, NOTICE_TIME, identity=identity(exempt=True)))
    assert "paused by the index administrators since 2026-09-01 00:00 UTC (incident 42)" in reason


def test_exempt_account_is_told_why_it_passes():
    """In a brownout an exempt account's notice says it passes because it is exempt."""
    text = session_text(build_notice(SETTINGS, SCHEDULE, BROWNOUT_TIME, identity=identity(exempt=True)))
    assert "brownout is in force until 2026-10-01 16:00 UTC" in text
    assert "Account 'alice' is exempt" in text
