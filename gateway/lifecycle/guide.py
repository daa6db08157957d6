"""The personal guide for moving one account from the SSH path to twine.

`build_guide` gathers what is personal (projects and keys seen on the SSH path, the schedule's
dates, which token scope fits) into a `Guide`; `render_guide` turns it into plain text for
terminals, markdown, or JSON. Admins (`pypissh-migrate guide NAME`) and users (`ssh ... guide`)
get the same steps from the same code.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

from gateway.phrases import Place
from gateway.registry import Identity, Registry, utcnow
from gateway.render import render
from gateway.settings import Settings

DEFAULT_REPOSITORY = "https://upload.pypi.org/legacy/"
TOKEN_PLACEHOLDER = "<your API token, pypi-...>"
CI_SECRET_PLACEHOLDER = "<the API token, kept as a secret of the CI system>"
TRUSTED_PUBLISHING_URL = "https://docs.pypi.org/trusted-publishers/"
FORMATS = ("text", "markdown", "json")

INSTALL = "python -m pip install --upgrade build twine"
BUILD = "python -m build"
CHECK = "twine check dist/*"
UPLOAD = "twine upload dist/*"


@dataclass(frozen=True)
class GuideKey:
    fingerprint: str
    algorithm: str
    comment: str | None
    last_used: dt.datetime | None
    weak: bool


@dataclass(frozen=True)
class GuideProject:
    name: str
    uploads: int
    last: dt.datetime | None


@dataclass(frozen=True)
class Brownout:
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    note: str | None = None


@dataclass(frozen=True)
class Dates:
    notice_start: dt.datetime | None
    next_brownout: Brownout | None
    sunset: dt.datetime | None

    @property
    def any(self) -> bool:
        return bool(self.notice_start or self.next_brownout or self.sunset)


@dataclass(frozen=True)
class Guide:
    account: str
    exempt: bool
    login_fingerprint: str | None
    projects: tuple[GuideProject, ...]
    keys: tuple[GuideKey, ...]
    dates: Dates
    token_url: str
    # "project": one project, a token scoped to it; "account": none yet, or several projects.
    token_scope: str
    repository_url: str | None  # None: the index twine uploads to by default
    guide_command: str
    generated_at: dt.datetime
    commands: dict[str, str] = field(default_factory=lambda: {
        "install": INSTALL, "build": BUILD, "check": CHECK, "upload": UPLOAD})

    @property
    def scoped_project(self) -> str | None:
        return self.projects[0].name if self.token_scope == "project" else None

    @property
    def pypirc(self) -> str:
        lines = ["[pypi]"]
        if self.repository_url:
            lines.append(f"repository = {self.repository_url}")
        lines += ["username = __token__", f"password = {TOKEN_PLACEHOLDER}"]
        return "\n".join(lines) + "\n"

    @property
    def ci_environment(self) -> dict[str, str]:
        env = {"TWINE_USERNAME": "__token__", "TWINE_PASSWORD": CI_SECRET_PLACEHOLDER}
        if self.repository_url:
            env["TWINE_REPOSITORY_URL"] = self.repository_url
        return env

    @property
    def trusted_publishing(self) -> bool:
        """Trusted publishing is a feature of the public index; a private upstream may lack it."""
        return self.repository_url is None

    @property
    def steps(self) -> list[dict[str, object]]:
        """The commands and files of each step, in order (the JSON form, and what tests follow)."""
        return [
            {"title": "Install build and twine", "commands": [INSTALL]},
            {"title": "Create an API token", "url": self.token_url, "scope": self.token_scope,
             "project": self.scoped_project},
            {"title": "Put the token in ~/.pypirc", "file": "~/.pypirc", "content": self.pypirc,
             "commands": ["chmod 600 ~/.pypirc"], "placeholder": TOKEN_PLACEHOLDER},
            {"title": "Build, check and upload", "replaces": "python setup.py sdist upload",
             "commands": [BUILD, CHECK, UPLOAD]},
            {"title": "Set up CI", "environment": self.ci_environment,
             "trusted_publishing": TRUSTED_PUBLISHING_URL if self.trusted_publishing else None},
        ]


def build_guide(registry: Registry, settings: Settings, account_name: str, *,
                login_fingerprint: str | None = None, now: dt.datetime | None = None) -> Guide:
    """Everything personal in one account's guide (raises AdminInputError for an unknown account)."""
    now = now or utcnow()
    account = registry.accounts.get_account(account_name)
    activity = registry.events.account_activity(account.id)
    projects = tuple(GuideProject(p["name"], p["uploads"], p["last"]) for p in activity["projects"])
    keys = tuple(
        GuideKey(k.fingerprint, k.algorithm, k.comment, k.last_used_at, k.weak)
        for k in sorted(registry.keys.list_keys(account.name, include_revoked=False),
                        key=lambda k: (k.last_used_at is None, k.fingerprint))
    )
    schedule = registry.schedule.current()
    upcoming = schedule.next_brownout(now)
    dates = Dates(
        notice_start=schedule.notice_start,
        next_brownout=Brownout(upcoming.starts_at, upcoming.ends_at, upcoming.note) if upcoming else None,
        sunset=schedule.sunset,
    )
    upstream = settings.upstream_url.rstrip("/") + "/"
    return Guide(
        account=account.name,
        exempt=account.exempt,
        login_fingerprint=login_fingerprint,
        projects=projects,
        keys=keys,
        dates=dates,
        token_url=settings.token_url,
        token_scope="project" if len(projects) == 1 else "account",
        repository_url=None if upstream == DEFAULT_REPOSITORY else settings.upstream_url,
        guide_command=Place.from_settings(settings).ssh("guide"),
        generated_at=now,
    )


def utc(value: dt.datetime | None) -> str:
    """An exact UTC time as people read it: 2025-03-01 14:00 UTC (seconds only when not zero)."""
    if value is None:
        return "-"
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC" if value.second else "%Y-%m-%d %H:%M UTC")


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def guide_json(guide: Guide) -> dict:
    def convert(value):
        if isinstance(value, dt.datetime):
            return _iso(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    data = convert(asdict(guide))
    data.update(pypirc=guide.pypirc, ci_environment=guide.ci_environment, steps=guide.steps,
                scoped_project=guide.scoped_project)
    return data


def render_guide(guide: Guide, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(guide_json(guide), indent=2) + "\n"
    if fmt not in FORMATS:
        raise ValueError(f"unknown guide format '{fmt}'; use one of {', '.join(FORMATS)}")
    return render("guide.j2", guide=guide, md=fmt == "markdown", utc=utc, placeholder=TOKEN_PLACEHOLDER,
                  trusted_publishing_url=TRUSTED_PUBLISHING_URL)


def guide_text(registry: Registry, settings: Settings, identity: Identity, now: dt.datetime | None = None) -> str:
    """The guide a user sees with `ssh ... guide`, naming the key they logged in with."""
    guide = build_guide(registry, settings, identity.account_name, login_fingerprint=identity.fingerprint, now=now)
    return render_guide(guide, "text")
