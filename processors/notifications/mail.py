"""Sending e-mail through an SMTP relay (RFC 5321), with STARTTLS (RFC 3207) and AUTH when configured.

``send_mail`` blocks (smtplib): call it off the event loop.  The relay is
``settings.notifications.smtp_*``; an empty host means e-mail is off.  The
password is never logged: errors carry the relay's address and the reply code only.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from infra.settings import NotificationSettings


class MailError(Exception):
    """The relay refused the message or could not be reached."""


@dataclass(frozen=True)
class Mail:
    """One plain-text message."""

    to: str
    subject: str
    body: str


def mail_enabled(cfg: NotificationSettings) -> bool:
    return bool(cfg.smtp_host)


def render(cfg: NotificationSettings, mail: Mail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = cfg.smtp_from
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg.set_content(mail.body)
    return msg


def send_mail(cfg: NotificationSettings, mail: Mail) -> None:
    """Hand one message to the relay; MailError says why it was not accepted."""
    where = f"{cfg.smtp_host}:{cfg.smtp_port}"
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout_s) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if cfg.smtp_user:
                smtp.login(cfg.smtp_user, str(cfg.smtp_password))
            smtp.send_message(render(cfg, mail))
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"SMTP relay {where} answered {exc.smtp_code}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"SMTP relay {where}: {type(exc).__name__}") from None
