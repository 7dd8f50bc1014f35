"""Every request model refuses unknown fields and never coerces a value to another type.

OWASP API3:2023 and ASVS 15.3.3 (mass assignment: ``extra="forbid"``); OWASP Input
Validation Cheat Sheet (validate type and form, never repair): a number is not a
string, a string is not a boolean or a date, whatever pydantic's lax mode would allow.
The models are found by walking the schema modules, so a new one is covered at once;
the JSON schema of each field says which kinds of value it must refuse.
"""

from __future__ import annotations

import json
import re
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bastion.fastapi import schemas as core_schemas
from bastion_tasks import schemas as task_schemas

NAMED_INPUTS = {
    "TaskCreate",
    "TaskUpdate",
    "TaskAdminUpdate",
    "ShareIn",
    "AdminUserPatch",
    "UserPatch",
    "RegisterIn",
    "LoginIn",
}
_INPUT_NAME = re.compile(r"(In|Create|Update|Patch)$")
_OUTPUT_NAME = re.compile(r"(Out|List)$")
# What each JSON type must refuse: values of the other types that lax parsing could
# turn into it (numbers and booleans into strings, strings into booleans and numbers).
_NOT_A_STRING = [123, 0, 1.5, True, False, ["x"], {"x": "y"}]
_NOT_A_BOOLEAN = ["true", "false", "1", "0", "yes", "on", 1, 0, 1.0, ["x"]]
_NOT_AN_INTEGER = ["1", "one", 1.5, True, ["1"]]
_NOT_AN_ARRAY = ["a,b", "a", 1, True, {"0": "a"}]
_HOSTILE_BY_TYPE: dict[str, list[Any]] = {
    "string": _NOT_A_STRING,
    "boolean": _NOT_A_BOOLEAN,
    "integer": _NOT_AN_INTEGER,
    "array": _NOT_AN_ARRAY,
}
# A string that lax parsing reads as something else: Unix time for a date, a number.
_HOSTILE_BY_FORMAT: dict[str, list[Any]] = {
    "date-time": ["1700000000", "1700000000.5", 1700000000, "2026-01-01", "tomorrow"],
    "uuid": [1, 2**127],
}


def _models(module: ModuleType) -> list[type[BaseModel]]:
    return [
        value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__
        and not name.startswith("_")
    ]


MODELS = _models(core_schemas) + _models(task_schemas)
INPUTS = [m for m in MODELS if _INPUT_NAME.search(m.__name__)]


def _kinds(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a property's schema."""
    options = schema.get("anyOf", [schema])
    return [o for o in options if o.get("type") != "null"]


def _hostile_cases() -> list[Any]:
    cases = []
    for model in INPUTS:
        for field, schema in model.model_json_schema()["properties"].items():
            for kind in _kinds(schema):
                values = list(_HOSTILE_BY_TYPE[kind["type"]])
                values += _HOSTILE_BY_FORMAT.get(kind.get("format", ""), [])
                if kind["type"] == "array":
                    values += [[bad] for bad in _HOSTILE_BY_TYPE[kind["items"]["type"]]]
                for value in values:
                    name = f"{model.__name__}.{field}={json.dumps(value)[:24]}"
                    cases.append(pytest.param(model, field, value, id=name))
    return cases


def _refused_at(model: type[BaseModel], data: Any, field: str, *, mode: str) -> bool:
    try:
        if mode == "python":  # what FastAPI does with a parsed JSON body
            model.model_validate(data)
        else:
            model.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        return any(error["loc"][:1] == (field,) for error in exc.errors())
    return False


def test_the_walk_finds_every_named_input_model() -> None:
    names = {m.__name__ for m in INPUTS}

    assert names >= NAMED_INPUTS


def test_every_model_is_named_as_an_input_or_an_output() -> None:
    unnamed = [
        m.__name__
        for m in MODELS
        if not _INPUT_NAME.search(m.__name__) and not _OUTPUT_NAME.search(m.__name__)
    ]

    assert unnamed == []


@pytest.mark.parametrize("model", INPUTS, ids=[m.__name__ for m in INPUTS])
def test_an_input_model_forbids_unknown_fields(model: type[BaseModel]) -> None:
    extra = model.model_config.get("extra")

    assert extra == "forbid"
    assert _refused_at(model, {"is_admin": True}, "is_admin", mode="python")


@pytest.mark.parametrize("mode", ["python", "json"])
@pytest.mark.parametrize(("model", "field", "value"), _hostile_cases())
def test_a_value_of_another_type_is_refused_not_coerced(
    model: type[BaseModel], field: str, value: Any, mode: str
) -> None:
    refused = _refused_at(model, {field: value}, field, mode=mode)

    assert refused


def test_the_hostile_cases_cover_every_field_of_every_input_model() -> None:
    covered = {tuple(case.values[:2]) for case in _hostile_cases()}

    expected = {(m, f) for m in INPUTS for f in m.model_json_schema()["properties"]}
    assert covered == expected
