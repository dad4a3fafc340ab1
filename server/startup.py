"""Start-up: the one way every entry point (`serve`, each worker of `serve --workers`, the
provisioning CLI, the benchmark server) opens the store with the server secret, refusing to run
with a secret that is not the database's.

A wrong secret does not fail loudly by itself: every stored token and client secret simply stops
matching (service clients get `invalid_client`), signing keys fail to decrypt (customer login
answers 500), and whatever is issued meanwhile is lost when the right secret comes back. So:

1. The key file must exist, or be created only over a database that holds nothing; its mode must
   keep it private (server/secret_key.py).
2. The database's canary, an HMAC under a subkey of the secret (`KeyedDigest.canary`) written at
   its first start, must match this secret's (a constant-time comparison). Replicas starting
   together write it insert-if-absent: one wins, the others compare. A database from before the
   canary (migration 0004) that holds data proves the secret by its signing keys decrypting;
   with none to prove it by, the canary is written and that is logged.
3. Every published signing key must decrypt (`KeyRing.open_keys`).

Any refusal is a `SecretKeyError` whose message says what is wrong and what to do, never the
secret; `tokenservice` prints it as `error: ...` and exits 2. The database files' modes are
checked too: a SQLite file others can read is warned about (its mode is the operator's).
"""

from __future__ import annotations

import logging

from cryptography.exceptions import InvalidTag
from sqlalchemy.engine import make_url

from server import customer_sessions
from server.clock import Clock
from server.core import Core, build_core
from server.secret_key import (
    SecretKeyError,
    SecretKeyMissing,
    SecretSource,
    create_key_file,
    load_secret_key,
    secret_source,
)
from server.settings import Settings
from server.signing import KeyDoesNotOpen
from server.store.factory import open_store
from server.store.protocol import ServiceMeta
from server.store.sqlite_file import exposed_files

log = logging.getLogger("tokenservice.startup")

CANARY = "secret_canary"
NEW_KEY_BREAKS = "a new key would make every stored token, client secret and signing key unusable"


async def open_core(
    settings: Settings, *, migrate: bool = True, clock: Clock | None = None
) -> Core:
    """Opens (and, with `migrate`, migrates) the store and returns a core over it once the
    secret is proven to be the database's; raises SecretKeyError otherwise, with the store
    closed. The caller closes `core.store`."""
    customer_sessions.check_settings(settings)
    source = secret_source(settings)
    missing: SecretKeyMissing | None = None
    secret: bytes | None = None
    try:
        secret = load_secret_key(settings)
    except SecretKeyMissing as exc:
        missing = exc
    _warn_about_exposed_files(settings)
    store = await open_store(settings, migrate=migrate)
    try:
        if missing is not None:
            secret = await _create_key_over_empty(settings, store, missing)
        core = build_core(settings, store, clock=clock, secret=secret)
        await check_canary(core, source)
        await _open_signing_keys(core, source)
    except BaseException:
        await store.close()
        raise
    return core


async def _create_key_over_empty(
    settings: Settings, store: ServiceMeta, missing: SecretKeyMissing
) -> bytes:
    """A new key file, but only where nothing made with another key could be lost."""
    if await store.holds_data():
        raise SecretKeyError(
            f"the secret key file {missing.path} is missing, but the database "
            f"{database_name(settings)} holds data made with a secret key: {NEW_KEY_BREAKS}, "
            f"so none is created. Restore {missing.path} from a backup (mode 0600), or set "
            "TOKENSERVICE_SECRET_KEY_FILE or TOKENSERVICE_SECRET_KEY to the original secret, "
            "or point TOKENSERVICE_DATABASE_URL at a new database to start afresh"
        )
    secret = create_key_file(missing.path)
    log.info("created the secret key file %s for a new database", missing.path)
    return secret


async def check_canary(core: Core, source: SecretSource) -> None:
    """Compares the database's canary with this secret's; writes it when there is none yet
    (after proving the secret by the signing keys, where the database holds data)."""
    store = core.store
    stored = await store.get_meta(CANARY)
    if stored is None:
        await _prove_without_canary(core, source)
        stored = await store.add_meta_if_absent(CANARY, core.digests.canary())
    if not core.digests.canary_matches(stored):
        raise SecretKeyError(wrong_secret(core.settings, source))


async def _prove_without_canary(core: Core, source: SecretSource) -> None:
    """A database with no canary: new, or from before migration 0004. Every stored private key
    must decrypt (AES-GCM: a wrong key fails its tag); with none, the secret is trusted."""
    if not await core.store.holds_data():
        return
    keys = await core.store.list_signing_keys()
    for record in keys:
        try:
            core.cipher.open(record.private_key_encrypted, record.kid)
        except InvalidTag:
            raise SecretKeyError(wrong_secret(core.settings, source)) from None
    if not keys:
        log.warning(
            "the database %s holds data but no canary and no signing key to prove the secret "
            "with: trusting %s and recording its canary",
            database_name(core.settings),
            source.describe(),
        )


async def _open_signing_keys(core: Core, source: SecretSource) -> None:
    try:
        await core.keys.open_keys()
    except KeyDoesNotOpen as exc:
        raise SecretKeyError(
            f"signing key {exc.kid} in the database {database_name(core.settings)} does not "
            f"decrypt with {source.describe()}, although the database's canary matches it: "
            "the key was stored by a process with another secret. Rotate from a process with "
            "the right secret and retire that key, or restore the database from a backup"
        ) from None


def wrong_secret(settings: Settings, source: SecretSource) -> str:
    restore = "the original secret"
    if source.path is not None:
        restore = f"the original key ({source.path})"
    return (
        f"the secret key does not open the database {database_name(settings)}: it was created "
        f"with a secret other than the one in {source.describe()}. Restore {restore} or point "
        f"TOKENSERVICE_DATABASE_URL at the database it belongs to; {NEW_KEY_BREAKS}"
    )


def database_name(settings: Settings) -> str:
    """The database URL without its password."""
    return make_url(settings.database_url).render_as_string(hide_password=True)


def _warn_about_exposed_files(settings: Settings) -> None:
    for path, mode in exposed_files(settings.database_url):
        log.warning(
            "the database file %s has mode %04o: users besides its owner may read the customers' "
            "e-mail addresses and password hashes in it; run `chmod 600 %s`",
            path,
            mode,
            path,
        )
