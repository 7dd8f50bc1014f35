"""Breached-password checks: the Pwned Passwords range API, a local copy, and both together.

The range API is a real HTTP server on 127.0.0.1 (tests/pwned.py); the local copy is a
real sorted file in tmp_path.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from bastion.passwords import (
    BreachChecks,
    BreachCheckUnavailableError,
    BreachVerdict,
    PwnedFile,
    PwnedRangeAPI,
)
from tests.pwned import PwnedRangeServer, random_suffix, sha1_hex

BREACHED = "hunter2"
ALSO_BREACHED = "password1"
NOT_BREACHED = "a password nobody has leaked, 9f2c"


async def ask(url: str, password: str, **options: Any) -> bool:
    checker = PwnedRangeAPI(url, **options)
    try:
        return await checker.is_breached(password)
    finally:
        await checker.aclose()


def refused_url() -> str:
    """A local URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the range API ------------------------------------------------------------------


async def test_range_api_finds_a_listed_password() -> None:
    with PwnedRangeServer({BREACHED: 17}) as server:
        breached = await ask(server.url, BREACHED)

    assert breached is True


async def test_range_api_misses_an_unlisted_password() -> None:
    with PwnedRangeServer({BREACHED: 17}) as server:
        breached = await ask(server.url, NOT_BREACHED)

    assert breached is False


async def test_range_api_ignores_a_padding_entry_for_the_password() -> None:
    with PwnedRangeServer({BREACHED: 0}) as server:
        breached = await ask(server.url, BREACHED)

    assert breached is False


async def test_range_api_compares_suffixes_case_insensitively() -> None:
    suffix = sha1_hex(BREACHED)[5:].lower()
    with PwnedRangeServer(raw_body=f"{random_suffix()}:3\n{suffix}:5\n".encode()) as server:
        breached = await ask(server.url, BREACHED)

    assert breached is True


async def test_range_api_sends_only_the_five_character_prefix() -> None:
    digest = sha1_hex(BREACHED)
    with PwnedRangeServer({BREACHED: 17}) as server:
        await ask(server.url, BREACHED)
    [(path, headers)] = server.requests
    received = path + "".join(f"{name}: {value}\n" for name, value in headers.items())

    assert path == f"/range/{digest[:5]}"
    assert digest[5:] not in received.upper()
    assert BREACHED not in received
    assert headers["add-padding"] == "true"
    assert headers["user-agent"] == "bastion-password-check"


async def test_range_api_without_padding_does_not_ask_for_it() -> None:
    with PwnedRangeServer({BREACHED: 17}) as server:
        await ask(server.url, BREACHED, padding=False)
    [(_, headers)] = server.requests

    assert "add-padding" not in headers


async def test_range_api_gives_up_on_a_slow_server_after_the_timeout() -> None:
    with PwnedRangeServer({BREACHED: 17}, delay=5.0) as server:
        started = time.monotonic()
        with pytest.raises(BreachCheckUnavailableError, match=r"no answer within 0\.3 s"):
            await ask(server.url, BREACHED, timeout=0.3)
        elapsed = time.monotonic() - started

    assert elapsed < 2.0


async def test_range_api_bounds_the_whole_call_against_a_dripping_server() -> None:
    # Each line comes well within the read timeout; all of them take far longer.
    with PwnedRangeServer({BREACHED: 17}, padding_entries=50, drip=0.1) as server:
        started = time.monotonic()
        with pytest.raises(BreachCheckUnavailableError, match=r"no answer within 0\.3 s"):
            await ask(server.url, BREACHED, timeout=0.3)
        elapsed = time.monotonic() - started

    assert elapsed < 2.0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<!DOCTYPE html><html><body>Cloudflare</body></html>", id="html"),
        pytest.param(b"0018A45C4D1DEF81644B54AB7F969B88D6:10\r\n", id="short-suffix"),
        pytest.param(b"0018A45C4D1DEF81644B54AB7F969B88D65Z:10\r\n", id="long-suffix"),
        pytest.param(b"0018A45C4D1DEF81644B54AB7F969B88D6G:10\r\n", id="non-hex"),
        pytest.param(b"0018A45C4D1DEF81644B54AB7F969B88D65:ten\r\n", id="non-digit-count"),
        pytest.param(b"0018A45C4D1DEF81644B54AB7F969B88D65\r\n", id="no-count"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_range_api_malformed_answer_is_unavailable(body: bytes) -> None:
    with (
        PwnedRangeServer(raw_body=body) as server,
        pytest.raises(BreachCheckUnavailableError, match=r"^pwned-api: (malformed|empty)"),
    ):
        await ask(server.url, BREACHED)


@pytest.mark.parametrize("status", [500, 404, 429, 403])
async def test_range_api_http_error_is_unavailable(status: int) -> None:
    with (
        PwnedRangeServer(status=status) as server,
        pytest.raises(BreachCheckUnavailableError, match=f"HTTP {status}"),
    ):
        await ask(server.url, BREACHED)


async def test_range_api_does_not_follow_a_redirect() -> None:
    with PwnedRangeServer({BREACHED: 17}) as server:
        server.redirect_to = f"{server.url}/range/00000"
        with pytest.raises(BreachCheckUnavailableError, match="redirect"):
            await ask(server.url, BREACHED)

    assert len(server.requests) == 1


@pytest.mark.parametrize("send_length", [True, False], ids=["declared", "streamed"])
async def test_range_api_refuses_an_oversized_answer(send_length: bool) -> None:
    with (
        PwnedRangeServer(padding_entries=100, send_length=send_length) as server,
        pytest.raises(BreachCheckUnavailableError, match="larger than 1024 bytes"),
    ):
        await ask(server.url, BREACHED, max_response_bytes=1024)


async def test_range_api_connection_refused_is_unavailable() -> None:
    with pytest.raises(BreachCheckUnavailableError, match="connection failed"):
        await ask(refused_url(), BREACHED)


async def test_range_api_error_text_has_neither_password_nor_hash() -> None:
    digest = sha1_hex(BREACHED)
    with (
        PwnedRangeServer(status=500) as server,
        pytest.raises(BreachCheckUnavailableError) as caught,
    ):
        await ask(server.url, BREACHED)
    text = str(caught.value).upper()

    assert BREACHED.upper() not in text
    assert digest[:5] not in text
    assert digest[5:] not in text


async def test_range_api_closed_checker_is_unavailable() -> None:
    with PwnedRangeServer({BREACHED: 17}) as server:
        checker = PwnedRangeAPI(server.url)
        await checker.aclose()
        with pytest.raises(BreachCheckUnavailableError, match="closed"):
            await checker.is_breached(BREACHED)

    assert server.requests == []


@pytest.mark.parametrize(
    "base_url", ["ftp://api.pwnedpasswords.com", "api.pwnedpasswords.com", "https://h/?q=1"]
)
def test_range_api_refuses_a_base_url_that_is_not_http(base_url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        PwnedRangeAPI(base_url)


# --- a local copy of the corpus -------------------------------------------------------


class Corpus:
    """Passwords around a few thousand random hashes, chosen by where their hash sorts.

    ``before`` sorts before the first line and ``after`` after the last; ``first`` and
    ``last`` are the first and last lines; ``middle`` are somewhere in between.
    """

    def __init__(self, size: int = 3000) -> None:
        candidates = sorted((sha1_hex(f"candidate-{i}"), f"candidate-{i}") for i in range(5000))
        (_, self.before), (first_hash, self.first) = candidates[0], candidates[1]
        (last_hash, self.last), (_, self.after) = candidates[-2], candidates[-1]
        self.middle = [BREACHED, ALSO_BREACHED]
        known = [first_hash, last_hash, *map(sha1_hex, self.middle)]
        assert all(first_hash <= digest <= last_hash for digest in known)
        randoms: set[str] = set()
        while len(randoms) < size:
            digest = secrets.token_hex(20).upper()
            if first_hash < digest < last_hash:
                randoms.add(digest)
        self.hashes = sorted({*randoms, *known})

    def write(
        self,
        path: Path,
        *,
        lower: bool = False,
        counts: bool = True,
        newline: str = "\n",
        final_newline: bool = True,
    ) -> Path:
        lines: Iterable[str] = (
            (digest.lower() if lower else digest)
            + (f":{secrets.randbelow(10_000) + 1}" if counts else "")
            for digest in self.hashes
        )
        text = newline.join(lines) + (newline if final_newline else "")
        path.write_bytes(text.encode("ascii"))
        return path


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


async def found(source: PwnedFile, passwords: Iterable[str]) -> list[bool]:
    return [await source.is_breached(password) for password in passwords]


async def test_file_finds_known_passwords(corpus: Corpus, tmp_path: Path) -> None:
    source = PwnedFile(corpus.write(tmp_path / "pwned.txt"))

    assert await found(source, corpus.middle) == [True, True]


async def test_file_finds_the_first_and_the_last_line(corpus: Corpus, tmp_path: Path) -> None:
    source = PwnedFile(corpus.write(tmp_path / "pwned.txt"))

    assert await found(source, [corpus.first, corpus.last]) == [True, True]


async def test_file_misses_an_unknown_password(corpus: Corpus, tmp_path: Path) -> None:
    source = PwnedFile(corpus.write(tmp_path / "pwned.txt"))

    assert await found(source, [NOT_BREACHED, "candidate-x"]) == [False, False]


async def test_file_misses_hashes_sorting_outside_the_file(corpus: Corpus, tmp_path: Path) -> None:
    source = PwnedFile(corpus.write(tmp_path / "pwned.txt"))

    assert await found(source, [corpus.before, corpus.after]) == [False, False]


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param({"lower": True}, id="lower-case"),
        pytest.param({"counts": False}, id="no-counts"),
        pytest.param({"newline": "\r\n"}, id="crlf"),
        pytest.param({"final_newline": False}, id="no-final-newline"),
        pytest.param({"newline": "\r\n", "final_newline": False}, id="crlf-no-final-newline"),
    ],
)
async def test_file_layouts_are_all_searched(
    corpus: Corpus, tmp_path: Path, layout: dict[str, Any]
) -> None:
    source = PwnedFile(corpus.write(tmp_path / "pwned.txt", **layout))
    hits = [corpus.first, *corpus.middle, corpus.last]
    misses = [corpus.before, NOT_BREACHED, corpus.after]

    assert await found(source, hits) == [True] * len(hits)
    assert await found(source, misses) == [False] * len(misses)


async def test_file_with_a_single_line_is_searched(tmp_path: Path) -> None:
    path = tmp_path / "pwned.txt"
    path.write_text(f"{sha1_hex(BREACHED)}:3\n")
    source = PwnedFile(path)

    assert await found(source, [BREACHED, NOT_BREACHED]) == [True, False]


async def test_file_entry_with_count_zero_is_not_a_hit(tmp_path: Path) -> None:
    path = tmp_path / "pwned.txt"
    path.write_text("\n".join(sorted([f"{sha1_hex(BREACHED)}:0", f"{sha1_hex(ALSO_BREACHED)}:2"])))
    source = PwnedFile(path)

    assert await found(source, [BREACHED, ALSO_BREACHED]) == [False, True]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html><body>Not found</body></html>\n", id="html"),
        pytest.param(b"password\nhunter2\n", id="plain-passwords"),
        pytest.param(b"7C4A8D09CA3762AF61E59520943DC26494F8941:3\n", id="short-hash"),
        pytest.param(b"7C4A8D09CA3762AF61E59520943DC26494F8941BX:3\n", id="long-hash"),
        pytest.param(b"7C4A8D09CA3762AF61E59520943DC26494F8941B 3\n", id="wrong-separator"),
        pytest.param(b"\xef\xbb\xbf7C4A8D09CA3762AF61E59520943DC26494F8941B:3\n", id="bom"),
    ],
)
def test_malformed_file_is_refused_at_construction(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pwned.txt"
    path.write_bytes(content)

    with pytest.raises(ValueError, match="not in the Pwned Passwords format"):
        PwnedFile(path)


def test_missing_file_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        PwnedFile(tmp_path / "missing.txt")


async def test_file_removed_after_construction_is_unavailable(
    corpus: Corpus, tmp_path: Path
) -> None:
    source = PwnedFile(corpus.write(tmp_path / "pwned.txt"))
    (tmp_path / "pwned.txt").unlink()

    with pytest.raises(BreachCheckUnavailableError, match=r"^pwned-file: cannot read"):
        await source.is_breached(BREACHED)


async def test_file_with_a_malformed_line_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "pwned.txt"
    path.write_text(f"{'0' * 40}:1\n{'garbage ' * 20}\n{'F' * 40}:1\n")
    source = PwnedFile(path)

    with pytest.raises(BreachCheckUnavailableError, match=r"^pwned-file: malformed file"):
        await source.is_breached(BREACHED)


# --- all sources together -------------------------------------------------------------


async def test_checks_any_hit_wins(corpus: Corpus, tmp_path: Path) -> None:
    with PwnedRangeServer({NOT_BREACHED: 4}) as server:
        checks = BreachChecks(
            [PwnedFile(corpus.write(tmp_path / "pwned.txt")), PwnedRangeAPI(server.url)]
        )
        try:
            verdict = await checks.check(NOT_BREACHED)
        finally:
            await checks.aclose()

    assert verdict == BreachVerdict(breached=True, unavailable=())


async def test_checks_a_hit_wins_when_another_source_is_down(
    corpus: Corpus, tmp_path: Path
) -> None:
    checks = BreachChecks(
        [PwnedRangeAPI(refused_url()), PwnedFile(corpus.write(tmp_path / "pwned.txt"))]
    )
    try:
        verdict = await checks.check(BREACHED)
    finally:
        await checks.aclose()

    assert verdict.breached is True
    assert [reason.split(":")[0] for reason in verdict.unavailable] == ["pwned-api"]


async def test_checks_source_down_and_other_miss_is_not_breached_but_listed(
    corpus: Corpus, tmp_path: Path
) -> None:
    checks = BreachChecks(
        [PwnedRangeAPI(refused_url()), PwnedFile(corpus.write(tmp_path / "pwned.txt"))]
    )
    try:
        verdict = await checks.check(NOT_BREACHED)
    finally:
        await checks.aclose()

    assert verdict.breached is False
    assert len(verdict.unavailable) == 1
    assert verdict.unavailable[0].startswith("pwned-api: connection failed")


async def test_checks_without_sources_are_falsy_and_find_nothing() -> None:
    checks = BreachChecks([])

    assert not checks
    assert await checks.check(BREACHED) == BreachVerdict(breached=False, unavailable=())
