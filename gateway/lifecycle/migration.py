"""Who has really switched: the index's evidence, judged by pure rules.

An account has **migrated** when every project it uploaded over SSH (an upload the gateway
forwarded) has a file on the index that did not come through the gateway and was published after
the account's last SSH upload of that project. An account that released a project another way and
then uploaded over SSH again is in **mixed use**: it still depends on the path.

When a file was published is known exactly when the index gives its PEP 700 `upload-time` (JSON
pages only). Otherwise a refresh knows two bounds: the file was not listed at the project's
previous read (`absent_at`) and was listed at the read that first saw it (`first_seen_at`). A
file that was already there the first time a project was read, with no upload time, may be older
than every SSH upload, so it proves nothing: against an index without upload times the first
refresh is a baseline, and the releases later refreshes find are the evidence.

The index does not say who uploaded a file: a co-maintainer's release made with twine counts for
every account that uploaded that project over SSH.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MIGRATED = "migrated"
MIXED_USE = "mixed-use"

# How the time of a release is known.
FROM_INDEX = "index"  # the index's PEP 700 upload-time
FIRST_SEEN = "first seen"  # when a refresh first listed it


@dataclass(frozen=True)
class IndexRelease:
    """A file on the index that did not come through the gateway."""

    project: str
    filename: str
    sha256: str | None
    upload_time: dt.datetime | None
    first_seen_at: dt.datetime
    absent_at: dt.datetime | None = None

    @property
    def published_at(self) -> dt.datetime:
        """When it was published as far as we know: the index's time, else when first seen."""
        return self.upload_time or self.first_seen_at

    @property
    def source(self) -> str:
        return FROM_INDEX if self.upload_time is not None else FIRST_SEEN

    def published_after(self, when: dt.datetime) -> bool:
        """Is it certain that this file was published after `when`?"""
        if self.upload_time is not None:
            return self.upload_time > when
        return self.absent_at is not None and self.absent_at >= when


@dataclass(frozen=True)
class ProjectUploads:
    """One account's SSH uploads of one project that the gateway forwarded."""

    account_id: int
    project: str
    first_at: dt.datetime
    last_at: dt.datetime


@dataclass(frozen=True)
class Evidence:
    """A release of `project` published another way after the account's SSH upload `follows`
    (for a migrated account: its last SSH upload of the project)."""

    project: str
    filename: str
    published_at: dt.datetime
    source: str  # FROM_INDEX | FIRST_SEEN
    follows: dt.datetime


@dataclass(frozen=True)
class MigrationState:
    """What the index says about one account. `status` is MIGRATED, MIXED_USE or None (no
    verdict: some project has no release made another way since its SSH uploads)."""

    status: str | None = None
    evidence: tuple[Evidence, ...] = ()
    migrated_at: dt.datetime | None = None  # migrated: when the last of its projects had its release
    back_on_ssh_at: dt.datetime | None = None  # mixed use: its SSH upload after a release made another way


NO_EVIDENCE = MigrationState()


def forwarded_by_gateway(filename: str, sha256: str | None, forwarded: Mapping[str, set[str | None]]) -> bool:
    """Did this file on the index come through the gateway? Matched by file name and sha256;
    by the name alone when the index gives no sha256. `forwarded` maps file name -> sha256s."""
    digests = forwarded.get(filename)
    if digests is None:
        return False
    return sha256 is None or sha256 in digests


def _evidence(release: IndexRelease, follows: dt.datetime) -> Evidence:
    return Evidence(release.project, release.filename, release.published_at, release.source, follows)


def _first(releases: Iterable[IndexRelease]) -> IndexRelease | None:
    return min(releases, key=lambda r: (r.published_at, r.filename), default=None)


def migration_state(uploads: Sequence[ProjectUploads], releases: Mapping[str, Sequence[IndexRelease]], *,
                    until: dt.datetime | None = None) -> MigrationState:
    """One account's state from all its forwarded uploads (before `until`) and the index's
    releases of those projects, as of `until` (None: everything known)."""
    if not uploads:
        return NO_EVIDENCE

    def known(release: IndexRelease) -> bool:
        return until is None or release.published_at < until

    found: list[Evidence] = []
    for use in sorted(uploads, key=lambda u: u.project):
        first = _first(r for r in releases.get(use.project, ()) if known(r) and r.published_after(use.last_at))
        if first is not None:
            found.append(_evidence(first, use.last_at))
    if len(found) == len(uploads):
        return MigrationState(MIGRATED, tuple(found), migrated_at=max(e.published_at for e in found))

    last_ssh = max(u.last_at for u in uploads)
    switched: list[Evidence] = []
    for use in sorted(uploads, key=lambda u: u.project):
        first = _first(r for r in releases.get(use.project, ())
                       if known(r) and r.published_after(use.first_at) and r.published_at < last_ssh)
        if first is not None:
            switched.append(_evidence(first, use.first_at))
    if switched:
        return MigrationState(MIXED_USE, tuple(switched), back_on_ssh_at=last_ssh)
    return MigrationState(None, tuple(found))


def migration_states(uploads: Iterable[ProjectUploads], releases: Mapping[str, Sequence[IndexRelease]], *,
                     until: dt.datetime | None = None) -> dict[int, MigrationState]:
    """`migration_state` of every account in `uploads` that the index has something to say about."""
    by_account: dict[int, list[ProjectUploads]] = defaultdict(list)
    for use in uploads:
        by_account[use.account_id].append(use)
    states = {}
    for account_id, mine in by_account.items():
        state = migration_state(mine, releases, until=until)
        if state.status is not None or state.evidence:
            states[account_id] = state
    return states
