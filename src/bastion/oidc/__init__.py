"""OpenID Connect: accepting external issuers' access tokens (resource-server mode), and
the parts of signing in with an external provider."""

from bastion.oidc._binding import SignInBinding, SignInRequest, pkce_challenge, safe_next
from bastion.oidc._config import ASYMMETRIC_ALGORITHMS, ExternalIssuer
from bastion.oidc._external import ExternalClaims, ExternalTokens, map_role
from bastion.oidc._http import ProviderUnavailableError
from bastion.oidc._id_token import IDClaims, validate_id_token
from bastion.oidc._keys import RemoteKeySet
from bastion.oidc._metadata import ProviderMetadata, discover
from bastion.oidc._providers import (
    GITHUB,
    GOOGLE_ISSUER,
    PROVIDER_NAME,
    OAuthProvider,
    google_issuer_matches,
    microsoft_issuer_matches,
)
from bastion.oidc._signin import ExternalIdentity, OAuthSignIn

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "GITHUB",
    "GOOGLE_ISSUER",
    "PROVIDER_NAME",
    "ExternalClaims",
    "ExternalIdentity",
    "ExternalIssuer",
    "ExternalTokens",
    "IDClaims",
    "OAuthProvider",
    "OAuthSignIn",
    "ProviderMetadata",
    "ProviderUnavailableError",
    "RemoteKeySet",
    "SignInBinding",
    "SignInRequest",
    "discover",
    "google_issuer_matches",
    "map_role",
    "microsoft_issuer_matches",
    "pkce_challenge",
    "safe_next",
    "validate_id_token",
]
