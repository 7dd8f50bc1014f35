"""The two checks: may this subject call this route, and may it act on this object."""

from __future__ import annotations

from bastion.authz._model import (
    ROLE_ORDER,
    Decision,
    ObjectRule,
    Requirement,
    RolePermissions,
    Subject,
)

__all__ = ["decide_object", "decide_route"]


def _warnings(subject: Subject) -> tuple[str, ...]:
    if subject.token_role is not None and subject.token_role != subject.role:
        # ASVS 8.3.2: a role change takes effect at once; the stored role decides.
        return (
            f"the access token says role {subject.token_role!r}; "
            f"the current role {subject.role!r} was used",
        )
    return ()


def decide_route(
    requirement: Requirement | None, subject: Subject | None, roles: RolePermissions
) -> Decision:
    """Route-level decision. ``subject`` is None for a caller without a valid token.

    A route without a requirement is refused for everyone (OWASP API5:2023: deny all
    access by default, with explicit grants for every function).
    """
    if requirement is None:
        return Decision(
            "deny",
            "the route declares no security requirement",
            str(subject.user_id) if subject else None,
            subject.role if subject else None,
            http_status=403,
        )
    if requirement.kind == "public":
        return Decision("allow", f"public route: {requirement.note}")
    if subject is None:
        return Decision("deny", "no valid access token", http_status=401)
    user_id, role, warnings = str(subject.user_id), subject.role, _warnings(subject)
    if not subject.is_active:
        return Decision(
            "deny", "the account is disabled", user_id, role, warnings=warnings, http_status=401
        )
    if requirement.kind == "authenticated":
        if role not in ROLE_ORDER and not requirement.without_role:
            return Decision(
                "deny",
                f"role {role!r} is none of this service's roles",
                user_id,
                role,
                warnings=warnings,
                http_status=403,
            )
        return Decision("allow", "signed-in account", user_id, role, warnings=warnings)
    checked = tuple(str(p) for p in requirement.permissions)
    missing = [p for p in requirement.permissions if not roles.allows(role, p)]
    if missing:
        return Decision(
            "deny",
            f"role {role!r} lacks permission {', '.join(missing)}",
            user_id,
            role,
            checked,
            warnings=warnings,
            http_status=403,
        )
    return Decision(
        "allow",
        f"role {role!r} holds {', '.join(checked)}",
        user_id,
        role,
        checked,
        warnings=warnings,
    )


def decide_object(
    rule: ObjectRule,
    subject: Subject,
    roles: RolePermissions,
    *,
    exists: bool,
    relation: str | None,
    what: str = "object",
) -> Decision:
    """Object-level decision for ``rule.action`` given the subject's relation to it.

    API.md and OWASP API1:2023: an object the subject may not see answers 404, exactly
    like a missing one (its existence is not revealed); one it may see but not change
    answers 403.
    """
    user_id, role, warnings = str(subject.user_id), subject.role, _warnings(subject)
    checked = (str(rule.permission),)

    def deny(reason: str, status: int) -> Decision:
        return Decision(
            "deny", reason, user_id, role, checked, warnings=warnings, http_status=status
        )

    if not exists:
        return deny(f"no such {what}", 404)
    if roles.acts_on_every_object(role):
        return Decision(
            "allow",
            f"role {role!r} holds ADMIN: may {rule.action} any {what}",
            user_id,
            role,
            (*checked, "ADMIN"),
            warnings=warnings,
        )
    if relation is None:
        return deny(f"the {what} is neither owned by nor shared with the user", 404)
    if not roles.allows(role, rule.permission):
        return deny(f"role {role!r} lacks permission {rule.permission}", 403)
    if relation not in rule.relations:
        allowed = " or ".join(sorted(rule.relations))
        return deny(f"to {rule.action} a {what} takes {allowed}; the user has {relation}", 403)
    return Decision(
        "allow",
        f"{relation} of the {what}; role {role!r} holds {rule.permission}",
        user_id,
        role,
        checked,
        warnings=warnings,
    )
