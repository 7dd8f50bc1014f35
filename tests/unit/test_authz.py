"""Roles, requirements and decisions: deny unless a rule explicitly allows."""

from __future__ import annotations

from uuid import uuid4

import pytest

from bastion.authz import (
    ObjectRule,
    Permission,
    Requirement,
    RolePermissions,
    Subject,
    decide_object,
    decide_route,
)

ROLES = RolePermissions()
UPDATE_RULE = ObjectRule("change", Permission.UPDATE, frozenset({"owner", "edit"}))


def subject(role: str, **fields: object) -> Subject:
    return Subject(uuid4(), role, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "held"),
    [
        ("viewer", {"READ"}),
        ("member", {"READ", "CREATE", "UPDATE", "DELETE"}),
        ("admin", {"READ", "CREATE", "UPDATE", "DELETE", "ADMIN"}),
    ],
)
def test_each_role_holds_what_the_roles_before_it_hold(role: str, held: set[str]) -> None:
    assert set(ROLES.permissions(role)) == held


@pytest.mark.parametrize("role", ["", "root", "Admin", None])
def test_an_unknown_role_holds_nothing(role: str | None) -> None:
    assert ROLES.permissions(role) == frozenset()
    assert not any(ROLES.allows(role, p) for p in Permission)


def test_the_map_is_configurable_and_stays_hierarchical() -> None:
    roles = RolePermissions({"viewer": [], "member": ["READ"], "admin": ["ADMIN"]})

    assert roles.permissions("viewer") == frozenset()
    assert roles.permissions("member") == {Permission.READ}
    assert not roles.allows("member", Permission.DELETE)


def test_admin_implies_every_permission() -> None:
    roles = RolePermissions({"admin": ["ADMIN"]})

    assert all(roles.allows("admin", p) for p in Permission)


def test_an_unknown_role_in_the_map_is_refused() -> None:
    with pytest.raises(ValueError, match="superuser"):
        RolePermissions({"superuser": ["ADMIN"]})


def test_an_unknown_permission_in_the_map_is_refused() -> None:
    with pytest.raises(ValueError, match="EXECUTE"):
        RolePermissions({"member": ["EXECUTE"]})


def test_a_route_without_requirement_is_denied_even_to_an_admin() -> None:
    decision = decide_route(None, subject("admin"), ROLES)

    assert decision.status == "deny"
    assert decision.http_status == 403
    assert decision.reason == "the route declares no security requirement"


def test_a_public_route_is_allowed_without_a_subject() -> None:
    decision = decide_route(Requirement.public("health probe"), None, ROLES)

    assert decision.allowed
    assert decision.reason == "public route: health probe"


def test_a_public_route_must_say_why() -> None:
    with pytest.raises(ValueError, match="why"):
        Requirement.public("")


@pytest.mark.parametrize(
    "requirement",
    [Requirement.authenticated(), Requirement.permission(Permission.READ)],
    ids=["authenticated", "permission"],
)
def test_no_subject_is_denied_with_401(requirement: Requirement) -> None:
    decision = decide_route(requirement, None, ROLES)

    assert (decision.status, decision.http_status) == ("deny", 401)


def test_a_disabled_account_is_denied_with_401() -> None:
    decision = decide_route(Requirement.authenticated(), subject("admin", is_active=False), ROLES)

    assert (decision.status, decision.http_status) == ("deny", 401)
    assert decision.reason == "the account is disabled"


def test_a_missing_permission_is_denied_in_the_contract_shape() -> None:
    who = subject("viewer")

    decision = decide_route(Requirement.permission(Permission.DELETE), who, ROLES)

    assert decision.to_dict() == {
        "status": "deny",
        "reason": "role 'viewer' lacks permission DELETE",
        "user_id": str(who.user_id),
        "role": "viewer",
        "permissions_checked": ["DELETE"],
        "rate_limit_remaining": None,
        "warnings": [],
    }
    assert decision.http_status == 403


def test_a_held_permission_is_allowed() -> None:
    decision = decide_route(Requirement.permission(Permission.CREATE), subject("member"), ROLES)

    assert decision.allowed
    assert decision.permissions_checked == ("CREATE",)


def test_a_stale_token_role_is_a_warning_and_the_stored_role_decides() -> None:
    demoted = subject("member", token_role="admin")

    decision = decide_route(Requirement.permission(Permission.ADMIN), demoted, ROLES)

    assert decision.status == "deny"
    assert decision.warnings == (
        "the access token says role 'admin'; the current role 'member' was used",
    )


@pytest.mark.parametrize(
    ("role", "relation", "status"),
    [
        ("member", "owner", 200),
        ("member", "edit", 200),
        ("member", "read", 403),
        ("member", None, 404),
        ("viewer", "owner", 403),
        ("viewer", "edit", 403),
        ("viewer", None, 404),
        ("admin", None, 200),
    ],
)
def test_object_decisions_combine_role_and_relation(
    role: str, relation: str | None, status: int
) -> None:
    decision = decide_object(
        UPDATE_RULE, subject(role), ROLES, exists=True, relation=relation, what="task"
    )

    assert (200 if decision.allowed else decision.http_status) == status


@pytest.mark.parametrize("role", ["member", "admin"])
def test_a_missing_object_is_404_for_everyone(role: str) -> None:
    decision = decide_object(
        UPDATE_RULE, subject(role), ROLES, exists=False, relation=None, what="task"
    )

    assert (decision.status, decision.http_status) == ("deny", 404)


def test_an_object_deny_explains_which_relation_it_takes() -> None:
    decision = decide_object(
        UPDATE_RULE, subject("member"), ROLES, exists=True, relation="read", what="task"
    )

    assert decision.reason == "to change a task takes edit or owner; the user has read"


def test_requirements_describe_themselves() -> None:
    requirement = Requirement.permission(rule=UPDATE_RULE)

    assert requirement.describe() == "UPDATE on the object, as edit or owner (or ADMIN)"
