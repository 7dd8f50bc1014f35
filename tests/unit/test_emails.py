"""Email addresses: one account per address whatever its case, and no new address a
mail server need not accept (RFC 5321 §4.5.3.1.1: a local part of at most 64 octets)."""

from __future__ import annotations

import pytest

from bastion.accounts import InvalidEmailError, normalize_email


def test_the_domain_is_lower_cased_and_the_key_case_folded() -> None:
    email, key = normalize_email("  Alice@Example.ORG ")

    assert email == "Alice@example.org"
    assert key == "alice@example.org"


def test_a_new_address_may_have_a_local_part_of_64_octets() -> None:
    local = "a" * 64

    assert normalize_email(f"{local}@example.com", new=True)[0] == f"{local}@example.com"


@pytest.mark.parametrize("local", ["a" * 65, "é" * 33], ids=["65-ascii", "66-octets-utf8"])
def test_a_new_address_with_a_local_part_over_64_octets_is_refused(local: str) -> None:
    with pytest.raises(InvalidEmailError, match="too long before the @-sign"):
        normalize_email(f"{local}@example.com", new=True)


def test_a_lookup_still_finds_a_longer_address_stored_before() -> None:
    local = "a" * 65

    assert normalize_email(f"{local}@Example.com")[1] == f"{local}@example.com"


def test_a_new_address_that_grows_when_case_folded_still_fits_its_columns() -> None:
    # "ΐ" (2 octets) folds to three code points and "ß" to "ss": about the widest
    # address the syntax lets through, measured as stored (320 characters a column).
    address = "\u0390" * 32 + "@" + "ß" * 46 + "." + "ß" * 46 + ".de"

    email, key = normalize_email(address, new=True)

    assert len(key) > len(address)
    assert max(len(email), len(key)) <= 320
