"""WeChat / WeCom callback cryptography (pure: no I/O, no clock).

The recipe is Tencent's `WXBizMsgCrypt` (channels.md §1.1, checked against the
published SDK vectors in tests/unit/test_wechat_crypto.py):

- signature = SHA-1 hex of the lexicographically sorted, concatenated strings
  (token, timestamp, nonce[, Encrypt or echostr]);
- AES-256-CBC, key = Base64(EncodingAESKey + "="), IV = the key's first 16 bytes;
- PKCS#7 padding against a **32-byte** block (pad values 1-32), removed by hand:
  a stock 16-byte unpadder refuses the pad values Tencent really sends;
- plaintext = 16 random bytes | 4-byte big-endian length | message | receive id
  (AppID for an Official Account, CorpID for WeCom).

Failures carry Tencent's own error codes (`CryptoError.code`) so our logs can be
compared with the SDKs' and the vendor's documentation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_BYTES = 32
"""Tencent pads to 32 bytes, not AES's 16."""
RANDOM_BYTES = 16
KEY_CHARS = 43

# Tencent's WXBizMsgCrypt error codes (kept for comparable logs).
VALIDATE_SIGNATURE_ERROR = -40001
PARSE_XML_ERROR = -40002
ILLEGAL_AES_KEY = -40004
VALIDATE_RECEIVE_ID_ERROR = -40005
DECRYPT_AES_ERROR = -40007
ILLEGAL_BUFFER = -40008
DECODE_BASE64_ERROR = -40010


class CryptoError(Exception):
    """A signature, key or ciphertext problem; `code` is Tencent's, `kind` our metric label."""

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.kind = kind


def signature(*parts: str) -> str:
    """Tencent's request signature over `parts` (token, timestamp, nonce[, payload])."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_matches(sent: str, *parts: str) -> bool:
    """Constant-time comparison of a received signature with the expected one."""
    return hmac.compare_digest(sent.strip().lower().encode(), signature(*parts).encode())


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind the 43-character EncodingAESKey."""
    if len(encoding_aes_key) != KEY_CHARS or not encoding_aes_key.isascii():
        raise CryptoError(ILLEGAL_AES_KEY, "bad_key", "EncodingAESKey must be 43 ASCII characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error:
        raise CryptoError(ILLEGAL_AES_KEY, "bad_key", "EncodingAESKey is not Base64") from None
    if len(key) != 32:  # pragma: no cover - 43 Base64 chars + "=" always give 32 bytes
        raise CryptoError(ILLEGAL_AES_KEY, "bad_key", "EncodingAESKey must decode to 32 bytes")
    return key


def pad(data: bytes) -> bytes:
    n = BLOCK_BYTES - len(data) % BLOCK_BYTES
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    """Strict PKCS#7 removal against a 32-byte block: last byte n, 1 <= n <= 32, and
    the last n bytes all equal n."""
    if not data:
        raise CryptoError(DECRYPT_AES_ERROR, "undecryptable", "empty plaintext")
    n = data[-1]
    if not 1 <= n <= BLOCK_BYTES or n > len(data) or data[-n:] != bytes([n]) * n:
        raise CryptoError(DECRYPT_AES_ERROR, "undecryptable", "bad PKCS#7 padding")
    return data[:-n]


class MessageCrypto:
    """Signs, encrypts and decrypts messages of one account (token, key, receive id)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self.token = token
        self.key = decode_aes_key(encoding_aes_key)
        self.receive_id = receive_id

    def sign(self, timestamp: str, nonce: str, payload: str) -> str:
        return signature(self.token, timestamp, nonce, payload)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, payload: str) -> None:
        """Raise -40001 unless `msg_signature` signs `payload` (Encrypt or echostr)."""
        if not signature_matches(msg_signature, self.token, timestamp, nonce, payload):
            raise CryptoError(VALIDATE_SIGNATURE_ERROR, "forged", "msg_signature mismatch")

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, message: bytes, random16: bytes | None = None) -> str:
        """Base64 ciphertext of `message`, as WeChat would send it."""
        prefix = os.urandom(RANDOM_BYTES) if random16 is None else random16
        if len(prefix) != RANDOM_BYTES:
            raise ValueError("random16 must be 16 bytes")
        plain = prefix + struct.pack(">I", len(message)) + message + self.receive_id.encode()
        encryptor = self._cipher().encryptor()
        sealed = encryptor.update(pad(plain)) + encryptor.finalize()
        return base64.b64encode(sealed).decode("ascii")

    def decrypt(self, encrypted: str) -> bytes:
        """The message inside `encrypted`; checks padding, length and receive id."""
        try:
            sealed = base64.b64decode(encrypted.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(
                DECODE_BASE64_ERROR, "undecryptable", "Encrypt is not Base64"
            ) from None
        if not sealed or len(sealed) % BLOCK_BYTES:
            raise CryptoError(
                DECRYPT_AES_ERROR,
                "undecryptable",
                f"ciphertext of {len(sealed)} bytes is not a whole number of 32-byte blocks",
            )
        decryptor = self._cipher().decryptor()
        plain = unpad(decryptor.update(sealed) + decryptor.finalize())
        return self._unwrap(plain)

    def _unwrap(self, plain: bytes) -> bytes:
        head = RANDOM_BYTES + 4
        if len(plain) < head:
            raise CryptoError(ILLEGAL_BUFFER, "undecryptable", "plaintext shorter than its header")
        (length,) = struct.unpack(">I", plain[RANDOM_BYTES:head])
        if length > len(plain) - head:
            raise CryptoError(ILLEGAL_BUFFER, "undecryptable", "message length exceeds the buffer")
        message, receive_id = plain[head : head + length], plain[head + length :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise CryptoError(
                VALIDATE_RECEIVE_ID_ERROR,
                "wrong_receive_id",
                "receive id in the message is not the configured one",
            )
        return message

    def seal(self, message: bytes, timestamp: str, nonce: str) -> tuple[str, str]:
        """(Encrypt, msg_signature) for `message`: how WeChat builds a safe-mode push,
        and how a passive encrypted reply is built."""
        encrypted = self.encrypt(message)
        return encrypted, self.sign(timestamp, nonce, encrypted)
