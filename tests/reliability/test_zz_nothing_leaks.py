"""Item 8, nothing leaks: runs after every other reliability test (tests/reliability/conftest.py
puts it last) and reads what they left in the ledger: every line the servers they started wrote
to stdout and stderr (SIGKILLed, drained, fuzzed at DEBUG level, through PostgreSQL outages),
every error message and error body their clients received, and every /metrics snapshot taken
before a server stopped. None may hold an issued token (access, refresh, SaaS), a client secret,
a customer password, the e-mail address of an account flow, a mailed one-time token (sign-up
opt-in, password reset, e-mail change: test_account_flows.py), nor an external identity
provider's token, ID token, authorization code, PKCE verifier or the service's client secret at
the provider (test_identity_provider_abuse.py puts those in the ledger).

Token-like values are found by scanning every run of URL-safe characters for each secret length
(so a token glued to other characters is found too); other secrets by plain substring search.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.support import LEDGER, TOKEN_LIKE

URL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Finder:
    """Finds any of `secrets` in a text."""

    def __init__(self, secrets: set[str]) -> None:
        # A JWT (SaaS token) is found by its signature, the part nobody else can produce: a
        # searchable URL-safe run, instead of one substring search per JWT per text (thousands
        # of JWTs times every text outlived the test's timeout).
        searchable = {jwt_signature(s) or s for s in secrets}
        self.secrets = searchable
        self.lengths = sorted({len(s) for s in searchable if set(s) <= URL_SAFE})
        self.others = [s for s in searchable if not set(s) <= URL_SAFE]

    def leaks(self, text: str) -> Iterator[str]:
        secrets = self.secrets
        for run in TOKEN_LIKE.finditer(text):
            value = run.group()
            for length in self.lengths:
                if length > len(value):
                    break
                for start in range(len(value) - length + 1):
                    if value[start : start + length] in secrets:
                        yield value[start : start + length]
        for secret in self.others:
            if secret in text:
                yield secret


def jwt_signature(value: str) -> str:
    """The signature segment of a compact JWS, or "" for anything else."""
    parts = value.split(".")
    if len(parts) == 3 and all(parts) and all(set(part) <= URL_SAFE for part in parts):
        return parts[2]
    return ""


def test_finder_finds_a_jwt_by_its_signature_and_plain_secrets() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0." + "s" * 86
    finder = Finder({jwt, "a password with spaces", "T" * 43})
    assert list(finder.leaks(f"token={jwt}")) == ["s" * 86]
    assert list(finder.leaks("sig=" + "s" * 86 + "&x")) == ["s" * 86]
    assert list(finder.leaks("x" + "T" * 43 + "y")) == ["T" * 43]
    assert list(finder.leaks("said: a password with spaces.")) == ["a password with spaces"]
    assert list(finder.leaks("eyJhbGciOiJFUzI1NiJ9 " + "s" * 85)) == []


@pytest.mark.timeout(900)
def test_no_token_secret_or_password_in_any_log_error_or_metric(ledger_group: str) -> None:
    """`ledger_group`: which tests' ledger this worker holds (tests/reliability/conftest.py)."""
    files = sorted(
        path
        for directory in LEDGER.log_dirs
        for path in (directory / "stdout.txt", directory / "stderr.txt")
        if path.exists()
    )
    if not files:
        pytest.skip("no reliability test ran before this one: nothing to read")
    secrets = {s for s in LEDGER.secrets if len(s) >= 8}
    finder = Finder(secrets)
    found: collections.Counter[str] = collections.Counter()
    lines = 0
    for path in files:
        text = path.read_text(errors="replace")
        lines += text.count("\n")
        for _ in finder.leaks(text):
            found[str(Path(path.parent.parent.name) / path.parent.name / path.name)] += 1
    for where, text in LEDGER.texts:
        for _ in finder.leaks(text):
            found[where] += 1
    LEDGER.record(
        f"8 nothing leaks ({ledger_group})",
        secrets_tracked=len(secrets),
        log_files=len(files),
        log_lines=lines,
        error_texts=sum(not w.startswith("/metrics") for w, _ in LEDGER.texts),
        metrics_snapshots=LEDGER.metrics_snapshots,
        leaks=sum(found.values()),
    )
    assert not found, f"secrets found in: {dict(found)}"
    assert lines > 0, "the servers logged nothing: the check would pass vacuously"
