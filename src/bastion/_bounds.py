"""The production gate's bounds: secrets strong enough, limits that still limit, links
to remote services over TLS, trusted proxies that are proxies (docs/configuration.md,
"The production gate").

Each check returns ``(setting, message)`` pairs; :func:`bastion.config.check_settings`
turns them into findings. Nothing here reads the environment.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from bastion.config import BastionSettings

__all__ = ["SECRET_MIN_BITS", "SECRET_MIN_BYTES", "production_bounds", "secret_weakness"]

SECRET_MIN_BYTES = 32  # RFC 7518 §3.2: an HS256 key is at least the hash output size.
# By the characters' frequencies: catches a repeated letter or a few-symbol pattern; a
# random 32-character hex string estimates ~115 bits, secrets.token_urlsafe(32) ~210.
SECRET_MIN_BITS = 96

# Trusted proxies: no range wider than a /8 of IPv4 (ASVS 4.1.3: believe forwarding
# headers from the proxies only); IPv6 fc00::/7 (unique local) is the widest private one.
_PROXY_MIN_PREFIX = {4: 8, 6: 7}
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

# How far a policy may be raised over its default rate: credential routes ten times,
# the rest a hundred times (a busy API, an office behind one address).
_CREDENTIAL_POLICY_FACTOR = 10
_OTHER_POLICY_FACTOR = 100
_BROAD_POLICIES = frozenset({"ip", "reads", "writes", "deletes"})

POW_MIN_DIFFICULTY = 10_000  # ALTCHA's number space; 100,000 by default
REFRESH_MAX_SECONDS = 90 * 86_400
BODY_MAX_BYTES = 64 * 1024 * 1024
JSON_MAX_ITEMS = 100_000
HEADER_MAX_BYTES = 64 * 1024
REQUEST_TIMEOUT_MAX_SECONDS = 300.0

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def secret_weakness(secret: str, *, what: str) -> str | None:
    """Why ``secret`` is too weak to sign or authenticate with, or None when it is not."""
    raw = secret.encode()
    if len(raw) < SECRET_MIN_BYTES:
        return f"{what} needs at least {SECRET_MIN_BYTES} bytes"
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    if per_char * len(secret) < SECRET_MIN_BITS:
        return (
            f"{what} is too predictable (repeated or few characters); "
            "generate one with secrets.token_urlsafe(32)"
        )
    return None


def _too_wide(cidr: str) -> bool:
    network = ipaddress.ip_network(cidr, strict=False)
    if isinstance(network, ipaddress.IPv6Network):
        if network.subnet_of(_IPV4_MAPPED):
            return network.prefixlen - 96 < _PROXY_MIN_PREFIX[4]
        if _IPV4_MAPPED.subnet_of(network):
            return True  # holds every IPv4-mapped address: as wide as 0.0.0.0/0
    return network.prefixlen < _PROXY_MIN_PREFIX[network.version]


def _hosts(netloc: str) -> list[str]:
    """The hosts of a URL's authority, several for a cluster (``h1:6379,h2:6379``)."""
    hosts = []
    for item in netloc.rsplit("@", 1)[-1].split(","):
        host = item[1 : item.find("]")] if item.startswith("[") else item.split(":")[0]
        hosts.append(host.lower())
    return hosts


def _remote_plaintext(
    url: str, *, tls_schemes: tuple[str, ...], tls_params: tuple[str, ...]
) -> bool:
    """Whether ``url`` reaches another machine without TLS."""
    parts = urlsplit(url)
    if parts.scheme.startswith("unix") or parts.scheme in tls_schemes:
        return False
    if all(host in _LOOPBACK or not host for host in _hosts(parts.netloc)):
        return False
    query = {k.lower(): [v.lower() for v in vs] for k, vs in parse_qs(parts.query).items()}
    return not any(
        value not in ("false", "0", "disable", "allow", "prefer")
        for name in tls_params
        for value in query.get(name, [])
    )


def _policy_findings(settings: BastionSettings) -> list[tuple[str, str]]:
    from bastion.config import DEFAULT_POLICIES
    from bastion.throttle import Policy

    found = []
    for name, policy in settings.policies.items():
        if name not in DEFAULT_POLICIES:
            continue
        default = Policy.parse(name, DEFAULT_POLICIES[name])
        factor = _OTHER_POLICY_FACTOR if name in _BROAD_POLICIES else _CREDENTIAL_POLICY_FACTOR
        if policy.quota / policy.window > factor * default.quota / default.window:
            found.append(
                (
                    "BASTION_RATE_LIMITS",
                    f"policy {name!r} ({settings.rate_limits.get(name)}) is more than {factor} "
                    f"times its default ({DEFAULT_POLICIES[name]})",
                )
            )
    return found


def _transport_findings(settings: BastionSettings) -> list[tuple[str, str]]:
    found = []
    redis_tls = (("rediss",), ("ssl", "tls"))
    if settings.redis_url is not None and _remote_plaintext(
        settings.redis_url.get_secret_value(), tls_schemes=redis_tls[0], tls_params=redis_tls[1]
    ):
        found.append(("BASTION_REDIS_URL", "a remote Redis must be reached over TLS (rediss://)"))
    storage = settings.rate_limit_storage_url
    if storage is not None and _remote_plaintext(
        storage.get_secret_value(),
        tls_schemes=("rediss", "rediss+cluster", "rediss+sentinel", "async+rediss"),
        tls_params=redis_tls[1],
    ):
        found.append(
            ("BASTION_RATE_LIMIT_STORAGE_URL", "a remote limiter store must be reached over TLS")
        )
    if settings.database_url.startswith("postgresql") and _remote_plaintext(
        settings.database_url, tls_schemes=(), tls_params=("ssl", "sslmode")
    ):
        found.append(
            (
                "BASTION_DATABASE_URL",
                "a remote PostgreSQL must be reached over TLS (?ssl=verify-full or require)",
            )
        )
    if settings.breached_passwords_api and not settings.breached_passwords_api_url.startswith(
        "https://"
    ):
        found.append(
            ("BASTION_BREACHED_PASSWORDS_API_URL", "the range API must be reached over https://")
        )
    return found


def production_bounds(settings: BastionSettings) -> list[tuple[str, str]]:
    """Every bound production holds settings to, as ``(setting, why)`` for each broken one."""
    found: list[tuple[str, str]] = []
    wide = [cidr for cidr in settings.trusted_proxies if _too_wide(cidr)]
    if wide:
        found.append(
            (
                "BASTION_TRUSTED_PROXIES",
                f"{wide[0]} is wider than a /8 (IPv4) or /7 (IPv6): every client could "
                "choose its own address",
            )
        )
    if settings.metrics_token is not None and settings.metrics_token.get_secret_value():
        weak = secret_weakness(settings.metrics_token.get_secret_value(), what="the metrics token")
        if weak:
            found.append(("BASTION_METRICS_TOKEN", weak))
    found.extend(_transport_findings(settings))
    found.extend(_policy_findings(settings))
    if settings.login_challenge_difficulty < POW_MIN_DIFFICULTY:
        found.append(
            (
                "BASTION_LOGIN_CHALLENGE_DIFFICULTY",
                f"a proof of work below {POW_MIN_DIFFICULTY:,} costs an attacker nothing",
            )
        )
    if settings.refresh_absolute_ttl_seconds > REFRESH_MAX_SECONDS:
        found.append(("BASTION_REFRESH_ABSOLUTE_TTL_SECONDS", "a session may last at most 90 days"))
    if settings.refresh_idle_ttl_seconds > settings.refresh_absolute_ttl_seconds:
        found.append(
            (
                "BASTION_REFRESH_IDLE_TTL_SECONDS",
                "the idle lifetime cannot exceed the absolute one",
            )
        )
    caps = [
        ("BASTION_MAX_BODY_BYTES", settings.max_body_bytes, BODY_MAX_BYTES),
        ("BASTION_MAX_JSON_ITEMS", settings.max_json_items, JSON_MAX_ITEMS),
        ("BASTION_MAX_HEADER_BYTES", settings.max_header_bytes, HEADER_MAX_BYTES),
        (
            "BASTION_REQUEST_TIMEOUT_SECONDS",
            settings.request_timeout_seconds,
            REQUEST_TIMEOUT_MAX_SECONDS,
        ),
    ]
    found.extend(
        (name, f"{value:,} is above the production bound of {bound:,}")
        for name, value, bound in caps
        if value > bound
    )
    return found
