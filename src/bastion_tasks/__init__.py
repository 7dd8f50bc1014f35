"""The Bastion task service: a task API built only on Bastion's public security API."""

from bastion_tasks.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
