"""Endpoint secrets at rest: sealed with AES-256-GCM under a key derived from the PII key.

A signing secret must be recoverable (the dispatcher signs with it), so it cannot
be a hash. The sealing key is HKDF-SHA256 of the PII key with its own label, so
it is never the key that pseudonymizes ids; the sealed value records which PII
key id sealed it, so after a rotation the retired key (still configured in
``FOOTFALL_PII_PREVIOUS_KEYS``) opens it until ``footfall webhooks endpoints
reseal`` seals it again under the current key. The associated data binds a
sealed secret to its site and endpoint name, so it cannot be copied to another row.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from footfall.pipeline.privacy import Keyring, PiiKey

_LABEL = b"footfall webhook endpoint secret v1"
_NONCE = 12


class SealError(Exception):
    """A sealed secret cannot be opened (its key is not configured, or it was altered)."""


def _aead(key: PiiKey) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(key.secret)
    return AESGCM(derived)


def _aad(site_id: int, name: str) -> bytes:
    return f"{site_id}:{name}".encode()


def seal(secret: str, key: PiiKey, site_id: int, name: str) -> bytes:
    """The secret encrypted for the row (site_id, name); nonce first."""
    nonce = os.urandom(_NONCE)
    return nonce + _aead(key).encrypt(nonce, secret.encode(), _aad(site_id, name))


def unseal(sealed: bytes, key_id: str, keyring: Keyring, site_id: int, name: str) -> str:
    """The secret back; SealError (never with the secret) if it cannot be."""
    key = next((k for k in keyring.keys if k.key_id == key_id), None)
    if key is None:
        raise SealError(f"the endpoint secret was sealed with PII key {key_id!r}, not configured")
    try:
        plain = _aead(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], _aad(site_id, name))
    except (InvalidTag, ValueError):
        raise SealError("the endpoint secret does not open (altered, or a different key)") from None
    return plain.decode()
