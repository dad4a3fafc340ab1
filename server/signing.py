"""SaaS-token signing: ES256 keys kept in the store, a key ring that follows rotations, JWKS.

Private keys are stored encrypted (AES-GCM under a key derived from the server secret), so that
a copy of the database cannot mint SaaS tokens. The kid is the RFC 7638 JWK thumbprint. The ring
re-reads the store at most every `refresh_seconds`, so keys rotated by the CLI or by another
replica are picked up without a restart.

Signatures are deterministic (RFC 6979 nonces): the same claims under the same key give the same
token, byte for byte, so that a retried refresh answers with the SaaS token it answered first.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import ECAlgorithm
from jwt.utils import der_to_raw_signature

from server.clock import Clock
from server.errors import InvalidRequest
from server.records import KeyStatus, SigningKeyRecord
from server.store.protocol import SigningKeys

ALGORITHM = "ES256"
_NONCE_BYTES = 12


class _DeterministicES256(ECAlgorithm):
    """ES256 whose nonce is derived from the key and the message (RFC 6979) rather than drawn
    at random: the signature is an ordinary ES256 one to every verifier, and the same input
    signs the same. Random nonces gain nothing here, and a bad random source could leak the
    key through them."""

    def __init__(self) -> None:
        super().__init__(ECAlgorithm.SHA256, ec.SECP256R1)

    def sign(self, msg: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
        der = key.sign(msg, ec.ECDSA(self.hash_alg(), deterministic_signing=True))
        return der_to_raw_signature(der, key.curve)


def _signer() -> jwt.PyJWS:
    """A JWS encoder of this module's own that knows only deterministic ES256; PyJWT's module-
    level functions, which the verifiers use, stay as they are."""
    jws = jwt.PyJWS(algorithms=[])
    jws.register_algorithm(ALGORITHM, _DeterministicES256())
    return jws


_JWS = _signer()


def _encode(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    """A compact JWS of `claims`, as `jwt.encode` builds it (compact JSON, sorted headers with
    `typ` and `kid`), signed deterministically."""
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return _JWS.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid})


class KeyCipher:
    """Encrypts private keys at rest under a subkey of the server secret."""

    def __init__(self, secret: bytes) -> None:
        key = hmac.new(secret, b"tokenservice signing key encryption v1", hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, kid: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, kid.encode())

    def open(self, sealed: bytes, kid: str) -> bytes:
        return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], kid.encode())


def new_signing_key(cipher: KeyCipher, now: int) -> SigningKeyRecord:
    """A fresh P-256 key, ready to store as the active key."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    kid = _thumbprint(public_jwk)
    public_jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKeyRecord(
        kid=kid,
        algorithm=ALGORITHM,
        private_key_encrypted=cipher.seal(der, kid),
        public_jwk=json.dumps(public_jwk, sort_keys=True),
        status=KeyStatus.ACTIVE,
        created_at=now,
    )


def _thumbprint(jwk: dict[str, Any]) -> str:
    canonical = json.dumps(
        {name: jwk[name] for name in ("crv", "kty", "x", "y")}, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class KeyRing:
    """The signing keys as this process last read them from the store.

    A key rotated in is published in the JWKS at once but signs only once it has been published
    for `activation_seconds`: verifiers that cached the key set (for the JWKS max-age, plus
    PyJWT's refetch cooldown) learn it before they meet a token it signed. Until then the
    previous key keeps signing. While no key is old enough (just after the first start), the
    one published longest signs.
    """

    def __init__(
        self,
        store: SigningKeys,
        cipher: KeyCipher,
        clock: Clock,
        *,
        refresh_seconds: float = 30.0,
        activation_seconds: int = 0,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._activation_seconds = activation_seconds
        self._loaded_at = float("-inf")
        self._records: list[SigningKeyRecord] = []
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._public: dict[str, jwt.PyJWK] = {}
        self._lock = asyncio.Lock()

    async def ensure_active_key(self) -> None:
        """Creates the first key on a store with none published (start-up); one key even when
        several replicas start together."""
        await self.reload()
        if not self._published():
            await self._store.add_first_signing_key(
                new_signing_key(self._cipher, int(self._clock.now()))
            )
            await self.reload()

    async def reload(self) -> None:
        async with self._lock:
            self._records = await self._store.list_signing_keys()
            self._public = {record.kid: self._public_key(record) for record in self._published()}
            self._loaded_at = self._clock.now()

    async def sign(self, claims: dict[str, Any]) -> str:
        """The SaaS token of `claims` under the key that signs now: the same token again for
        the same claims while that key signs (a key rotated in between signs it anew)."""
        await self._refresh_if_stale()
        if not self._published():
            await self.ensure_active_key()
        record = self.signing_key()
        return _encode(claims, self._private_key(record), record.kid)

    def signing_key(self) -> SigningKeyRecord:
        """The key that signs now (`signing_key_of`)."""
        record = signing_key_of(self._records, self._clock.now(), self._activation_seconds)
        if record is None:
            raise LookupError("no signing key is published")
        return record

    async def open_keys(self) -> None:
        """Reads the keys and decrypts every published private key (start-up): a secret that
        cannot open them is found here, not by a customer login. Raises KeyDoesNotOpen."""
        await self.reload()
        for record in self._published():
            try:
                self._private_key(record)
            except InvalidTag:
                raise KeyDoesNotOpen(record.kid) from None

    async def jwks(self) -> dict[str, Any]:
        """The public keys that verify SaaS tokens: the active one and those not yet retired."""
        await self._refresh_if_stale()
        return jwks_of(self._records)

    async def verification_keys(self) -> dict[str, jwt.PyJWK]:
        """The published public keys by kid, as the JWKS has them (server.saas_verifier): the
        active key, even before it signs, and the verifying ones; never a retired key."""
        await self._refresh_if_stale()
        return self._public

    async def _refresh_if_stale(self) -> None:
        if self._clock.now() - self._loaded_at >= self._refresh_seconds:
            await self.reload()

    def _published(self) -> list[SigningKeyRecord]:
        return published_keys(self._records)

    def _public_key(self, record: SigningKeyRecord) -> jwt.PyJWK:
        key = self._public.get(record.kid)
        if key is None:
            key = jwt.PyJWK(json.loads(record.public_jwk), algorithm=ALGORITHM)
        return key

    def _private_key(self, record: SigningKeyRecord) -> ec.EllipticCurvePrivateKey:
        key = self._private.get(record.kid)
        if key is None:
            der = self._cipher.open(record.private_key_encrypted, record.kid)
            loaded = serialization.load_der_private_key(der, password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            key = self._private[record.kid] = loaded
        return key


class KeyDoesNotOpen(Exception):
    """A stored private key does not decrypt with this server secret."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"signing key {kid} does not decrypt with this secret")
        self.kid = kid


# --- which key signs: one rule for the key ring and for retiring ------------------------------
def published_keys(records: Sequence[SigningKeyRecord]) -> list[SigningKeyRecord]:
    """The keys in the JWKS, newest first: the active key (the latest rotated in), then by
    creation time."""
    published = [r for r in records if r.status in (KeyStatus.ACTIVE, KeyStatus.VERIFYING)]
    return sorted(
        published, key=lambda r: (r.status is KeyStatus.ACTIVE, r.created_at), reverse=True
    )


def signing_key_of(
    records: Sequence[SigningKeyRecord], now: float, activation_seconds: float
) -> SigningKeyRecord | None:
    """The key that signs at `now`: the newest published for `activation_seconds` already;
    while none is, the one published longest. None when no key is published."""
    published = published_keys(records)
    ripe_before = now - activation_seconds
    for record in published:
        if record.created_at <= ripe_before:
            return record
    return published[-1] if published else None


def refuse_retiring_the_signer(
    records: Sequence[SigningKeyRecord], kid: str, now: float, activation_seconds: float
) -> None:
    """Raises InvalidRequest when `kid` is the key that signs at `now` (`signing_key_of`):
    the key rotated in after it has not been published long enough for verifiers with a cached
    key set to know it, and retiring this one would make it sign at once. The message says
    when it can be retired: once a newer key has been published for `activation_seconds`."""
    signer = signing_key_of(records, now, activation_seconds)
    if signer is None or signer.kid != kid:
        return
    published = published_keys(records)
    newer = published[: published.index(signer)]
    if not newer:
        raise InvalidRequest("the signing key cannot be retired; rotate first", field="kid")
    from_time = min(record.created_at for record in newer) + activation_seconds
    wait = max(1, math.ceil(from_time - now))
    when = datetime.datetime.fromtimestamp(from_time, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise InvalidRequest(
        f"signing key '{kid}' still signs SaaS tokens: the key rotated in after it signs only "
        f"from {when}, once it has been published for {activation_seconds:g} s "
        "(TOKENSERVICE_SIGNING_KEY_ACTIVATION_SECONDS), so that verifiers know it first; "
        f"retire this key from then on, in {wait} s",
        field="kid",
    )


def jwks_of(records: Sequence[SigningKeyRecord]) -> dict[str, Any]:
    return {
        "keys": [
            json.loads(record.public_jwk)
            for record in records
            if record.status in (KeyStatus.ACTIVE, KeyStatus.VERIFYING)
        ]
    }
