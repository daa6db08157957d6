"""Every sentence a user of the SSH path reads, in one place, so a wording change is one edit.

Reasons are one line: the legacy client prints only the HTTP reason phrase. Longer texts (help,
whoami) go to the SSH session's stdout; notices go to stderr, which the legacy client passes
through to the user's terminal. The longer texts with dates (notices, guides, emails) are the
templates under `templates/`. The operator's messages about the configuration are here too.

A refusal says what happened and what to do next; when nothing reached the index it says so with
`NOTHING_PUBLISHED`, the one spelling of that phrase. When an upload may have been published (the
upload server took it all and its answer was lost or was an error) the words are MAYBE_PUBLISHED,
with the project's page on the index to check: never "not published".
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

    public_host: str
    public_port: int
    ssh_user: str


@dataclass(frozen=True)
class Place:
    """How users reach this gateway: for the commands we tell them to run."""

    host: str
    port: int
    user: str

    @classmethod
    def from_settings(cls, settings: PublicAddress) -> "Place":
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


def no_credential(account: str, fingerprint: str, token_url: str) -> str:
    return (
        f"no API token is stored for account '{account}' (key {fingerprint}) and the client sent none; "
        f"create a token at {token_url} and have it stored with "
        f"`pypissh-migrate accounts set-token {account}`, or set username = __token__ and "
        "password = <the token> in ~/.pypirc"
    )


def stored_token_unopenable(account: str) -> str:
    """The user's side of a token sealed under a secret key this gateway no longer has."""
    return (f"the API token stored for account '{account}' cannot be used by this gateway; {NOTHING_PUBLISHED}; "
            "ask the gateway's operator to store it again, or set username = __token__ and password = "
            "<an API token> in ~/.pypirc")


def stored_token_unopenable_log(account: str) -> str:
    """The operator's side: the log line that names the fix."""
    return (f"the API token stored for account {account} does not decrypt with the configured secret keys; "
            f"store it again with `pypissh-migrate accounts set-token {account}`, or put the key it was sealed "
            "with back in secret_key_file")


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
        f"{PROGRAM}: account '{account}', key {fingerprint}.\n"
        f"{PROGRAM}: uploading over SSH is deprecated; switch to twine with API tokens.\n"
        f"{PROGRAM}: your personal steps: `{place.ssh('guide')}`\n"
    )


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
        "token:    " + ("stored (uploads use it)" if has_token else "none stored; uploads need __token__ credentials in ~/.pypirc"),
    ]
    if exempt:
        lines.append("status:   exempt from brownouts and the sunset")
    return "\n".join(lines) + "\n"


def unknown_command(command: str) -> str:
    return (
        f"{PROGRAM}: unknown command '{command[:60]}'; valid commands are: "
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


def wait_phrase(seconds: float) -> str:
    """How long to wait, as both the client and the log say it: "40 s", "about 3 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"about {round(seconds / 60)} min"


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


def key_inactive(account: str, fingerprint: str | None) -> str:
    key = f"key {fingerprint}" if fingerprint else "this key"
    return (
        f"{key} is no longer active for account '{account}' (revoked, or the account is disabled); "
        f"{NOTHING_PUBLISHED}; ask the index admins"
    )


def gateway_busy() -> str:
    return (
        f"this gateway is busy with other uploads right now; {NOTHING_PUBLISHED}; try again in a "
        "minute"
    )


def registry_unavailable() -> str:
    return (
        "the gateway cannot reach its account registry right now, so no key can be checked; "
        f"{NOTHING_PUBLISHED}; try again in a minute"
    )


def spool_full() -> str:
    return (
        f"the gateway's disk for uploads in progress is full; {NOTHING_PUBLISHED}; try again "
        "later, or upload with twine"
    )


def no_active_key(account: str, fingerprint: str | None) -> str:
    return f"{PROGRAM}: {key_inactive(account, fingerprint)}\n"


def registry_unavailable_line() -> str:
    """`registry_unavailable` as a line of stderr (OpenSSH mode, where no SSH disconnect carries it)."""
    return f"{PROGRAM}: {registry_unavailable()}\n"




# -- the OpenSSH mode: the shim sshd runs per session, and the replica's socket for it ----------
def removed_setting(name: str, where: str) -> str:
    """A setting of an OpenSSH-mode set-up that no longer exists (set `where`)."""
    return (
        f"setting '{name}'{where} no longer exists: the OpenSSH mode has one set-up, the replica's "
        "authorized_keys_file with the shim as forced command; remove it (README, \"OpenSSH mode\")"
    )


def openssh_mode_needs_key_file() -> str:
    return ("the OpenSSH mode needs authorized_keys_file, the file of key lines the replica keeps and "
            "sshd greps; set it to a path sshd's AuthorizedKeysCommand reads")


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


# -- the exchange ---------------------------------------------------------------------------------
def exchange_failed() -> str:
    """A bug or an outage of ours: the user gets no internals."""
    return f"the gateway failed to handle this upload; {NOTHING_PUBLISHED}; try again later"


def request_too_slow() -> str:
    return f"the request took too long to arrive; {NOTHING_PUBLISHED}; check the network and try again"


def client_silent(seconds: float) -> str:
    return (
        f"no data from the client for {seconds:.0f} s before the request was complete; "
        f"{NOTHING_PUBLISHED}; try again"
    )


def no_content_part() -> str:
    return "the upload has no 'content' file part; nothing to publish"


def form_names_other_project(claimed: str, name: str, version: str) -> str:
    return (
        f"the form names project '{claimed[:60]}' but the file is {name} {version}; "
        "upload the file built from this project"
    )


def md5_mismatch() -> str:
    return (
        "the file's MD5 does not match the md5_digest the client sent: it was damaged in "
        "transit; upload it again"
    )


def sha256_mismatch() -> str:
    return "the file's SHA-256 does not match the sha256_digest the client sent; upload it again"


# -- HTTP framing of the request ------------------------------------------------------------------
def no_request() -> str:
    return "the client closed the session without sending a request"


def headers_too_large(kib: int, lines: int | None = None) -> str:
    limit = f"{kib} KiB or {lines} lines" if lines is not None else f"{kib} KiB"
    return f"the request headers exceed {limit}; send a normal upload request"


def data_after_body() -> str:
    return "unexpected data after the request body"


def body_cut_short() -> str:
    return (
        "the request ended before Content-Length bytes arrived; the upload was cut short "
        f"and {NOTHING_PUBLISHED}; try again"
    )


def head_cut_short() -> str:
    return f"the session ended before the request headers were complete; {NOTHING_PUBLISHED}"


def method_not_accepted(method: str) -> str:
    return f"method {method[:10]} is not accepted; the legacy upload API takes POST"


def duplicate_header(name: str) -> str:
    return f"the request has two {name} headers; send one"


def chunked_refused() -> str:
    return "chunked uploads are not accepted; send Content-Length"


def no_content_length() -> str:
    return "the upload has no Content-Length; send one"


# -- the multipart body ---------------------------------------------------------------------------
def not_multipart(content_type: str) -> str:
    return (
        f"expected a multipart/form-data upload, got '{content_type or 'no Content-Type'}'; "
        "send the request as `setup.py upload` or twine does"
    )


def no_boundary() -> str:
    return "the Content-Type has no multipart boundary; the request cannot be read"


def two_boundaries() -> str:
    return "the Content-Type names more than one multipart boundary; send one"


def boundary_too_long(limit: int) -> str:
    return f"the multipart boundary is longer than {limit} characters"


def no_closing_boundary() -> str:
    return "the upload body ended before the closing multipart boundary; the request was cut short, try again"


def no_opening_boundary() -> str:
    return "the upload body does not start with its multipart boundary"


def boundary_mid_line() -> str:
    return "the multipart boundary appears mid-line; the request is malformed"


def boundary_trailing_garbage() -> str:
    return "the multipart boundary line has trailing garbage"


def boundary_without_new_line() -> str:
    return "the multipart boundary is followed by garbage instead of a new line"


def part_headers_too_large(kib: int) -> str:
    return f"a multipart part's headers exceed {kib} KiB; the request is malformed"


def too_many_parts(limit: int) -> str:
    return f"the upload has more than {limit} form parts"


def malformed_part_header() -> str:
    return "a multipart part has a malformed header line"


def duplicate_part_header(name: str) -> str:
    return f"a multipart part has two {name} headers; send one"


def nested_multipart() -> str:
    return "a form part is itself multipart (nested multipart is not accepted); send each file as its own part"


def part_not_form_data() -> str:
    return "a multipart part is not form-data (nested multipart is not accepted)"


def part_named_twice() -> str:
    return "a multipart part names itself twice in its Content-Disposition; send one name"


def part_without_name() -> str:
    return "a multipart part has no Content-Disposition name"


def duplicate_file_part(name: str) -> str:
    return f"the upload has more than one '{name}' file part"


def field_too_large(name: str, kib: int) -> str:
    return f"form field '{name[:40]}' is larger than {kib} KiB"


def fields_too_large(mib: int) -> str:
    return f"the form's text fields add up to more than {mib} MiB"


# -- the uploaded file ----------------------------------------------------------------------------
BUILD = "`python -m build`"
BUILD_SDIST = "`python -m build --sdist`"


def unsafe_filename(shown: str) -> str:
    return (
        f"the file name '{shown}' is not a plain distribution file name; "
        f"upload the file {BUILD} writes to dist/"
    )


def metadata_too_large(member: str, mib: int) -> str:
    return f"the {member} inside the file is larger than {mib} MiB; rebuild it with {BUILD}"


def sdist_header_too_large(mib: int) -> str:
    return (
        f"the source archive has a member header of more than {mib} MiB, which no build tool writes; "
        f"rebuild it with {BUILD_SDIST}"
    )


def sdist_unreadable() -> str:
    return f"the file is not a readable .tar.gz archive; rebuild it with {BUILD_SDIST}"


def sdist_without_pkg_info() -> str:
    return f"the source archive has no <name>-<version>/PKG-INFO; rebuild it with {BUILD_SDIST}"


def wheel_directory_too_large(mib: int) -> str:
    return (
        f"the wheel's list of files is larger than {mib} MiB, more than this gateway reads; "
        "upload the wheel with twine"
    )


def wheel_without_metadata() -> str:
    return f"the wheel has no single *.dist-info/METADATA; rebuild it with {BUILD}"


def wheel_unreadable() -> str:
    return f"the wheel is not a readable zip archive; rebuild it with {BUILD}"


def wheel_name_invalid(filename: str, problem: str) -> str:
    return f"'{filename}' is not a valid wheel file name ({problem})"


def not_pep440(version: str) -> str:
    return (
        f"version '{version[:40]}' is not a PEP 440 version, which the index requires; "
        f"use a version like 1.0 or 1.0.post1 and build with {BUILD}"
    )


ACCEPTED = "it accepts source distributions (.tar.gz) and wheels (.whl), which `python -m build` makes"


def sdist_format_refused(filename: str) -> str:
    return (
        f"'{filename}': the index accepts source distributions only as .tar.gz, and built ones only as "
        f"wheels (.whl); `python -m build` makes both, and `setup.py sdist --formats=gztar upload` the first"
    )


def distribution_kind_refused(filename: str, kind: str) -> str:
    return f"'{filename}': the index no longer accepts {kind}; {ACCEPTED}"


def not_a_distribution(filename: str) -> str:
    return f"'{filename}' is not a distribution the index accepts; {ACCEPTED}"


def metadata_not_utf8_note(encoding: str) -> str:
    """For the event record: the artifact's metadata file was not UTF-8."""
    return f"the file's metadata is not UTF-8; read as {encoding} and forwarded as UTF-8"


def form_disagrees_note(fields: tuple[str, ...]) -> str:
    """For the event record: the legacy form said otherwise than the artifact, which won."""
    return f"the legacy form disagreed with the file's metadata on {', '.join(fields)}; the file's values were forwarded"


def metadata_without_name(filename: str) -> str:
    return f"'{filename}' has metadata without a Name or Version; rebuild it with {BUILD}"


def sdist_name_mismatch(filename: str, name: str, version: str) -> str:
    return (
        f"'{filename}' does not match the metadata inside it ({name} {version}); "
        f"upload the file exactly as {BUILD_SDIST} wrote it"
    )


def wheel_name_mismatch(filename: str, name: str, version: str) -> str:
    return f"'{filename}' does not match the metadata inside it ({name} {version}); rebuild the wheel with {BUILD}"


# -- the upstream ---------------------------------------------------------------------------------






def retry_redirected(target: str | None) -> str:
    return f"a retry was redirected to {target or 'an address it did not give'}"


def upstream_redirect(url: str, status: int, target: str | None) -> str:
    return (
        f"the upload server {url} answered {status} and redirected to "
        f"{target or 'an address it did not give'}; {NOTHING_PUBLISHED}; the gateway does not follow "
        "redirects for uploads, its operator must set upstream_url to that address if it is trusted"
    )


# -- configuration (read by the operator) ---------------------------------------------------------
def not_host_port(value: str) -> str:
    return f"'{value}' is not HOST:PORT; write for example 127.0.0.1:2222"


def setting_not_boolean(name: str, raw: object) -> str:
    return f"setting {name} must be true or false, not '{raw}'"


def setting_not_integer(name: str, raw: object) -> str:
    return f"setting {name} must be a whole number, not '{raw}'"


def setting_not_number(name: str, raw: object) -> str:
    return f"setting {name} must be a number, not '{raw}'"


def setting_not_one_of(name: str, choices: tuple[str, ...], value: str) -> str:
    return f"{name} must be one of {', '.join(choices)}, not '{value}'"


def not_a_network(name: str, entry: str) -> str:
    return f"{name} entry '{entry}' is not a network like 10.0.0.0/8"


def setting_not_positive(name: str) -> str:
    return f"{name} must be positive"


def config_file_missing(path: object) -> str:
    return f"configuration file {path} does not exist; give --config (or PYPISSH_CONFIG) the path of the TOML file"


def config_file_not_toml(path: object, problem: object) -> str:
    return f"configuration file {path} is not valid TOML: {problem}"


def unknown_setting(name: str, path: object = None, closest: str | None = None) -> str:
    where = f" in {path}" if path else ""
    hint = f"; did you mean '{closest}'?" if closest else f"; `{PROGRAM} check --show` lists every setting"
    return f"unknown setting '{name}'{where}{hint}"


def no_host_keys(folder: object) -> str:
    return f"no host keys in {folder}/; run `{PROGRAM} keygen` once and share the folder with every replica"


def unreadable_host_key(path: object, problem: object) -> str:
    return f"cannot read host key {path}: {problem}"


def missing_extra(feature: str, module: str, extra: str) -> str:
    """For a command that needs an optional dependency the install left out."""
    return f"{feature} needs {module}: pip install 'pypissh-gateway[{extra}]'"
# -- the upload server and the index (gateway/upload/upstream.py, gateway/upload/index.py) --------------------
def upstream_certificate(url: str, detail: str) -> str:
    return (
        f"the upload server {url} presented a certificate the gateway cannot verify ({detail}); "
        f"{NOTHING_PUBLISHED}; the gateway's operator must check upstream_ca_bundle"
    )


def upstream_unreachable(url: str, detail: str) -> str:
    return f"cannot reach the upload server {url} ({detail}); {NOTHING_PUBLISHED}; try again later"


def upstream_dropped_upload(url: str, detail: str) -> str:
    return (
        f"the upload server {url} dropped the connection before the whole upload was sent ({detail}); "
        f"{NOTHING_PUBLISHED}; try again later"
    )


def upstream_no_answer(url: str, detail: str, filename: str, check_url: str) -> str:
    return (
        f"the upload server {url} received the whole upload but sent no answer ({detail}); it may "
        f"have been published: look for {filename} on {check_url} before uploading it again"
    )


def upstream_deadline_unsent(url: str, seconds: float) -> str:
    return (
        f"the upload server {url} did not take the whole upload within {seconds:.0f} s "
        f"(upstream_deadline); {NOTHING_PUBLISHED}; try again later"
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


def refusal_unconfirmed(reason: str, detail: str, filename: str, check_url: str) -> str:
    return (
        f"{reason} (an earlier attempt sent the whole upload and its answer was lost or a server "
        f"error, and the gateway could not read the index to see whether that file is this upload: "
        f"{detail}; it {MAYBE_PUBLISHED}: look for {filename} on {check_url} before uploading it again)"
    )


def exists_unconfirmed(reason: str, filename: str, check_url: str) -> str:
    return (
        f"{reason} (but an earlier attempt sent the whole upload and its answer was lost or a server "
        f"error, and the index does not list {filename} yet: it {MAYBE_PUBLISHED}; look for it on "
        f"{check_url} in a few minutes before uploading it again)"
    )


def upstream_failed_after_upload(reason: str, filename: str, check_url: str) -> str:
    return (
        f"{reason} (the upload server failed after receiving the whole upload: it {MAYBE_PUBLISHED}; "
        f"look for {filename} on {check_url} before uploading it again)"
    )


def refusal_after_lost_answer(reason: str, filename: str, check_url: str) -> str:
    return (
        f"{reason} (but an earlier attempt sent the whole upload and got no answer: it may have "
        f"been published; look for {filename} on {check_url} before uploading it again)"
    )


def index_unreadable(url: str, detail: str) -> str:
    return f"cannot read the index page {url} ({detail})"


def index_not_https(url: str) -> str:
    return (f"index_url {url} is plain http: what it lists could be forged on the way, and it decides "
            "who counts as migrated; use the index's https:// address")


def index_redirect_refused(target: str, host: str | None) -> str:
    return (f"it redirects to {target[:200]}, and only https on {host} is followed; point index_url "
            "at the page's real address")


def index_page_too_large(limit: int) -> str:
    return f"the page is larger than index_max_page_bytes ({limit} bytes); raise it if the index is right"


def index_page_too_slow(seconds: float) -> str:
    return f"the page did not arrive within {seconds:.0f} s"


def index_too_many_files(count: int, limit: int) -> str:
    return f"the page lists {count} files, more than the {limit} a page may list"


def internal_error_after_forwarding(filename: str, check_url: str) -> str:
    return (
        f"the gateway failed after handing the upload to the upload server; {filename} may have "
        f"been published: look for it on {check_url} before uploading it again"
    )


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


# -- settings: values that cannot work (each names the setting and what to write) ---------------
def setting_not_list(name: str, raw: object) -> str:
    return f"setting {name} must be a list of strings or one comma-separated string, not '{raw}'"


def setting_not_text(name: str) -> str:
    return f"setting {name} must be a single value, not a table or list"


def setting_not_finite(name: str, value: object) -> str:
    return f"setting {name} must be a finite number, not {value}"


def setting_too_small(name: str, value: object, bound: str) -> str:
    return f"setting {name} must be {bound}, not {value}"


def port_out_of_range(name: str, port: int) -> str:
    return f"setting {name} names port {port}; ports go from 1 to 65535"


def home_not_absolute(value: str) -> str:
    return (f"home must be an absolute path, not '{value}'; write for example "
            "PYPISSH_HOME=/var/lib/pypissh-gateway (a relative --home is taken from the current directory)")


def listen_taken(address: str) -> str:
    return (f"listen {address} is already in use by another process, not one of this gateway's workers; "
            "stop it (`ss -ltnp` shows which), or set listen to a free address")


def cannot_listen(setting: str, address: str, reason: object) -> str:
    return (f"cannot listen on {address} ({setting}): {reason}; stop what uses it (`ss -ltnp` shows which), "
            f"or set {setting} to a free address")


def serve_modes_refused(first: str, more: int) -> str:
    rest = f" ({more} more: see `pypissh-gateway check`)" if more else ""
    return (f"{first}{rest}; or start with --insecure-modes to serve anyway")


def serving_with_open_modes(problem: str) -> str:
    return f"serving with --insecure-modes although {problem}"


def health_listen_is_listen(address: str) -> str:
    return (f"health_listen is the same address as listen ({address}); give the health endpoints a port "
            "of their own, e.g. health_listen = \"127.0.0.1:9122\"")


def database_url_is_a_path(value: str) -> str:
    return (f"database_url must be a URL, not a path ('{value}'); for a SQLite file write "
            f"sqlite:///{value}, for PostgreSQL postgresql://USER@HOST/DATABASE")


def database_scheme_unknown(scheme: str, accepted: tuple[str, ...]) -> str:
    hint = " (postgres:// is spelt postgresql://)" if scheme in ("postgres", "postgress", "pgsql") else ""
    return (f"database_url scheme '{scheme}://' is not one the registry can use{hint}; write "
            f"sqlite:///PATH or postgresql://USER@HOST/DATABASE (accepted: {', '.join(accepted)})")


def smtp_url_invalid(url: str, schemes: tuple[str, ...]) -> str:
    return (f"smtp_url '{url}' is not a mail server URL; write smtp://HOST:25, smtp+starttls://HOST:587 "
            f"or smtps://HOST:465 (accepted schemes: {', '.join(schemes)})")


def upstream_url_invalid(url: str) -> str:
    return (f"upstream_url '{url}' is not an HTTPS URL; write the upload API's address, "
            "e.g. https://upload.pypi.org/legacy/")


def index_url_invalid(url: str) -> str:
    return (f"index_url '{url}' is not an HTTPS URL; write the index's simple API address, "
            "e.g. https://pypi.org/simple/")


def upstream_not_https(url: str) -> str:
    return (f"upstream_url {url} is plain http: API tokens and uploads would cross the network in "
            "cleartext; use the upload API's https:// address")


def config_file_is_a_directory(path: object) -> str:
    return (f"configuration file {path} is a directory; give --config (or PYPISSH_CONFIG) the TOML file "
            f"itself, e.g. {path}/config.toml")


def config_file_unreadable(path: object, reason: object) -> str:
    return (f"cannot read configuration file {path} ({reason}); make it readable by the user running "
            "this command (owner or group, never world-writable)")


def config_file_not_utf8(path: object) -> str:
    return f"configuration file {path} is not UTF-8 text, which TOML requires; save it as UTF-8"


def unknown_variable(variable: str, closest: str | None, setting: str | None) -> str:
    if closest:
        return f"warning: {variable} is not a setting and is ignored; did you mean {closest} (setting {setting})?"
    return f"warning: {variable} is not a setting and is ignored; `{PROGRAM} check --show` lists every setting"


def set_by(problem: str, variable: str) -> str:
    return f"{problem} (set by {variable})"


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


def secret_key_missing(path: object) -> str:
    return (f"no secret key file at {path}, so API tokens cannot be sealed or opened; run "
            f"`{PROGRAM} keygen` to create one for a new registry, or set secret_key_file to the key "
            "the stored tokens were sealed with")


def secret_key_refused(path: object, database: str, count: int) -> str:
    return (f"refusing to create a secret key at {path}: the registry at {database} holds {count} token(s) "
            "sealed under another key, which a new key could never open; restore that key file there, "
            "or set secret_key_file (or secret_key) to it")


def secret_key_unreadable(path: object, reason: object) -> str:
    return f"cannot read the secret key file {path} ({reason}); make it readable by the user running this command"


def secret_key_too_short() -> str:
    return "secret_key must be a Fernet key or a passphrase of at least 32 characters"


def secret_key_empty(where: object) -> str:
    return f"the secret key in {where} is empty; put the key back, or run `pypissh-migrate rotate-secret --new-key-file FILE`"


def token_undecryptable() -> str:
    return ("a stored token cannot be decrypted with the configured secret keys; keep the old key in "
            "secret_key until `pypissh-migrate rotate-secret` has run")


def not_an_api_token() -> str:
    return "that is not an API token: tokens start with 'pypi-' and have no spaces"


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


# -- keys and addresses given by admins ----------------------------------------------------------
def private_key_file(name: str) -> str:
    return f"{name} is a private key; give the .pub file (ssh-keygen -y -f {name} > {name}.pub)"


def not_a_key_file(name: str) -> str:
    return f"{name} is not a text file of public keys; give a file like ~/.ssh/id_ed25519.pub"


def key_restored(fingerprint: str, account: str, seconds: float) -> str:
    return f"restored {fingerprint} of '{account}'; every replica accepts it again within {seconds:.0f} s"


def key_not_revoked(fingerprint: str, account: str) -> str:
    return f"key {fingerprint} of '{account}' is not revoked; nothing to restore"


def key_revoked_elsewhere(fingerprint: str, owner: str) -> str:
    return (f"key {fingerprint} is a revoked key of account '{owner}'; a key belongs to one account: "
            f"`pypissh-migrate keys restore {fingerprint}` gives it back to '{owner}'")


def email_invalid(address: str, reason: str) -> str:
    return f"'{address}' is not an email address ({reason.rstrip('.')}); give one like alice@example.org"


def email_invalid_in_file() -> str:
    return "the email column is not an email address; fix it in the file, or leave it empty"


# -- the report -----------------------------------------------------------------------------------
def report_empty_registry(database: str, accounts: int, keys: int) -> str:
    missing = "no accounts" if not accounts else "no keys"
    return (f"the registry at {database} is empty ({missing}): nothing to judge; "
            "is this the right database_url?")


# -- check: one line per problem, each with its fix -----------------------------------------------
def file_mode_too_open(what: str, path: object, mode: int) -> str:
    return f"{what} {path} has mode {mode:04o}, open to group or others; run chmod 600 {path}"


def config_writable_by_others(path: object, mode: int) -> str:
    return f"configuration file {path} has mode {mode:04o}, writable by group or others; run chmod go-w {path}"


def config_password_readable(path: object, mode: int) -> str:
    return (f"configuration file {path} has mode {mode:04o} and holds a password (in database_url, smtp_url or "
            f"secret_key); run chmod 600 {path}, or set the secret by its PYPISSH_* variable instead")


def folder_writable_by_others(what: str, path: object, mode: int) -> str:
    return (f"{what} {path} has mode {mode:04o}, writable by group or others, who could replace the keys in it; "
            f"run chmod go-w {path}")


def upstream_not_contacted(url: str) -> str:
    return f"upstream {url} not contacted (--offline); `pypissh-gateway check` tries it for real"


def upstream_ca_bundle_missing(path: object) -> str:
    return (f"upstream_ca_bundle {path} does not exist; point it at the CA file that signed the "
            "upstream's certificate, or remove the setting to use the system CAs")


def upstream_check_certificate(url: str, bundle: object) -> str:
    return (f"upstream {url} presented a certificate that {bundle or 'the system CAs'} cannot verify; "
            "set upstream_ca_bundle to the CA file that signed it")


def upstream_check_unreachable(url: str, detail: str) -> str:
    return f"upstream {url} is unreachable ({detail}); check upstream_url, DNS and the firewall"


def upstream_check_ok(url: str, status: int) -> str:
    return f"upstream {url} answered HTTP {status} over verified TLS"


def tokens_unopenable(count: int, total: int, where: object) -> str:
    return (f"{count} of {total} stored token(s) do not open with the secret key in {where}; set "
            "secret_key_file to the key they were sealed with, or store them again with "
            "`pypissh-migrate accounts set-token NAME`")


def secret_key_present(where: object) -> str:
    return f"secret key in {where} (no registry to check its tokens against)"


def tokens_open(total: int) -> str:
    return f"secret key opens all {total} stored token(s)"


def database_ok(database: str) -> str:
    return f"registry at {database}: reachable, schema current"


def _bytes(count: int | None) -> str:
    return "? bytes" if count is None else f"{count} bytes"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"


def database_host_primary(address: str, standbys: list) -> str:
    if not standbys:
        return f"database host {address}: the primary (accepts writes); no standby is streaming from it"
    seen = "; ".join(_standby_seen(s) for s in standbys)
    label = "standby" if len(standbys) == 1 else f"{len(standbys)} standbys"
    return f"database host {address}: the primary (accepts writes); {label}: {seen}"


MONITOR_HINT = "grant pg_monitor to the registry's role to see it"


def _standby_seen(standby) -> str:
    if standby.state is None:  # pg_stat_replication hides the details from other roles
        return f"{standby.client} connected (its state and lag are hidden: {MONITOR_HINT})"
    lag = f", replay lag {_seconds(standby.replay_seconds)}" if standby.replay_seconds is not None else ""
    return f"{standby.client} {standby.state} ({standby.sync_state or '?'}), {_bytes(standby.replay_bytes)} not yet replayed{lag}"


def database_host_standby(address: str, receiving: str, replay_bytes: int | None,
                          last_replay_age: float | None) -> str:
    age = ("" if last_replay_age is None else
           f", last replayed commit {_seconds(last_replay_age)} old (this grows too while the primary is idle)")
    how = "streaming" if receiving == "streaming" else f"WAL receiver {receiving} ({MONITOR_HINT})"
    return f"database host {address}: a standby (read-only), {how}; {_bytes(replay_bytes)} received but not yet replayed{age}"


def database_host_standby_detached(address: str, receiver: str | None) -> str:
    return (f"database host {address}: a standby (read-only) that receives no WAL "
            f"(WAL receiver: {receiver or 'not running'}); if its primary is lost, promote it "
            "(your HA manager does; by hand: SELECT pg_promote() on it), else check its primary_conninfo")


def database_host_unreachable(address: str, detail: str) -> str:
    return (f"database host {address}: unreachable ({detail}); the registry has one server fewer to fail "
            "over to until it runs again (after a failover: rebuilt as a standby of the new primary)")


def database_no_primary(count: int) -> str:
    return (f"none of the {count} database hosts accepts writes, so logins and uploads are refused: "
            "promote the standby (your HA manager does; by hand: SELECT pg_promote() on it)")


def database_two_primaries(addresses: list[str]) -> str:
    return (f"{len(addresses)} database hosts accept writes ({', '.join(addresses)}); the gateway writes to "
            f"the first of them in database_url, so the others have diverged: stop them and rebuild each as "
            "a standby of the primary (pg_rewind or pg_basebackup) before starting it again")


def host_keys_ok(lines: list[str]) -> str:
    return "host keys: " + ", ".join(lines)


# -- the log and the admin journal (gateway/ops/logformat.py, sessionlog.py, registry/audit.py) ---
def log_file_unusable(path: str, detail: str) -> str:
    return f"cannot append to log_file {path}: {detail}; fix its folder's permissions or choose another log_file"


def reason_empty() -> str:
    return "give a reason in words, e.g. --reason 'key lost with a laptop, ticket 4711'"


def journal_needs_registry(where: str) -> str:
    return (f"done, but not recorded in the admin journal: no registry of the current schema at {where} "
            "(`pypissh-gateway db upgrade` creates or upgrades it)")


def audit_empty(since: str, account: str | None) -> str:
    whose = f" for account '{account}'" if account else ""
    return f"no change recorded{whose} since {since}; --since 365d (or a date) looks further back"


def prune_dry_run(count: int, before: str, kept: int) -> str:
    return (f"dry run: {count} upload event(s) recorded before {before} would be deleted; {kept} older one(s) "
            "kept as their account's latest; nothing was deleted")


def prune_nothing(before: str, kept: int) -> str:
    return f"no upload event before {before} to delete ({kept} kept as their account's latest)"


def confirm_prune(count: int, before: str) -> str:
    return f"Delete {count} upload event(s) recorded before {before}? This cannot be undone."


def prune_done(deleted: int, before: str, batches: int, kept: int, remaining: int) -> str:
    return (f"deleted {deleted} upload event(s) recorded before {before} in {batches} batch(es); kept {kept} "
            f"older one(s) as their account's latest; {remaining} event(s) remain")


def prune_cut_off_future(text: str) -> str:
    return f"{text} is in the future; give a past date (YYYY-MM-DD, UTC) or a span such as 400d"


def penalty_detail(seconds: float) -> str:
    """The log's note on a key refused from a penalised address (the client is told the same wait)."""
    return f"too many failed logins from the address ({wait_phrase(seconds)} left)"


# -- SIGHUP (gateway/ops/hangup.py) -----------------------------------------------------------------
def hangup_log_reopened(path: str | None) -> str:
    if path is None:
        return "SIGHUP: the log goes to stderr (no log_file), nothing to reopen"
    return f"SIGHUP: reopened log_file {path}"


def hangup_log_unusable(path: object, reason: object) -> str:
    return f"SIGHUP: cannot reopen log_file {path} ({reason}); still writing to the file open before"


def hangup_keys_read(count: int, where: object) -> str:
    return f"SIGHUP: read {count} secret key(s) again from {where}"


def secret_keys_changed(count: int, where: object) -> str:
    return f"a stored token did not open: read the secret keys again from {where}, now {count} key(s)"


def hangup_host_keys_read(fingerprints: list[str]) -> str:
    return f"SIGHUP: read the host keys again; new connections get {', '.join(fingerprints)}"


def hangup_host_keys_kept(problem: str) -> str:
    return f"SIGHUP: kept the host keys in use, since {problem}"


def hangup_keys_kept(problem: str) -> str:
    return f"SIGHUP: kept the secret keys in use, since {problem}"


# -- the index's evidence (pypissh-migrate evidence refresh) ---------------------------------------
def evidence_file_refused(project: str, filename: str, reason: str) -> str:
    """One line per file a project's page listed and the refresh left out (the rest is recorded)."""
    return f"{project}: file '{filename}' left out: {reason}"


def evidence_project_failed(project: str, reason: str) -> str:
    """One line per project whose page a refresh could not read."""
    return f"{project}: {reason}; its evidence is unchanged, run the refresh again later"


def evidence_summary(read: int, projects: int, recorded: int, failed: int, index_url: str) -> str:
    line = (f"evidence refresh: {read} of {projects} project page(s) read from {index_url}, "
            f"{recorded} new file(s) recorded, {failed} failed")
    return line + (" (listed above; exit status 1)" if failed else "")


def evidence_nothing_to_read() -> str:
    return "evidence refresh: no project was ever uploaded over SSH, so there is no page to read"


def evidence_project_not_ssh(project: str) -> str:
    return (f"'{project}' was never uploaded over SSH, so the index has no evidence to give about it; "
            "`pypissh-migrate report` lists the projects that were")


def needs_openssh_mode(name: str) -> str:
    return f"{name} is used only in the OpenSSH mode; set openssh_mode = true, or remove {name}"


def not_absolute(name: str, value: str) -> str:
    return f"{name} must be an absolute path, not '{value}' (sshd runs it from the session user's home)"


def key_file_folder_unusable(path: str, folder: str) -> str:
    return (f"cannot write authorized_keys_file {path}: {folder} does not exist or is not writable by "
            "this user; create it for the replica's user (the systemd unit's StateDirectory= is), or "
            "change authorized_keys_file")


def bytecode_done(written: int, current: int, prefix: str) -> str:
    return f"wrote the bytecode of {written} modules in {prefix} ({current} were up to date)"


def bytecode_skipped(module: str) -> str:
    return f"not compiled: {module}, which needs an extra that is not installed"


def bytecode_failed(problem: Exception) -> str:
    reason = getattr(problem, "strerror", None) or str(problem)
    return f"cannot write bytecode: {reason}; run it as the user who installed the virtualenv"
