"""Small helpers the test modules share: waiting for what another thread or process does, and
registering an account the way an admin would."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, TypeVar

from gateway.ssh.sshkeys import parse_public_key
from gateway.tokens import TokenBox
from testbed.harness import GatewayHarness

if TYPE_CHECKING:
    from tests.conftest import UserKey

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 10.0, what: str = "the condition",
               interval: float = 0.05) -> T:
    """Poll `condition` until it returns something true, and return that. For what happens in
    another thread or process (a worker thread, a server starting); `timeout` only bounds a
    failure, it is never the expected outcome."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


def register_account(gateway: GatewayHarness, name: str, key: "UserKey | None", *, token: str | None = None,
                     **account) -> None:
    """Add account `name` with `key`, and its upstream `token` sealed as `accounts set-token` stores it."""
    accounts = gateway.registry.accounts
    accounts.add_account(name, **account)
    if key is not None:
        accounts.add_key(name, parse_public_key(key.public_line))
    if token is not None:
        accounts.set_token_ciphertext(name, TokenBox.from_settings(gateway.settings).seal(token))


# Characters of rich's box drawing, which piped tables must not contain.
BOX_DRAWING = frozenset(chr(code) for code in range(0x2500, 0x2580))


def ok(result) -> None:
    """A click command run by CliRunner succeeded (its output shown when not)."""
    assert result.exit_code == 0, result.output
