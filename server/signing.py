"""SaaS-token signing: ES256 keys kept in the store, a key ring that follows rotations, JWKS.

Private keys are stored encrypted (AES-GCM under a key derived from the server secret), so that
a copy of the database cannot mint SaaS tokens. The kid is the RFC 7638 JWK thumbprint. The ring
re-reads the store at most every `refresh_seconds`, so keys rotated by the CLI or by another
replica are picked up without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.clock import Clock
from server.store.protocol import TokenStore
from server.store.records import KeyStatus, SigningKeyRecord

ALGORITHM = "ES256"
_NONCE_BYTES = 12


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
        store: TokenStore,
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
        await self._refresh_if_stale()
        if not self._published():
            await self.ensure_active_key()
        record = self.signing_key()
        return jwt.encode(
            claims, self._private_key(record), algorithm=ALGORITHM, headers={"kid": record.kid}
        )

    def signing_key(self) -> SigningKeyRecord:
        """The newest key published long enough; while none is, the one published longest."""
        published = self._published()  # newest first
        ripe_before = self._clock.now() - self._activation_seconds
        for record in published:
            if record.created_at <= ripe_before:
                return record
        return published[-1]

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
        """Newest first: the active key (the latest rotated in), then by creation time."""
        published = [
            r for r in self._records if r.status in (KeyStatus.ACTIVE, KeyStatus.VERIFYING)
        ]
        return sorted(
            published, key=lambda r: (r.status is KeyStatus.ACTIVE, r.created_at), reverse=True
        )

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


def jwks_of(records: Sequence[SigningKeyRecord]) -> dict[str, Any]:
    return {
        "keys": [
            json.loads(record.public_jwk)
            for record in records
            if record.status in (KeyStatus.ACTIVE, KeyStatus.VERIFYING)
        ]
    }


def new_jti() -> str:
    return str(uuid.uuid4())
