"""Reading the old service's data and planning its import: pure functions, no database.

The old server kept one generated `authorized_keys` file for the `submit` user, a line per key:

    command="<handler> -r <user>",<restrictions> <type> <base64> <comment>

where <restrictions> is `no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty`, and
its database could be dumped as CSV: users (name,email) and keys (name,key). `plan_import`
compares what was read with what the registry already holds and returns what to create, so an
import can be shown (`--dry-run`), applied, and run again without changing anything.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from gateway.emails import EmailError, normalised_email
from gateway.registry import names
from gateway.sshkeys import KeyFormatError, PublicKey, parse_public_key, weakness
from migrate import admin_texts

# Key types OpenSSH accepts in authorized_keys; an option name never starts like one of these.
_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-sha2-|sk-)[A-Za-z0-9@.+-]+$")
_OPTION_NAME = re.compile(r"[A-Za-z0-9_-]+")
# The registry's own grammar (gateway/registry/names.py): a name it would refuse is reported here,
# with its line, rather than when the import is applied.
NOT_A_USER_NAME = f"is not a valid user name (an account name is {names.RULE})"


@dataclass(frozen=True)
class Where:
    """A place in the input, for messages: `authorized_keys:12`."""

    source: str
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Rejected:
    where: Where
    reason: str


@dataclass(frozen=True)
class KeyLine:
    """One key and the user it belongs to, as the old data says."""

    where: Where
    user: str
    key_text: str  # "<type> <base64> [comment]", options removed


@dataclass(frozen=True)
class UserRow:
    where: Where
    name: str
    email: str | None


class OptionsError(ValueError):
    """The options field of an authorized_keys line cannot be read."""


# -- authorized_keys ----------------------------------------------------------------------------
def split_options(line: str) -> tuple[list[tuple[str, str | None]], str]:
    """Split `opt,opt="v",... <key>` into the options and the rest of the line.

    Follows sshd: options are comma-separated up to the first unquoted blank; a value is in double
    quotes, may hold commas and blanks, and `\\"` stands for a quote (any other backslash is kept).
    A line that starts with a key type has no options.
    """
    line = line.strip()
    first = line.split(None, 1)[0] if line else ""
    if _KEY_TYPE.match(first):
        return [], line
    options: list[tuple[str, str | None]] = []
    pos = 0
    while True:
        match = _OPTION_NAME.match(line, pos)
        if match is None:
            raise OptionsError(f"unexpected character at column {pos + 1} of the options")
        name, pos = match.group(), match.end()
        value = None
        if line.startswith('="', pos):
            value, pos = _quoted(line, pos + 2)
        elif line.startswith("=", pos):
            raise OptionsError(f"the value of the option ending at column {pos} is not in double quotes")
        options.append((name, value))
        if pos >= len(line):
            raise OptionsError("the line ends after the options; the key is missing")
        if line[pos] == ",":
            pos += 1
            continue
        if line[pos] in " \t":
            return options, line[pos:].strip()
        raise OptionsError(f"unexpected character at column {pos + 1} after an option")


def _quoted(line: str, pos: int) -> tuple[str, int]:
    """Read a quoted option value starting after its opening quote; returns (value, position after it)."""
    out = []
    while pos < len(line):
        char = line[pos]
        if char == "\\" and line.startswith('\\"', pos):
            out.append('"')
            pos += 2
            continue
        if char == '"':
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    raise OptionsError("a quoted option value is not closed (missing '\"')")


def user_from_command(command: str) -> str | None:
    """The user the handler was started for: the word after `-r` (or glued to it: `-ralice`)."""
    try:
        words = shlex.split(command, posix=True)
    except ValueError:
        return None
    user = None
    for index, word in enumerate(words):
        if word == "-r" and index + 1 < len(words):
            user = words[index + 1]
        elif word.startswith("-r") and len(word) > 2 and not word.startswith("--"):
            user = word[2:]
    return user


def parse_authorized_keys_line(line: str, where: Where) -> KeyLine | Rejected | None:
    """One line: a KeyLine, a Rejected with the reason, or None for blank and comment lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        options, rest = split_options(text)
    except OptionsError as exc:
        return Rejected(where, str(exc))
    commands = [value for name, value in options if name.lower() == "command"]
    if not commands:
        return Rejected(where, 'no command="... -r <user>" option, so the line names no user')
    user = user_from_command(commands[-1] or "")
    if not user:
        return Rejected(where, "the command option has no '-r <user>'")
    if not names.is_account_name(user):
        return Rejected(where, f"the user after -r {NOT_A_USER_NAME}")
    parts = rest.split(None, 2)
    if len(parts) < 2:
        return Rejected(where, "the key is incomplete: expected '<type> <base64> [comment]' after the options")
    return KeyLine(where, user, rest)


def parse_authorized_keys(text: str, source: str = "authorized_keys") -> tuple[list[KeyLine], list[Rejected]]:
    keys: list[KeyLine] = []
    rejected: list[Rejected] = []
    for number, line in enumerate(text.splitlines(), start=1):
        result = parse_authorized_keys_line(line, Where(source, number))
        if isinstance(result, KeyLine):
            keys.append(result)
        elif isinstance(result, Rejected):
            rejected.append(result)
    return keys, rejected


# -- CSV dumps ----------------------------------------------------------------------------------
def _csv_rows(text: str, header: tuple[str, str]) -> Iterable[tuple[int, list[str]]]:
    """Rows with the number of the line each starts on; blank rows and a header row left out."""
    reader = csv.reader(io.StringIO(text))
    next_line = 1
    for row in reader:
        start, next_line = next_line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if start == 1 and tuple(cell.strip().lower() for cell in row) == header:
            continue
        yield start, row


def parse_users_csv(text: str, source: str = "users.csv") -> tuple[list[UserRow], list[Rejected]]:
    users: list[UserRow] = []
    rejected: list[Rejected] = []
    for number, row in _csv_rows(text, ("name", "email")):
        where = Where(source, number)
        if len(row) != 2:
            rejected.append(Rejected(where, f"expected 2 columns (name,email), found {len(row)}"))
            continue
        name, email = row[0].strip(), row[1].strip()
        if not names.is_account_name(name):
            rejected.append(Rejected(where, f"the name {NOT_A_USER_NAME}" if name else "the name is empty"))
            continue
        if email:
            try:
                email = normalised_email(email)
            except EmailError:
                rejected.append(Rejected(where, admin_texts.email_invalid_in_file()))
                continue
        users.append(UserRow(where, name, email or None))
    return users, rejected


def parse_keys_csv(text: str, source: str = "keys.csv") -> tuple[list[KeyLine], list[Rejected]]:
    """Rows of (name, key); the key may carry authorized_keys options, which are ignored."""
    keys: list[KeyLine] = []
    rejected: list[Rejected] = []
    for number, row in _csv_rows(text, ("name", "key")):
        where = Where(source, number)
        if len(row) != 2:
            rejected.append(Rejected(where, f"expected 2 columns (name,key), found {len(row)}"))
            continue
        name, key = row[0].strip(), row[1].strip()
        if not names.is_account_name(name):
            rejected.append(Rejected(where, f"the name {NOT_A_USER_NAME}" if name else "the name is empty"))
            continue
        try:
            _options, rest = split_options(key)
        except OptionsError as exc:
            rejected.append(Rejected(where, str(exc)))
            continue
        if len(rest.split()) < 2:
            rejected.append(Rejected(where, "the key is incomplete: expected '<type> <base64> [comment]'"))
            continue
        keys.append(KeyLine(where, name, rest))
    return keys, rejected


# -- planning -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewAccount:
    name: str
    email: str | None
    where: Where


@dataclass(frozen=True)
class NewKey:
    account: str
    key: PublicKey
    where: Where


@dataclass
class ImportPlan:
    accounts: list[NewAccount] = field(default_factory=list)
    emails: list[tuple[str, str]] = field(default_factory=list)  # (existing account, email to fill in)
    keys: list[NewKey] = field(default_factory=list)
    accounts_present: int = 0
    keys_present: int = 0
    skipped: list[Rejected] = field(default_factory=list)

    @property
    def accounts_without_email(self) -> list[str]:
        return [a.name for a in self.accounts if not a.email]

    @property
    def weak_keys(self) -> list[NewKey]:
        return [k for k in self.keys if k.key.weak]

    @property
    def changes(self) -> int:
        return len(self.accounts) + len(self.emails) + len(self.keys)


def plan_import(
    users: Iterable[UserRow],
    keys: Iterable[KeyLine],
    *,
    existing_accounts: Mapping[str, str | None],
    existing_keys: Mapping[str, str],
    revoked_keys: Collection[str] = (),
    allow_weak_keys: bool = False,
    rejected: Iterable[Rejected] = (),
) -> ImportPlan:
    """What an import would change, given the registry's accounts (name -> email) and keys
    (fingerprint -> account name; `revoked_keys` are fingerprints revoked by an admin). Inputs are
    taken in order: the first owner of a key wins, as it did on the old server (sshd uses the first
    authorized_keys line that matches a key)."""
    plan = ImportPlan(skipped=list(rejected))
    # The index treats user names without regard to case; so does the import.
    names: dict[str, str] = {name.casefold(): name for name in existing_accounts}
    emails: dict[str, str | None] = {name.casefold(): email for name, email in existing_accounts.items()}
    created: dict[str, NewAccount] = {}
    present: set[str] = set()
    user_rows: dict[str, UserRow] = {}

    def ensure_account(name: str, email: str | None, where: Where) -> str:
        folded = name.casefold()
        if folded in names:
            if folded not in created:
                present.add(folded)
            return names[folded]
        account = NewAccount(name, email, where)
        created[folded] = account
        names[folded] = name
        emails[folded] = email
        return name

    for row in users:
        folded = row.name.casefold()
        earlier = user_rows.get(folded)
        if earlier is not None:
            if (earlier.email or "").lower() != (row.email or "").lower():
                plan.skipped.append(Rejected(row.where, f"user '{row.name}' is listed again with another email "
                                                        f"(first at {earlier.where}); the first is kept"))
            continue
        user_rows[folded] = row
        if folded in names and folded not in created and row.email and not emails[folded]:
            plan.emails.append((names[folded], row.email))
            emails[folded] = row.email
        ensure_account(row.name, row.email, row.where)

    owners: dict[str, tuple[str, Where | None]] = {fp: (name, None) for fp, name in existing_keys.items()}
    for line in keys:
        try:
            key = parse_public_key(line.key_text)
        except KeyFormatError as exc:
            plan.skipped.append(Rejected(line.where, f"user '{line.user}': {exc}"))
            continue
        why_weak = weakness(key.algorithm, key.bits)
        if why_weak and not allow_weak_keys:
            plan.skipped.append(Rejected(line.where, f"user '{line.user}': {why_weak} ({key.fingerprint}); they "
                                                     "need a new key (ssh-keygen -t ed25519), or set allow_weak_keys "
                                                     "to accept it"))
            continue
        folded = line.user.casefold()
        owner = owners.get(key.fingerprint)
        if owner is not None:
            owner_name, first_seen = owner
            if owner_name.casefold() == folded:
                ensure_account(line.user, None, line.where)
                if key.fingerprint in revoked_keys and first_seen is None:
                    plan.skipped.append(Rejected(line.where, f"user '{line.user}': key {key.fingerprint} was revoked "
                                                             "by an admin; an import does not restore it"))
                else:
                    plan.keys_present += 1
                continue
            where = (f"listed for '{owner_name}' at {first_seen}" if first_seen
                     else f"registered to account '{owner_name}'")
            plan.skipped.append(Rejected(line.where, f"user '{line.user}': key {key.fingerprint} is already {where}; "
                                                     "a key belongs to one account"))
            continue
        account = ensure_account(line.user, None, line.where)
        owners[key.fingerprint] = (account, line.where)
        plan.keys.append(NewKey(account, key, line.where))

    plan.accounts = list(created.values())
    plan.accounts_present = len(present)
    plan.skipped.sort(key=lambda r: (r.where.source, r.where.line))
    return plan
