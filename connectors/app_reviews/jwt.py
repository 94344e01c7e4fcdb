"""The two JWTs the stores want, signed with `cryptography` (already a dependency, so
no PyJWT): ES256 for App Store Connect (.p8 key), RS256 for the Google service-account
token exchange. Pure functions of their inputs; the clock is passed in."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ASC_AUDIENCE = "appstoreconnect-v1"
ASC_TOKEN_SECS = 20 * 60
"""Apple refuses tokens that expire more than 20 minutes after they were issued."""
GOOGLE_SCOPE = "https://www.googleapis.com/auth/androidpublisher"
GOOGLE_ASSERTION_SECS = 3600


class BadKey(ValueError):
    """The key text is not a usable key of the expected kind (message names why)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return b64url(orjson.dumps(value))


def load_ec_p256(pem: str) -> ec.EllipticCurvePrivateKey:
    """An App Store Connect `.p8` key (PKCS#8 PEM of a P-256 key)."""
    key = _load_private(pem)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise BadKey("not a P-256 (ES256) private key, as App Store Connect issues")
    return key


def load_rsa(pem: str) -> rsa.RSAPrivateKey:
    """The `private_key` of a Google service-account JSON key."""
    key = _load_private(pem)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadKey("not an RSA private key, as a Google service-account key holds")
    return key


def _load_private(pem: str) -> Any:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"not a PEM private key ({type(exc).__name__})") from None


def sign_es256(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    """JWS compact form; the signature is r‖s (32 bytes each), not DER (RFC 7518 §3.4)."""
    signing_input = f"{_segment({'alg': 'ES256', 'kid': kid, 'typ': 'JWT'})}.{_segment(claims)}"
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def sign_rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str = "") -> str:
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def asc_token(key: ec.EllipticCurvePrivateKey, key_id: str, issuer_id: str, now: int) -> str:
    """An App Store Connect API token valid for 20 minutes from `now` (Unix seconds)."""
    claims = {"iss": issuer_id, "iat": now, "exp": now + ASC_TOKEN_SECS, "aud": ASC_AUDIENCE}
    return sign_es256(claims, key, key_id)


def google_assertion(
    key: rsa.RSAPrivateKey, key_id: str, client_email: str, token_uri: str, now: int
) -> str:
    """The JWT-bearer assertion exchanged at `token_uri` for an access token (RFC 7523)."""
    claims = {
        "iss": client_email,
        "scope": GOOGLE_SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + GOOGLE_ASSERTION_SECS,
    }
    return sign_rs256(claims, key, key_id)
