"""Options of the `wechat` (Official Account) and `wecom` (WeCom customer service)
connectors. Validated once at start-up: a mistyped EncodingAESKey must stop the
worker with the option's name, not turn every callback into a 403 later."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from connectors.wechat.crypto import CryptoError, decode_aes_key
from ingest.options import Secret

Mode = Literal["plaintext", "compatible", "safe"]
EventPolicy = Literal["ignore", "publish"]

NO_SECRET = Secret("")
"""Default of optional secrets (a Secret is an immutable str: safe as a default)."""
TOKEN_RE = re.compile(r"^[A-Za-z0-9]{3,32}$")
"""What both consoles accept as Token: 3-32 letters or digits."""
MAX_CALLBACK_BYTES = 64 * 1024
"""Largest push body read: a real callback is a few KB (a text message holds at most
2,048 bytes of content), so more is refused (413) before it is read whole, parsed or
decrypted, without a signature checked yet."""
NONCE_MEMORY_MAX = 200_000
"""Most (timestamp, nonce) pairs remembered; past it the oldest are forgotten early
(replay protection weakens, genuine retries still work)."""


def _check_common(token: str, key: str, replay_window_secs: int, timeout: float) -> None:
    if not TOKEN_RE.match(token):
        raise ValueError("token must be 3-32 letters or digits, as set in the console")
    if key:
        try:
            decode_aes_key(key)
        except CryptoError as exc:
            raise ValueError(f"encoding_aes_key: {exc}") from None
    if replay_window_secs < 0:
        raise ValueError("replay_window_secs must be >= 0 (0 turns the timestamp check off)")
    if not timeout > 0:
        raise ValueError("request_timeout_secs must be > 0")


def _check_api_base(api_base: str) -> None:
    if not re.match(r"^https?://[^/\s]+", api_base) or api_base.endswith("/"):
        raise ValueError("api_base must be an http(s) URL without a trailing '/'")


@dataclass(frozen=True)
class WechatOptions:
    """An Official Account's message push (公众号服务器配置)."""

    token: Secret
    """Token from 设置与开发 → 基本配置 → 服务器配置 (signs every request)."""
    app_id: str
    """The account's AppID: the receive id inside every encrypted message."""
    encoding_aes_key: Secret = NO_SECRET
    """EncodingAESKey (43 characters); required unless mode is "plaintext"."""
    mode: Mode = "safe"
    """The console's 消息加解密方式: plaintext (明文), compatible (兼容) or safe (安全)."""
    replay_window_secs: int = 300
    """Refuse requests whose timestamp is further than this from now; 0 = no check
    (for replaying captured traffic). Also how long nonces are remembered."""
    events: EventPolicy = "ignore"
    """What to do with follow / menu / scan events: "ignore" (answer, log, drop) or
    "publish" (on the bus with meta.feedback = false)."""
    source: str = ""
    """The event's `source`; default the account's original id (ToUserName, gh_…)."""
    app_secret: Secret = NO_SECRET
    """Optional AppSecret: only `check` uses it, to prove AppID and secret are valid."""
    api_base: str = "https://api.weixin.qq.com"
    request_timeout_secs: float = 5.0

    def __post_init__(self) -> None:
        _check_common(
            self.token, self.encoding_aes_key, self.replay_window_secs, self.request_timeout_secs
        )
        if not self.app_id.strip():
            raise ValueError("app_id must be the account's AppID (wx…)")
        if self.mode != "plaintext" and not self.encoding_aes_key:
            raise ValueError(f"encoding_aes_key is required in {self.mode} mode")
        _check_api_base(self.api_base)

    @classmethod
    def example(cls) -> WechatOptions:
        return cls(
            token=Secret("feedbackToken2024"),
            app_id="wx5823bf96d3bd56c7",
            encoding_aes_key=Secret("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"),
            source="官方服务号",
        )


@dataclass(frozen=True)
class WecomOptions:
    """WeCom customer service (微信客服): the callback plus `sync_msg` pulling."""

    token: Secret
    encoding_aes_key: Secret
    corp_id: str
    """企业ID (CorpID): the receive id inside every callback."""
    secret: Secret
    """The 微信客服 Secret (not another app's): used for `gettoken`."""
    replay_window_secs: int = 300
    events: EventPolicy = "ignore"
    """Callbacks and non-customer rows (system events, servicer messages): "ignore"
    or "publish" with meta.feedback = false."""
    source: str = ""
    """The event's `source`; default the customer-service account (open_kfid)."""
    api_base: str = "https://qyapi.weixin.qq.com"
    sync_limit: int = 1000
    """Messages per `sync_msg` page (1-1000)."""
    max_pages_per_pull: int = 50
    """Pages read per pull before yielding to other accounts (has_more continues later)."""
    request_timeout_secs: float = 10.0
    retry_delay_secs: float = 5.0
    """Wait before retrying a pull that failed (API down, token refresh failed)."""
    catch_up_open_kfids: tuple[str, ...] = ()
    """Customer-service accounts pulled once at start-up from their saved cursors, so
    messages whose callback arrived while the worker was down are not left waiting
    for the next callback."""

    def __post_init__(self) -> None:
        _check_common(
            self.token, self.encoding_aes_key, self.replay_window_secs, self.request_timeout_secs
        )
        if not self.encoding_aes_key:
            raise ValueError("encoding_aes_key is required: WeCom callbacks are always encrypted")
        if not self.corp_id.strip():
            raise ValueError("corp_id must be the CorpID (企业ID, ww…)")
        if not self.secret:
            raise ValueError("secret must be the 微信客服 Secret")
        if not 1 <= self.sync_limit <= 1000:
            raise ValueError("sync_limit must be between 1 and 1000")
        if self.max_pages_per_pull < 1:
            raise ValueError("max_pages_per_pull must be >= 1")
        if self.retry_delay_secs < 0:
            raise ValueError("retry_delay_secs must be >= 0")
        _check_api_base(self.api_base)

    @classmethod
    def example(cls) -> WecomOptions:
        return cls(
            token=Secret("QDG6eK"),
            encoding_aes_key=Secret("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"),
            corp_id="wx5823bf96d3bd56c7",
            secret=Secret("kf-secret-from-the-console"),
            source="信用卡客服",
        )
