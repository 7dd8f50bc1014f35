"""Attack: start production on a setting that quietly undoes a control (a trusted-proxy
range that trusts everyone, a guessable secret, a limit that never limits, state sent in
clear to another machine, a second process beside in-process stores). Refused: the
production gate names the setting and the service does not start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from bastion.config import check_settings
from bastion.errors import ConfigurationError
from bastion.runtime import SingleProcessLock
from bastion.stores.sql import create_engine
from bastion.tokens import ensure_key_file
from bastion_tasks import create_app
from bastion_tasks.migrate import upgrade_connection
from bastion_tasks.settings import TaskSettings
from tests.unit.test_config import SECURE

STRONG = "Zr0s8kqP3wXv1mN7yT5cLhB2dF9gJ4aQ-6eRu"


def _settings(**values: Any) -> TaskSettings:
    return TaskSettings(_env_file=None, **{**SECURE, **values})  # type: ignore[call-arg]


REFUSED = [
    pytest.param({"trusted_proxies": "0.0.0.0/0"}, "BASTION_TRUSTED_PROXIES", id="proxies-any-v4"),
    pytest.param({"trusted_proxies": "::/0"}, "BASTION_TRUSTED_PROXIES", id="proxies-any-v6"),
    pytest.param(
        {"trusted_proxies": "0.0.0.0/1,128.0.0.0/1"}, "BASTION_TRUSTED_PROXIES", id="proxies-halves"
    ),
    pytest.param(
        {"trusted_proxies": "::ffff:0:0/96"}, "BASTION_TRUSTED_PROXIES", id="proxies-v4-mapped"
    ),
    pytest.param({"metrics_token": "x"}, "BASTION_METRICS_TOKEN", id="one-character-token"),
    pytest.param({"metrics_token": "a" * 64}, "BASTION_METRICS_TOKEN", id="repeated-token"),
    pytest.param(
        {"jwt_algorithm": "HS256", "jwt_secret": "k" * 32},
        "BASTION_JWT_SECRET",
        id="hs256-one-letter",
    ),
    pytest.param(
        {"jwt_algorithm": "HS256", "jwt_secret": "ab" * 32},
        "BASTION_JWT_SECRET",
        id="hs256-two-letters",
    ),
    pytest.param(
        {"redis_url": "redis://cache.internal:6379/0"}, "BASTION_REDIS_URL", id="remote-redis-plain"
    ),
    pytest.param(
        {"rate_limit_storage_url": "redis+cluster://a.internal:6379,b.internal:6379"},
        "BASTION_RATE_LIMIT_STORAGE_URL",
        id="remote-cluster-plain",
    ),
    pytest.param(
        {"database_url": "postgresql+asyncpg://db.internal/bastion"},
        "BASTION_DATABASE_URL",
        id="remote-postgres-plain",
    ),
    pytest.param(
        {"database_url": "postgresql+asyncpg://db.internal/bastion?ssl=disable"},
        "BASTION_DATABASE_URL",
        id="remote-postgres-ssl-disabled",
    ),
    pytest.param(
        {"breached_passwords_api_url": "http://pwned.internal"},
        "BASTION_BREACHED_PASSWORDS_API_URL",
        id="range-api-plain",
    ),
    pytest.param(
        {"rate_limits": {"login": "100000/second"}}, "BASTION_RATE_LIMITS", id="absurd-login"
    ),
    pytest.param(
        {"rate_limits": {"reads": "100000/second"}}, "BASTION_RATE_LIMITS", id="absurd-reads"
    ),
    pytest.param(
        {"login_challenge_difficulty": 1},
        "BASTION_LOGIN_CHALLENGE_DIFFICULTY",
        id="proof-of-work-1",
    ),
    pytest.param(
        {"refresh_absolute_ttl_seconds": 10 * 365 * 86_400},
        "BASTION_REFRESH_ABSOLUTE_TTL_SECONDS",
        id="ten-year-session",
    ),
    pytest.param(
        {"refresh_idle_ttl_seconds": 60 * 86_400, "refresh_absolute_ttl_seconds": 30 * 86_400},
        "BASTION_REFRESH_IDLE_TTL_SECONDS",
        id="idle-over-absolute",
    ),
    pytest.param({"max_body_bytes": 2 * 1024**3}, "BASTION_MAX_BODY_BYTES", id="2-GiB-bodies"),
    pytest.param(
        {"request_timeout_seconds": 86_400},
        "BASTION_REQUEST_TIMEOUT_SECONDS",
        id="day-long-request",
    ),
    pytest.param(
        {"alert_webhook_url": "https://hooks.example.org/x", "alert_webhook_secret": "s" * 40},
        "BASTION_ALERT_WEBHOOK_SECRET",
        id="webhook-secret-one-letter",
    ),
]


@pytest.mark.parametrize(("values", "setting"), REFUSED)
def test_production_refuses_a_setting_that_undoes_a_control(
    values: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_settings(_settings(**values), keys_exist=True)

    assert caught.value.setting == setting


@pytest.mark.parametrize(("values", "setting"), REFUSED)
def test_development_reports_what_production_will_refuse(
    values: dict[str, Any], setting: str
) -> None:
    findings = check_settings(_settings(env="development", **values), keys_exist=True)

    assert setting in {f.setting for f in findings}


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"trusted_proxies": "10.0.0.0/8,fc00::/7,::ffff:10.0.0.0/104"}, id="private"),
        pytest.param({"metrics_token": STRONG}, id="random-metrics-token"),
        pytest.param({"jwt_algorithm": "HS256", "jwt_secret": STRONG}, id="random-hs256"),
        pytest.param({"redis_url": "rediss://cache.internal:6379/0"}, id="redis-tls"),
        pytest.param({"redis_url": "redis://127.0.0.1:6379/0"}, id="redis-loopback"),
        pytest.param({"redis_url": "unix:///run/redis.sock"}, id="redis-socket"),
        pytest.param({"database_url": "postgresql+asyncpg://db/x?ssl=require"}, id="pg-tls"),
        pytest.param({"database_url": "postgresql+asyncpg://127.0.0.1/x"}, id="pg-loopback"),
        pytest.param({"rate_limits": {"reads": "6000/minute", "login": "50/minute"}}, id="high"),
        pytest.param({"login_challenge_difficulty": 10_000}, id="pow-floor"),
        pytest.param({"refresh_absolute_ttl_seconds": 90 * 86_400}, id="90-day-session"),
    ],
)
def test_production_accepts_settings_within_the_bounds(values: dict[str, Any]) -> None:
    findings = check_settings(_settings(**values), keys_exist=True)

    assert [f for f in findings if f.fatal] == []


async def test_a_second_production_app_on_one_data_folder_without_redis_does_not_start(
    tmp_path: Path,
) -> None:
    """As two workers of any server would: the second refuses at start-up, naming
    BASTION_REDIS_URL; with the first stopped, a new one starts."""
    settings = _settings(
        data_dir=tmp_path / "var",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}",
        password_profile="owasp-minimum",
    )
    ensure_key_file(settings.keys_path, settings.jwt_algorithm)
    engine = create_engine(settings.database_url)
    await upgrade_connection(engine)
    await engine.dispose()

    async with LifespanManager(create_app(settings)):
        with pytest.raises(ConfigurationError) as caught:
            async with LifespanManager(create_app(settings)):
                pass
    async with LifespanManager(create_app(settings)):
        pass

    assert caught.value.setting == "BASTION_REDIS_URL"


def test_a_second_process_beside_in_process_stores_is_refused(tmp_path: Path) -> None:
    """Two workers of any server on one data folder without Redis: the second refuses
    to start, naming BASTION_REDIS_URL; once the first is gone, another may start."""
    first = SingleProcessLock(tmp_path)

    with pytest.raises(ConfigurationError) as caught:
        SingleProcessLock(tmp_path)
    first.release()
    third = SingleProcessLock(tmp_path)
    third.release()

    assert caught.value.setting == "BASTION_REDIS_URL"
