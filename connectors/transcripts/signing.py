"""The webhook signature, pure: HMAC-SHA256 over "<timestamp>.<raw body>".

Putting the timestamp inside the signed string is what stops replays: an old captured
request cannot be re-signed with a fresh timestamp without the secret. A replay inside
the window carries the same call id, so it lands on the same record and changes
nothing; no nonce memory is needed.
"""

from __future__ import annotations

import hashlib
import hmac

from ingest.errors import Rejected

PREFIX = "sha256="
_MAX_TIMESTAMP_CHARS = 12


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The header value a sender computes: `sha256=<lower-case hex>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return PREFIX + mac.hexdigest()


def verify(
    secret: str,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    *,
    now_secs: float,
    window_secs: int,
) -> None:
    """Return if the request is genuine and fresh; else raise `Rejected(403, ...)`:
    kind "forged" for a missing or wrong signature, "stale" for a genuine signature
    whose timestamp is outside the window (checked second, so it reveals nothing to
    someone without the secret)."""
    if not signature or not timestamp:
        raise Rejected(403, "forged", "missing signature or timestamp header")
    timestamp = timestamp.strip()
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_CHARS:
        raise Rejected(403, "forged", "timestamp must be Unix seconds")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
        raise Rejected(403, "forged", "signature does not match")
    if window_secs and abs(now_secs - int(timestamp)) > window_secs:
        raise Rejected(403, "stale", f"timestamp is more than {window_secs}s away from now")
