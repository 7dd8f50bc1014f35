"""The error tree of the security core.

Every error carries a stable ``code`` (the slug of its RFC 9457 problem type,
``/problems/<code>``) and the HTTP ``status`` the web layer answers with::

    BastionError                      internal-error        500
    ├── ConfigurationError            insecure-configuration 500
    ├── InvalidLinkError              invalid-link          400
    ├── AuthenticationError           invalid-credentials   401
    │   ├── InvalidCredentialsError   invalid-credentials   401
    │   ├── MFAFailedError            mfa-failed            401
    │   ├── MFARequiredError          (answered 200 {mfa_required, mfa_token})
    │   ├── InsufficientAuthenticationError  insufficient-user-authentication 401
    │   └── InvalidTokenError         invalid-token         401
    │       └── TokenReuseError       invalid-token         401
    ├── PermissionDeniedError         forbidden             403
    ├── CSRFError                     csrf-failed           403
    ├── WrongPasswordError            wrong-password        403
    ├── NotFoundError                 not-found             404
    ├── ConflictError                 conflict              409
    │   └── LastAdminError            last-admin            409
    ├── PasswordPolicyError           weak-password         422
    ├── RateLimitedError              quota-exceeded        429
    ├── ServiceBusyError              service-busy          503
    └── ServiceUnavailableError       service-unavailable   503
        ├── DatabaseUnavailableError  service-unavailable   503
        ├── RevocationCacheColdError  service-unavailable   503
        ├── throttle.StoreUnavailableError (the shared limiter store)
        └── passwords.BreachCheckUnavailableError (a breached-password source)

The errors of one part live with it and join the tree here: ``uploads.UploadError``
(422, 413, 415, 507) and, never answered to a client as such, ``mail.MailError``,
``alerts.DeliveryError`` and ``events.chain.ChainBrokenError`` (internal-error);
``accounts.InvalidEmailError`` and ``cursors.InvalidCursorError`` are a ValueError
too, as their callers catch them. Catching :class:`BastionError` catches everything
Bastion raises on purpose.

Inside the core, errors are precise (``InvalidTokenError("expired")``); at the HTTP
edge every credential failure becomes one opaque response (OWASP Authentication
Cheat Sheet, "Authentication and Error Messages"), so the precise ``reason`` is for
logs and security events only and is never sent to a client.
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "AuthenticationError",
    "BastionError",
    "CSRFError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseUnavailableError",
    "InsufficientAuthenticationError",
    "InvalidCredentialsError",
    "InvalidLinkError",
    "InvalidTokenError",
    "LastAdminError",
    "MFAFailedError",
    "MFARequiredError",
    "NotFoundError",
    "OAuthFailedError",
    "PasswordPolicyError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RevocationCacheColdError",
    "ServiceBusyError",
    "ServiceUnavailableError",
    "TokenReuseError",
    "WrongPasswordError",
]


class BastionError(Exception):
    """Root of every error raised by Bastion."""

    code: str = "internal-error"
    title: str = "Internal server error"
    status: int = 500

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or self.title)
        self.reason = reason or self.title


class ConfigurationError(BastionError):
    """A setting is missing or insecure; ``setting`` names it."""

    code = "insecure-configuration"
    title = "Insecure configuration"

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting


class AuthenticationError(BastionError):
    code = "invalid-credentials"
    title = "Invalid credentials"
    status = 401


class InvalidCredentialsError(AuthenticationError):
    """Unknown account, wrong password, disabled or locked account: all look alike.

    ``retry_after`` (seconds) is set when the login defence makes this caller wait;
    ``challenge`` is a proof-of-work challenge to solve before the next attempt.
    """

    def __init__(self, reason: str = "", *, retry_after: int = 0, challenge: object = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.challenge = challenge


class MFAFailedError(AuthenticationError):
    """A second factor refused: a wrong, replayed or used code, an ``mfa_token`` that is
    invalid, expired, used, of another client or out of attempts. One answer for all."""

    code = "mfa-failed"
    title = "Second factor refused"


class MFARequiredError(AuthenticationError):
    """The first step of a sign-in succeeded and the account has a second factor: no
    session yet. The web layer answers ``200 {mfa_required: true, mfa_token}``; a caller
    that does not handle it refuses (401), never opens the session."""

    code = "mfa-required"
    title = "A second factor is required"

    def __init__(self, mfa_token: str) -> None:
        super().__init__("a second factor is required")
        self.mfa_token = mfa_token


class InsufficientAuthenticationError(AuthenticationError):
    """The route needs a proof of identity fresher than the token's ``auth_time``
    (step-up, RFC 9470); ``max_age`` is how fresh, in seconds."""

    code = "insufficient-user-authentication"
    title = "A fresh sign-in is required"

    def __init__(self, reason: str = "", *, max_age: int = 300) -> None:
        super().__init__(reason)
        self.max_age = max_age


class InvalidTokenError(AuthenticationError):
    """A token is missing, malformed, expired, revoked or forged."""

    code = "invalid-token"
    title = "Invalid token"


class TokenReuseError(InvalidTokenError):
    """An already-rotated refresh token was presented (RFC 9700 §4.14.2)."""

    def __init__(
        self, reason: str = "refresh token reuse", *, session_id: str = "", user_id: str = ""
    ) -> None:
        super().__init__(reason)
        self.session_id = session_id
        self.user_id = user_id


class OAuthFailedError(BastionError):
    """A sign-in with an external provider failed: a state missing, foreign or replayed,
    the provider's error, a code or ID token refused. One answer for every reason (the
    browser learns nothing that tells them apart); the precise one is for the event."""

    code = "oauth-failed"
    title = "Sign-in with the provider failed"
    status = 400


class InvalidLinkError(BastionError):
    """A one-time link (email verification, password reset, unlock) is unknown, used,
    expired, or was issued for an account state that has changed since. One answer for
    every reason; the precise one is for logs."""

    code = "invalid-link"
    title = "Invalid or expired link"
    status = 400


class WrongPasswordError(BastionError):
    """The current password given to confirm a sensitive change is wrong (the caller is
    signed in, so this is not a login failure; it is counted like one all the same)."""

    code = "wrong-password"
    title = "The current password is incorrect"
    status = 403


class PermissionDeniedError(BastionError):
    """The caller may not do this; ``decision`` (a ``bastion.authz.Decision``) says why."""

    code = "forbidden"
    title = "Forbidden"
    status = 403

    def __init__(self, reason: str = "", *, decision: object = None) -> None:
        super().__init__(reason)
        self.decision = decision


class CSRFError(BastionError):
    """A state-changing request of a cookie session without a valid CSRF token, or from
    another site (OWASP CSRF Prevention Cheat Sheet). Bearer-token requests never see it."""

    code = "csrf-failed"
    title = "CSRF check failed"
    status = 403


class NotFoundError(BastionError):
    code = "not-found"
    title = "Not found"
    status = 404


class ConflictError(BastionError):
    code = "conflict"
    title = "Conflict"
    status = 409


class LastAdminError(ConflictError):
    """The change would leave no active admin."""

    code = "last-admin"
    title = "The last admin cannot be removed"


class PasswordPolicyError(BastionError):
    """The password breaks the policy; ``reasons`` say why, for the user."""

    code = "weak-password"
    title = "Password does not meet the policy"
    status = 422

    def __init__(self, reasons: list[str], *, field: str = "password") -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.field = field  # the request field the reasons are about


class RateLimitedError(BastionError):
    """A rate limit refused the request; ``verdict`` (a ``bastion.throttle.Verdict``) says
    which policies and for how long."""

    code = "quota-exceeded"
    title = "Too many requests"
    status = 429

    def __init__(self, reason: str = "", *, verdict: object = None) -> None:
        super().__init__(reason)
        self.verdict = verdict


class ServiceBusyError(BastionError):
    """A bounded resource (the hashing pool) is saturated; try again shortly."""

    code = "service-busy"
    title = "Service busy"
    status = 503


class ServiceUnavailableError(BastionError):
    """A store the request depends on (Redis) does not answer: fail closed."""

    code = "service-unavailable"
    title = "Service unavailable"
    status = 503


class RevocationCacheColdError(ServiceUnavailableError):
    """The revocation cache has not been filled from the durable record (a fresh process,
    or Redis lost its data): its "not revoked" cannot be believed until it is rebuilt."""


class DatabaseUnavailableError(ServiceUnavailableError):
    """The database does not answer: the connection is refused, lost or timed out, the
    server is starting up, shutting down or read-only after a failover, or SQLite stayed
    locked past its busy timeout (``bastion.stores.sql.unavailable`` decides). Nothing of
    the failed transaction is kept; the same request may succeed once it answers again.

    ``outage`` is the engine's :class:`~bastion.stores.sql.DatabaseOutage` (or None):
    the web layer tells it of each request refused, so that the outage is logged once
    with its count instead of once per request."""

    def __init__(self, reason: str = "", *, outage: Refusals | None = None) -> None:
        super().__init__(reason)
        self.outage = outage


class Refusals(Protocol):
    """What counts the requests refused during an outage."""

    def refused(self) -> None: ...
