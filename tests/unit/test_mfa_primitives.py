"""The second factor's primitives: TOTP against RFC 6238's test vectors, the window of
one step either side, the sealed secret bound to its account, recovery codes, and the
``mfa_token``'s signature, expiry and client binding."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from bastion.clock import FrozenClock
from bastion.mfa import MFATokens, RecoveryCodes, SecretBox, TOTPCodes
from bastion.mfa._sealed import SealedSecretError

# RFC 6238 appendix B, SHA-1: the ASCII key "12345678901234567890", 8-digit codes. A
# 6-digit code is the same truncated number modulo 10^6: the last six digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("seconds", "expected"), RFC_VECTORS)
def test_codes_match_rfc_6238_appendix_b(seconds: int, expected: str) -> None:
    totp = TOTPCodes("Bastion")
    at = datetime.fromtimestamp(seconds, UTC)

    assert totp.code_at(RFC_SECRET, totp.step_of(at)) == expected[-6:]
    assert totp.matching_step(RFC_SECRET, expected[-6:], at) == seconds // 30


def test_a_code_is_good_one_step_either_side_and_no_further() -> None:
    totp = TOTPCodes("Bastion")
    secret = RFC_SECRET  # fixed: its codes of these five steps all differ
    now = datetime(2026, 12, 7, 12, 0, 10, tzinfo=UTC)
    step = totp.step_of(now)

    accepted = [totp.matching_step(secret, totp.code_at(secret, step + d), now) for d in (-1, 0, 1)]
    refused = [totp.matching_step(secret, totp.code_at(secret, step + d), now) for d in (-2, 2)]

    assert accepted == [step - 1, step, step + 1]
    assert len({totp.code_at(secret, step + d) for d in range(-2, 3)}) == 5
    assert refused == [None, None]


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12 456", "١٢٣٤٥٦", "abcdef"])
def test_a_malformed_code_matches_nothing(code: str) -> None:
    totp = TOTPCodes("Bastion")

    assert totp.matching_step(totp.new_secret(), code, datetime.now(UTC)) is None


def test_a_new_secret_has_160_bits() -> None:
    secret = TOTPCodes.new_secret()

    assert len(base64.b32decode(secret)) == 20
    assert secret != TOTPCodes.new_secret()


def test_a_sealed_secret_opens_only_for_its_account_and_key() -> None:
    box = SecretBox(b"k" * 32)
    sealed = box.seal("JBSWY3DPEHPK3PXP", bound_to="account-1")

    assert box.open(sealed, bound_to="account-1") == "JBSWY3DPEHPK3PXP"
    assert "JBSWY3DPEHPK3PXP" not in sealed
    with pytest.raises(SealedSecretError):
        box.open(sealed, bound_to="account-2")  # copied to another account's row
    with pytest.raises(SealedSecretError):
        SecretBox(b"x" * 32).open(sealed, bound_to="account-1")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealedSecretError):
        box.open(tampered, bound_to="account-1")
    assert box.seal("s", bound_to="a") != box.seal("s", bound_to="a")  # random nonces


def test_recovery_codes_are_ten_distinct_and_their_digests_are_per_account() -> None:
    codes = RecoveryCodes(b"r" * 32)

    issued = codes.new()

    assert len(set(issued)) == 10
    assert codes.digest(issued[0], user_id="a") == codes.digest(
        f"  {issued[0].upper().replace('-', ' ')} ", user_id="a"
    )
    assert codes.digest(issued[0], user_id="a") != codes.digest(issued[0], user_id="b")
    assert codes.digest(issued[0], user_id="a") != RecoveryCodes(b"s" * 32).digest(
        issued[0], user_id="a"
    )


def test_an_mfa_token_is_signed_bound_to_its_client_and_expires() -> None:
    clock = FrozenClock(datetime(2026, 12, 7, tzinfo=UTC))
    tokens = MFATokens(b"t" * 32, clock=clock)
    client = MFATokens.client_of("203.0.113.7", "browser")
    token = tokens.issue(
        user_id="u",
        token_version=3,
        password_hash="hash",
        amr=("pwd",),
        passes_lock=False,
        client=client,
    )

    claims = tokens.read(token, client=client)
    assert claims is not None
    assert (claims.user_id, claims.token_version, claims.amr) == ("u", 3, ("pwd",))
    assert claims.credential == MFATokens.credential_of("hash")
    assert tokens.read(token, client=MFATokens.client_of("203.0.113.8", "browser")) is None
    assert MFATokens(b"other key" * 4, clock=clock).read(token, client=client) is None
    version, payload, mac = token.split(".")
    assert tokens.read(f"{version}.{payload}A.{mac}", client=client) is None
    clock.advance(seconds=timedelta(minutes=5).total_seconds())
    assert tokens.read(token, client=client) is None
