"""Authorization: permissions, hierarchical roles, object rules and decisions.

Deny unless explicitly allowed (OWASP API5:2023, ASVS 8.1). See ``docs/permissions.md``.
"""

from bastion.authz._decide import decide_object, decide_route
from bastion.authz._model import (
    DEFAULT_GRANTS,
    ROLE_ORDER,
    Decision,
    ObjectRule,
    Permission,
    Requirement,
    RolePermissions,
    Subject,
)

__all__ = [
    "DEFAULT_GRANTS",
    "ROLE_ORDER",
    "Decision",
    "ObjectRule",
    "Permission",
    "Requirement",
    "RolePermissions",
    "Subject",
    "decide_object",
    "decide_route",
]
