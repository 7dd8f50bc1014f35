"""What a user of the ``bastion`` distribution relies on: one version, one error tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bastion
from bastion.errors import BastionError
from bastion_cli import app

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# Private errors of the FastAPI layer that its own middleware raises and catches: they
# never leave it (a body past its cap, a JSON body that is not I-JSON).
_INTERNAL = {
    "bastion.fastapi.middleware.body_limit._TooLarge",
    "bastion.fastapi.middleware.request_limits._NotIJSONError",
}


def _modules() -> list[str]:
    """Every module of the package, the FastAPI layer included (not the migration scripts,
    which Alembic runs)."""
    found = pkgutil.walk_packages(bastion.__path__, "bastion.")
    return sorted(m.name for m in found if ".migrations" not in m.name)


def _defined_errors() -> list[type[Exception]]:
    errors = []
    for name in _modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, Exception) and value.__module__ == name:
                errors.append(value)
    return errors


def _qualified(error: type[Exception]) -> str:
    return f"{error.__module__}.{error.__qualname__}"


def _errors() -> list[type[Exception]]:
    return [error for error in _defined_errors() if _qualified(error) not in _INTERNAL]


def test_the_version_is_the_distributions() -> None:
    declared = tomllib.loads(_PYPROJECT.read_text())["project"]["version"]

    assert bastion.__version__ == version("bastion") == declared


def test_the_command_line_prints_the_distributions_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.output == f"bastion {version('bastion')}\n"


def test_the_walk_finds_the_errors_of_every_part() -> None:
    names = {error.__name__ for error in _errors()}

    assert {"MailError", "InvalidCursorError", "UploadError", "ChainBrokenError"} <= names


@pytest.mark.parametrize("error", _errors(), ids=_qualified)
def test_every_error_bastion_raises_is_a_bastion_error(error: type[Exception]) -> None:
    assert issubclass(error, BastionError)


def test_the_errors_outside_the_tree_are_private_to_the_fastapi_layer() -> None:
    outside = {_qualified(e) for e in _defined_errors() if not issubclass(e, BastionError)}

    assert outside <= _INTERNAL
    assert all(name.startswith("bastion.fastapi.") for name in outside)
    assert all(name.rpartition(".")[2].startswith("_") for name in outside)


@pytest.mark.parametrize(
    ("error", "caught_as"),
    [
        ("bastion.accounts:InvalidEmailError", ValueError),
        ("bastion.cursors:InvalidCursorError", ValueError),
    ],
    ids=["email", "cursor"],
)
def test_an_error_joining_the_tree_keeps_the_base_its_callers_catch(
    error: str, caught_as: type[Exception]
) -> None:
    module, name = error.split(":")
    cls = getattr(importlib.import_module(module), name)

    assert issubclass(cls, BastionError)
    assert issubclass(cls, caught_as)


def test_the_derived_secrets_keep_their_purposes_across_versions() -> None:
    """A chained log, device cookies and CSRF tokens made by an older version stay valid."""
    from bastion.tokens import purposes

    assert (purposes.EVENT_CHAIN, purposes.LOGIN_DEFENCE, purposes.ACCOUNT_MAIL, purposes.CSRF) == (
        "bastion event chain",
        "bastion login defence",
        "bastion account mail",
        "bastion csrf",
    )
