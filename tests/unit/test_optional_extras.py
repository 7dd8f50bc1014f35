"""A library user installs ``bastion`` without the extras they do not use.

No second virtual environment: a fresh interpreter gets an import hook that refuses
every module the extras bring (as if they were not installed), then imports the
package, builds the core and a FastAPI app on the embedded default, serves a request,
and asks for each optional backend. It reports what happened as one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# What the redis, postgres, smtp and cli extras install (and redis' C parser).
BLOCKED = ("redis", "hiredis", "asyncpg", "aiosmtplib", "typer", "rich", "uvicorn")

# Installed first: the listed packages (argv[2], comma-separated) are then "not installed".
_UNINSTALL = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    BLOCKED = set(sys.argv[2].split(","))

    class Uninstalled(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    for loaded in [m for m in sys.modules if m.partition(".")[0] in BLOCKED]:
        del sys.modules[loaded]
    sys.meta_path.insert(0, Uninstalled())
    """
)

_SCRIPT = _UNINSTALL + textwrap.dedent(
    """
    import asyncio, json
    from pathlib import Path
    folder = Path(sys.argv[1])
    report = {}

    import bastion
    import bastion.fastapi
    from bastion.config import BastionSettings
    from bastion.errors import ConfigurationError
    from bastion.runtime import open_security
    report["imported"] = True

    def settings(**changes):
        embedded = {
            "data_dir": folder / "var",
            "database_url": f"sqlite+aiosqlite:///{folder / 'core.db'}",
            "password_profile": "test-only-insecure",
            "log_events_to_stdout": False,
        }
        return BastionSettings(**(embedded | changes))

    security = open_security(settings())
    report["core"] = type(security.stores.revocation).__name__
    asyncio.run(security.aclose())

    async def serve():
        import httpx
        from asgi_lifespan import LifespanManager
        from fastapi import FastAPI
        from bastion.fastapi import install

        app = FastAPI()
        guard = install(app, settings())

        @app.get("/hello", dependencies=[guard.public("a greeting for anyone")])
        async def hello():
            return {"hello": "world"}

        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return (await client.get("/hello")).status_code

    report["app"] = asyncio.run(serve())

    def refusal(**changes):
        try:
            accepted = open_security(settings(**changes))
        except ConfigurationError as exc:
            return {"setting": exc.setting, "reason": exc.reason}
        except Exception as exc:  # the unclear failure a missing extra must not give
            return {"setting": None, "reason": repr(exc)}
        asyncio.run(accepted.aclose())
        return None

    report["redis"] = refusal(redis_url="redis://127.0.0.1:6379/0")
    report["postgres"] = refusal(database_url="postgresql+asyncpg://u@127.0.0.1/db")
    report["smtp"] = refusal(
        mail_backend="smtp", smtp_host="127.0.0.1", smtp_port=2525, smtp_security="none"
    )
    import bastion_cli
    sys.argv[1:] = ["--version"]
    try:
        bastion_cli.main()
    except SystemExit as exc:
        report["cli"] = str(exc.code)
    report["loaded"] = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def without_extras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("without-extras")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(folder), ",".join(BLOCKED)],
        capture_output=True,
        text=True,
        cwd=folder,  # no .env of the work tree
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_the_blocker_refuses_what_the_extras_bring() -> None:
    blocked = subprocess.run(
        [sys.executable, "-c", _UNINSTALL + "import redis", ".", "redis"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert blocked.returncode != 0
    assert "No module named 'redis'" in blocked.stderr


def test_bastion_and_its_fastapi_layer_import_without_the_extras(
    without_extras: dict[str, Any],
) -> None:
    assert without_extras["imported"] is True
    assert without_extras["loaded"] == []


def test_the_core_is_built_on_sqlite_without_the_extras(without_extras: dict[str, Any]) -> None:
    assert without_extras["core"] == "MemoryRevocationStore"


def test_an_app_on_the_embedded_default_serves_without_the_extras(
    without_extras: dict[str, Any],
) -> None:
    assert without_extras["app"] == 200


@pytest.mark.parametrize(
    ("backend", "setting", "extra"),
    [
        ("redis", "BASTION_REDIS_URL", "bastion[redis]"),
        ("postgres", "BASTION_DATABASE_URL", "bastion[postgres]"),
        ("smtp", "BASTION_MAIL_BACKEND", "bastion[smtp]"),
    ],
    ids=["redis", "postgres", "smtp"],
)
def test_a_backend_without_its_extra_is_refused_naming_the_extra(
    without_extras: dict[str, Any], backend: str, setting: str, extra: str
) -> None:
    refusal = without_extras[backend]

    assert refusal is not None, f"{backend} was accepted without its extra"
    assert refusal["setting"] == setting
    assert f"install {extra}" in refusal["reason"]


def test_the_command_without_its_extra_names_the_extra(without_extras: dict[str, Any]) -> None:
    assert without_extras["cli"].startswith(
        "the bastion command needs the cli extra: pip install 'bastion[cli]'"
    )


def test_the_extras_in_pyproject_bring_the_blocked_modules() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    core = " ".join(project["dependencies"])
    extras = " ".join(" ".join(v) for v in project["optional-dependencies"].values())

    for package in ("redis", "asyncpg", "aiosmtplib", "typer", "rich", "uvicorn"):
        assert package not in core
        assert package in extras
