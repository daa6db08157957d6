"""A small, known history of the SSH path for the report's tests: every count is worked out by hand
in `tests/test_report.py`.

The period is the eight ISO weeks 2026-W02 to 2026-W09 (`--since 2026-01-05 --until 2026-03-01`).
The notice phase starts on Monday 19 January; campaign `first-notice` reaches alice, bob and
carol on 20 January (dave's message failed, erin's was skipped); a brownout runs on 9 February
10:00-22:00; a second brownout was cancelled; the sunset is set for 1 April. The admin journal
says who set them up: the notice and the sunset on 12 January, the brownouts on 2 February (the
second cancelled on 10 February), and the notify run of `first-notice` on 20 January.

    alice  uploads `alpha` every Monday, notified, still using (one refusal by the upstream,
           one by the brownout); the index's only other `alpha` file is older than all that
    bob    uploads `beta` until 15 January, notified on the 20th, quiet since; `beta` 2.0 was
           released another way on 2 February (the index's upload time): migrated
    carol  exempt; registers `gamma`, uploads it during the brownout and after
    dave   never notified (his email failed); weak RSA-1024 key and a new ed25519 one; `delta`
           and `delta-utils`; got a per-use reminder on 25 February, too recent to count as quiet;
           `delta` 1.1, released another way after his SSH upload of it (first seen by a refresh
           on 10 February, absent on the 5th), then `delta-utils` over SSH again: mixed use
    erin   keys but no session: never used
    frank  last upload on 1 December: quiet since the notice phase began
    gina   disabled; one upload of `eta` on 26 February; an `eta` file without an upload time was
           on the index the first time it was read, which proves nothing
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import asyncssh

from gateway.registry import Actor, Registry, UploadEvent, audit
from gateway.sshkeys import PublicKey, from_asyncssh
from gateway.upload.index import IndexFile

UTC = dt.timezone.utc
SINCE = "2026-01-05"
UNTIL = "2026-03-01"


def at(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def _key(name: str, algorithm: str = "ssh-ed25519", **options) -> PublicKey:
    private = asyncssh.generate_private_key(algorithm, comment=f"{name}@example.org", **options)
    return from_asyncssh(private.convert_to_public(), f"{name}@example.org")


@dataclass
class History:
    registry: Registry
    keys: dict[str, PublicKey]


OPENSSH_74 = "SSH-2.0-OpenSSH_7.4"
OPENSSH_82 = "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5"
OPENSSH_53 = "SSH-2.0-OpenSSH_5.3"
OPENSSH_92 = "SSH-2.0-OpenSSH_9.2p1 Debian-2"
PUTTY = "SSH-2.0-PuTTY_Release_0.70"


@functools.lru_cache(maxsize=1)
def keys() -> dict[str, PublicKey]:
    """The accounts' keys by label ("dave-old" is dave's weak one), the same for every seed."""
    return {
        "alice": _key("alice"), "bob": _key("bob"), "carol": _key("carol"),
        "dave-old": _key("dave", "ssh-rsa", key_size=1024), "dave": _key("dave"),
        "erin": _key("erin"), "frank": _key("frank"), "gina": _key("gina"),
    }


def seed(registry: Registry) -> History:
    """Write the history into an empty, migrated registry."""
    keys_ = keys()
    ids = {}
    for name in ("alice", "bob", "carol", "dave", "erin", "frank", "gina"):
        ids[name] = registry.accounts.add_account(name, email=f"{name}@example.org", exempt=name == "carol").id
    for label, key in keys_.items():
        registry.keys.add_key(label.split("-")[0], key)
    registry.accounts.update_account("gina", disabled=True)

    def admin(command: str, when: dt.datetime, reason: str | None = None) -> Actor:
        return Actor(user="ops", host="admin1", command=f"pypissh-migrate schedule {command}", reason=reason, at=when)

    registry.schedule.add_window("notice", at(1, 19), audit=admin("set-notice", at(1, 12, 9), "announced on the blog"))
    registry.schedule.add_window("brownout", at(2, 9, 10), at(2, 9, 22), note="first brownout",
                                 audit=admin("add-brownout", at(2, 2, 9)))
    cancelled = registry.schedule.add_window("brownout", at(2, 16, 10), at(2, 16, 22),
                                             audit=admin("add-brownout", at(2, 2, 9)))
    registry.schedule.cancel_window(cancelled, audit=admin("cancel-brownout", at(2, 10, 11), "one is enough"))
    registry.schedule.add_window("sunset", at(4, 1), audit=admin("set-sunset", at(1, 12, 9)))

    # The notification history as `pypissh-migrate notify` leaves it: each message claimed, then
    # finished as sent, failed or skipped.
    def sent(campaign: str, name: str, when: dt.datetime, status: str = "sent") -> None:
        claimed = registry.outbox.claim_send(campaign, ids[name], f"{name}@example.org",
                                             f"<{campaign}.{name}@history.test>", when)
        assert claimed is not None
        registry.outbox.finish_send(claimed, status, sent_at=when if status == "sent" else None)

    for name in ("alice", "bob", "carol"):
        sent("first-notice", name, at(1, 20, 10))
    sent("first-notice", "dave", at(1, 20, 10), "failed")
    sent("first-notice", "erin", at(1, 20, 10), "skipped")
    sent("reminder", "dave", at(2, 25, 15))
    registry.audit.record(Actor(user="ops", host="admin1", command="pypissh-migrate notify", at=at(1, 20, 10)),
                          target_kind=audit.CAMPAIGN, target="first-notice",
                          after={"audience": "all accounts", "planned": 4, "sent": 3, "failed": 1, "maybe_sent": 0,
                                 "skipped": {"no email": 1}, "stopped": None})

    def use(name: str, when: dt.datetime, outcome: str, project: str | None, *, key: str | None = None,
            ssh: str, agent: str | None, action: str = "file_upload") -> None:
        fingerprint = keys_[key or name].fingerprint
        registry.events.record(UploadEvent(
            at=when, outcome=outcome, account_id=ids[name], account_name=name, key_fingerprint=fingerprint,
            client_addr="192.0.2.10", ssh_client_version=ssh, user_agent=agent, action=action,
            project=project, version="1.0" if project else None,
            upstream_status={"forwarded": 200, "refused_upstream": 400, "upstream_error": 502}.get(outcome),
            duration_ms=300))

    def alice(when: dt.datetime, outcome: str = "forwarded") -> None:
        use("alice", when, outcome, "alpha", ssh=OPENSSH_74, agent="Python-urllib/2.7")

    alice(at(12, 22, 9, year=2025))  # before the period: only the trend sees it
    for day in (at(1, 5, 9), at(1, 12, 9), at(1, 19, 9), at(1, 26, 9), at(2, 2, 9), at(2, 9, 9), at(2, 16, 9),
                at(2, 23, 9)):
        alice(day)
    alice(at(1, 13, 11), "refused_upstream")
    alice(at(2, 9, 12), "refused_schedule")
    alice(at(3, 5, 9))  # after the period: ignored

    def bob(when: dt.datetime, outcome: str = "forwarded") -> None:
        use("bob", when, outcome, "beta", ssh=OPENSSH_82, agent="Python-urllib/3.8")

    bob(at(12, 30, 10, year=2025))
    bob(at(1, 6, 10))
    bob(at(1, 13, 10))
    bob(at(1, 15, 10), "upstream_error")

    use("carol", at(1, 7, 11), "local", "gamma", ssh=PUTTY, agent=None, action="submit")
    use("carol", at(2, 9, 13), "forwarded", "gamma", ssh=PUTTY, agent=None)
    use("carol", at(2, 16, 10), "forwarded", "gamma", ssh=PUTTY, agent=None)

    old = dict(key="dave-old", ssh=OPENSSH_53, agent="Python-urllib/2.6")
    new = dict(ssh=OPENSSH_92, agent="Python-urllib/3.11")
    use("dave", at(1, 8, 14), "bad_request", None, **old)
    use("dave", at(1, 22, 14), "client_aborted", "delta", **old)
    use("dave", at(2, 3, 14), "forwarded", "delta", **old)
    use("dave", at(2, 24, 14), "forwarded", "delta-utils", **new)
    use("dave", at(2, 25, 14), "internal_error", "delta-utils", **new)

    use("frank", at(12, 1, 8, year=2025), "forwarded", "phi", ssh=OPENSSH_74, agent="Python-urllib/2.7")
    use("gina", at(2, 26, 10), "forwarded", "eta", ssh=OPENSSH_92, agent="Python-urllib/3.11")
    seed_index(registry)
    return History(registry, keys_)


def seed_index(registry: Registry) -> None:
    """What `evidence refresh` recorded from the index: files that did not come through the gateway."""
    evidence = registry.evidence
    evidence.record_read("alpha", [IndexFile("alpha-0.9.tar.gz", "a9" * 32, at(6, 1, year=2025))], at(2, 5))
    evidence.record_read("beta", [IndexFile("beta-2.0.tar.gz", "b2" * 32, at(2, 2, 10))], at(2, 5))
    evidence.record_read("delta", [], at(2, 5))
    evidence.record_read("delta", [IndexFile("delta-1.1.tar.gz", "d1" * 32, None)], at(2, 10, 9))
    evidence.record_read("eta", [IndexFile("eta-0.1.tar.gz", "e0" * 32, None)], at(2, 27))
