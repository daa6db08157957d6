"""Every sentence a user of the SSH path reads, in one place, so a wording change is one edit.

Reasons are one line: the legacy client prints only the HTTP reason phrase. Longer texts (help,
whoami) go to the SSH session's stdout; notices go to stderr, which the legacy client passes
through to the user's terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.settings import Settings

SSH_COMMANDS = ("guide", "whoami", "help")


@dataclass(frozen=True)
class Place:
    """How users reach this gateway: for the commands we tell them to run."""

    host: str
    port: int
    user: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "Place":
        return cls(settings.public_host, settings.public_port, settings.ssh_user)

    def ssh(self, command: str) -> str:
        port = "" if self.port == 22 else f"-p {self.port} "
        return f"ssh {port}{self.user}@{self.host} {command}"


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{size} bytes"


def request_too_large(size: int, limit: int) -> str:
    return (
        f"the upload is {human_size(size)}, above this gateway's limit of {human_size(limit)} "
        "per file; upload large files with twine, or ask the index for a larger limit"
    )


def no_credential(account: str, fingerprint: str, settings: Settings) -> str:
    return (
        f"no API token is stored for account '{account}' (key {fingerprint}) and the client sent none; "
        f"create a token at {settings.token_url} and have it stored with "
        f"`pypissh-migrate accounts set-token {account}`, or set username = __token__ and "
        "password = <the token> in ~/.pypirc"
    )


def project_not_allowed(project: str, fingerprint: str, allowed: tuple[str, ...]) -> str:
    return (
        f"key {fingerprint} may upload only {', '.join(allowed)}, not '{project}'; "
        "use the key registered for that project"
    )


def register_note(project: str | None) -> str:
    what = f"'{project}' is" if project else "projects are"
    return f"OK: nothing to register, {what} created by the first upload"


def doc_upload_gone() -> str:
    return (
        "documentation uploads are no longer supported by the index; host documentation on "
        "Read the Docs or GitHub Pages instead"
    )


def unknown_action(action: str) -> str:
    return f"the ':action' '{action[:40]}' is not supported here; only file_upload, submit, verify and list_classifiers are"


def missing_action() -> str:
    return "the form has no ':action' field; send the request as `setup.py upload` or twine does"


def not_http(detail: str, place: Place) -> str:
    return (
        f"this is the legacy upload endpoint and what arrived is not an HTTP request ({detail}); "
        f"run `{place.ssh('help')}` for what it accepts"
    )


def upload_done_body(filename: str, sha256: str, account: str) -> str:
    return f"Uploaded {filename} (sha256 {sha256}) for account '{account}'.\n"


def session_notice(account: str, fingerprint: str, place: Place) -> str:
    return (
        f"pypissh-gateway: account '{account}', key {fingerprint}.\n"
        "pypissh-gateway: uploading over SSH is deprecated; switch to twine with API tokens.\n"
        f"pypissh-gateway: your personal steps: `{place.ssh('guide')}`\n"
    )


def refusal_line(status: int, reason: str) -> str:
    return f"pypissh-gateway: not published ({status}): {reason}\n"


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
        "token:    " + ("stored (uploads use it)" if has_token else "none stored; uploads need __token__ credentials in ~/.pypirc"),
    ]
    if exempt:
        lines.append("status:   exempt from brownouts and the sunset")
    return "\n".join(lines) + "\n"


def unknown_command(command: str) -> str:
    return (
        f"pypissh-gateway: unknown command '{command[:60]}'; valid commands are: "
        f"{', '.join(SSH_COMMANDS)} (or none, for an upload)\n"
    )


# -- refusals before and around login (SSH disconnect reasons: one line, no HTTP involved) -------
def too_many_startups_from(address: str, limit: int) -> str:
    return (
        f"{address} already has {limit} connections that have not logged in; close the stalled "
        "ones (or wait for them to time out) and try again"
    )


def evicted_startup() -> str:
    return (
        "the gateway is flooded with connections that do not log in and this one was the oldest; "
        "connect again"
    )


def login_penalty(address: str, seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return (
        f"too many failed logins from {address}; try again in about {minutes} min with the key "
        "registered for your account (`ssh-keygen -lf <key>.pub` shows its fingerprint)"
    )


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


def registry_unavailable() -> str:
    return (
        "the gateway cannot reach its account registry right now, so no key can be checked; "
        "nothing was published; try again in a minute"
    )


def spool_full() -> str:
    return (
        "the gateway's disk for uploads in progress is full; nothing was published; try again "
        "later, or upload with twine"
    )


def no_active_key(account: str, fingerprint: str | None) -> str:
    key = f"key {fingerprint}" if fingerprint else "this key"
    return (
        f"pypissh-gateway: {key} is no longer active for account '{account}' (revoked, or the "
        "account is disabled); nothing was published; ask the index admins\n"
    )


# -- the upload server and the index (gateway/upstream.py, gateway/index.py) --------------------
def upstream_certificate(url: str, detail: str) -> str:
    return (
        f"the upload server {url} presented a certificate the gateway cannot verify ({detail}); "
        "nothing was published; the gateway's operator must check upstream_ca_bundle"
    )


def upstream_unreachable(url: str, detail: str) -> str:
    return f"cannot reach the upload server {url} ({detail}); nothing was published; try again later"


def upstream_dropped_upload(url: str, detail: str) -> str:
    return (
        f"the upload server {url} dropped the connection before the whole upload was sent ({detail}); "
        "nothing was published; try again later"
    )


def upstream_no_answer(url: str, detail: str, filename: str, check_url: str) -> str:
    return (
        f"the upload server {url} received the whole upload but sent no answer ({detail}); it may "
        f"have been published: look for {filename} on {check_url} before uploading it again"
    )


def upstream_deadline_unsent(url: str, seconds: float) -> str:
    return (
        f"the upload server {url} did not take the whole upload within {seconds:.0f} s "
        "(upstream_deadline); nothing was published; try again later"
    )


def upstream_deadline_unknown(url: str, seconds: float, filename: str, check_url: str) -> str:
    return (
        f"the upload server {url} received the whole upload but gave no complete answer within "
        f"{seconds:.0f} s (upstream_deadline); the outcome is unknown: look for {filename} on "
        f"{check_url} before uploading it again"
    )


def confirmed_after_drop(filename: str) -> str:
    return f"OK: {filename} is published, confirmed on the index after the connection dropped"


def confirmed_after_drop_note(check_url: str) -> str:
    """For the event record: why a 'forwarded' upload had no answer of its own."""
    return (
        f"the connection dropped after the whole upload was sent; the retry was refused as already "
        f"existing and {check_url} lists this file with the same sha256"
    )


def refusal_unconfirmed(reason: str, detail: str) -> str:
    return (
        f"{reason} (the connection had dropped after the whole upload was sent, and the gateway "
        f"could not read the index to see whether that file is this upload: {detail})"
    )


def refusal_after_lost_answer(reason: str, filename: str, check_url: str) -> str:
    return (
        f"{reason} (but an earlier attempt sent the whole upload and got no answer: it may have "
        f"been published; look for {filename} on {check_url} before uploading it again)"
    )


def index_unreadable(url: str, detail: str) -> str:
    return f"cannot read the index page {url} ({detail})"


def internal_error_after_forwarding(filename: str, check_url: str) -> str:
    return (
        f"the gateway failed after handing the upload to the upload server; {filename} may have "
        f"been published: look for it on {check_url} before uploading it again"
    )


def session_failed() -> str:
    # Raised outside the exchange, possibly after an upload was handed on: no claim either way.
    return (
        "pypissh-gateway: internal error; if this session carried an upload, look for the file on "
        "the index before uploading it again\n"
    )


def restarting_disconnect() -> str:
    # A session cut at the end of a drain may have been forwarding its upload at that moment.
    return (
        "the gateway is restarting; an upload still in progress may or may not have been "
        "published: look for the file on the index before uploading it again"
    )
