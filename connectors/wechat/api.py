"""The few Tencent API calls the connectors make, errors translated at this boundary:
a wrong secret or id is a `ConfigError` naming the option, anything down or busy is
a `TransientError`. `api_base` is configurable so tests run against a local fake
that answers with the real JSON shapes.

- WeCom `GET /cgi-bin/gettoken?corpid&corpsecret` → access token (cached until
  shortly before `expires_in`, refreshed once when a call says 40001/40014/42001);
- WeCom `POST /cgi-bin/kf/sync_msg?access_token` → a page of customer-service rows;
- Official Account `GET /cgi-bin/token?grant_type=client_credential&appid&secret`
  (only `check` uses it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import orjson

from ingest.errors import ConfigError, TransientError
from ingest.tokens import AccessToken

TOKEN_EXPIRED = frozenset({40001, 40014, 42001})
"""invalid credential / invalid access_token / access_token expired: refresh once."""
INVALID_MSG_TOKEN = 95007
"""[R] sync_msg's callback `token` is invalid or expired: retry without it."""
"""Refresh this long before Tencent's expiry, so a token never dies mid-pull."""

_BAD_SECRET = frozenset({40001, 40091, 40125, 41004})
_BAD_ID = frozenset({40013, 41002})
_IP_NOT_ALLOWED = frozenset({40164, 60020})


class Http:
    """A JSON client on one aiohttp session (created lazily on the running loop)."""

    def __init__(self, api_base: str, timeout_secs: float) -> None:
        self.api_base = api_base
        self.timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def call(
        self, method: str, path: str, params: Mapping[str, str], body: Any = None
    ) -> dict[str, Any]:
        url = self.api_base + path
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            async with self._client().request(
                method, url, params=dict(params), data=data, headers=headers
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(f"{path}: {_scrubbed(exc, params)}") from None
        if status >= 400:
            raise TransientError(f"{path}: HTTP {status}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransientError(f"{path}: answer is not JSON ({raw[:80]!r})") from None
        if not isinstance(doc, dict):
            raise TransientError(f"{path}: answer is not a JSON object")
        return doc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


_SECRET_PARAMS = ("secret", "corpsecret", "access_token")


def _scrubbed(exc: BaseException, params: Mapping[str, str]) -> str:
    """The error's type and text without the credentials the query carries: Tencent's
    API takes the secret and the access token in the URL, and aiohttp puts the whole URL
    into the text of some errors (a bad answer, too many redirects, an invalid URL)."""
    text = f"{type(exc).__name__}: {exc}"
    for key in _SECRET_PARAMS:
        if value := params.get(key):
            for form in (value, quote(value, safe=""), quote_plus(value)):
                text = text.replace(form, "***")
    return text


def _credential_error(
    doc: Mapping[str, Any], prefix: str, id_key: str, secret_key: str
) -> Exception:
    code, message = doc.get("errcode"), doc.get("errmsg", "")
    if code in _BAD_SECRET:
        return ConfigError(f"{prefix}.{secret_key}", f"rejected by Tencent ({code}: {message})")
    if code in _BAD_ID:
        return ConfigError(f"{prefix}.{id_key}", f"rejected by Tencent ({code}: {message})")
    if code in _IP_NOT_ALLOWED:
        return ConfigError(
            f"{prefix}.{secret_key}",
            f"this server's IP is not in the account's IP whitelist ({code}: {message})",
        )
    return TransientError(f"token request failed ({code}: {message})")


class WecomApi:
    """`gettoken` with a cached access token, and `sync_msg`."""

    def __init__(
        self,
        http: Http,
        corp_id: str,
        secret: str,
        prefix: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.corp_id = corp_id
        self._secret = secret
        self.prefix = prefix
        self.clock = clock
        self._token = AccessToken(default_lifetime_secs=7200.0)

    async def access_token(self) -> str:
        kept = self._token.current(self.clock())
        if kept is not None:
            return kept
        doc = await self.http.call(
            "GET", "/cgi-bin/gettoken", {"corpid": self.corp_id, "corpsecret": self._secret}
        )
        token = doc.get("access_token")
        if doc.get("errcode", 0) != 0 or not isinstance(token, str) or not token:
            raise _credential_error(doc, self.prefix, "corp_id", "secret")
        return self._token.keep(token, doc.get("expires_in"), self.clock())

    def invalidate(self) -> None:
        self._token.forget()

    async def sync_msg(
        self, open_kfid: str, cursor: str | None, token: str, limit: int
    ) -> dict[str, Any]:
        """One page; refreshes the access token once, drops an invalid callback token."""
        refreshed = False
        while True:
            body: dict[str, Any] = {"limit": limit, "open_kfid": open_kfid, "voice_format": 0}
            if cursor:
                body["cursor"] = cursor
            if token:
                body["token"] = token
            access = await self.access_token()
            doc = await self.http.call(
                "POST", "/cgi-bin/kf/sync_msg", {"access_token": access}, body
            )
            code = doc.get("errcode", 0)
            if code == 0:
                return doc
            if code in TOKEN_EXPIRED and not refreshed:
                refreshed = True
                self.invalidate()
                continue
            if code == INVALID_MSG_TOKEN and token:
                token = ""
                continue
            raise TransientError(f"sync_msg failed ({code}: {doc.get('errmsg', '')})")


async def check_oa_secret(http: Http, app_id: str, secret: str, prefix: str) -> None:
    """Prove AppID + AppSecret by asking for an access token (which is then dropped)."""
    doc = await http.call(
        "GET",
        "/cgi-bin/token",
        {"grant_type": "client_credential", "appid": app_id, "secret": secret},
    )
    if doc.get("errcode", 0) != 0 or not doc.get("access_token"):
        raise _credential_error(doc, prefix, "app_id", "app_secret")
