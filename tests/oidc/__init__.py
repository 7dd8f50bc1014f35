"""A real OpenID Provider (oidc-provider on Node.js) for the tests: see ``harness``."""
