"""Account email: verification, password reset and unlock links, registration notices.

A :class:`Message` goes to one address; its ``text`` holds one-time links, which are
secrets, so logs, events and errors name the message's ``kind`` and a keyed hash of
the recipient instead, never the body. A :class:`Mailer` hands messages over:

* :class:`OutboxMailer` (development) writes ``.eml`` files into a private folder and
  echoes the body to the console, so a developer can follow the link;
* :class:`SMTPMailer` (production) submits over SMTP with implicit TLS or required
  STARTTLS (RFC 8314, RFC 3207), certificates always verified.

:class:`Postman` runs the sending in background tasks with retries for transient
failures, so a request never waits on (or reveals, through its timing) the mail server.
Every failure a mailer reports is a :class:`MailError`.
"""

from bastion.mail._message import Mailer, MailError, MailStage, Message, recipient_tag
from bastion.mail._outbox import OutboxMailer
from bastion.mail._postman import Postman
from bastion.mail._smtp import Security, SMTPMailer

__all__ = [
    "MailError",
    "MailStage",
    "Mailer",
    "Message",
    "OutboxMailer",
    "Postman",
    "SMTPMailer",
    "Security",
    "recipient_tag",
]
