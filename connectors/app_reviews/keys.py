"""Reading the stores' keys from the options, when the connector is built: a missing
file or a key of the wrong kind stops the worker at start with the option's name,
instead of failing every poll. Key text never reaches a log or an error message."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.app_reviews.jwt import BadKey, load_ec_p256, load_rsa
from ingest.errors import ConfigError

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    key_id: str
    key: rsa.RSAPrivateKey
    token_uri: str


def _read(path: str, key: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {path!r}: {type(exc).__name__}") from None


def asc_key(inline: str, path: str, prefix: str) -> ec.EllipticCurvePrivateKey:
    """The App Store Connect `.p8` key, from `private_key` or `private_key_file`."""
    key = f"{prefix}.private_key_file" if path else f"{prefix}.private_key"
    pem = _read(path, key) if path else inline
    try:
        return load_ec_p256(pem)
    except BadKey as exc:
        raise ConfigError(key, str(exc)) from None


def service_account(inline: str, path: str, prefix: str) -> ServiceAccount:
    """A Google service-account JSON key (`type: service_account`)."""
    key = f"{prefix}.service_account_file" if path else f"{prefix}.service_account_json"
    text = _read(path, key) if path else inline
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConfigError(key, "is not a JSON service-account key") from None
    if not isinstance(doc, dict) or doc.get("type") != "service_account":
        raise ConfigError(key, "is not a service-account key (type must be service_account)")
    email, pem = doc.get("client_email"), doc.get("private_key")
    if not isinstance(email, str) or not isinstance(pem, str):
        raise ConfigError(key, "needs client_email and private_key")
    try:
        private = load_rsa(pem)
    except BadKey as exc:
        raise ConfigError(key, f"private_key: {exc}") from None
    token_uri = doc.get("token_uri")
    return ServiceAccount(
        client_email=email,
        key_id=str(doc.get("private_key_id", "")),
        key=private,
        token_uri=token_uri if isinstance(token_uri, str) and token_uri else GOOGLE_TOKEN_URI,
    )
