"""Account names: the one grammar every account name follows, checked where accounts are made.

An account name ends up inside an authorized_keys line (`--account NAME` in the forced command),
in shell-quoted command lines, log lines and file names. So it is held to the index's own rule
for user names, which is also PEP 508's rule for names:

    1 to 64 characters; ASCII letters, digits, '.', '_' and '-'; the first and the last a letter
    or a digit.

No blank, quote, comma, backslash, '=' or control character can pass, so a name can never end an
option, start a new line or smuggle in options of its own. Standard library only, and no `re`:
sshd's AuthorizedKeysCommand imports this module at every login.
"""

from __future__ import annotations

MAX_LENGTH = 64
ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
INSIDE = ALPHANUMERIC + "._-"
RULE = (f"1 to {MAX_LENGTH} ASCII letters, digits, '.', '_' or '-', starting and ending with a letter "
        "or a digit")
# How much of a refused name a message shows: enough to recognise it, never a screenful.
SHOWN = 80


def is_account_name(name: object) -> bool:
    """Whether `name` follows the account-name grammar (see the module notes)."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_LENGTH:
        return False
    # strip() with a set of characters leaves nothing exactly when every character is in it (and
    # runs in C: the key file checks every name of the registry).
    return name[0] in ALPHANUMERIC and name[-1] in ALPHANUMERIC and not name.strip(INSIDE)


def shown(name: str) -> str:
    """`name` quoted for a one-line message: control characters escaped, a long name cut."""
    text = name if name.isascii() and name.isprintable() else ascii(name)[1:-1]
    if len(text) > SHOWN:
        text = text[:SHOWN] + "..."
    return f"'{text}'"


def refusal(name: str) -> str:
    """The one line that refuses `name`, naming the rule."""
    return f"account name {shown(name)} is refused: an account name is {RULE}"
