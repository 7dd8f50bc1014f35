"""Settings, read from ``BASTION_``-prefixed environment variables or a ``.env`` file.

Nothing here runs at import time: only ``create_app`` and the command line construct
:class:`BastionSettings` (STYLE principle 13). :func:`check_settings` is the start-up gate:
in production it refuses every insecure setting and names it (ASVS 13.x, OWASP
"Security Misconfiguration"); in development it only reports.

:class:`BastionSettings` holds what the security core and ``bastion.fastapi`` read. An
application adds its own settings, with their checks, in a subclass: the task service's
attachment settings live in ``bastion_tasks.settings``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bastion._bounds import production_bounds, secret_weakness
from bastion._redis_client import REDIS_PREFIX
from bastion.accounts import normalize_email
from bastion.alerts import configure_rules
from bastion.authz import DEFAULT_GRANTS, Permission, RolePermissions
from bastion.errors import ConfigurationError
from bastion.net import ForwardingHeader
from bastion.oidc import PROVIDER_NAME, ExternalIssuer, OAuthProvider
from bastion.passwords import PROFILES, Argon2Profile, is_below_owasp_floor
from bastion.throttle import Policy

__all__ = [
    "DEFAULT_POLICIES",
    "BastionSettings",
    "Finding",
    "check_settings",
    "split_csv",
]

# Per route class, per client (API.md "Rate limiting"): reads/writes/deletes per user when
# signed in, else per IP; "ip" is every request of one IP; the credential routes per IP,
# and "login" per account (or device cookie) on top.
DEFAULT_POLICIES: dict[str, str] = {
    "ip": "300/minute",
    "reads": "100/minute",
    "writes": "10/minute",
    "deletes": "10/minute",
    "login": "5/minute",
    "login-ip": "20/minute",
    "register": "5/minute",
    "refresh": "30/minute",
    "password-reset": "5/hour",
    "links": "30/hour",
    "password-reset-account": "3/hour",
    "password-change": "10/hour",
    # Second-factor codes tried per account (enrolment, sign-in, turning it off).
    "mfa": "10 per 5 minutes",
    "mail": "5/hour",
}

_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-f:]+\](:[0-9]{1,5})?")


def split_csv(value: object) -> object:
    """A comma-separated variable as a list (before validation; a list passes as is)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class BastionSettings(BaseSettings):
    """Every setting the security core and ``bastion.fastapi`` read; the names are part of
    the contract (API.md). Variables an application adds (``BASTION_ATTACHMENT_*``) are
    ignored here and read by its subclass."""

    model_config = SettingsConfigDict(
        env_prefix="BASTION_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["development", "production"] = "development"
    debug: bool = False
    database_url: str = "sqlite+aiosqlite:///./var/bastion.db"
    redis_url: SecretStr | None = None
    redis_key_prefix: str = REDIS_PREFIX
    data_dir: Path = Path("./var")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The one header the trusted proxies set (docs/rate-limits.md, "The client address"); the
    # others are the client's own words and are ignored.
    forwarded_header: ForwardingHeader = "x-forwarded-for"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Host names the service answers for (``*.example.com`` for subdomains); empty: any
    # host in development, the host of BASTION_PUBLIC_URL in production.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cookie_secure: bool = True

    # Tokens
    jwt_algorithm: Literal["EdDSA", "ES256", "HS256"] = "EdDSA"
    jwt_secret: SecretStr | None = None
    signing_keys_file: Path | None = None
    jwt_issuer: str = "bastion"
    jwt_audience: str = "bastion-api"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    refresh_idle_ttl_seconds: int = Field(default=14 * 86400, ge=300)
    refresh_absolute_ttl_seconds: int = Field(default=30 * 86400, ge=300)

    # Passwords
    password_profile: str = "rfc9106-low-memory"  # noqa: S105  (a profile name)
    password_min_length: int = Field(default=15, ge=12)
    hash_max_concurrency: int | None = Field(default=None, ge=1)
    hash_queue_timeout_seconds: float = Field(default=5.0, gt=0)

    # Authorization: what each role adds to the roles before it (viewer < member < admin),
    # as JSON, e.g. {"viewer": ["READ"], "member": ["CREATE", "UPDATE"], "admin": ["ADMIN"]}.
    role_permissions: dict[str, list[Permission]] = Field(
        default_factory=lambda: {role: sorted(p) for role, p in DEFAULT_GRANTS.items()}
    )

    # Rate limits (API.md "Rate limiting"; docs/rate-limits.md). Policies in the ``limits``
    # notation, as JSON, merged over the defaults: {"reads": "200/minute"}.
    rate_limit_enabled: bool = True
    rate_limits: dict[str, str] = Field(default_factory=dict)
    rate_limit_storage_url: SecretStr | None = None  # a ``limits`` URL: Cluster, Sentinel
    rate_limit_on_store_failure: Literal["fallback", "fail-closed"] = "fallback"
    rate_limit_block_after: int = Field(default=10, ge=0)
    rate_limit_block_seconds: int = Field(default=60, ge=1)
    rate_limit_block_max_seconds: int = Field(default=3600, ge=1)

    # Login brute-force defence (docs/rate-limits.md)
    login_defence_enabled: bool = True
    login_delay_after: int = Field(default=5, ge=1)
    login_delay_seconds: int = Field(default=30, ge=1)
    login_delay_max_seconds: int = Field(default=900, ge=1)
    login_challenge_after: int = Field(default=10, ge=1)
    login_challenge_difficulty: int = Field(default=100_000, ge=1)
    login_lock_after: int = Field(default=100, ge=1, le=100)
    login_failure_reset_seconds: int = Field(default=43_200, ge=60)
    login_stuffing_accounts: int = Field(default=10, ge=2)
    login_stuffing_window_seconds: int = Field(default=600, ge=10)
    login_stuffing_block_seconds: int = Field(default=900, ge=1)
    # A device cookie dies this long after its login, whatever the browser keeps (at most
    # 400 days: RFC 6265bis caps a cookie's lifetime there).
    login_device_ttl_seconds: int = Field(default=180 * 86_400, ge=3_600, le=400 * 86_400)

    # Requests
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=256)
    max_json_items: int = Field(default=1000, ge=10)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    docs_enabled: bool = True  # false: no /docs, /redoc, /openapi.json at all (404)
    # Who may read the docs and the schema (docs/api-docs.md): "public"; "admin", a
    # signed-in admin; "off". Unset: public in development, off in production.
    docs_access: Literal["public", "admin", "off"] | None = None
    log_events_to_stdout: bool = True
    # High-volume events wait in a bounded queue and are written in batches: a killed
    # process loses at most the queue's size, a full queue drops and counts (docs/
    # errors-and-events.md, "Delivery").
    event_queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    event_batch_size: int = Field(default=500, ge=1, le=10_000)
    # What ``bastion events purge`` keeps by default (docs/errors-and-events.md, "Retention").
    event_retention_days: int = Field(default=365, ge=1, le=36_500)
    # Prometheus metrics at GET /metrics (docs/metrics.md). With a token, a scrape sends it
    # as ``Authorization: Bearer``; without one: public in development, and not served
    # at all in production.
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None

    # Account emails and one-time links (docs/accounts.md)
    public_url: str = "http://127.0.0.1:8000"  # where the links in emails point
    require_verified_email: bool | None = None  # None: on in production, off in development
    verify_email_ttl_seconds: int = Field(default=86_400, ge=600, le=7 * 86_400)
    password_reset_ttl_seconds: int = Field(default=1_800, ge=300, le=86_400)
    unlock_link_ttl_seconds: int = Field(default=3_600, ge=300, le=86_400)
    sign_in_link_ttl_seconds: int = Field(default=900, ge=300, le=3_600)
    mail_backend: Literal["outbox", "smtp"] = "outbox"
    mail_from: str = "Bastion <no-reply@localhost>"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    smtp_ca_file: Path | None = None

    # Breached passwords (docs/passwords.md): the range API by k-anonymity, a local file
    breached_passwords_api: bool = False
    breached_passwords_api_url: str = "https://api.pwnedpasswords.com"
    breached_passwords_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    breached_passwords_file: Path | None = None

    # Sign-in with external providers (docs/oidc.md): JSON, one entry per provider name.
    oauth_providers: dict[str, OAuthProvider] = Field(default_factory=dict)
    # Step-up (docs/mfa.md): how recent a sign-in the sensitive routes need, in seconds.
    step_up_max_age_seconds: int = Field(default=300, ge=30, le=86400)
    # Who must sign in with a second factor (docs/mfa.md): nobody, admins, everyone. One
    # who has none may only enrol one (and sign out).
    mfa_required: Literal["off", "admins", "everyone"] = "off"

    # Resource-server mode (docs/oidc.md): the external issuers whose access tokens the
    # guard accepts, as JSON, one entry per issuer.
    external_issuers: list[ExternalIssuer] = Field(default_factory=list)

    # Security alerts (docs/errors-and-events.md, "Alerts"): per-rule overrides as JSON,
    # {"auth_failures_from_ip": {"threshold": 20}, "token_reuse": {"enabled": false}}, and
    # a webhook that receives each alert as JSON signed with HMAC-SHA256 of the secret.
    alert_rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    alert_webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Each alert is also emailed to these addresses (comma-separated), by the mail backend.
    alert_email_to: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("external_issuers")
    @classmethod
    def _one_entry_per_issuer(cls, value: list[ExternalIssuer]) -> list[ExternalIssuer]:
        issuers = [entry.issuer for entry in value]
        twice = sorted({issuer for issuer in issuers if issuers.count(issuer) > 1})
        if twice:
            raise ValueError(f"issuer {twice[0]!r} is listed more than once")
        return value

    @field_validator("oauth_providers")
    @classmethod
    def _provider_names(cls, value: dict[str, OAuthProvider]) -> dict[str, OAuthProvider]:
        bad = [name for name in value if not PROVIDER_NAME.fullmatch(name)]
        if bad:
            raise ValueError(
                f"provider name {bad[0]!r}: lower-case letters, digits and '-', "
                "at most 32, as it is a path segment"
            )
        return value

    @field_validator("trusted_proxies", "cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # raises ValueError, naming the value
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Origins as browsers send them: ``scheme://host[:port]``, no path, no slash."""
        for item in value:
            if item == "*":
                continue  # refused in production by check_settings, naming the setting
            if not _ORIGIN.fullmatch(item):
                raise ValueError(f"{item!r} is not an origin like https://app.example.com")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _policies(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            Policy.parse(name, text)  # raises ValueError naming the policy
        return value

    @field_validator("alert_rules")
    @classmethod
    def _alert_rules(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        configure_rules(value)  # raises ValueError naming the rule and field
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not urlsplit(value).hostname:
            raise ValueError(f"{value!r} is not a URL like https://hooks.example.com/bastion")
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("the alert webhook must be an http:// or https:// URL")
        return value

    @property
    def policies(self) -> dict[str, Policy]:
        texts = {**DEFAULT_POLICIES, **self.rate_limits}
        return {name: Policy.parse(name, text) for name, text in texts.items()}

    @field_validator("role_permissions")
    @classmethod
    def _role_map(cls, value: dict[str, list[Permission]]) -> dict[str, list[Permission]]:
        roles = RolePermissions(value)  # raises ValueError on an unknown role
        if not roles.allows("admin", Permission.ADMIN):
            raise ValueError("the admin role must hold ADMIN, or nobody can administer")
        return value

    @property
    def roles(self) -> RolePermissions:
        return RolePermissions(self.role_permissions)

    @field_validator("alert_email_to", mode="before")
    @classmethod
    def _addresses_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("alert_email_to")
    @classmethod
    def _alert_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            normalize_email(address, new=True)  # raises InvalidEmailError, a ValueError
        return value

    @field_validator("password_profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown profile {value!r}; one of {sorted(PROFILES)}")
        return value

    @property
    def argon2_profile(self) -> Argon2Profile:
        return PROFILES[self.password_profile]

    @property
    def keys_path(self) -> Path:
        return self.signing_keys_file or self.data_dir / "signing-keys.json"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def hosts(self) -> list[str]:
        """The allowed hosts; empty means any (development only)."""
        if self.allowed_hosts or not self.is_production:
            return self.allowed_hosts
        return [urlsplit(self.public_url).hostname or ""]

    @property
    def docs_mode(self) -> Literal["public", "admin", "off"]:
        """Who may read the API docs, all settings considered."""
        if not self.docs_enabled:
            return "off"
        if self.docs_access is None:
            return "off" if self.is_production else "public"
        return self.docs_access

    @property
    def metrics_access(self) -> Literal["token", "public", "off"]:
        """Who may read /metrics: the token's holder, anyone (development), or no one."""
        if not self.metrics_enabled:
            return "off"
        if self.metrics_token is not None and self.metrics_token.get_secret_value():
            return "token"  # an empty token is no token: it would match an empty header
        return "off" if self.is_production else "public"

    @property
    def verified_email_required(self) -> bool:
        if self.require_verified_email is None:
            return self.is_production
        return self.require_verified_email

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox"


@dataclass(frozen=True)
class Finding:
    """One insecure setting: ``fatal`` findings stop a production start."""

    setting: str
    message: str
    fatal: bool = True


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _mail_findings(settings: BastionSettings) -> list[Finding]:
    """Links in emails are credentials: they travel over TLS and land nowhere else."""
    findings: list[Finding] = []
    if settings.mail_backend == "outbox":
        findings.append(
            Finding(
                "BASTION_MAIL_BACKEND",
                "the outbox writes one-time links to a folder and the console; use smtp",
            )
        )
    elif settings.smtp_host is None:
        findings.append(Finding("BASTION_SMTP_HOST", "the smtp mail backend needs a host"))
    elif settings.smtp_security == "none" and settings.smtp_host not in _LOOPBACK_HOSTS:
        findings.append(
            Finding("BASTION_SMTP_SECURITY", "mail to a remote server must use starttls or tls")
        )
    if not settings.public_url.startswith("https://"):
        findings.append(
            Finding("BASTION_PUBLIC_URL", "links in emails must use https:// in production")
        )
    if settings.require_verified_email is False:
        findings.append(
            Finding(
                "BASTION_REQUIRE_VERIFIED_EMAIL",
                "accounts can log in before their address is verified",
                fatal=False,
            )
        )
    if not settings.breached_passwords_api and settings.breached_passwords_file is None:
        findings.append(
            Finding(
                "BASTION_BREACHED_PASSWORDS_API",
                "no breached-password source (ASVS 6.2.12): set it or "
                "BASTION_BREACHED_PASSWORDS_FILE",
                fatal=False,
            )
        )
    return findings


def _alert_findings(settings: BastionSettings) -> list[Finding]:
    """Alerts name attackers and victims: they travel over TLS, signed, so that a
    receiver can refuse a forged one (ASVS 12.3.1; OWASP Logging Cheat Sheet)."""
    if settings.alert_webhook_url is None:
        return []
    findings: list[Finding] = []
    secret = settings.alert_webhook_secret
    weak = secret_weakness(
        secret.get_secret_value() if secret else "", what="the alert webhook's signing secret"
    )
    if weak:
        findings.append(Finding("BASTION_ALERT_WEBHOOK_SECRET", weak))
    if settings.is_production and not settings.alert_webhook_url.startswith("https://"):
        findings.append(
            Finding(
                "BASTION_ALERT_WEBHOOK_URL", "the alert webhook must use https:// in production"
            )
        )
    return findings


def _oauth_findings(settings: BastionSettings) -> list[Finding]:
    """A provider's client secret authenticates this service to it: never weak; and
    outside development its issuer is reached over https only."""
    findings: list[Finding] = []
    for name, provider in settings.oauth_providers.items():
        weak = secret_weakness(
            provider.client_secret.get_secret_value(), what=f"the client secret of {name!r}"
        )
        if weak:
            findings.append(Finding("BASTION_OAUTH_PROVIDERS", weak))
        if provider.issuer and not provider.issuer.startswith("https://"):
            findings.append(
                Finding(
                    "BASTION_OAUTH_PROVIDERS",
                    f"the issuer of {name!r} must use https:// outside development",
                    fatal=settings.is_production,
                )
            )
    return findings


def _external_issuer_findings(settings: BastionSettings) -> list[Finding]:
    """An external issuer's keys are fetched from it: over https only outside
    development; and its tokens can never pass for Bastion's own."""
    findings: list[Finding] = []
    for entry in settings.external_issuers:
        if not entry.issuer.startswith("https://"):
            findings.append(
                Finding(
                    "BASTION_EXTERNAL_ISSUERS",
                    f"the issuer {entry.issuer!r} must use https:// outside development",
                    fatal=settings.is_production,
                )
            )
        if entry.issuer == settings.jwt_issuer:
            findings.append(
                Finding(
                    "BASTION_EXTERNAL_ISSUERS",
                    f"the issuer {entry.issuer!r} is BASTION_JWT_ISSUER, this service's own",
                )
            )
    return findings


def check_settings(settings: BastionSettings, *, keys_exist: bool) -> list[Finding]:
    """List what is insecure about ``settings``; raise in production on the first fatal one.

    ``keys_exist`` says whether the signing keys were provisioned before start
    (``bastion keys rotate``): production never generates keys at start, because keys
    made on one instance's start are not shared with the others and vanish with it.

    Raises:
        ConfigurationError: in production, naming the first insecure setting.
    """
    findings: list[Finding] = []
    if settings.debug:
        findings.append(Finding("BASTION_DEBUG", "debug mode must be off"))
    if "*" in settings.cors_origins:
        findings.append(Finding("BASTION_CORS_ORIGINS", "'*' allows every origin"))
    elif settings.is_production and any(o.startswith("http://") for o in settings.cors_origins):
        findings.append(Finding("BASTION_CORS_ORIGINS", "origins must use https:// in production"))
    if "*" in settings.allowed_hosts:
        findings.append(Finding("BASTION_ALLOWED_HOSTS", "'*' allows every host"))
    if not settings.cookie_secure:
        findings.append(Finding("BASTION_COOKIE_SECURE", "cookies must be Secure"))
    if settings.jwt_algorithm == "HS256":
        weak = secret_weakness(
            settings.jwt_secret.get_secret_value() if settings.jwt_secret else "",
            what="the HS256 secret",
        )
        if weak:
            findings.append(Finding("BASTION_JWT_SECRET", weak))
    elif not keys_exist:
        findings.append(
            Finding(
                "BASTION_SIGNING_KEYS_FILE",
                f"no signing keys at {settings.keys_path}; run 'bastion keys rotate' first",
            )
        )
    if is_below_owasp_floor(settings.argon2_profile):
        findings.append(
            Finding(
                "BASTION_PASSWORD_PROFILE",
                f"{settings.password_profile!r} is below the OWASP floor (m=19456 KiB, t=2, p=1)",
            )
        )
    roles = settings.roles
    holders = [r for r in ("viewer", "member") if Permission.ADMIN in roles.permissions(r)]
    if holders:
        findings.append(
            Finding("BASTION_ROLE_PERMISSIONS", f"ADMIN granted to non-admin role {holders[0]!r}")
        )
    if not settings.rate_limit_enabled:
        findings.append(Finding("BASTION_RATE_LIMIT_ENABLED", "rate limits must be on"))
    if not settings.login_defence_enabled:
        findings.append(
            Finding("BASTION_LOGIN_DEFENCE_ENABLED", "the login brute-force defence must be on")
        )
    if settings.is_production and settings.docs_mode == "public":
        findings.append(
            Finding(
                "BASTION_DOCS_ACCESS",
                "the API docs and schema are public (OWASP API9:2023); use admin or off",
                fatal=False,
            )
        )
    if settings.is_production and settings.metrics_enabled and settings.metrics_access == "off":
        findings.append(
            Finding(
                "BASTION_METRICS_TOKEN",
                "/metrics is not served without a token in production; set one to scrape it",
                fatal=False,
            )
        )
    if settings.is_production:  # the outbox and plain links are the development default
        findings.extend(_mail_findings(settings))
    # Bounds on secrets, limits, transports and proxies: reported in development too, so a
    # team sees what production will refuse.
    findings.extend(Finding(setting, why) for setting, why in production_bounds(settings))
    findings.extend(_alert_findings(settings))
    findings.extend(_oauth_findings(settings))
    findings.extend(_external_issuer_findings(settings))
    if settings.database_url.startswith("sqlite"):
        findings.append(
            Finding(
                "BASTION_DATABASE_URL",
                "SQLite serves one machine only; use PostgreSQL in production",
                fatal=False,
            )
        )
    if settings.is_production:
        for finding in findings:
            if finding.fatal:
                raise ConfigurationError(finding.setting, finding.message)
    return findings
