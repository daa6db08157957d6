"""Sending email over SMTP as `smtp_url` says: plain, STARTTLS or TLS, with an optional login.

    smtp://host:25                      plain (a local relay)
    smtp://host:587?starttls=1          upgrade with STARTTLS (also written smtp+starttls://host)
    smtps://user:pass@host:465          TLS from the first byte, then log in
    ...?cafile=/path/ca.pem&timeout=30  trust a private CA; seconds per SMTP command

Failures are sorted by what they mean for a retry, because a campaign must never send twice:
`Refused` (the server said no: not delivered), `Unreachable` (the message was never handed over:
not delivered) and `Uncertain` (the connection broke after the whole message was handed over:
maybe delivered).
"""

from __future__ import annotations

import email.policy
import email.utils
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.errors import ConfigError

SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
TRUE = ("1", "true", "yes", "on")


class MailError(Exception):
    """Sending failed; the message says what happened and what to do."""


class Refused(MailError):
    """The server refused this message: it was not delivered (retrying later is safe)."""


class Unreachable(MailError):
    """The server could not be reached or went away before taking the message: not delivered."""


class Uncertain(MailError):
    """The connection broke after the message was handed over: it may have been delivered."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    security: str  # plain | starttls | tls
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise ConfigError(
                f"smtp_url must start with smtp://, smtp+starttls:// or smtps://, not '{scheme}://'")
        if not parts.hostname:
            raise ConfigError("smtp_url has no host; write for example smtp://127.0.0.1:25")
        security, default_port = SCHEMES[scheme]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if security == "plain" and query.get("starttls", "").lower() in TRUE:
            security = "starttls"
        try:
            port = parts.port or default_port
            timeout = float(query.get("timeout", 30))
        except ValueError:
            raise ConfigError("smtp_url has a malformed port or timeout") from None
        return cls(
            host=parts.hostname, port=port, security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=query.get("cafile"), timeout=timeout,
        )

    def describe(self) -> str:
        """For messages: never the password."""
        login = f", login as {self.username}" if self.username else ""
        return f"{self.host}:{self.port} ({self.security}{login})"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


class Mailer:
    """One SMTP connection, opened on `connect()` and reopened once if the server dropped it."""

    def __init__(self, target: SmtpTarget):
        self.target = target
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        if self._smtp is None:  # connected already when the caller wanted its errors first
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect, secure and log in; raises MailError with what to check."""
        target = self.target
        try:
            if target.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=target.timeout,
                                                      context=target.tls_context())
            else:
                smtp = smtplib.SMTP(target.host, target.port, timeout=target.timeout)
            smtp.ehlo()
            if target.security == "starttls":
                smtp.starttls(context=target.tls_context())
                smtp.ehlo()
            if target.username:
                smtp.login(target.username, target.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(f"the mail server {target.describe()} refused the login ({exc.smtp_code}); "
                            "check the user and password in smtp_url") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise MailError(f"the mail server {target.describe()} does not support {exc}; "
                            "check the scheme of smtp_url") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Unreachable(f"cannot reach the mail server {target.describe()}: {exc}; "
                              "check smtp_url and that the server runs") from None
        self._smtp = smtp

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def send(self, message: EmailMessage) -> str:
        """Deliver one message; returns the server's answer. Raises Refused, Unreachable or Uncertain."""
        reused = self._smtp is not None
        try:
            return self._send_once(message)
        except Unreachable:
            if not reused:
                raise
        # The server may close an idle or long-used connection; the message never left, so one
        # retry on a fresh connection cannot send it twice.
        self.close()
        return self._send_once(message)

    def _send_once(self, message: EmailMessage) -> str:
        if self._smtp is None:
            self.connect()
        smtp = self._smtp
        assert smtp is not None
        sender = email.utils.parseaddr(message["From"])[1]
        recipients = [addr for _name, addr in email.utils.getaddresses(message.get_all("To", []))]
        try:
            code, reply = smtp.mail(sender)
            if code != 250:
                self._reset()
                raise Refused(f"sender refused ({code} {_text(reply)})")
            for recipient in recipients:
                code, reply = smtp.rcpt(recipient)
                if code not in (250, 251):
                    self._reset()
                    raise Refused(f"recipient {recipient} refused ({code} {_text(reply)})")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise Unreachable(f"the mail server went away: {exc or type(exc).__name__}") from None
        try:
            code, reply = smtp.data(message.as_bytes(policy=email.policy.SMTP))
        except smtplib.SMTPDataError as exc:  # the server answered DATA with an error: not taken
            self._reset()
            raise Refused(f"message refused ({exc.smtp_code} {_text(exc.smtp_error)})") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise Uncertain(f"the connection broke while the message was sent: {exc or type(exc).__name__}") from None
        if code != 250:
            raise Refused(f"message refused ({code} {_text(reply)})")
        return f"{code} {_text(reply)}"

    def _reset(self) -> None:
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:200]


def build_message(*, sender: str, recipient: str, subject: str, text: str, html: str | None,
                  message_id: str, headers: dict[str, str] | None = None,
                  date: float | None = None) -> EmailMessage:
    """A multipart/alternative message (plain text first, HTML second)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = " ".join(subject.split())
    message["Date"] = email.utils.formatdate(date, localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    # A notice from a machine: auto-responders and vacation replies should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def new_message_id(sender: str) -> str:
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return email.utils.make_msgid(idstring="pypissh", domain=domain)


class RateLimit:
    """At most `per_second` messages a second, spread evenly (mail servers throttle bursts)."""

    def __init__(self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval
