"""The ``bastion`` command line: serve, migrate, users, keys."""

from bastion_cli.main import app, main

__all__ = ["app", "main"]
