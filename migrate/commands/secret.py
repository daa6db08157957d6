"""`pypissh-migrate rotate-secret`: re-encrypt every stored token under a new secret key.

A key file lists keys one per line; the first encrypts, all decrypt (see gateway.tokens). A
running replica reads its key file again by itself when a stored token does not open with the
keys it holds (and on SIGHUP), so it follows each step below without a restart, once the file is
on its machine. With several machines, copy the key file to every one after each step.

1. `rotate-secret --new-key-file F --stage`  (optional) the new key is added at the end of the
   key file: accepted, not yet used.
2. `rotate-secret --new-key-file F`  the new key moves first, the old ones stay after it (still
   accepted), and every stored token is re-encrypted under the new key and checked. Admin hosts
   seal new tokens with the new key once they have the file.
3. `rotate-secret --retire-old`  once every host has the new file: tokens still sealed with an
   old key (set meanwhile by a host on the old file) are re-encrypted, then the old keys are
   dropped from the file.

F holds the new key; it is generated (mode 0600) when it does not exist. Tokens and keys are
never printed. Keys given inline (`secret_key`) are read at start only: restart for those.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click
from cryptography.fernet import InvalidToken

from gateway import cli_texts
from gateway.cliutil import Context, confirm_irreversible, pass_context, reason_option, yes_option
from gateway.errors import ConfigError
from gateway.registry import Registry, audit
from gateway.settings import Settings
from gateway.tokens import TokenBox, new_key, parse_keys


def key_entries(text: str) -> list[str]:
    """The keys of a key file or `secret_key` value, as written (split like gateway.tokens does)."""
    parts = [part.strip() for chunk in text.splitlines() for part in chunk.split(",")]
    return [part for part in parts if part and not part.startswith("#")]


def ordered(first: list[str], rest: list[str]) -> list[str]:
    """`first` then `rest`, without repeats."""
    result: list[str] = []
    for entry in [*first, *rest]:
        if entry not in result:
            result.append(entry)
    return result


def write_key_file(path: Path, entries: list[str]) -> None:
    """Replace the key file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(entries) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_entries(settings: Settings) -> list[str]:
    if settings.secret_key:
        return key_entries(settings.secret_key)
    path = Path(settings.secret_key_file)
    return key_entries(path.read_text()) if path.exists() else []


def new_key_from(path: Path, *, dry_run: bool) -> str:
    """The first key of `path`, generating the file when it does not exist (not on a dry run)."""
    if path.exists():
        entries = key_entries(path.read_text())
        if not entries:
            raise click.ClickException(f"{path} holds no key; delete it to have one generated, or put a key in it")
        parse_keys(entries[0])  # refuse a malformed key before anything changes
        return entries[0]
    key = new_key()
    if not dry_run:
        write_key_file(path, [key])
        click.echo(f"generated a new key in {path} (mode 0600)")
    return key


def reseal_all(registry: Registry, box: TokenBox, *, keep: TokenBox | None = None,
               dry_run: bool = False) -> tuple[int, int]:
    """Re-encrypt every stored token with `box`'s first key (skipping those `keep` already
    opens). Returns (re-encrypted, unchanged). Nothing is written when a token cannot be
    decrypted; a token changed meanwhile is read again."""
    names = {account.id: account.name for account in registry.accounts.list_accounts()}
    for _attempt in range(5):
        triples, unreadable, unchanged = [], [], 0
        for account_id, ciphertext in registry.accounts.token_ciphertexts():
            if keep is not None and _opens(keep, ciphertext):
                unchanged += 1
                continue
            try:
                triples.append((account_id, ciphertext, box.reseal(ciphertext)))
            except InvalidToken:
                unreadable.append(names.get(account_id, f"#{account_id}"))
        if unreadable:
            raise click.ClickException(
                f"the token(s) of {', '.join(sorted(unreadable))} cannot be decrypted with any configured key; "
                "nothing was changed. Put the key they were sealed with back into the key file, or store "
                "those tokens again with `pypissh-migrate accounts set-token NAME`")
        if dry_run or not triples:
            return len(triples), unchanged
        if not registry.accounts.swap_token_ciphertexts(triples):
            return len(triples), unchanged
    raise click.ClickException("tokens kept changing while they were re-encrypted; run the command again")


def _opens(box: TokenBox, ciphertext: str) -> bool:
    try:
        box.open(ciphertext)
    except ConfigError:
        return False
    return True


def verify(registry: Registry, box: TokenBox) -> int:
    """How many stored tokens `box` cannot open (0 after a good rotation)."""
    return sum(not _opens(box, ciphertext) for _id, ciphertext in registry.accounts.token_ciphertexts())


@click.command("rotate-secret")
@click.option("--new-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the new key; generated (mode 0600) when it does not exist.")
@click.option("--stage", is_flag=True,
              help="Only add the new key at the end of the key file (accepted, not used) for replicas to load first.")
@click.option("--retire-old", is_flag=True,
              help="Last step: re-encrypt stragglers, then drop every key but the first from the key file.")
@click.option("--dry-run", is_flag=True, help="Check that every token decrypts and count them; change nothing.")
@yes_option
@reason_option
@pass_context
def rotate_secret(obj: Context, new_key_file: Path | None, stage: bool, retire_old: bool, dry_run: bool,
                  yes: bool) -> None:
    """Re-encrypt every stored upstream token under a new secret key, keeping the old key accepted.

    \b
    1. rotate-secret --new-key-file F --stage   (optional: the new key accepted, not yet used)
    2. rotate-secret --new-key-file F           (new key first, tokens re-encrypted)
    3. rotate-secret --retire-old               (old keys dropped once every host has the new file;
                                                asks first, --yes in scripts)

    --dry-run alone checks that every stored token opens with the configured keys.
    """
    if dry_run and not retire_old and not new_key_file:
        _check_current(obj)
        return
    if retire_old == bool(new_key_file):
        raise click.UsageError("give --new-key-file F (steps 1 and 2) or --retire-old (step 3), or --dry-run alone")
    if stage and retire_old:
        raise click.UsageError("--stage goes with --new-key-file, not with --retire-old")
    settings = obj.settings()
    registry = obj.registry()
    inline = bool(settings.secret_key)
    key_file = Path(settings.secret_key_file)
    current = current_entries(settings)
    try:
        if retire_old:
            if not dry_run and len(current) > 1:
                question = cli_texts.confirm_retire_old(len(current) - 1)
                confirm_irreversible(question, "dropping the old secret keys", yes)
            done = _retire(registry, current, key_file, inline=inline, dry_run=dry_run)
        else:
            assert new_key_file is not None  # checked above: either --retire-old or --new-key-file
            new_key = new_key_from(new_key_file, dry_run=dry_run)
            if stage:
                done = _stage(current, new_key, key_file, inline=inline, dry_run=dry_run)
            else:
                done = _rotate(registry, current, new_key, key_file, inline=inline, dry_run=dry_run)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if done is not None:  # recorded right after the step: it spans the key file and many rows
        registry.audit.record(obj.actor(), target_kind=audit.SECRET_KEY,
                              target="secret_key" if inline else str(key_file), after=done)


def _check_current(obj: Context) -> None:
    """--dry-run alone: every stored token must open with the keys configured now."""
    settings = obj.settings()
    try:
        box = TokenBox.from_settings(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    count, _ = reseal_all(obj.registry(), box, dry_run=True)
    keys = len(current_entries(settings))
    click.echo(f"dry run: all {count} stored token(s) open with the {keys} configured key(s); nothing changed")


def _stage(current: list[str], new: str, key_file: Path, *, inline: bool, dry_run: bool) -> dict | None:
    """Step 1; returns what changed, for the admin journal (None: nothing)."""
    if new in current:
        click.echo("the new key is already in the key list; next: step 2")
        return None
    if inline:
        click.echo("secret_key is set inline, so this command cannot change it: append the key from "
                   "--new-key-file to secret_key after a comma, restart the replicas, then run step 2")
        return None
    if dry_run:
        click.echo(f"dry run: would add the new key at the end of {key_file}")
        return None
    write_key_file(key_file, ordered(current, [new]))
    click.echo(f"added the new key at the end of {key_file}: accepted, not yet used. Next: copy it to every "
               "replica, then run `pypissh-migrate rotate-secret --new-key-file FILE` with the same file")
    return {"step": "stage", "keys_accepted": len(ordered(current, [new]))}


def _rotate(registry: Registry, current: list[str], new: str, key_file: Path, *, inline: bool,
            dry_run: bool) -> dict | None:
    """Step 2; returns what changed, for the admin journal (None: nothing)."""
    entries = ordered([new], current)
    box = TokenBox(parse_keys("\n".join(entries)))
    if dry_run:
        count, _ = reseal_all(registry, box, dry_run=True)
        click.echo(f"dry run: {count} stored token(s) decrypt and would be re-encrypted under the new key")
        return None
    reseal_all(registry, box, dry_run=True)  # every token must open before anything is written
    # The key file first: if we stop half-way, every token still opens with the keys it lists.
    if not inline:
        write_key_file(key_file, entries)
    count, _ = reseal_all(registry, box)
    failing = verify(registry, TokenBox(parse_keys(new)))
    if failing:
        raise click.ClickException(f"{failing} token(s) do not open with the new key alone; run step 2 again")
    click.echo(f"re-encrypted {count} stored token(s) under the new key; each one opens with it alone")
    if inline:
        click.echo("secret_key is set inline: put the new key first in it, keeping the old ones after it, "
                   "then restart the replicas")
    else:
        click.echo(f"{key_file} now lists the new key first and {len(entries) - 1} old key(s) after it "
                   "(still accepted)")
    click.echo("next: copy the key file to every machine (running replicas read it again by themselves); "
               "when all have it, run "
               "`pypissh-migrate rotate-secret --retire-old`")
    return {"step": "rotate", "tokens_resealed": count, "keys_accepted": len(entries)}


def _retire(registry: Registry, current: list[str], key_file: Path, *, inline: bool, dry_run: bool) -> dict | None:
    """Step 3; returns what changed, for the admin journal (None: nothing)."""
    if not current:
        raise click.ClickException("no secret key is configured; nothing to retire")
    first = TokenBox(parse_keys(current[0]))
    everything = TokenBox(parse_keys("\n".join(current)))
    count, _ = reseal_all(registry, everything, keep=first, dry_run=dry_run)
    if dry_run:
        click.echo(f"dry run: {count} token(s) would be re-encrypted, then {len(current) - 1} old key(s) dropped")
        return None
    failing = verify(registry, first)
    if failing:
        raise click.ClickException(f"{failing} token(s) do not open with the first key; nothing was dropped")
    if inline:
        click.echo(f"re-encrypted {count} straggler token(s); every token opens with the first key of secret_key: "
                   "remove the other keys from secret_key and restart the replicas")
        return {"step": "retire-old", "tokens_resealed": count, "keys_dropped": 0}
    write_key_file(key_file, current[:1])
    click.echo(f"re-encrypted {count} straggler token(s); dropped {len(current) - 1} old key(s) from {key_file}. "
               "Restart the replicas; the old key can now be destroyed")
    return {"step": "retire-old", "tokens_resealed": count, "keys_dropped": len(current) - 1}
