"""Token minting, keyed digests and field validation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable

import pytest

from server import validation
from server.errors import InvalidRequest
from server.tokens import CANARY_MESSAGE, KeyedDigest, mint_token, new_client_secret


def test_tokens_are_url_safe_and_carry_256_bits() -> None:
    tokens = {mint_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", new_client_secret())


def test_digests_are_keyed_and_purpose_separated() -> None:
    one, other = KeyedDigest(b"a" * 32), KeyedDigest(b"b" * 32)
    assert one.token("t") == one.token("t")
    assert one.token("t") != other.token("t")
    assert one.token("t") != one.client_secret("t")
    assert re.fullmatch(r"[0-9a-f]{64}", one.token("t"))


def test_the_canary_is_per_secret_and_under_a_subkey_of_its_own() -> None:
    secret = b"a" * 32
    one, other = KeyedDigest(secret), KeyedDigest(b"b" * 32)
    assert one.canary() == KeyedDigest(secret).canary()
    assert one.canary() != other.canary()
    assert re.fullmatch(r"[0-9a-f]{64}", one.canary())
    # Not the secret's own HMAC of the message, nor any digest the database also holds.
    message = CANARY_MESSAGE.decode()
    assert one.canary() != hmac.new(secret, CANARY_MESSAGE, hashlib.sha256).hexdigest()
    assert one.canary() not in {
        one.token(message),
        one.client_secret(message),
        one.login_subject("t", message),
    }
    assert secret.hex() not in one.canary() and secret.decode() not in one.canary()


def test_refresh_successors_are_deterministic_keyed_and_shaped_as_minted_tokens() -> None:
    """A retried refresh must get the same tokens (the same presented token, the same
    successor), and nothing the database holds may yield them: not the presented token's
    digest, nor another secret's derivation."""
    secret = b"a" * 32
    one, other = KeyedDigest(secret), KeyedDigest(b"b" * 32)
    presented = mint_token()
    access, refresh = one.successor(presented, "access"), one.successor(presented, "refresh")
    assert access == KeyedDigest(secret).successor(presented, "access")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", access)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", refresh)
    assert len({access, refresh, presented, one.successor(mint_token(), "access")}) == 4
    assert access != other.successor(presented, "access")
    # Under a subkey of its own: neither the secret's own HMAC of the labelled token nor the
    # token-digest subkey's (whose digests the database holds).
    message = b"access\0" + presented.encode()
    token_key = hmac.new(secret, b"tokenservice token digest v1", hashlib.sha256).digest()
    for key in (secret, token_key):
        raw = hmac.new(key, message, hashlib.sha256).digest()
        assert access != base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    jti = one.successor_jti(presented)
    assert jti == KeyedDigest(secret).successor_jti(presented)
    assert jti != other.successor_jti(presented) and jti != one.successor_jti(mint_token())
    assert uuid.UUID(jti).version == 4 and str(uuid.UUID(jti)) == jti


def test_the_canary_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    digests, other = KeyedDigest(b"a" * 32), KeyedDigest(b"b" * 32)
    compared: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert digests.canary_matches(digests.canary())
    assert compared == [(digests.canary().encode(), digests.canary().encode())]
    assert not digests.canary_matches(other.canary())
    assert not digests.canary_matches(digests.canary()[:-1])
    assert not digests.canary_matches("é" * 64)  # whatever is stored, never a TypeError
    assert len(compared) == 4


def test_client_secret_check() -> None:
    digests = KeyedDigest(b"k" * 32)
    stored = digests.client_secret("s3cret")
    assert digests.client_secret_matches("s3cret", stored)
    assert not digests.client_secret_matches("s3cre", stored)
    assert not digests.client_secret_matches("anything", None)


@pytest.mark.parametrize("value", ["abc", "shop1", "a234567890123456"])
def test_valid_tenants(value: str) -> None:
    assert validation.tenant(value) == value


@pytest.mark.parametrize("value", ["", "ab", "1shop", "Shop", "a2345678901234567", "sh-op"])
def test_invalid_tenants(value: str) -> None:
    with pytest.raises(InvalidRequest, match="tenant"):
        validation.tenant(value)


def test_scopes_are_split_deduplicated_and_checked() -> None:
    assert validation.scopes("a b  a tenant=x") == ("a", "b", "tenant=x")
    assert validation.scopes("") == ()
    with pytest.raises(InvalidRequest, match="scope"):
        validation.scopes('a "b"')
    with pytest.raises(InvalidRequest, match="at most"):
        validation.scopes("a" * 5000)


def test_email_is_lower_cased_and_checked() -> None:
    assert validation.email("Ann@Shop.Example") == "ann@shop.example"
    with pytest.raises(InvalidRequest, match="email"):
        validation.email("ann")


def test_messages_never_echo_the_value() -> None:
    secret = "p" * 2000
    with pytest.raises(InvalidRequest) as caught:
        validation.password(secret)
    assert secret not in str(caught.value)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (validation.tenant, "shop\n"),
        (lambda v: validation.identifier(v, "client_id"), "web-client\n"),
        (validation.email, "ann@shop.example\n"),
    ],
)
def test_a_trailing_newline_is_not_part_of_a_valid_value(
    check: Callable[[str], object], value: str
) -> None:
    """`$` in a Python pattern also matches before a final newline: every check must look at
    the whole value, or "shop\\n" would pass as a tenant and reach the store and the log."""
    with pytest.raises(InvalidRequest):
        check(value)
    check(value.rstrip("\n"))  # the same value without the newline is fine
