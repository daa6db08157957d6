"""`pypissh-migrate keys`: which SSH keys log in as which account."""

from __future__ import annotations

from typing import IO

import click

from gateway.cliutil import Context, pass_context, reason_option
from gateway.registry import AdminInputError, KeyRecord
from gateway.sshkeys import KeyFormatError, PublicKey, looks_like_private_key, parse_public_key, weakness
from migrate import admin_texts
from migrate.legacy_import import OptionsError, split_options
from migrate.output import emit_csv, emit_json, format_option, print_table, table, when


@click.group()
def keys() -> None:
    """Add, list, revoke and restore SSH public keys."""


def read_key_line(text: str, *, allow_weak: bool) -> PublicKey:
    """One public key line, as in id_ed25519.pub or authorized_keys (options are ignored)."""
    try:
        _options, rest = split_options(text)
    except OptionsError as exc:
        raise KeyFormatError(str(exc)) from None
    key = parse_public_key(rest)
    why = weakness(key.algorithm, key.bits)
    if why and not allow_weak:
        raise KeyFormatError(f"{why}; generate a new key with `ssh-keygen -t ed25519` "
                             "(or set allow_weak_keys to accept it; it is then flagged as weak)")
    return key


@keys.command("add")
@click.argument("account")
@click.argument("key_file", type=click.File("r"))
@click.option("--project", "projects", multiple=True,
              help="Restrict the keys to this project (repeatable); default: any project.")
@reason_option
@pass_context
def add(obj: Context, account: str, key_file: IO[str], projects: tuple[str, ...]) -> None:
    """Add the OpenSSH public keys in KEY_FILE ('-' for stdin) to ACCOUNT, one per line.

    Malformed keys, keys already registered (a key belongs to one account) and weak keys (DSA,
    RSA under 2048 bits; accepted only with the allow_weak_keys setting) are refused with their
    line number and the reason, never their content; the other keys of the file are added. A
    private key file is refused whole. A revoked key added again to its own account is restored.
    """
    from packaging.utils import canonicalize_name

    settings = obj.settings()
    text = _read_key_file(key_file)
    registry = obj.registry()
    try:
        registry.accounts.get_account(account)
    except AdminInputError as exc:
        raise click.ClickException(str(exc)) from None
    allowed = [canonicalize_name(p) for p in projects] or None
    actor = obj.actor()
    added = refused = 0
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            key = read_key_line(entry, allow_weak=settings.allow_weak_keys)
            before = registry.keys.find_key(key.fingerprint)
            registry.keys.add_key(account, key, allowed_projects=allowed, audit=actor)
        except (KeyFormatError, AdminInputError) as exc:
            refused += 1  # by line number and reason only: the line itself is never repeated
            click.echo(f"{key_file.name}:{number}: refused: {exc}", err=True)
            continue
        added += 1
        if before is not None and before.revoked_at is not None:
            click.echo(f"restored revoked {key.algorithm} key {key.fingerprint} of '{account}'")
            continue
        click.echo(f"added {key.algorithm} key {key.fingerprint} to '{account}'"
                   + (" (weak: accepted because allow_weak_keys is set)" if key.weak else ""))
    if refused:
        raise click.ClickException(f"{added} key(s) added to '{account}', {refused} refused (see above)")
    if not added:
        raise click.ClickException(f"no public key found in {key_file.name}; give a file like ~/.ssh/id_ed25519.pub")


def _read_key_file(key_file: IO[str]) -> str:
    """The whole file; a private key is refused at once, without a word of its content."""
    try:
        text = key_file.read()
    except UnicodeDecodeError:
        raise click.ClickException(admin_texts.not_a_key_file(key_file.name)) from None
    if looks_like_private_key(text):
        raise click.ClickException(admin_texts.private_key_file(key_file.name))
    return text


KEY_COLUMNS = ["account", "fingerprint", "type", "bits", "comment", "projects", "weak", "source", "added",
               "last_used", "revoked", "state"]


def key_state(key: KeyRecord) -> str:
    return "revoked" if key.revoked_at else ("weak" if key.weak else "active")


def key_data(key: KeyRecord) -> dict[str, object]:
    """One key for scripts (`keys list`, `accounts show` as JSON); its fingerprint, not its content."""
    return {"account": key.account_name, "fingerprint": key.fingerprint, "type": key.algorithm, "bits": key.bits,
            "comment": key.comment, "projects": list(key.allowed_projects) if key.allowed_projects else None,
            "weak": key.weak, "source": key.source, "added": key.created_at, "last_used": key.last_used_at,
            "revoked": key.revoked_at, "state": key_state(key)}


@keys.command("list")
@click.argument("account", required=False)
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@format_option()
@pass_context
def list_(obj: Context, account: str | None, include_revoked: bool, fmt: str) -> None:
    """List keys, of ACCOUNT or of everyone."""
    try:
        found = obj.registry().keys.list_keys(account, include_revoked=include_revoked)
    except AdminInputError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        return emit_json([key_data(key) for key in found])
    if fmt == "csv":
        return emit_csv(KEY_COLUMNS, [key_data(key) for key in found])
    out = table(None, ["account", "fingerprint", "type", "comment", "projects", "last used", "state"])
    for key in found:
        state = key_state(key)
        out.add_row(key.account_name, key.fingerprint, f"{key.algorithm} {key.bits or ''}".strip(),
                    key.comment or "-", " ".join(key.allowed_projects or ("any",)),
                    when(key.last_used_at), state)
    print_table(out)


@keys.command("revoke")
@click.argument("fingerprint")
@reason_option
@pass_context
def revoke(obj: Context, fingerprint: str) -> None:
    """Revoke the key with FINGERPRINT (as `keys list` shows it, SHA256:...)."""
    try:
        key = obj.registry().keys.revoke_key(fingerprint, audit=obj.actor())
    except AdminInputError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {key.fingerprint} of '{key.account_name}'; every replica refuses it within "
               f"{obj.settings().key_cache_seconds:.0f} s; `pypissh-migrate keys restore {key.fingerprint}` undoes it")


@keys.command("restore")
@click.argument("fingerprint")
@reason_option
@pass_context
def restore(obj: Context, fingerprint: str) -> None:
    """Undo `keys revoke FINGERPRINT`: the key logs in as its account again.

    Adding the same public key to the same account again restores it too.
    """
    try:
        key = obj.registry().keys.restore_key(fingerprint, audit=obj.actor())
    except AdminInputError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(admin_texts.key_restored(key.fingerprint, key.account_name, obj.settings().key_cache_seconds))
