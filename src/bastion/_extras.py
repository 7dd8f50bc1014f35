"""The optional dependencies of the core, each behind an extra of the ``bastion`` package.

``import bastion`` and the embedded default (SQLite, in-process stores, mail to an
outbox folder) need none of them. A setting that asks for one is refused when the core
is built, naming the setting and the extra to install (STYLE principle 6), instead of
an ``ImportError`` from deep inside a request.
"""

from __future__ import annotations

import importlib

from bastion.errors import ConfigurationError

__all__ = ["EXTRAS", "missing_extra", "require"]

# The module each extra brings, by the extra's name in pyproject.toml.
EXTRAS: dict[str, str] = {
    "redis": "redis",
    "postgres": "asyncpg",
    "smtp": "aiosmtplib",
}


def missing_extra(extra: str, setting: str, what: str) -> ConfigurationError:
    """The error for ``setting`` asking for ``what`` without the ``extra`` installed."""
    return ConfigurationError(
        setting,
        f"{what} needs the {EXTRAS[extra]} package, which is not installed: "
        f"install bastion[{extra}] (pip install 'bastion[{extra}]')",
    )


def require(extra: str, setting: str, what: str) -> None:
    """Raise :class:`ConfigurationError` when the module of ``extra`` cannot be imported."""
    try:
        importlib.import_module(EXTRAS[extra])
    except ModuleNotFoundError:
        raise missing_extra(extra, setting, what) from None
