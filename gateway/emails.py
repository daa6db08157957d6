"""Account email addresses: checked for syntax with email-validator (no DNS lookup), so a campaign
never writes `To: x <not-an-email>`."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


class EmailError(ValueError):
    """Not an email address; the message is the library's reason."""


def normalised_email(address: str) -> str:
    """`address` in its normal form (domain lower-cased, Unicode normalised), or EmailError."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise EmailError(str(exc)) from None
