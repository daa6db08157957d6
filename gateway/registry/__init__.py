"""The shared registry: accounts, keys, encrypted upstream tokens, events, schedule, notifications."""

from gateway.registry.store import (  # noqa: F401  (the package's public face)
    Account,
    Identity,
    KeyRecord,
    Registry,
    RegistryError,
    UploadEvent,
    make_engine,
    utcnow,
)
