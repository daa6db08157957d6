"""What the `pypissh-migrate` commands print to the admins: keys and addresses given on the
command line, confirmations, the journal, pruning, the report and the index's evidence.
"""

from __future__ import annotations


# -- keys and addresses given by admins -----------------------------------------------------------
def private_key_file(name: str) -> str:
    return f"{name} is a private key; give the .pub file (ssh-keygen -y -f {name} > {name}.pub)"


def not_a_key_file(name: str) -> str:
    return f"{name} is not a text file of public keys; give a file like ~/.ssh/id_ed25519.pub"


def key_restored(fingerprint: str, account: str, seconds: float) -> str:
    return f"restored {fingerprint} of '{account}'; every replica accepts it again within {seconds:.0f} s"


def email_invalid_in_file() -> str:
    return "the email column is not an email address; fix it in the file, or leave it empty"


# -- the report -----------------------------------------------------------------------------------
def report_empty_registry(database: str, accounts: int, keys: int) -> str:
    if not accounts:
        return f"the registry at {database} is empty (no accounts): nothing to judge; is this the right database_url?"
    return f"the registry at {database} is empty (no keys): nothing to judge; is this the right database_url?"


# -- the admin journal and pruning ----------------------------------------------------------------
def audit_empty(since: str, account: str | None) -> str:
    if account:
        return f"no change recorded for account '{account}' since {since}; --since 365d (or a date) looks further back"
    return f"no change recorded since {since}; --since 365d (or a date) looks further back"


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


# -- the index's evidence (evidence refresh) ------------------------------------------------------
def evidence_file_refused(project: str, filename: str, reason: str) -> str:
    """One line per file a project's page listed and the refresh left out (the rest is recorded)."""
    return f"{project}: file '{filename}' left out: {reason}"


def evidence_project_failed(project: str, reason: str) -> str:
    """One line per project whose page a refresh could not read."""
    return f"{project}: {reason}; its evidence is unchanged, run the refresh again later"


def evidence_summary(read: int, projects: int, recorded: int, failed: int, index_url: str) -> str:
    if failed:
        return (f"evidence refresh: {read} of {projects} project page(s) read from {index_url}, "
                f"{recorded} new file(s) recorded, {failed} failed (listed above; exit status 1)")
    return (f"evidence refresh: {read} of {projects} project page(s) read from {index_url}, "
            f"{recorded} new file(s) recorded, 0 failed")


def evidence_nothing_to_read() -> str:
    return "evidence refresh: no project was ever uploaded over SSH, so there is no page to read"


def evidence_project_not_ssh(project: str) -> str:
    return (f"'{project}' was never uploaded over SSH, so the index has no evidence to give about it; "
            "`pypissh-migrate report` lists the projects that were")
