"""The personal guide for moving one account from the SSH path to twine."""

from __future__ import annotations

from gateway.messages import Place
from gateway.registry import Identity, Registry
from gateway.render import render
from gateway.settings import Settings


def guide_context(registry: Registry, settings: Settings, identity: Identity) -> dict:
    activity = registry.account_activity(identity.account_id)
    return {
        "account": identity.account_name,
        "fingerprint": identity.fingerprint,
        "projects": [p["name"] for p in activity["projects"]],
        "token_url": settings.token_url,
        "place": Place.from_settings(settings),
    }


def guide_text(registry: Registry, settings: Settings, identity: Identity) -> str:
    return render("guide.txt.j2", **guide_context(registry, settings, identity))
