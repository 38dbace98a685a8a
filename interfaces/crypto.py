"""Envelope encryption with AES-GCM: per-tenant data keys wrapped by one master key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12
KEY_FILE = "master.key"


class AesGcmSecretBox:
    """Implements the ``SecretBox`` port. Ciphertexts are ``nonce || AES-GCM(data)``."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._master = AESGCM(master_key)
        self._fingerprint_key = derived_key(master_key, b"hostplane fingerprints v1")

    @staticmethod
    def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + aead.encrypt(nonce, plaintext, aad)

    @staticmethod
    def _open(aead: AESGCM, sealed: bytes, aad: bytes) -> bytes:
        return aead.decrypt(sealed[:NONCE], sealed[NONCE:], aad)

    def new_wrapped_data_key(self) -> bytes:
        return self._seal(self._master, AESGCM.generate_key(bit_length=256), b"data-key")

    def _data_key(self, wrapped_data_key: bytes) -> AESGCM:
        return AESGCM(self._open(self._master, wrapped_data_key, b"data-key"))

    def encrypt(self, wrapped_data_key: bytes, plaintext: str) -> bytes:
        return self._seal(self._data_key(wrapped_data_key), plaintext.encode(), b"secret")

    def decrypt(self, wrapped_data_key: bytes, ciphertext: bytes) -> str:
        return self._open(self._data_key(wrapped_data_key), ciphertext, b"secret").decode()

    def fingerprint(self, purpose: str, text: str) -> str:
        """Implements the ``Fingerprinter`` port: HMAC-SHA256 under a key derived from the
        master key for ``purpose`` (every node shares it, as they share the master key)."""
        key = hmac.new(self._fingerprint_key, purpose.encode(), hashlib.sha256).digest()
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def derived_key(master_key: bytes, purpose: bytes) -> bytes:
    """A key of its own for one purpose, derived from the master key (HMAC-SHA256)."""
    return hmac.new(master_key, purpose, hashlib.sha256).digest()


class MasterKeyError(Exception):
    """The master key is malformed, missing, or not the one the database was initialised with."""


# The database keeps an HMAC of a constant under the master key: it tells whether a node's
# key is the one every other node uses, and reveals nothing of it.
CHECK_INPUT = b"hostplane master key check v1"
META = "CREATE TABLE IF NOT EXISTS hostplane_meta (name text PRIMARY KEY, value text NOT NULL)"
# Nodes starting together on a new database: one creates the table and records its key first.
META_LOCK = "SELECT pg_advisory_xact_lock(hashtext('hostplane_meta'), 1)"
SELECT_CHECK = "SELECT value FROM hostplane_meta WHERE name = 'master_key_check'"
INSERT_CHECK = "INSERT INTO hostplane_meta (name, value) VALUES ('master_key_check', %s)"
SET_THE_KEY = (
    "set HOSTPLANE_MASTER_KEY to the key the other nodes on this database use (base64 of 32 bytes)"
)


def key_check(key: bytes) -> str:
    return hmac.new(key, CHECK_INPUT, hashlib.sha256).hexdigest()


def checked_master_key(conninfo: str, configured: str | None, data_dir: Path) -> bytes:
    """The master key (``load_master_key``), checked against the one the database was
    initialised with; the first node to start on a database records its key's check value.

    A node with another key would answer 500 on every secret of tenants made elsewhere; it
    refuses to start instead (``MasterKeyError``). Without ``HOSTPLANE_MASTER_KEY`` and without
    a key in its data dir, a node makes one only for a database that has none yet.
    """
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute(META_LOCK)
        conn.execute(META)
        row = conn.execute(SELECT_CHECK).fetchone()
        stored = str(row[0]) if row else None
        key = load_master_key(configured, data_dir, may_generate=stored is None)
        check = key_check(key)
        if stored is None:
            conn.execute(INSERT_CHECK, (check,))
        elif not hmac.compare_digest(stored, check):
            source = "HOSTPLANE_MASTER_KEY" if configured else f"the key in {data_dir / KEY_FILE}"
            raise MasterKeyError(
                f"{source} is not the master key this database was initialised with (every"
                f" node on one database must use the same one): {SET_THE_KEY}"
            )
    return key


def load_master_key(configured: str | None, data_dir: Path, may_generate: bool = True) -> bytes:
    """``HOSTPLANE_MASTER_KEY`` (base64 of 32 bytes), else a key generated once into the data dir."""
    if configured:
        return decode_key(configured, "HOSTPLANE_MASTER_KEY")
    path = data_dir / KEY_FILE
    if path.exists():
        return decode_key(path.read_text().strip(), str(path))
    if not may_generate:
        raise MasterKeyError(
            "HOSTPLANE_MASTER_KEY is not set, and this database was initialised with a master"
            f" key (a node makes a key of its own only for a new database): {SET_THE_KEY}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode())
    return key


def decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise MasterKeyError(f"{source} is not a master key: it must be base64 of 32 bytes")
    return key
