"""Phrases and helpers that texts at every layer share: the program's name, the one spelling of
each of the two phrases on whether an upload reached the index, and how users reach this gateway.

A refusal says what happened and what to do next; when nothing reached the index it says so
with `NOTHING_PUBLISHED`. When an upload may have been published (the upload server took it all
and its answer was lost or was an error) the words are `MAYBE_PUBLISHED`, with the project's
page on the index to check: never "not published".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SSH_COMMANDS = ("guide", "whoami", "help")


NOTHING_PUBLISHED = "nothing was published"


MAYBE_PUBLISHED = "may have been published"


PROGRAM = "pypissh-gateway"


class PublicAddress(Protocol):
    """What `Place` needs from the settings (which read their own messages from here)."""

    @property
    def public_host(self) -> str: ...
    @property
    def public_port(self) -> int: ...
    @property
    def ssh_user(self) -> str: ...


@dataclass(frozen=True)
class Place:
    """How users reach this gateway: for the commands we tell them to run."""

    host: str
    port: int
    user: str

    @classmethod
    def from_settings(cls, settings: PublicAddress) -> Place:
        return cls(settings.public_host, settings.public_port, settings.ssh_user)

    def ssh(self, command: str) -> str:
        port = "" if self.port == 22 else f"-p {self.port} "
        return f"ssh {port}{self.user}@{self.host} {command}"


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{size} bytes"


def wait_phrase(seconds: float) -> str:
    """How long to wait, as both the client and the log say it: "40 s", "about 3 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"about {round(seconds / 60)} min"
