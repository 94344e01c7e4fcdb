"""Contact data sealed at rest: the customer's identifier (phone number, e-mail,
OpenID) is stored only encrypted, next to the masked record, and opened only by the
desk's audited contact endpoint (domain.md: "encrypt what is stored, control and log
access").

AES-256-GCM (the `cryptography` package) with a synthetic nonce: the nonce is an HMAC
of the context and the plaintext, so sealing the same contact for the same record
twice gives the same bytes. Redelivery must not change a record (sinks compare
content digests), and a repeated nonce only ever repeats an identical message, which
is what SIV constructions rely on. The record id is the associated data: a sealed
contact copied onto another record does not open.

    v1:<urlsafe base64 of nonce(12) ‖ ciphertext+tag>
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest.errors import PermanentError

VERSION = "v1:"


def _keys(secret: str) -> tuple[bytes, bytes]:
    """An encryption key and a nonce key, both derived from the operator's secret."""
    if len(secret) < 16:
        raise ValueError("the contact key must be at least 16 characters")
    root = hashlib.sha256(secret.encode()).digest()
    return (
        hmac.new(root, b"feedback-ingest contact encryption", hashlib.sha256).digest(),
        hmac.new(root, b"feedback-ingest contact nonce", hashlib.sha256).digest(),
    )


def seal(secret: str, plaintext: str, context: str) -> str:
    enc_key, nonce_key = _keys(secret)
    data, aad = plaintext.encode(), context.encode()
    nonce = hmac.new(nonce_key, aad + b"\x00" + data, hashlib.sha256).digest()[:12]
    sealed = nonce + AESGCM(enc_key).encrypt(nonce, data, aad)
    return VERSION + base64.urlsafe_b64encode(sealed).decode()


def unseal(secret: str, token: str, context: str) -> str:
    """The plaintext; `PermanentError` if the token is not ours, was altered, belongs
    to another record or was sealed with another key."""
    if not token.startswith(VERSION):
        raise PermanentError("not a sealed contact", kind="bad_seal")
    try:
        raw = base64.urlsafe_b64decode(token[len(VERSION) :])
        enc_key, _ = _keys(secret)
        return AESGCM(enc_key).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except (ValueError, InvalidTag) as exc:
        raise PermanentError("sealed contact does not open with this key", kind="bad_seal") from exc
