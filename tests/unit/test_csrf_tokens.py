"""CSRF tokens: 256 random bits, bound to one session by an HMAC, compared in constant time."""

from __future__ import annotations

import base64

import pytest

from bastion.tokens import PRE_SESSION, CSRFTokens

SECRET = b"k" * 32


def test_a_token_is_valid_for_its_session_only() -> None:
    tokens = CSRFTokens(SECRET)

    token = tokens.issue("session-a")

    assert tokens.valid(token, "session-a")
    assert not tokens.valid(token, "session-b")
    assert not tokens.valid(token, PRE_SESSION)


def test_a_pre_session_token_is_valid_before_login_only() -> None:
    tokens = CSRFTokens(SECRET)

    token = tokens.issue()

    assert tokens.valid(token, PRE_SESSION)
    assert not tokens.valid(token, "session-a")


def test_another_secret_does_not_accept_the_token() -> None:
    token = CSRFTokens(SECRET).issue("s")

    assert not CSRFTokens(b"o" * 32).valid(token, "s")


def test_a_token_carries_256_random_bits_and_never_repeats() -> None:
    tokens = CSRFTokens(SECRET)

    issued = {tokens.issue("s") for _ in range(1000)}
    nonce = next(iter(issued)).split(".")[0]

    assert len(issued) == 1000
    assert len(base64.urlsafe_b64decode(nonce + "=")) == 32


@pytest.mark.parametrize(
    "token",
    [None, "", ".", "abc", "abc.", ".abc", "a" * 200, "abc.def.ghi"],
    ids=["none", "empty", "dot", "no-mac", "empty-mac", "empty-nonce", "long", "three-parts"],
)
def test_malformed_tokens_are_refused(token: str | None) -> None:
    assert not CSRFTokens(SECRET).valid(token, "s")


def test_a_changed_nonce_is_refused() -> None:
    tokens = CSRFTokens(SECRET)
    nonce, mac = tokens.issue("s").split(".")

    assert not tokens.valid(f"{nonce[:-1]}{'A' if nonce[-1] != 'A' else 'B'}.{mac}", "s")


def test_the_binding_cannot_be_shifted_into_the_nonce() -> None:
    """Length-prefixed MAC input: ("ab", n) and ("a", "b" + n) sign differently."""
    tokens = CSRFTokens(SECRET)
    nonce, mac = tokens.issue("ab").split(".")

    assert not tokens.valid(f"b{nonce}.{mac}", "a")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CSRFTokens(b"short")
