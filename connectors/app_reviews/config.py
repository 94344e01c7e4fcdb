"""Options of the three review connectors (`[connectors.<name>]`, `type = "app_store"`,
`"google_play"` or `"huawei_appgallery"`). Validated once at start-up so a typo fails
with the option's name; key files are read when the connector is built (`keys.py`).
Every base URL is an option, so tests (and a proxy) can stand in for the stores."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from connectors.app_reviews.http import MAX_RESPONSE_BYTES
from ingest.options import Secret

_APPLE_ID = re.compile(r"^\d{5,15}$")
_PACKAGE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")
_COUNTRY = re.compile(r"^[a-z]{2}$")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _base_url(name: str, value: str) -> None:
    if not value.startswith(("https://", "http://")) or value.endswith("/"):
        raise ValueError(f"{name} must be an http(s) URL without a trailing '/', got {value!r}")


@dataclass(frozen=True, kw_only=True)
class PollingOptions:
    """What every review connector has: how often, how patiently, how far back."""

    poll_interval_secs: float = 600.0
    """Stores update their review lists every few minutes; Google allows 200 calls an
    hour per app, so do not poll much more often than every 5 minutes."""
    timeout_secs: float = 30.0
    max_retries: int = 4
    """Retries of one request on HTTP 429 / 5xx / unreachable before the poll fails
    (the runtime then retries the poll with its own backoff)."""
    batch_size: int = 200
    """Reviews per batch handed to the runtime (one cursor commit per batch)."""
    max_pages: int = 200
    """Pages one poll reads at most: bounds a runaway pagination."""
    max_response_bytes: int = MAX_RESPONSE_BYTES
    """Largest answer body read (8 MiB, see `http.MAX_RESPONSE_BYTES`); a bigger one is
    refused unread and the poll fails, to be retried later."""
    backfill_days: int = 30
    """On the first poll (no cursor): how far back to read, where the store can go back."""
    since: str = ""
    """YYYY-MM-DD (UTC): only reviews on or after that day; paging stops at older ones.
    On the first poll it replaces `backfill_days`; later polls still start at the cursor
    (`feedback-ingest backfill NAME --since …` sets it for one pass)."""

    def _check_polling(self) -> None:
        for name in ("poll_interval_secs", "timeout_secs", "batch_size", "max_pages"):
            _positive(name, getattr(self, name))
        if not 64 << 10 <= self.max_response_bytes <= 256 << 20:
            raise ValueError(
                f"max_response_bytes must be 65536-268435456, got {self.max_response_bytes}"
            )
        if not 0 <= self.max_retries <= 10:
            raise ValueError(f"max_retries must be 0-10, got {self.max_retries}")
        if not 1 <= self.backfill_days <= 3650:
            raise ValueError(f"backfill_days must be 1-3650, got {self.backfill_days}")
        if self.since:
            try:
                date.fromisoformat(self.since)
            except ValueError:
                raise ValueError(f"since must be a date YYYY-MM-DD, got {self.since!r}") from None

    @property
    def since_ms(self) -> int:
        """`since` as Unix ms (UTC midnight); -1 when unset."""
        if not self.since:
            return -1
        day = date.fromisoformat(self.since)
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True, kw_only=True)
class AppStoreOptions(PollingOptions):
    app_id: str
    """The app's Apple id (digits, from its App Store URL `…/id1458752011`)."""
    source: Literal["rss", "connect_api"] = "rss"
    """`rss`: the public feed (no key, 500 newest per storefront, best effort);
    `connect_api`: App Store Connect (needs an API key; every review, every territory)."""
    countries: tuple[str, ...] = ("cn",)
    """RSS: storefronts to read (two-letter, lower case: cn, hk, mo, tw, us …)."""
    rss_base: str = "https://itunes.apple.com"
    rss_max_pages: int = 10
    issuer_id: str = ""
    """connect_api: the issuer id shown above the key list in App Store Connect."""
    key_id: str = ""
    """connect_api: the key's id (10 characters)."""
    private_key: Secret = Secret("")  # noqa: RUF009 - an immutable str, safe as a default
    """connect_api: the `.p8` key's PEM text (or use `private_key_file`)."""
    private_key_file: str = ""
    api_base: str = "https://api.appstoreconnect.apple.com"
    territories: tuple[str, ...] = ()
    """connect_api: only these territories (ISO alpha-3: CHN, HKG …); empty: all."""
    page_size: int = 200

    def __post_init__(self) -> None:
        self._check_polling()
        if not _APPLE_ID.match(self.app_id):
            raise ValueError(f"app_id must be the app's numeric Apple id, got {self.app_id!r}")
        _base_url("rss_base", self.rss_base)
        _base_url("api_base", self.api_base)
        if not 1 <= self.rss_max_pages <= 10:
            raise ValueError("rss_max_pages must be 1-10 (Apple serves 10 pages at most)")
        if not 1 <= self.page_size <= 200:
            raise ValueError("page_size must be 1-200 (App Store Connect's limit)")
        if self.source == "rss":
            if not self.countries or not all(_COUNTRY.match(c) for c in self.countries):
                raise ValueError("countries must list two-letter storefronts, e.g. ['cn']")
            return
        if not self.issuer_id or not self.key_id:
            raise ValueError("source 'connect_api' needs issuer_id and key_id")
        if bool(self.private_key) == bool(self.private_key_file):
            raise ValueError("source 'connect_api' needs one of private_key, private_key_file")
        if not all(re.fullmatch(r"[A-Z]{3}", t) for t in self.territories):
            raise ValueError("territories must be ISO alpha-3 codes, e.g. ['CHN', 'HKG']")

    @classmethod
    def example(cls) -> AppStoreOptions:
        return cls(app_id="1458752011", countries=("cn", "hk"))


@dataclass(frozen=True, kw_only=True)
class GooglePlayOptions(PollingOptions):
    package_name: str
    """The app's package name, e.g. cn.example.bank."""
    service_account_file: str = ""
    """The service account's JSON key file (or `service_account_json`, its content)."""
    service_account_json: Secret = Secret("")  # noqa: RUF009 - immutable str
    api_base: str = "https://androidpublisher.googleapis.com"
    token_url: str = ""
    """Where the JWT is exchanged for an access token; empty: the key's `token_uri`."""
    page_size: int = 100
    backfill_days: int = 7
    """Google only lists reviews created or changed in about the last week."""

    def __post_init__(self) -> None:
        self._check_polling()
        if not _PACKAGE.match(self.package_name):
            raise ValueError(f"package_name must be a package name, got {self.package_name!r}")
        if bool(self.service_account_file) == bool(self.service_account_json):
            raise ValueError("give one of service_account_file, service_account_json")
        _base_url("api_base", self.api_base)
        if self.token_url:
            _base_url("token_url", self.token_url)
        if not 1 <= self.page_size <= 100:
            raise ValueError("page_size must be 1-100")

    @classmethod
    def example(cls) -> GooglePlayOptions:
        return cls(
            package_name="cn.example.bank",
            service_account_file="/etc/feedback-ingest/google-play-reviews.json",
        )


@dataclass(frozen=True, kw_only=True)
class HuaweiOptions(PollingOptions):
    app_id: str
    """The app's AppGallery Connect app id (digits)."""
    client_id: str
    """An AGC API client (Users and permissions → API key → Connect API), role with
    access to reviews. Service-account keys are not accepted by the review API."""
    client_secret: Secret
    api_base: str = "https://connect-api.cloud.huawei.com"
    """The site hosting the countries: China; `-dre` Germany, `-dra` Singapore, `-drru` Russia."""
    countries: tuple[str, ...] = ("CN",)
    harmonyos: bool = False
    """HarmonyOS 5+ (NEXT) apps use the marketing-api v2 endpoint."""
    page_size: int = 100

    def __post_init__(self) -> None:
        self._check_polling()
        if not re.fullmatch(r"\d{3,20}", self.app_id):
            raise ValueError(f"app_id must be the AGC app id (digits), got {self.app_id!r}")
        if not self.client_id or not self.client_secret:
            raise ValueError("client_id and client_secret are required")
        _base_url("api_base", self.api_base)
        if not self.countries or not all(re.fullmatch(r"[A-Z]{2}", c) for c in self.countries):
            raise ValueError("countries must be two-letter upper-case codes, e.g. ['CN']")
        if not 1 <= self.page_size <= 100:
            raise ValueError("page_size must be 1-100 (AGC's limit)")

    @classmethod
    def example(cls) -> HuaweiOptions:
        return cls(app_id="104567891", client_id="1234567890123456789", client_secret=Secret("…"))
