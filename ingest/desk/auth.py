"""Bearer tokens with roles, from `[[desk.tokens]]`.

Only the SHA-256 of each token is configured: tokens are 32 random bytes, so a plain
hash cannot be brute-forced and a leaked config file leaks no credential. A request's
token is hashed and looked up; the role decides what it may do:

    viewer      the feed, item details, the live stream (masked data only)
    agent       + next / claim / renew / release / resolve / escalate, audited contact view
    supervisor  + reassign, statistics
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from ingest.errors import ConfigError

Role = Literal["viewer", "agent", "supervisor"]
ROLES: tuple[Role, ...] = ("viewer", "agent", "supervisor")
RANK: dict[str, int] = {role: i for i, role in enumerate(ROLES)}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the name goes into the feed (owner) and the audit trail."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


PRINCIPAL_KEY = web.RequestKey("desk_principal", Principal)


def hash_token(token: str) -> str:
    """SHA-256 of the token as UTF-8. A header that is not UTF-8 reaches us with its bad
    bytes as lone surrogates: `surrogatepass` hashes them too, so such a token is just
    unknown (401) instead of a UnicodeEncodeError (500) before authentication."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return "fd_" + secrets.token_urlsafe(32)


def config_lines(name: str, role: Role, token: str) -> str:
    """The `[[desk.tokens]]` table to append to the settings file for `token`."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'[[desk.tokens]]\nname = "{escaped}"\nrole = "{role}"\nsha256 = "{hash_token(token)}"\n'


class Tokens:
    """The configured tokens by hash; built once at start, so a bad entry fails the start."""

    def __init__(self, entries: Sequence[Mapping[str, Any]]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for i, entry in enumerate(entries):
            key = f"desk.tokens[{i}]"
            unknown = set(entry) - {"name", "role", "sha256"}
            if unknown:
                raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
            name, role, digest = entry.get("name"), entry.get("role"), entry.get("sha256")
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{key}.name", "is required (who the token belongs to)")
            if role not in RANK:
                raise ConfigError(f"{key}.role", f"must be one of {', '.join(ROLES)}")
            if not isinstance(digest, str) or len(digest) != 64:
                raise ConfigError(f"{key}.sha256", "must be the 64 hex digits of the hash")
            digest = digest.lower()
            if digest in self._by_hash:
                raise ConfigError(f"{key}.sha256", "the same token is configured twice")
            self._by_hash[digest] = Principal(name.strip(), role)

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, token: str) -> Principal | None:
        return self._by_hash.get(hash_token(token))


_HTTP_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    503: web.HTTPServiceUnavailable,
}


API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
"""On every API answer: items and the contact view hold personal data that a shared
call-centre PC must not keep in its browser cache, and JSON is never sniffed as HTML."""


def http_error(status: int, error: str, reason: str, **headers: str) -> web.HTTPException:
    """An HTTP error with the desk's JSON body `{"error": …, "reason": …}`."""
    cls = _HTTP_ERRORS.get(status, web.HTTPInternalServerError)
    error_response: web.HTTPException = cls(
        text=orjson.dumps({"error": error, "reason": reason}).decode(),
        content_type="application/json",
        headers={**API_HEADERS, **headers},
    )
    return error_response


def authenticate(tokens: Tokens, request: web.Request) -> Principal:
    """The caller, or 401. Tokens come only in the Authorization header: a query
    parameter would end up in access logs and browser history."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise http_error(
            401, "unauthorized", "missing bearer token", **{"WWW-Authenticate": "Bearer"}
        )
    principal = tokens.lookup(token.strip())
    if principal is None:
        raise http_error(
            401,
            "unauthorized",
            "unknown token",
            **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return principal


def requires(tokens: Tokens, role: Role) -> Callable[[Handler], Handler]:
    """Wrap a handler: 401 without a valid token, 403 below `role`; the principal is
    put on the request for the handler (`principal(request)`)."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            who = authenticate(tokens, request)
            if not who.may(role):
                raise http_error(403, "forbidden", f"needs role {role}, token has {who.role}")
            request[PRINCIPAL_KEY] = who
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return wrap


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL_KEY]
