"""Bastion: the security layer of a FastAPI backend.

The names here are the documented surface of the core; the FastAPI layer is
:mod:`bastion.fastapi` (``install(app)``). Everything else is importable from its module
but may change between versions. Names are loaded on first use (PEP 562), so importing
one submodule does not load the rest.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from bastion._version import __version__

if TYPE_CHECKING:
    from bastion.accounts import Principal
    from bastion.authz import Decision, ObjectRule, Permission, RolePermissions
    from bastion.clock import Clock
    from bastion.config import BastionSettings
    from bastion.errors import BastionError, ConfigurationError
    from bastion.events import EventLog, RequestContext
    from bastion.runtime import Security, open_security
    from bastion.stores import SecurityEvent

__all__ = [
    "BastionError",
    "BastionSettings",
    "Clock",
    "ConfigurationError",
    "Decision",
    "EventLog",
    "ObjectRule",
    "Permission",
    "Principal",
    "RequestContext",
    "RolePermissions",
    "Security",
    "SecurityEvent",
    "__version__",
    "open_security",
]

_HOMES = {
    "Principal": "bastion.accounts",
    "Decision": "bastion.authz",
    "ObjectRule": "bastion.authz",
    "Permission": "bastion.authz",
    "RolePermissions": "bastion.authz",
    "Clock": "bastion.clock",
    "BastionSettings": "bastion.config",
    "BastionError": "bastion.errors",
    "ConfigurationError": "bastion.errors",
    "EventLog": "bastion.events",
    "RequestContext": "bastion.events",
    "SecurityEvent": "bastion.stores",
    "Security": "bastion.runtime",
    "open_security": "bastion.runtime",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
