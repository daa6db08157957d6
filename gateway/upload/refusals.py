"""Reason phrases of the exchange and the upload server: what the legacy client prints after
`Upload failed (<status>):`, and the notes recorded with an upload event.

The client shows only the reason phrase, so each one is the user's whole explanation.
"""

from __future__ import annotations

from gateway.phrases import MAYBE_PUBLISHED, NOTHING_PUBLISHED, Place


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
    if project:
        return f"OK: nothing to register, '{project}' is created by the first upload"
    return "OK: nothing to register, projects are created by the first upload"


def doc_upload_gone() -> str:
    return (
        "documentation uploads are no longer supported by the index; host documentation on "
        "Read the Docs or GitHub Pages instead"
    )


def unknown_action(action: str) -> str:
    return (
        f"the ':action' '{action[:40]}' is not supported here; "
        "only file_upload, submit, verify and list_classifiers are"
    )


def missing_action() -> str:
    return "the form has no ':action' field; send the request as `setup.py upload` or twine does"


def not_http(detail: str, place: Place) -> str:
    return (
        f"this is the legacy upload endpoint and what arrived is not an HTTP request ({detail}); "
        f"run `{place.ssh('help')}` for what it accepts"
    )


def upload_done_body(filename: str, sha256: str, account: str) -> str:
    return f"Uploaded {filename} (sha256 {sha256}) for account '{account}'.\n"


def spool_full() -> str:
    return (
        f"the gateway's disk for uploads in progress is full; {NOTHING_PUBLISHED}; try again "
        "later, or upload with twine"
    )


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


def metadata_not_utf8_note(encoding: str) -> str:
    """For the event record: the artifact's metadata file was not UTF-8."""
    return f"the file's metadata is not UTF-8; read as {encoding} and forwarded as UTF-8"


def form_disagrees_note(fields: tuple[str, ...]) -> str:
    """For the event record: the legacy form said otherwise than the artifact, which won."""
    return (
        f"the legacy form disagreed with the file's metadata on {', '.join(fields)}; "
        "the file's values were forwarded"
    )


# -- the upload server ----------------------------------------------------------------------------
def retry_redirected(target: str | None) -> str:
    return f"a retry was redirected to {target or 'an address it did not give'}"


def upstream_redirect(url: str, status: int, target: str | None) -> str:
    return (
        f"the upload server {url} answered {status} and redirected to "
        f"{target or 'an address it did not give'}; {NOTHING_PUBLISHED}; the gateway does not follow "
        "redirects for uploads, its operator must set upstream_url to that address if it is trusted"
    )


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


def internal_error_after_forwarding(filename: str, check_url: str) -> str:
    return (
        f"the gateway failed after handing the upload to the upload server; {filename} may have "
        f"been published: look for it on {check_url} before uploading it again"
    )
