"""Permissions, roles and decisions: deny unless a rule explicitly allows.

The model of API.md ("Roles and permissions"): five permissions, three roles in a
hierarchy where each role holds what the one before it holds (admin ⊇ member ⊇ viewer),
and, for objects such as tasks, a *relation* of the caller to the object (owner, or a
share) that an :class:`ObjectRule` must accept as well as the role.

Every check returns a :class:`Decision` in the contract's shape, allow or deny, with the
reason a person can read; the web layer turns a deny into 401, 403 or 404 and logs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

__all__ = [
    "DEFAULT_GRANTS",
    "ROLE_ORDER",
    "Decision",
    "ObjectRule",
    "Permission",
    "Requirement",
    "RolePermissions",
    "Subject",
]


class Permission(StrEnum):
    READ = "READ"
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    ADMIN = "ADMIN"


ROLE_ORDER: tuple[str, ...] = ("viewer", "member", "admin")

# What each role adds to the roles before it (API.md): a viewer reads, a member also
# creates, changes and deletes (its own tasks: the object rules narrow it), an admin
# also administers. ADMIN implies every permission (RolePermissions.allows).
DEFAULT_GRANTS: Mapping[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "member": frozenset({Permission.CREATE, Permission.UPDATE, Permission.DELETE}),
    "admin": frozenset({Permission.ADMIN}),
}


class RolePermissions:
    """The role → permission map: hierarchical, configurable, closed.

    ``grants`` names what each role adds to the roles before it in :data:`ROLE_ORDER`.
    A role missing from the map holds what the roles before it hold; a role that is not
    in :data:`ROLE_ORDER` holds nothing (deny by default).
    """

    def __init__(self, grants: Mapping[str, Iterable[Permission | str]] | None = None) -> None:
        grants = DEFAULT_GRANTS if grants is None else grants
        unknown = set(grants) - set(ROLE_ORDER)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; roles are {list(ROLE_ORDER)}")
        held: set[Permission] = set()
        self._effective: dict[str, frozenset[Permission]] = {}
        for role in ROLE_ORDER:
            held |= {Permission(p) for p in grants.get(role, ())}
            self._effective[role] = frozenset(held)

    def permissions(self, role: str | None) -> frozenset[Permission]:
        return self._effective.get(role or "", frozenset())

    def allows(self, role: str | None, permission: Permission) -> bool:
        held = self.permissions(role)
        return permission in held or Permission.ADMIN in held

    def acts_on_every_object(self, role: str | None) -> bool:
        """Whether ``role`` may act on every object, whoever owns it (it holds ADMIN): the
        object rules and the listings that show "every task to admins" both ask this."""
        return Permission.ADMIN in self.permissions(role)

    def as_dict(self) -> dict[str, list[str]]:
        return {role: [str(p) for p in sorted(self._effective[role])] for role in ROLE_ORDER}


@dataclass(frozen=True)
class Subject:
    """Who a decision is about: the caller of a request, or a user an admin asks about."""

    user_id: UUID
    role: str
    is_active: bool = True
    token_role: str | None = None  # the role the access token carried, when different


@dataclass(frozen=True)
class ObjectRule:
    """What one action on an object needs: a permission of the role, and one of the
    relations of the caller to the object (``owner``, ``edit``, ``read``...).

    ADMIN bypasses the relation (an admin may act on every object), never the existence
    check: a missing object is missing for everyone.
    """

    action: str
    permission: Permission
    relations: frozenset[str]


@dataclass(frozen=True)
class Requirement:
    """What a route declares: ``public``, ``authenticated`` (any signed-in account, for
    its own data only), or ``permission`` (the role must hold every permission listed,
    and, with ``rule``, the caller's relation to the object must satisfy it)."""

    kind: Literal["public", "authenticated", "permission"]
    permissions: tuple[Permission, ...] = ()
    rule: ObjectRule | None = None
    note: str = ""
    # The web layer's loader of the object's relation (kept opaque here).
    resolver: Any = field(default=None, compare=False, repr=False)
    # ``authenticated`` only: a caller whose role is none of ROLE_ORDER (an external
    # token whose role claim maps to no role) passes too.
    without_role: bool = False
    # Step-up: the caller must have proven who they are recently (the token's
    # ``auth_time`` within the guard's step-up age; RFC 9470).
    step_up: bool = False
    # ``authenticated`` only: a caller who must enrol a second factor first (its role
    # requires one, its sign-in had none) may call it: enrolment, sign-out, itself.
    enrolment: bool = False

    @classmethod
    def public(cls, note: str) -> Requirement:
        if not note:
            raise ValueError("say why the route is public")
        return cls("public", note=note)

    @classmethod
    def authenticated(
        cls,
        note: str = "",
        *,
        without_role: bool = False,
        step_up: bool = False,
        enrolment: bool = False,
    ) -> Requirement:
        return cls(
            "authenticated",
            note=note,
            without_role=without_role,
            step_up=step_up,
            enrolment=enrolment,
        )

    @classmethod
    def permission(
        cls,
        *permissions: Permission,
        rule: ObjectRule | None = None,
        resolver: Any = None,
        step_up: bool = False,
    ) -> Requirement:
        needed = tuple(dict.fromkeys([*permissions, *([rule.permission] if rule else [])]))
        if not needed:
            raise ValueError("name at least one permission")
        return cls("permission", needed, rule, resolver=resolver, step_up=step_up)

    def describe(self) -> str:
        if self.kind == "public":
            return f"public: {self.note}"
        fresh = ", signed in recently (step-up)" if self.step_up else ""
        if self.kind == "authenticated":
            kind = ", with a role or none" if self.without_role else ""
            return "any signed-in account" + kind + fresh
        text = " and ".join(self.permissions)
        if self.rule is not None:
            text += f" on the object, as {' or '.join(sorted(self.rule.relations))} (or ADMIN)"
        return text + fresh


@dataclass(frozen=True)
class Decision:
    """The guard's answer for one request, in the contract's shape (API.md, "Decision").

    ``http_status`` is how a deny is answered (401 no valid token, 403 not allowed,
    404 not visible) and is not part of the shape.
    """

    status: Literal["allow", "deny"]
    reason: str
    user_id: str | None = None
    role: str | None = None
    permissions_checked: tuple[str, ...] = ()
    rate_limit_remaining: int | None = None
    warnings: tuple[str, ...] = ()
    http_status: int = 200

    @property
    def allowed(self) -> bool:
        return self.status == "allow"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "user_id": self.user_id,
            "role": self.role,
            "permissions_checked": list(self.permissions_checked),
            "rate_limit_remaining": self.rate_limit_remaining,
            "warnings": list(self.warnings),
        }
