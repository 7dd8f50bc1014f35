"""The ``bastion`` command line: serve, migrate, users, keys (the ``cli`` extra).

The ``bastion`` script is installed with the package even without the extra; it then
says which extra to install instead of failing on a missing import. ``app`` (the Typer
application) is loaded on first use (PEP 562).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]

# What the cli extra installs.
_CLI_PACKAGES = frozenset({"typer", "rich", "uvicorn", "click"})


def main() -> None:
    """The ``bastion`` script."""
    try:
        from bastion_cli.main import main as run
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _CLI_PACKAGES:
            raise
        sys.exit(f"the bastion command needs the cli extra: pip install 'bastion[cli]' ({exc})")
    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from bastion_cli.main import app

        return app
    raise AttributeError(f"module 'bastion_cli' has no attribute {name!r}")
