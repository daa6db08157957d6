"""The shared registry: accounts, keys, encrypted upstream tokens, events, schedule, notifications."""

__all__ = ["Account", "Identity", "KeyRecord", "Registry", "RegistryError", "UploadEvent", "make_engine", "utcnow"]

from gateway.registry.store import (  # the package's public face
    Account,
    Identity,
    KeyRecord,
    Registry,
    RegistryError,
    UploadEvent,
    make_engine,
    utcnow,
)
