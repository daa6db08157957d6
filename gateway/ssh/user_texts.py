"""What SSH users read: disconnect reasons, the stderr lines of a session, the authentication
banner and the replies to the `help`, `whoami` and unknown commands.

A disconnect reason is one line; longer texts go to the session's stdout, notices to its
stderr, which the legacy client passes through to the user's terminal.
"""

from __future__ import annotations

from gateway.errors import key_inactive, registry_unavailable
from gateway.phrases import MAYBE_PUBLISHED, NOTHING_PUBLISHED, PROGRAM, SSH_COMMANDS, Place, wait_phrase


def refusal_line(status: int, reason: str, *, maybe_published: bool = False) -> str:
    """The stderr line of a failed exchange. "not published" only when the gateway knows nothing
    was stored; the reason of a `maybe_published` answer names the page to check."""
    if maybe_published:
        return f"{PROGRAM}: {MAYBE_PUBLISHED} ({status}): {reason}\n"
    return f"{PROGRAM}: not published ({status}): {reason}\n"


def help_text(place: Place) -> str:
    return (
        "This is the legacy package upload endpoint (pypissh). Commands:\n"
        f"  {place.ssh('guide'):<44} how to switch to twine, step by step\n"
        f"  {place.ssh('whoami'):<44} the account and key you are logged in with\n"
        f"  {place.ssh('help'):<44} this text\n"
        "With no command, the session carries one HTTP upload request from `setup.py upload`\n"
        "(through the pypissh client).\n"
    )


def whoami_text(account: str, email: str | None, fingerprint: str, comment: str | None,
                has_token: bool, exempt: bool) -> str:
    lines = [
        f"account:  {account}",
        f"email:    {email or '(none on file)'}",
        f"key:      {fingerprint}" + (f" ({comment})" if comment else ""),
        "token:    "
        + ("stored (uploads use it)" if has_token else "none stored; uploads need __token__ credentials in ~/.pypirc"),
    ]
    if exempt:
        lines.append("status:   exempt from brownouts and the sunset")
    return "\n".join(lines) + "\n"


def unknown_command(command: str) -> str:
    return (
        f"{PROGRAM}: unknown command '{command[:60]}'; valid commands are: "
        f"{', '.join(SSH_COMMANDS)} (or none, for an upload)\n"
    )


# -- refusals before and around login (SSH disconnect reasons: one line, no HTTP involved) --------
def evicted_startup() -> str:
    return (
        "the gateway is flooded with connections that do not log in and this one was the oldest; "
        "connect again"
    )


def login_penalty(address: str, seconds: float) -> str:
    return (
        f"too many failed logins from {address}; keys not registered here are refused from it for "
        f"{wait_phrase(seconds)}; connect with only the key registered for your account: "
        "`ssh -i <key> -o IdentitiesOnly=yes ...` (`ssh-keygen -lf <key>.pub` shows its fingerprint)"
    )


def unregistered_key_banner(fingerprint: str, help_url: str, ssh_user: str | None = None) -> str:
    """The authentication banner sent before a key is refused. The same words whether the key is
    unknown, revoked or an account's that is disabled, so it never tells whether an account exists.
    `ssh_user` is given when the client logged in as another user (whose keys are never looked
    up, so saying which user uploads log in as tells nothing about the key). Lines fit PuTTY's 78
    columns, except the URL."""
    lines = [
        f"{PROGRAM}: this key is not registered for uploads here:\n",
        f"    {fingerprint}\n",
    ]
    if ssh_user is not None:
        lines.append(f"{PROGRAM}: uploads log in as user '{ssh_user}'.\n")
    lines += [
        f"{PROGRAM}: SSH uploads are deprecated; use twine and an API token.\n",
        f"{PROGRAM}: your next step is in the guide:\n",
        f"    {help_url}\n",
    ]
    return "".join(lines)


def too_many_auth_tries(limit: int) -> str:
    return (
        f"too many keys tried ({limit}) without one registered for this gateway; offer only your "
        "registered key: `ssh -i <key> -o IdentitiesOnly=yes ...`"
    )


def sha1_signature_refused(fingerprint: str) -> str:
    return (
        f"key {fingerprint} signed with ssh-rsa (SHA-1), which this gateway refuses; upgrade the "
        "SSH client (OpenSSH 7.2 or later signs with rsa-sha2-256) or use an ed25519 key"
    )


def too_many_sessions(account: str, limit: int) -> str:
    return (
        f"account '{account}' already has {limit} upload{'s' if limit != 1 else ''} in progress on this "
        "gateway; wait for the other uploads to finish, then try again"
    )


def too_many_channels(account: str, limit: int) -> str:
    return (
        f"this connection of account '{account}' already has {limit} session channel"
        f"{'s' if limit != 1 else ''} open; close one first, or open a new connection"
    )


def too_many_connections(account: str, limit: int) -> str:
    return (
        f"account '{account}' already has {limit} connection{'s' if limit != 1 else ''} logged in to this "
        "gateway; close the idle ones (an OpenSSH ControlMaster needs only one) and try again"
    )


def channel_without_request(account: str, seconds: float) -> str:
    return (
        f"this session of account '{account}' sent no command or upload within {seconds:.0f} s and is "
        f"closed; {NOTHING_PUBLISHED}; run ssh with a command, or let the upload client send its request"
    )


def idle_disconnect(account: str, seconds: float) -> str:
    return (
        f"the connection of account '{account}' had no session for {seconds:.0f} s and is closed; "
        "connect again for the next upload"
    )


def no_active_key(account: str, fingerprint: str | None) -> str:
    return f"{PROGRAM}: {key_inactive(account, fingerprint)}\n"


def registry_unavailable_line() -> str:
    """`registry_unavailable` as a line of stderr (OpenSSH mode, where no SSH disconnect carries it)."""
    return f"{PROGRAM}: {registry_unavailable()}\n"


# -- the OpenSSH mode: the shim sshd runs per session, and the replica's socket for it ------------
def key_file_unreadable(path: str, problem: object) -> str:
    """authorized-keys-command cannot read the key file: for sshd's log."""
    return f"{PROGRAM}: cannot read authorized_keys_file {path or '(not set)'}: {problem}; key refused"


def shim_no_replica() -> str:
    """No replica answers on shim_socket: the session cannot be served at all."""
    return f"the upload service on this machine is not running; {NOTHING_PUBLISHED}; try again in a minute"


def shim_socket_denied(path: str) -> str:
    """The replica's socket is there but this local user may not use it (its file mode)."""
    return (
        f"permission denied on the upload service's socket {path}: this local user may not use it; "
        f"{NOTHING_PUBLISHED}; log in as the user sshd runs the sessions as (setting shim_user)"
    )


def shim_replica_lost() -> str:
    """The replica went away mid-session: it may have forwarded the upload already."""
    return (
        "the upload service on this machine stopped before it answered; if this was an upload, "
        "check the project's page on the index before you try again"
    )


def shim_version_mismatch() -> str:
    """The shim and the running replica are of different versions (an upgrade in progress)."""
    return f"the upload service on this machine is being upgraded; {NOTHING_PUBLISHED}; try again in a minute"


def shim_wrong_user(uid: int, shim_user: str) -> str:
    """A peer of shim_socket that is not shim_user (checked with SO_PEERCRED)."""
    return (
        f"{PROGRAM}: this socket serves sessions of user '{shim_user}' only, and this process "
        f"runs as uid {uid}; sshd runs the forced command as '{shim_user}' (setting shim_user)\n"
    )


def shim_socket_in_use(path: object) -> str:
    return (
        f"another replica already serves shim_socket {path}; stop it, or give this one its own "
        "shim_socket"
    )


def shim_socket_unusable(path: object, problem: object) -> str:
    return f"cannot serve shim_socket {path}: {problem}; check the setting and its directory"


def shim_user_unknown(user: str) -> str:
    return (
        f"shim_user '{user}' is not a user on this machine; create it (useradd --system --home-dir / {user}) "
        "or set shim_user to the user sshd runs the sessions as"
    )


def shim_group_not_ours(path: object, group: int, user: str) -> str:
    return (
        f"cannot give {path} to group {group} of shim_user '{user}': run the replica as a member of "
        f"that group (SupplementaryGroups= in the systemd unit) or as '{user}'"
    )


def forwarding_refused(what: str = "port forwarding") -> str:
    return f"{what} is not offered by the upload gateway"


def no_host_keys(folder: object) -> str:
    return f"no host keys in {folder}/; run `{PROGRAM} keygen` once and share the folder with every replica"


def unreadable_host_key(path: object, problem: object) -> str:
    return f"cannot read host key {path}: {problem}"


def session_failed() -> str:
    # Raised outside the exchange, possibly after an upload was handed on: no claim either way.
    return (
        f"{PROGRAM}: internal error; if this session carried an upload, look for the file on "
        "the index before uploading it again\n"
    )


def restarting_disconnect() -> str:
    # A session cut at the end of a drain may have been forwarding its upload at that moment.
    return (
        "the gateway is restarting; an upload still in progress may or may not have been "
        "published: look for the file on the index before uploading it again"
    )


def penalty_detail(seconds: float) -> str:
    """The log's note on a key refused from a penalised address (the client is told the same wait)."""
    return f"too many failed logins from the address ({wait_phrase(seconds)} left)"


def key_file_folder_unusable(path: str, folder: str) -> str:
    return (f"cannot write authorized_keys_file {path}: {folder} does not exist or is not writable by "
            "this user; create it for the replica's user (the systemd unit's StateDirectory= is), or "
            "change authorized_keys_file")
