"""I/O of both flavours: the aiohttp callback handlers and WeCom's background pull.

Order of every POST: check the signature (403 `forged`, nothing read further) →
check the timestamp (403 `stale`) → decrypt → nonce memory (a repeat of a request
already answered gets the same answer, nothing published twice) → parse → publish
with the broker's confirm → answer the literal `success`. A body that cannot be
used although the request is authentic is dead-lettered with its bytes and answered
400. The query is read from the raw query string: `+` in Base64 stays `+`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote

import orjson
from aiohttp import web

from connectors.wechat.api import Http, WecomApi, check_oa_secret
from connectors.wechat.config import (
    MAX_CALLBACK_BYTES,
    NONCE_MEMORY_MAX,
    WechatOptions,
    WecomOptions,
)
from connectors.wechat.crypto import CryptoError, MessageCrypto, signature_matches
from connectors.wechat.parse import (
    CHANNEL_OA,
    CHANNEL_WECOM,
    KfNotice,
    parse_envelope,
    parse_oa_message,
    parse_sync_msg,
    parse_wecom_callback,
)
from connectors.wechat.replay import NonceMemory
from ingest.abc import BadInput, PushConnector, Route
from ingest.bounded_body import TooLarge, read_at_most
from ingest.errors import PermanentError, Rejected
from ingest.log import get_logger
from ingest.model import FeedbackEvent

log = get_logger("connectors.wechat")


def raw_query(request: web.Request) -> dict[str, str]:
    """Query parameters percent-decoded from the raw query string, `+` kept as `+`
    (form decoding would turn it into a space and corrupt Base64 values)."""
    params: dict[str, str] = {}
    for part in request.rel_url.raw_query_string.split("&"):
        name, _, value = part.partition("=")
        if name:
            params.setdefault(unquote(name), unquote(value))
    return params


async def read_body(request: web.Request, limit: int = MAX_CALLBACK_BYTES) -> bytes:
    """The request body, refused (413, like the web app's own 2 MiB limit, which is far
    above any callback) as soon as it is over `limit` bytes, after decompression."""
    try:
        return await read_at_most(request.content, request.content_length, limit)
    except TooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=exc.size) from None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a POST was answered, remembered for repeats of the same request."""

    status: int
    text: str

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.text)


SUCCESS = Answer(200, "success")


class _Callback(PushConnector):
    """What both flavours share: nonce memory, decryption, delivery of one message."""

    mode = "push"

    def __init__(self, name: str, options: Any, receive_id: str) -> None:
        super().__init__(name, options)
        key = options.encoding_aes_key.reveal()
        self.crypto = MessageCrypto(options.token.reveal(), key, receive_id) if key else None
        self.nonces: NonceMemory[Answer] = NonceMemory(options.replay_window_secs, NONCE_MEMORY_MAX)
        self.http = Http(options.api_base, options.request_timeout_secs)
        self.ref = f"{self.type}:{name}"

    def routes(self) -> Sequence[Route]:
        return [Route("GET", self.verify_url), Route("POST", self.receive)]

    async def verify_url(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def receive(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def close(self) -> None:
        await self.http.close()

    def wanted(self, event: FeedbackEvent) -> bool:
        """Customer messages always; events only with `events = "publish"`."""
        return bool(event.meta.get("feedback", True)) or self.options.events == "publish"

    def _decrypt(self, encrypted: str, body: bytes) -> tuple[bytes, BadInput | None]:
        assert self.crypto is not None
        try:
            return self.crypto.decrypt(encrypted), None
        except CryptoError as exc:
            log.warning("wechat_decrypt_failed", code=exc.code, kind=exc.kind, error=str(exc))
            return b"", BadInput(str(exc), body, self.ref, exc.kind)

    async def _once(
        self, timestamp: str, nonce: str, message: bytes, body: bytes, failure: BadInput | None
    ) -> web.Response:
        digest = hashlib.sha256(body if failure else message).digest()
        answer = await self.nonces.once(
            timestamp, nonce, digest, lambda: self._deliver(message, failure)
        )
        return answer.response()

    async def _deliver(self, message: bytes, failure: BadInput | None) -> Answer:
        """Publish, then answer `success`, also for a signed message that could not be
        used once its dead letter is confirmed: any other answer makes WeChat retry the
        same bytes and show the customer "该公众号暂时无法提供服务" (channels.md §1.1),
        while the dead letter already holds them for a replay after a fix (the publisher
        logs and counts it)."""
        if failure is not None:
            await self.intake.publish([], [failure])
            return SUCCESS
        events, bad = self.parse_message(message)
        keep = [e for e in events if self.wanted(e)]
        if keep or bad:
            await self.intake.publish(keep, bad)  # returns once the broker confirmed
        for event in events:
            if event not in keep:
                log.info("wechat_event_ignored", event_id=event.id, text=event.text)
        return SUCCESS

    def parse_message(self, message: bytes) -> tuple[list[FeedbackEvent], list[BadInput]]:
        raise NotImplementedError


class WechatConnector(_Callback):
    """Official Account message push: URL verification and messages, all three modes."""

    type: ClassVar[str] = "wechat"
    channel = CHANNEL_OA
    description: ClassVar[str] = (
        "WeChat Official Account (公众号) message push: text, voice recognition, media "
        "and events, plaintext / compatible / safe mode"
    )
    Options = WechatOptions
    options: WechatOptions

    def __init__(self, name: str, options: WechatOptions) -> None:
        super().__init__(name, options, options.app_id)

    async def check(self) -> None:
        """With `app_secret`: ask Tencent for a token (AppID and secret valid, server
        IP whitelisted). Without it there is nothing to reach (WeChat calls us); the
        token and EncodingAESKey were already validated when the options parsed."""
        if self.options.app_secret:
            prefix = f"connectors.{self.name}"
            await check_oa_secret(
                self.http, self.options.app_id, self.options.app_secret.reveal(), prefix
            )

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        """A saved push body: plaintext XML, or an encrypted one (decrypted with the
        configured key; there is no query, so no signature to check)."""
        if b"<Encrypt>" in data and options.encoding_aes_key:
            crypto = MessageCrypto(
                options.token.reveal(), options.encoding_aes_key.reveal(), options.app_id
            )
            try:
                data = crypto.decrypt(parse_envelope(data).encrypt)
            except (CryptoError, PermanentError) as exc:
                kind = getattr(exc, "kind", "malformed")
                return [], [BadInput(str(exc), data, "wechat:payload", kind)]
        return parse_oa_message(data, options.source, "payload")

    def parse_message(self, message: bytes) -> tuple[list[FeedbackEvent], list[BadInput]]:
        return parse_oa_message(message, self.options.source, self.name)

    def _check_signature(self, query: dict[str, str]) -> tuple[str, str]:
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        sent = query.get("signature", "")
        token = self.options.token.reveal()
        if not (sent and timestamp and nonce) or not signature_matches(
            sent, token, timestamp, nonce
        ):
            raise Rejected(403, "forged", "signature mismatch (-40001)")
        return timestamp, nonce

    async def verify_url(self, request: web.Request) -> web.Response:
        """Console "提交": echo `echostr` unchanged once `signature` checks out."""
        query = raw_query(request)
        self._check_signature(query)
        echostr = query.get("echostr", "")
        if not echostr:
            raise Rejected(400, "malformed", "missing echostr")
        return web.Response(text=echostr)

    async def receive(self, request: web.Request) -> web.Response:
        query = raw_query(request)
        timestamp, nonce = self._check_signature(query)
        self.nonces.check_fresh(timestamp)
        body = await read_body(request)
        if query.get("encrypt_type", "raw") != "aes":
            # WeChat sends encrypt_type=aes in compatible mode too; a plaintext request
            # there is a genuine query whose signed-nothing body was swapped.
            if self.options.mode != "plaintext":
                raise Rejected(
                    403, "forged", f"plaintext push refused: mode is {self.options.mode}"
                )
            return await self._once(timestamp, nonce, body, body, None)
        if self.crypto is None:
            missing = BadInput(
                "encrypted push but no encoding_aes_key", body, self.ref, "undecryptable"
            )
            return await self._once(timestamp, nonce, b"", body, missing)
        try:
            envelope = parse_envelope(body)
        except PermanentError as exc:
            return await self._once(
                timestamp, nonce, b"", body, BadInput(str(exc), body, self.ref, exc.kind)
            )
        if not signature_matches(
            query.get("msg_signature", ""), self.crypto.token, timestamp, nonce, envelope.encrypt
        ):
            raise Rejected(403, "forged", "msg_signature mismatch (-40001)")
        message, failure = self._decrypt(envelope.encrypt, body)
        return await self._once(timestamp, nonce, message, body, failure)


KNOWN_ACCOUNTS_KEY = "~known_open_kfids"
"""Cursor key of the accounts pulled before (an open_kfid is `wk` + letters and digits,
so it never collides)."""


class WecomConnector(_Callback):
    """WeCom customer service: the callback says "news for open_kfid"; `run()` pulls."""

    type: ClassVar[str] = "wecom"
    channel = CHANNEL_WECOM
    description: ClassVar[str] = (
        "WeCom customer service (微信客服): encrypted callback, then sync_msg pulling "
        "with a cursor per customer-service account"
    )
    Options = WecomOptions
    options: WecomOptions

    def __init__(self, name: str, options: WecomOptions) -> None:
        super().__init__(name, options, options.corp_id)
        prefix = f"connectors.{name}"
        self.api = WecomApi(self.http, options.corp_id, options.secret.reveal(), prefix)
        self._pending: dict[str, str] = {}
        """open_kfid → the newest callback token, for accounts waiting to be pulled."""
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._known: set[str] = set()
        """Accounts pulled at least once, saved under KNOWN_ACCOUNTS_KEY."""

    async def check(self) -> None:
        """`gettoken` with the customer-service secret: a wrong secret is a ConfigError
        naming `secret`, an unreachable API a TransientError."""
        self.api.invalidate()
        await self.api.access_token()

    @classmethod
    def parse_payload(
        cls, data: bytes, options: Any
    ) -> tuple[Sequence[FeedbackEvent], Sequence[BadInput]]:
        """A saved `sync_msg` answer (JSON) or a decrypted callback (XML)."""
        if data.lstrip().startswith(b"{"):
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                return [], [BadInput(f"not JSON: {exc}", data, "wecom:payload")]
            try:
                return parse_sync_msg(doc, options.corp_id, options.source, "payload")
            except PermanentError as exc:
                return [], [BadInput(str(exc), data, "wecom:payload", exc.kind)]
        try:
            _, record = parse_wecom_callback(data, options.source, "payload")
        except PermanentError as exc:
            return [], [BadInput(str(exc), data, "wecom:payload", exc.kind)]
        return [record], []

    def parse_message(self, message: bytes) -> tuple[list[FeedbackEvent], list[BadInput]]:
        try:
            notice, record = parse_wecom_callback(message, self.options.source, self.name)
        except PermanentError as exc:
            return [], [BadInput(str(exc), message, self.ref, exc.kind)]
        if notice is not None:
            self.schedule(notice)
        return [record], []

    @staticmethod
    def _signing(query: dict[str, str]) -> tuple[str, str, str]:
        """(msg_signature, timestamp, nonce), refused (403) if one is missing: checked
        before a callback's body is read, since nothing unsigned is worth reading."""
        sent = query.get("msg_signature", "")
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not (sent and timestamp and nonce):
            raise Rejected(403, "forged", "missing msg_signature, timestamp or nonce")
        return sent, timestamp, nonce

    def _signed(self, query: dict[str, str], payload: str) -> tuple[str, str]:
        assert self.crypto is not None
        sent, timestamp, nonce = self._signing(query)
        if not payload:
            raise Rejected(403, "forged", "missing msg_signature, timestamp or nonce")
        try:
            self.crypto.verify(sent, timestamp, nonce, payload)
        except CryptoError as exc:
            raise Rejected(403, "forged", str(exc)) from None
        return timestamp, nonce

    async def verify_url(self, request: web.Request) -> web.Response:
        """Console verification: `echostr` is encrypted; answer its plaintext only."""
        assert self.crypto is not None
        query = raw_query(request)
        echostr = query.get("echostr", "")
        self._signed(query, echostr)
        try:
            plain = self.crypto.decrypt(echostr)
        except CryptoError as exc:
            raise Rejected(400, exc.kind, str(exc)) from None
        return web.Response(body=plain, content_type="text/plain")

    async def receive(self, request: web.Request) -> web.Response:
        query = raw_query(request)
        self._signing(query)
        body = await read_body(request)
        try:
            envelope = parse_envelope(body)
        except PermanentError as exc:  # nothing to check a signature against: not authentic
            raise Rejected(400, "malformed", str(exc)) from None
        timestamp, nonce = self._signed(query, envelope.encrypt)
        self.nonces.check_fresh(timestamp)
        message, failure = self._decrypt(envelope.encrypt, body)
        return await self._once(timestamp, nonce, message, body, failure)

    # --- pulling -------------------------------------------------------------------

    def schedule(self, notice: KfNotice) -> None:
        """Queue a pull of `notice.open_kfid` (once: a burst of callbacks is one pull)."""
        waiting = notice.open_kfid in self._pending
        self._pending[notice.open_kfid] = notice.token or self._pending.get(notice.open_kfid, "")
        if not waiting:
            self._queue.put_nowait(notice.open_kfid)

    async def run(self) -> None:
        """One pull at a time, so never two for the same account (single-flight).

        At start every account pulled before and every `catch_up_open_kfids` one is
        pulled once from its saved cursor: a callback answered just before the worker
        stopped (or missed while it was down) queued its pull in memory only, and
        WeCom sends no second callback for messages already announced."""
        loop = asyncio.get_running_loop()
        self._known = await self._load_known()
        for open_kfid in [*self.options.catch_up_open_kfids, *sorted(self._known)]:
            self.schedule(KfNotice(open_kfid, ""))
        while True:
            open_kfid = await self._queue.get()
            token = self._pending.pop(open_kfid, "")
            try:
                unfinished = await self.pull(open_kfid, token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API or the bus is down: try again later
                log.warning("wecom_pull_failed", open_kfid=open_kfid, error=str(exc))
                notice = KfNotice(open_kfid, token)
                loop.call_later(self.options.retry_delay_secs, self.schedule, notice)
                continue
            if unfinished:
                self.schedule(KfNotice(open_kfid, token))
            if open_kfid not in self._known:
                self._known.add(open_kfid)
                await self.intake.save_cursor(
                    KNOWN_ACCOUNTS_KEY, orjson.dumps(sorted(self._known)).decode()
                )

    async def _load_known(self) -> set[str]:
        saved = await self.intake.load_cursor(KNOWN_ACCOUNTS_KEY)
        try:
            known = orjson.loads(saved) if saved else []
        except orjson.JSONDecodeError:
            known = []
        if not isinstance(known, list):
            known = []
        return {k for k in known if isinstance(k, str) and k}

    async def pull(self, open_kfid: str, token: str) -> bool:
        """Read pages after the saved cursor, publish each, then save its next_cursor.
        True if it stopped at `max_pages_per_pull` with more to read."""
        cursor = await self.intake.load_cursor(open_kfid)
        opts = self.options
        for _ in range(opts.max_pages_per_pull):
            doc = await self.api.sync_msg(open_kfid, cursor, token, opts.sync_limit)
            try:
                events, bad = parse_sync_msg(doc, opts.corp_id, opts.source, self.name)
            except PermanentError as exc:
                events, bad = [], [BadInput(str(exc), orjson.dumps(doc), self.ref, exc.kind)]
            keep = [e for e in events if self.wanted(e)]
            if keep or bad:
                await self.intake.publish(keep, bad)
            next_cursor = doc.get("next_cursor")
            if isinstance(next_cursor, str) and next_cursor and next_cursor != cursor:
                await self.intake.save_cursor(open_kfid, next_cursor)
                cursor = next_cursor
            elif doc.get("has_more"):
                log.warning("wecom_has_more_without_cursor", open_kfid=open_kfid)
                return False
            if not doc.get("has_more"):
                return False
        return True
