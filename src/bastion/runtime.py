"""Assemble the security core from settings: stores, keys, hashing, tokens, events.

``create_app`` and the command line call :func:`open_security`; nothing else reads
settings (STYLE principle 13).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bastion.accounts import AccountLifecycle, AccountService, ExternalPrincipals, Letters
from bastion.alerts import AlertEngine, AlertMail, AlertWebhook, configure_rules
from bastion.clock import Clock, SystemClock
from bastion.config import BastionSettings, Finding, check_settings
from bastion.errors import ConfigurationError
from bastion.events import EventLog, EventSink, JSONLinesSink, StoreSink
from bastion.events.chain import HEAD_FILE, ChainHead
from bastion.mail import Mailer, OutboxMailer, Postman, SMTPMailer
from bastion.oidc import ExternalTokens, OAuthSignIn, SignInBinding
from bastion.passwords import (
    BreachCheck,
    BreachChecks,
    PasswordHasher,
    PasswordPolicy,
    PwnedFile,
    PwnedRangeAPI,
)
from bastion.stores import Stores, open_stores
from bastion.stores.redis import RedisRevocationStore
from bastion.throttle import (
    AttemptStore,
    Escalation,
    Limiter,
    LimitsLimiter,
    LoginDefence,
    LoginRules,
    MemoryAttemptStore,
    MemoryLimiter,
    Policy,
    RedisAttemptStore,
    RedisLimiter,
    ResilientLimiter,
)
from bastion.tokens import (
    AccessClaims,
    AccessTokens,
    KeyRing,
    KeySet,
    ensure_key_file,
    load_key_file,
    purposes,
)
from bastion.tokens.onetime import OneTimeTokens

__all__ = ["Security", "key_retention", "load_keys", "open_security"]

_logger = logging.getLogger("bastion")
# How far a token's times may be off the clock (at most 30 s, AccessTokens' bound).
_TOKEN_LEEWAY = timedelta(seconds=30)


@dataclass
class Security:
    settings: BastionSettings
    stores: Stores
    keys: KeyRing  # follows the key file: rotations and revocations without a restart
    access_tokens: AccessTokens
    hasher: PasswordHasher
    policy: PasswordPolicy
    events: EventLog
    accounts: AccountService
    limiter: Limiter
    policies: dict[str, Policy]
    login_defence: LoginDefence | None
    lifecycle: AccountLifecycle
    postman: Postman
    breached: BreachChecks
    findings: list[Finding] = field(default_factory=list)
    alerts: AlertEngine | None = None
    # The revocation keys of a token, for the rate limiter's script to read along: set
    # when the limiter's store is the revocation store's Redis (one round trip a request).
    revocation_reads: Callable[[AccessClaims], list[str] | None] | None = None
    # Production without Redis: the data folder this process claims at start (one
    # process only), and its claim once held.
    single_process_folder: Path | None = None
    process_lock: SingleProcessLock | None = None
    # Sign-in with external providers (BASTION_OAUTH_PROVIDERS); None when none is set.
    oauth: OAuthSignIn | None = None
    # Resource-server mode (BASTION_EXTERNAL_ISSUERS); None when no issuer is set.
    external: ExternalPrincipals | None = None

    async def start(self) -> None:
        """Claim the data folder where in-process stores serve production (raising
        :class:`ConfigurationError` when another process holds it), then fill the
        revocation cache from the database's durable record before serving.

        A failed rebuild is logged, not raised: until a rebuild succeeds (each authenticated
        request tries one), every token check fails closed (503).
        """
        if self.single_process_folder is not None and self.process_lock is None:
            # At start, not when the app is built: workers forked from a process that
            # built it (gunicorn --preload) would share that one claim.
            self.process_lock = SingleProcessLock(self.single_process_folder)
        try:
            await self.accounts.authenticator.restore_revocations()
        except Exception as exc:  # logged: requests retry the rebuild, failing closed
            _logger.warning("revocation cache not rebuilt at start-up: %r", exc)
        # Providers and issuers that do not answer within 3 s are asked again later.
        starts = []
        if self.oauth is not None:
            starts.append(self.oauth.start())
        if self.external is not None:
            starts.append(self.external.tokens.start())
        await asyncio.gather(*starts)

    async def drain(self) -> None:
        """Wait for the background work: alerts (which may post mail), emails, events."""
        if self.alerts is not None:
            await self.alerts.drain()
        await self.postman.drain()
        await self.events.drain()

    async def aclose(self) -> None:
        # Alerts first: an alert being sent may still post its email.
        if self.alerts is not None:
            await self.alerts.aclose()
        await self.postman.aclose()
        await self.events.aclose()
        await self.breached.aclose()
        if self.oauth is not None:
            await self.oauth.aclose()
        if self.external is not None:
            await self.external.tokens.aclose()
        self.hasher.close()
        await self.limiter.aclose()
        if self.login_defence is not None:
            await self.login_defence.aclose()
        await self.stores.aclose()
        if self.process_lock is not None:
            self.process_lock.release()


class SingleProcessLock:
    """An exclusive lock on ``<data dir>/single-process.lock`` for the life of the process.

    In-process stores (revocations, cached roles, rate limits) are one process's memory:
    a second worker of any server (uvicorn, gunicorn, hypercorn...) would not see a
    logout or a demotion made through the first. Production without Redis therefore
    refuses to start a second process on the same data folder.
    """

    def __init__(self, folder: Path) -> None:
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        self._file = (folder / "single-process.lock").open("a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise ConfigurationError(
                "BASTION_REDIS_URL",
                "another process of this service already runs on this data folder; several "
                "workers or instances must share their state through Redis",
            ) from None

    def release(self) -> None:
        self._file.close()  # closing the file drops the lock


def load_keys(settings: BastionSettings, *, clock: Clock | None = None) -> tuple[KeySet, bool]:
    """The signing keys and whether they were generated now.

    Production never generates keys (``check_settings`` has refused that already); in
    development, keys are made on first start into the data folder with mode 0600.
    """
    if settings.jwt_algorithm == "HS256":
        assert settings.jwt_secret is not None
        return KeySet.from_secret(settings.jwt_secret.get_secret_value().encode()), False
    if settings.is_production:
        return load_key_file(settings.keys_path), False
    return ensure_key_file(settings.keys_path, settings.jwt_algorithm, clock=clock)


def key_retention(settings: BastionSettings) -> timedelta:
    """How long a retired signing key keeps verifying: the access-token lifetime plus the
    leeway, after which every token it signed has expired."""
    return timedelta(seconds=settings.access_token_ttl_seconds) + _TOKEN_LEEWAY


def open_security(
    settings: BastionSettings, *, clock: Clock | None = None, path_prefix: str = ""
) -> Security:
    """Check the settings (raising ConfigurationError in production) and build the core;
    ``path_prefix`` is where the app serves Bastion's routes (emailed links point there)."""
    clock = clock or SystemClock()
    findings = check_settings(settings, keys_exist=settings.keys_path.exists())
    for finding in findings:
        _logger.warning("insecure setting %s: %s", finding.setting, finding.message)
    loaded, generated = load_keys(settings, clock=clock)
    if generated:
        _logger.warning("generated development signing keys at %s", settings.keys_path)
    keys = KeyRing(
        loaded,
        retention=key_retention(settings),
        clock=clock,
        # HS256: one secret from the settings, no key file to follow and nothing to rotate.
        path=None if settings.jwt_algorithm == "HS256" else settings.keys_path,
    )
    stores = open_stores(
        settings.database_url,
        settings.redis_url.get_secret_value() if settings.redis_url else None,
        redis_prefix=settings.redis_key_prefix,
        event_chain_key=keys.derive_secret(purposes.EVENT_CHAIN),
        event_chain_head=settings.data_dir / HEAD_FILE,
    )
    access_tokens = AccessTokens(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        leeway=_TOKEN_LEEWAY,
        clock=clock,
    )
    hasher = PasswordHasher(
        settings.argon2_profile,
        max_concurrency=settings.hash_max_concurrency or os.cpu_count() or 1,
        queue_timeout=settings.hash_queue_timeout_seconds,
    )
    policy = PasswordPolicy(min_length=settings.password_min_length)
    sinks: list[EventSink] = [StoreSink(stores.events)]
    if settings.log_events_to_stdout:
        sinks.insert(0, JSONLinesSink(head=_chain_head(stores)))
    events = EventLog(
        sinks,
        clock=clock,
        queue_size=settings.event_queue_size,
        batch_size=settings.event_batch_size,
    )
    postman = Postman(_open_mailer(settings), on_failure=_mail_failed(events))
    alerts = _open_alerts(settings, stores, events, clock, postman)
    limiter, attempts, shares_redis = _open_limits(settings, stores, events, clock)
    breached = _open_breach_checks(settings)
    policies = settings.policies
    defence = None
    if settings.login_defence_enabled:
        defence = LoginDefence(
            attempts,
            limiter,
            keys.derive_secret(purposes.LOGIN_DEFENCE),
            rules=LoginRules(
                delay_after=settings.login_delay_after,
                delay_base=settings.login_delay_seconds,
                delay_cap=settings.login_delay_max_seconds,
                challenge_after=settings.login_challenge_after,
                challenge_difficulty=settings.login_challenge_difficulty,
                lock_after=settings.login_lock_after,
                failure_reset=settings.login_failure_reset_seconds,
                stuffing_accounts=settings.login_stuffing_accounts,
                stuffing_window=settings.login_stuffing_window_seconds,
                stuffing_block=settings.login_stuffing_block_seconds,
                device_ttl=settings.login_device_ttl_seconds,
            ),
            account_policy=policies["login"],
            clock=clock,
        )
    accounts = AccountService(
        stores,
        hasher=hasher,
        policy=policy,
        access_tokens=access_tokens,
        events=events,
        clock=clock,
        refresh_idle_ttl=timedelta(seconds=settings.refresh_idle_ttl_seconds),
        refresh_absolute_ttl=timedelta(seconds=settings.refresh_absolute_ttl_seconds),
        defence=defence,
        breached=breached,
        require_verified_email=settings.verified_email_required,
    )
    accounts.use_second_factor(
        secrets=keys.derive_secret(purposes.MFA_SECRETS),
        mfa_tokens=keys.derive_secret(purposes.MFA_TOKENS),
        recovery_codes=keys.derive_secret(purposes.MFA_RECOVERY_CODES),
        claim=attempts.claim,
        limiter=limiter if settings.rate_limit_enabled else None,
        policies=policies,
    )
    lifecycle = AccountLifecycle(
        accounts,
        OneTimeTokens(
            stores.tokens,
            lifetimes={
                "verify-email": timedelta(seconds=settings.verify_email_ttl_seconds),
                "password-reset": timedelta(seconds=settings.password_reset_ttl_seconds),
                "unlock": timedelta(seconds=settings.unlock_link_ttl_seconds),
                "sign-in": timedelta(seconds=settings.sign_in_link_ttl_seconds),
            },
            clock=clock,
        ),
        postman,
        Letters(settings.public_url.rstrip("/") + path_prefix),
        secret=keys.derive_secret(purposes.ACCOUNT_MAIL),
        limiter=limiter if settings.rate_limit_enabled else None,
        policies=policies,
    )
    return Security(
        settings,
        stores,
        keys,
        access_tokens,
        hasher,
        policy,
        events,
        accounts,
        limiter,
        policies,
        defence,
        lifecycle,
        postman,
        breached,
        findings,
        alerts,
        revocation_reads=accounts.authenticator.revocation_keys if shares_redis else None,
        single_process_folder=(
            settings.data_dir if settings.is_production and settings.redis_url is None else None
        ),
        oauth=_open_oauth(settings, keys, attempts, clock, path_prefix),
        external=_open_external(settings, accounts, clock),
    )


def _open_external(
    settings: BastionSettings, accounts: AccountService, clock: Clock
) -> ExternalPrincipals | None:
    """The external issuers whose access tokens the guard accepts (resource-server mode),
    their times checked with the leeway of Bastion's own tokens."""
    if not settings.external_issuers:
        return None
    tokens = ExternalTokens(
        settings.external_issuers,
        clock=clock,
        leeway=_TOKEN_LEEWAY,
        allow_http=not settings.is_production,
    )
    return accounts.accept_external_tokens(tokens)


def _open_oauth(
    settings: BastionSettings,
    keys: KeyRing,
    attempts: AttemptStore,
    clock: Clock,
    path_prefix: str,
) -> OAuthSignIn | None:
    """The sign-in providers: their sign-ins' state is claimed once in the store the
    login defence shares between instances (Redis, or this process)."""
    if not settings.oauth_providers:
        return None
    binding = SignInBinding(
        keys.derive_secret(purposes.OAUTH_SIGN_IN), clock=clock, claim=attempts.claim
    )
    return OAuthSignIn(
        settings.oauth_providers,
        redirect_base=settings.public_url.rstrip("/") + path_prefix,
        binding=binding,
        clock=clock,
        leeway=_TOKEN_LEEWAY,
        allow_http=not settings.is_production,
    )


def _chain_head(stores: Stores) -> Callable[[], ChainHead | None] | None:
    """The chain head the SQL event store last committed, for the JSON event lines."""
    from bastion.stores.sql import SQLEventStore

    events = stores.events
    if isinstance(events, SQLEventStore):
        return lambda: events.chain_head
    return None


def _open_alerts(
    settings: BastionSettings, stores: Stores, events: EventLog, clock: Clock, postman: Postman
) -> AlertEngine:
    """The alert engine, observing ``events`` from now on."""
    webhook = None
    if settings.alert_webhook_url is not None:
        secret = settings.alert_webhook_secret
        webhook = AlertWebhook(
            settings.alert_webhook_url,
            secret.get_secret_value().encode() if secret else None,
            timeout=settings.alert_webhook_timeout_seconds,
        )
    mail = None
    if settings.alert_email_to:
        alerts_url = f"{settings.public_url.rstrip('/')}/admin/security/alerts"
        mail = AlertMail(postman, settings.alert_email_to, alerts_url=alerts_url)
    engine = AlertEngine(
        configure_rules(settings.alert_rules),
        stores.alerts,
        events,
        webhook=webhook,
        mail=mail,
        clock=clock,
    )
    engine.attach()
    return engine


def _open_mailer(settings: BastionSettings) -> Mailer:
    if settings.mail_backend == "smtp":
        if settings.smtp_host is None:
            raise ConfigurationError("BASTION_SMTP_HOST", "the smtp mail backend needs a host")
        password = settings.smtp_password
        return SMTPMailer(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.mail_from,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            timeout=settings.smtp_timeout_seconds,
            ca_file=settings.smtp_ca_file,
        )
    return OutboxMailer(settings.outbox_path, sender=settings.mail_from, console=sys.stderr)


def _mail_failed(events: EventLog) -> Callable[[str, BaseException], None]:
    def failed(kind: str, error: BaseException) -> None:
        events.emit_soon(
            "email_failed",
            details=f"{kind} email not delivered ({type(error).__name__})",
            severity="medium",
        )

    return failed


def _open_breach_checks(settings: BastionSettings) -> BreachChecks:
    checks: list[BreachCheck] = []
    if settings.breached_passwords_api:
        checks.append(
            PwnedRangeAPI(
                settings.breached_passwords_api_url,
                timeout=settings.breached_passwords_timeout_seconds,
            )
        )
    if settings.breached_passwords_file is not None:
        checks.append(PwnedFile(settings.breached_passwords_file))
    return BreachChecks(checks)


def _open_limits(
    settings: BastionSettings, stores: Stores, events: EventLog, clock: Clock
) -> tuple[Limiter, AttemptStore, bool]:
    """The limiter and the login-failure store: in process, or shared through Redis (the
    revocation store's connection pool), or through a ``limits`` storage URL; and whether
    the limiter's script runs on the revocation store's Redis."""
    escalation = Escalation(
        after=settings.rate_limit_block_after,
        base=settings.rate_limit_block_seconds,
        cap=settings.rate_limit_block_max_seconds,
    )
    local = MemoryLimiter(escalation, clock=clock)
    revocation = stores.revocation
    client = revocation.client if isinstance(revocation, RedisRevocationStore) else None
    prefix = settings.redis_key_prefix
    primary: Limiter | None = None
    if settings.rate_limit_storage_url is not None:
        url = settings.rate_limit_storage_url.get_secret_value()
        primary = LimitsLimiter(url, prefix=prefix, escalation=escalation)
    elif client is not None:
        primary = RedisLimiter(client, prefix=prefix, escalation=escalation)
    attempts: AttemptStore = (
        RedisAttemptStore(client, prefix=prefix) if client else MemoryAttemptStore(clock=clock)
    )
    if primary is None:
        return local, attempts, False

    def changed(down: bool, reason: str) -> None:
        if down:
            events.emit_soon(
                "rate_limit_store_down",
                details="the shared rate-limit store does not answer; limiting per process",
            )
        else:
            events.emit_soon("rate_limit_store_recovered", details="shared rate limits again")

    shares = isinstance(primary, RedisLimiter)
    return ResilientLimiter(primary, local, on_change=changed), attempts, shares
