"""The registry's tables: the only state the gateway has besides its host keys.

Every replica reads and writes the same database. Alembic migrations under `migrations/` create
these tables; this module is their single description, and the stores beside it hold every query.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

# Stable constraint names so migrations behave the same on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key for the event log.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: SQLite keeps no time zone, PostgreSQL would convert."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the registry; use aware UTC datetimes")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    # The account's name on the index (its PyPI username); also how admins refer to it.
    Column("name", String(100), nullable=False, unique=True),
    Column("email", String(320)),
    Column("disabled", Boolean, nullable=False, default=False),
    # Exempt accounts keep uploading through brownouts and after sunset (with the notice).
    Column("exempt", Boolean, nullable=False, default=False),
    # Fernet token of the account's upstream API token; never the token itself.
    Column("token_ciphertext", Text),
    Column("token_set_at", UtcDateTime),
    Column("note", Text),
    Column("created_at", UtcDateTime, nullable=False),
)

ssh_keys = Table(
    "ssh_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # "SHA256:<base64>" as OpenSSH prints it; the lookup key of every login.
    Column("fingerprint", String(100), nullable=False, unique=True),
    Column("algorithm", String(64), nullable=False),
    Column("bits", Integer),
    Column("public_key", Text, nullable=False),
    Column("comment", String(255)),
    Column("weak", Boolean, nullable=False, default=False),
    # Space-separated canonical project names this key may upload; NULL means any.
    Column("allowed_projects", Text),
    Column("source", String(32), nullable=False, default="admin"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("last_used_at", UtcDateTime),
    Index("ix_ssh_keys_account_id", "account_id"),
)

upload_events = Table(
    "upload_events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="SET NULL")),
    Column("account_name", String(100)),
    Column("key_fingerprint", String(100)),
    Column("client_addr", String(64)),
    Column("ssh_client_version", String(255)),
    Column("user_agent", String(255)),
    Column("action", String(32)),
    Column("project", String(255)),
    Column("version", String(100)),
    Column("filename", String(255)),
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("upstream_status", Integer),
    # forwarded | refused_upstream | refused_schedule | bad_request | client_aborted |
    # upstream_error | no_credential | refused_policy | internal_error | busy |
    # local (answered by the gateway itself) | forwarding (being forwarded; left so by a replica
    # that died while forwarding: the outcome is unknown)
    Column("outcome", String(32), nullable=False),
    Column("duration_ms", Integer),
    Column("error", Text),
    Column("legacy_crypto", Boolean, nullable=False, default=False),
    Column("replica", String(100)),
    Index("ix_upload_events_at", "at"),
    Index("ix_upload_events_account_at", "account_id", "at"),
    # Evidence from the index (registry/evidence.py): who uploaded a project, and each account's
    # first and last upload of each project, are read from these indexes alone.
    Index("ix_upload_events_project_uploads", "project", "outcome", "account_id", "at"),
    Index("ix_upload_events_account_uploads", "account_id", "project", "outcome", "at"),
)

# The deprecation schedule. kind: notice | brownout | sunset | pause. A notice and a sunset have
# only a start; a brownout has both ends; a pause has no end until it is resumed.
schedule_windows = Table(
    "schedule_windows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime),
    Column("note", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("cancelled_at", UtcDateTime),
    Index("ix_schedule_windows_kind", "kind"),
)

# One row per message sent (or claimed for sending) to one account in one campaign.
notification_sends = Table(
    "notification_sends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(100), nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320)),
    # queued | sending | sent | failed | skipped (error says why) | dry_run (unused: dry runs record nothing)
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    Column("message_id", String(255)),
    Column("error", Text),
    Index("ix_notification_sends_campaign_account", "campaign", "account_id"),
)

# The admin journal: one row per change made through either command-line tool (accounts, keys,
# schedule, campaigns, secret and host-key rotations, imports, pruning). Never a token or a key.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    # The OS user the command ran as (its effective uid), and the machine.
    Column("actor", String(100), nullable=False),
    Column("actor_host", String(255)),
    Column("reason", Text),
    Column("command", String(200), nullable=False),
    # account | key | schedule | campaign | import | secret_key | host_keys | events | schema
    Column("target_kind", String(32), nullable=False),
    Column("target", String(255)),
    # The account concerned, if any (`pypissh-migrate audit --account NAME`).
    Column("account_name", String(100)),
    # JSON objects: the target's values before and after, where they mean something.
    Column("before", Text),
    Column("after", Text),
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_account_at", "account_name", "at"),
)

# What the index's simple API showed for each project ever uploaded over SSH
# (`pypissh-migrate evidence refresh`): when its page was read, and every file it listed, those
# that came through the gateway marked. Project names are canonical (PEP 503), as in upload_events.
index_projects = Table(
    "index_projects",
    metadata,
    Column("project", String(255), primary_key=True),
    Column("first_read_at", UtcDateTime, nullable=False),
    Column("last_read_at", UtcDateTime, nullable=False),
)

index_files = Table(
    "index_files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project", String(255), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("sha256", String(64)),
    # The file matched an SSH session's (name and sha256) when first seen, or since: never
    # evidence. Kept once set, so pruning old events cannot turn the gateway's file into a release.
    Column("via_gateway", Boolean, nullable=False, default=False),
    # PEP 700 `upload-time`, when the page gave one (JSON pages only).
    Column("upload_time", UtcDateTime),
    Column("first_seen_at", UtcDateTime, nullable=False),
    # The project's previous read, which did not list the file: it was published after this.
    # NULL when the file was already there the first time the project was read.
    Column("absent_at", UtcDateTime),
    UniqueConstraint("project", "filename", name="uq_index_files_project_filename"),
)
