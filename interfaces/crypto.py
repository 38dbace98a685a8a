"""Envelope encryption with AES-GCM: per-tenant data keys wrapped by one master key."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


class AesGcmSecretBox:
    """Implements the ``SecretBox`` port. Ciphertexts are ``nonce || AES-GCM(data)``."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._master = AESGCM(master_key)

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


def load_master_key(configured: str | None, data_dir: Path) -> bytes:
    """``HOSTPLANE_MASTER_KEY`` (base64 of 32 bytes), else a key generated once into the data dir."""
    if configured:
        return base64.b64decode(configured)
    path = data_dir / "master.key"
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode())
    return key
