"""The `pypissh-gateway` program: sshd's two per-login commands on a fast path, the rest via click.

In the OpenSSH mode sshd starts `authorized-keys-command` twice per login and `stdio` once per
session, so each must cost about one interpreter start. They are recognised here, after the
global options of gateway/cliutil.py (`--config PATH`, `--home DIR`, `--set NAME=VALUE`), and run with the
standard library only, and as little of it as will do: the light settings reader
(gateway/loginsettings.py), and the commands themselves (gateway/logincommands.py: the shim and the
key file's reader). Every other command, and anything this small
parser does not recognise (`--help`, a usage error), goes to the click CLI (gateway/cli.py),
which imports everything and also holds these two commands' help texts.
"""

from __future__ import annotations

import os
import sys

from gateway.errors import ConfigError
from gateway.logincommands import authorized_keys_command, stdio_command
from gateway.loginsettings import LoginSettings, load_login_settings

TYPE_CHECKING = False  # `typing` is for type checkers only here (see gateway/loginsettings.py)
if TYPE_CHECKING:
    from collections.abc import Sequence


class Invocation:
    """A command line: the global options, the command and its arguments."""

    __slots__ = ("args", "command", "config", "home", "pairs")

    def __init__(self, config: str | None, home: str | None, pairs: Sequence[str], command: str,
                 args: Sequence[str]):
        self.config = config  # --config (None: not given)
        self.home = home  # --home (None: not given)
        self.pairs = tuple(pairs)  # --set NAME=VALUE, in order
        self.command = command
        self.args = tuple(args)  # after the command


def split_global_options(argv: Sequence[str]) -> Invocation | None:
    """The global options and the command; None when anything else comes first (click decides)."""
    config: str | None = None
    home: str | None = None
    pairs: list[str] = []
    given = _options(argv, {"--config", "--home", "--set"}, stop_at_positional=True)
    if given is None:
        return None
    for name, value in given[0]:
        if name == "--config":
            config = value
        elif name == "--home":
            home = os.path.abspath(value)  # as click's resolve_path makes it
        else:
            pairs.append(value)
    rest = given[1]
    if not rest:
        return None
    return Invocation(config, home, tuple(pairs), rest[0], tuple(rest[1:]))


def _options(args: Sequence[str], known: set[str], *, stop_at_positional: bool = False
             ) -> tuple[list[tuple[str, str]], list[str]] | None:
    """([(option, value)], positional arguments) for options that each take a value, as click
    parses them (`--name value` or `--name=value`); None for anything unknown."""
    options: list[tuple[str, str]] = []
    positional: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                return options, list(args[index:])
            positional.append(arg)
            index += 1
            continue
        name, equals, value = arg.partition("=")
        if name not in known:
            return None
        if not equals:
            if index + 1 >= len(args):
                return None
            value = args[index + 1]
            index += 1
        options.append((name, value))
        index += 1
    return options, positional


def main() -> None:
    from gateway.warnings_to_log import send_warnings_to_log

    send_warnings_to_log()  # before any library that warns is imported
    invocation = split_global_options(sys.argv[1:])
    if invocation is not None and all("=" in pair for pair in invocation.pairs):
        status = run_fast(invocation)
        if status is not None:
            sys.exit(status)
    from gateway.cli import main as cli_main

    cli_main()


def run_fast(invocation: Invocation) -> int | None:
    """The exit status of a fast command, or None to let click run the command line."""
    if invocation.command == "authorized-keys-command":
        parsed = _options(invocation.args, set())
        if parsed is None or not 1 <= len(parsed[1]) <= 3:
            return None
        user, *given = parsed[1]
        key, key_type = (*given, None, None)[:2]
        settings = _settings(invocation)
        if settings is None:
            return 1
        return authorized_keys_command(settings, user, key, key_type)
    if invocation.command == "stdio":
        parsed = _options(invocation.args, {"--account", "--fingerprint"})
        if parsed is None or parsed[1] or "--account" not in dict(parsed[0]):
            return None
        settings = _settings(invocation)
        if settings is None:
            return 1
        options = dict(parsed[0])
        return stdio_command(settings, options["--account"], options.get("--fingerprint"))
    return None


def _settings(invocation: Invocation) -> LoginSettings | None:
    overrides = {}
    for pair in invocation.pairs:
        name, _, value = pair.partition("=")
        overrides[name.strip()] = value
    if invocation.home is not None:
        overrides["home"] = invocation.home
    try:
        return load_login_settings(invocation.config, overrides=overrides)
    except ConfigError as exc:
        sys.stderr.write(f"Error: {exc}\n")  # as click prints it for the other commands
        return None
