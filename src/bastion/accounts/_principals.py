"""Resource-server mode: the local principals of external issuers' access tokens.

An external token (``BASTION_EXTERNAL_ISSUERS``) is verified by
:class:`~bastion.oidc.ExternalTokens` and mapped here to the claims of a local principal
(:class:`~bastion.tokens.ExternalAccessClaims`), so that permissions, rate limits,
revocation and events work on it as on a local token:

- the account is keyed by issuer and ``sub``: its id is a UUID (version 5) of the two,
  and the account is created on the first sight of its tokens, with no password, no
  deliverable address (``<id>@external.invalid``) and the lowest role, ``viewer``, in
  its row (the role of each request is its token's, mapped by the issuer's ``role_map``);
- the token's ``jti`` (or, without one, the digest of the token) is namespaced by issuer,
  so one issuer cannot name another's tokens, nor Bastion's;
- each token is a session of its own: a logout revokes that token, never the principal's
  later ones; a revocation of every token of the account (logout-all, an admin's,
  disabling it) refuses those issued at or before it, by ``iat``.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

from bastion.clock import Clock
from bastion.errors import InvalidTokenError
from bastion.events import EventLog, RequestContext
from bastion.stores import Account, ExternalLink, Stores
from bastion.tokens import NO_ROLE, ExternalAccessClaims

if TYPE_CHECKING:
    from bastion.oidc import ExternalTokens

__all__ = ["ExternalPrincipals", "issuer_key", "principal_id"]

_NAMESPACE = uuid.UUID("5b1f8e0c-2f4e-4a8f-9c1e-7d3b6a0e9f42")  # Bastion's, for uuid5
_MAX_SUBJECT = 255  # the external identities' subject column
_STORED_ROLE = "viewer"  # the row's role: the lowest; each request's role is its token's


def issuer_key(issuer: str) -> str:
    """A short, fixed-length name of ``issuer``: the external identity's provider name
    (``iss:`` and 16 hex digits: no sign-in provider's name has a colon)."""
    return "iss:" + hashlib.sha256(issuer.encode()).hexdigest()[:16]


def principal_id(issuer: str, subject: str) -> uuid.UUID:
    """The local account id of ``subject`` at ``issuer`` (a version-5 UUID: never the id
    of a local account, whose ids are version 4)."""
    return uuid.uuid5(_NAMESPACE, f"{issuer}\n{subject}")


class ExternalPrincipals:
    """Verifies external access tokens and maps them to local principals."""

    def __init__(
        self, tokens: ExternalTokens, stores: Stores, events: EventLog, clock: Clock
    ) -> None:
        self.tokens = tokens
        self._stores = stores
        self._events = events
        self._clock = clock

    def claims_issuer(self, token: str) -> str | None:
        """The configured issuer ``token`` names (unverified), or None."""
        return self.tokens.claims_issuer(token)

    async def verify(self, token: str) -> ExternalAccessClaims:
        """The local principal's claims of a valid external access token.

        Raises:
            InvalidTokenError: the token is invalid (see ExternalTokens.verify).
        """
        found = await self.tokens.verify(token)
        if not found.sub or len(found.sub) > _MAX_SUBJECT:
            raise InvalidTokenError("subject empty or too long")
        key = issuer_key(found.issuer)
        # The issuer's jti (a digest of a long or odd one), or the token's digest.
        token_id = found.jti or hashlib.sha256(token.encode()).hexdigest()
        jti = f"ext:{key}:{token_id}"
        return ExternalAccessClaims(
            sub=str(principal_id(found.issuer, found.sub)),
            role=found.role or NO_ROLE,
            jti=jti,
            sid=str(uuid.uuid5(_NAMESPACE, jti)),
            tv=-1,
            iat=found.iat,
            nbf=found.iat,
            exp=found.exp,
            iss=found.issuer,
            aud="",
            client_id="",
            subject=found.sub,
            email=found.email,
        )

    async def first_sight(self, claims: ExternalAccessClaims) -> Account | None:
        """The account of a principal whose token arrives for the first time: created
        with its identity (or found, when another request created it meanwhile)."""
        user_id = uuid.UUID(claims.sub)
        now = self._clock.now()
        address = f"{user_id.hex}@external.invalid"  # RFC 2606: never delivered
        account = Account(
            id=user_id,
            email=address,
            email_key=address,
            password_hash=None,
            role=_STORED_ROLE,
            created_at=now,
            updated_at=now,
        )
        link = ExternalLink(issuer_key(claims.iss), claims.subject, user_id, claims.email, now)
        # Both or neither: an account always has its identity's record.
        if not await self._stores.links.add_with_account(account, link):
            return await self._stores.accounts.get(user_id)  # another request created it
        await self._events.emit(
            "user_registered",
            context=RequestContext(),
            user_id=str(user_id),
            details=f"first access token of issuer {claims.iss}",
        )
        return account
