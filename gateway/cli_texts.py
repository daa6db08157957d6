"""What the `pypissh-gateway` commands print about the state they create or need: the registry,
the secret key, the host keys, the home folder, and the confirmations of what cannot be
undone.
"""

from __future__ import annotations

from gateway.phrases import PROGRAM


def listen_taken(address: str) -> str:
    return (f"listen {address} is already in use by another process, not one of this gateway's workers; "
            "stop it (`ss -ltnp` shows which), or set listen to a free address")


def serve_modes_refused(first: str, more: int) -> str:
    if more:
        return f"{first} ({more} more: see `pypissh-gateway check`); or start with --insecure-modes to serve anyway"
    return f"{first}; or start with --insecure-modes to serve anyway"


def serving_with_open_modes(problem: str) -> str:
    return f"serving with --insecure-modes although {problem}"


def settings_usage(pair: str) -> str:
    return f"--set takes NAME=VALUE, not '{pair}'; e.g. --set listen=0.0.0.0:22"


def usage_error(message: str, command: str) -> str:
    """A command-line mistake (click's usage errors), on one line."""
    return f"{message.rstrip('.')} (see `{command} --help`)"


# -- state: the registry, the secret key, the host keys -------------------------------------------
def registry_missing(database: str) -> str:
    return (f"no registry at {database}; create it with `{PROGRAM} init` (or `{PROGRAM} db upgrade`), "
            "or point database_url (or home) at the existing one")


def registry_behind(database: str, revision: str | None, head: str | None) -> str:
    return (f"the registry at {database} is at schema revision {revision}, this version needs {head}; "
            f"run `{PROGRAM} db upgrade` first")


def registry_unknown_revision(database: str, revision: str | None) -> str:
    return (f"the registry at {database} is at schema revision {revision}, which this version does not know "
            "(a newer version upgraded it); install that version here too")


def registry_unreachable(database: str, detail: str) -> str:
    return f"cannot open the registry at {database}: {detail}; check database_url and that the database runs"


def registry_failed(detail: str) -> str:
    return f"the registry failed: {detail}; check that the database runs, then run the command again"


def secret_key_refused(path: object, database: str, count: int) -> str:
    return (f"refusing to create a secret key at {path}: the registry at {database} holds {count} token(s) "
            "sealed under another key, which a new key could never open; restore that key file there, "
            "or set secret_key_file (or secret_key) to it")


def wrote_file(path: object, what: str) -> str:
    return f"wrote {path} ({what})"


def already_there(path: object, what: str) -> str:
    return f"kept {path} ({what} already there)"


def permission_denied(path: object, owner: str | None, command: str) -> str:
    """A state file (or its folder) this user may not open: an admin running the tools as their own
    login on a gateway another user owns."""
    if owner is None:
        return (f"permission denied on {path}; run the command as the user that owns the gateway's home, "
                "or point home (--home, PYPISSH_HOME) at a gateway of your own")
    return (f"permission denied on {path}; the gateway's files there belong to user {owner}: run the command "
            f"as that user (sudo -u {owner} {command}), or point home (--home, PYPISSH_HOME) at a gateway of "
            "your own")


def cannot_write(path: object, reason: object, settings: str) -> str:
    return f"cannot write {path} ({reason}); check {settings} and the folder's owner"


def cannot_create_home(path: object, reason: object) -> str:
    return f"cannot create home {path} ({reason}); set home (PYPISSH_HOME, --home) to a folder this user may create"


def created_home(path: object) -> str:
    return f"created home {path} (mode 0700)"


def init_done(database: str) -> str:
    return (f"ready: registry at {database}; next: `pypissh-migrate accounts add NAME --email ADDRESS`, "
            f"then `{PROGRAM} check` and `{PROGRAM} serve`")


def host_keys_backed_up(old: object, backup: object) -> str:
    return f"kept the old key {old} as {backup}"


def host_keys_exist(folder: object) -> str:
    # `init` says this too, and has no --force of its own: name the command that has.
    return (f"host keys already exist in {folder}/ (`pypissh-gateway keygen --force` replaces them, "
            "`pypissh-gateway keygen --next` starts a rotation)")


# -- confirmations of what cannot be undone -------------------------------------------------------
def needs_yes(action: str) -> str:
    return f"{action} needs a confirmation: run the command on a terminal to answer, or add --yes in a script"


def confirm_replace_host_keys(folder: object) -> str:
    return (f"Replace the host keys in {folder}/? Every client will see a changed host key and refuse to "
            "connect until its known_hosts is fixed (a rotation with --next avoids that)")


def confirm_pause() -> str:
    return "Pause every upload now, exempt accounts too, until `pypissh-migrate schedule resume`?"


def confirm_sunset_earlier(old: str, new: str) -> str:
    return f"Move the sunset earlier, from {old} to {new}? Users were told the later date"


def confirm_retire_old(count: int) -> str:
    return (f"Drop {count} old secret key(s) from the key file? Tokens sealed only with them (by a host still "
            "on the old file) could never be opened again")


def reason_empty() -> str:
    return "give a reason in words, e.g. --reason 'key lost with a laptop, ticket 4711'"


def journal_needs_registry(where: str) -> str:
    return (f"done, but not recorded in the admin journal: no registry of the current schema at {where} "
            "(`pypissh-gateway db upgrade` creates or upgrades it)")
