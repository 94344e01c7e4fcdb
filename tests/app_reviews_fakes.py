"""Local stand-ins for the three stores, serving answers shaped like the fixtures in
tests/fixtures/app_reviews (which come from each API's documented or captured
responses): Apple's RSS feed and App Store Connect, Google Play's token endpoint and
reviews.list, AppGallery Connect's token and comment list. Each verifies what the
real one verifies (JWT signatures, audience, lifetime; client credentials; bearer
tokens), pages the way the real one pages, and can be told to answer 429/503 first.

Used by the unit, contract and integration tests and by bench/reviews_backfill.py.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "app_reviews"
APPLE_APP = "1458752011"
PACKAGE = "cn.example.bank"
HUAWEI_APP = "104567891"
HUAWEI_CLIENT_ID = "1234567890123456789"
HUAWEI_SECRET = "agc-s3cret-for-tests"
ASC_ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
ASC_KEY_ID = "2X9R4HXF34"
SA_EMAIL = "reviews-reader@example.iam.gserviceaccount.com"
RSS_PAGE = 50


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return orjson.loads(fixture(name))


# --- keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Throwaway keys made per test run: nothing secret is ever committed."""

    asc: ec.EllipticCurvePrivateKey
    google: rsa.RSAPrivateKey

    @classmethod
    def make(cls) -> Keys:
        return cls(ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048))

    @property
    def asc_pem(self) -> str:
        return _pem(self.asc)

    def service_account_json(self, token_uri: str = "https://oauth2.googleapis.com/token") -> str:
        return orjson.dumps(
            {
                "type": "service_account",
                "project_id": "example-bank-reviews",
                "private_key_id": "8d1f0c4b2a6e",
                "private_key": _pem(self.google),
                "client_email": SA_EMAIL,
                "client_id": "104567890123456789012",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri,
            }
        ).decode()


def _pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_jwt(token: str, public_key: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWT whose ES256 or RS256 signature checks out, else ValueError."""
    try:
        head, body, sig = token.split(".")
        header, claims, signature = orjson.loads(_b64(head)), orjson.loads(_b64(body)), _b64(sig)
    except (ValueError, orjson.JSONDecodeError):
        raise ValueError("not a JWT") from None
    signed = f"{head}.{body}".encode()
    try:
        if header.get("alg") == "ES256":
            if len(signature) != 64:
                raise ValueError("ES256 signature must be r||s, 64 bytes")
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        elif header.get("alg") == "RS256":
            public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise ValueError(f"unexpected alg {header.get('alg')!r}")
    except InvalidSignature:
        raise ValueError("bad signature") from None
    return header, claims


# --- review factories (the fixtures' shapes) ---------------------------------------

TEXTS = [
    ("登录闪退", "升级后一打开就闪退，人脸识别界面一闪就没了。"),
    ("转账失败", "跨行转账提示失败，手续费却扣了，客服一直排队。"),
    ("人脸识别不过", "眨眼摇头好几次都识别失败，只能去网点。"),
    ("短信验证码收不到", "换了手机以后验证码一直收不到，没法登录。"),
    ("理财到期不到账", "产品到期三天了钱还没回到卡里。"),
    ("好用", "新版界面清楚多了，转账也快。"),
]


def _text(i: int) -> tuple[str, str, int]:
    title, body = TEXTS[i % len(TEXTS)]
    rating = 5 if title == "好用" else 1 + i % 3
    return title, f"{body}（{i}）", rating


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone_minus8()).isoformat()


def timezone_minus8() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=-8))


def rss_entry(review_id: str, at: datetime, i: int, text: str | None = None) -> dict[str, Any]:
    title, body, rating = _text(i)
    template = copy.deepcopy(fixture_json("apple_rss_cn_page1.json")["feed"]["entry"][1])
    template["id"]["label"] = review_id
    template["updated"]["label"] = iso(at)
    template["title"]["label"] = title
    template["content"]["label"] = text or body
    template["im:rating"]["label"] = str(rating)
    template["author"]["name"]["label"] = f"用户{i % 997}"
    return template


def asc_item(review_id: str, at: datetime, i: int, text: str | None = None) -> dict[str, Any]:
    title, body, rating = _text(i)
    item = copy.deepcopy(fixture_json("asc_customer_reviews_page2.json")["data"][0])
    item["id"] = review_id
    item["attributes"].update(
        rating=rating,
        title=title,
        body=text or body,
        reviewerNickname=f"用户{i % 997}",
        createdDate=iso(at),
        territory="CHN",
    )
    return item


def google_item(review_id: str, at: datetime, i: int, text: str | None = None) -> dict[str, Any]:
    title, body, rating = _text(i)
    item = copy.deepcopy(fixture_json("google_reviews_page2.json")["reviews"][0])
    item["reviewId"] = review_id
    item["authorName"] = f"用户{i % 997}"
    user = item["comments"][0]["userComment"]
    seconds = int(at.timestamp())
    user.update(
        text=text or f"{title}\t{body}",
        starRating=rating,
        lastModified={"seconds": str(seconds), "nanos": 0},
    )
    return item


def huawei_item(review_id: str, at: datetime, i: int, text: str | None = None) -> dict[str, Any]:
    title, body, rating = _text(i)
    item = copy.deepcopy(fixture_json("huawei_reviews_page1.json")["data"]["reviewList"][0])
    item.update(
        reviewId=review_id,
        content=text or f"{title}，{body}",
        rating=rating,
        dateline=int(at.timestamp() * 1000),
    )
    return item


# --- the fake -----------------------------------------------------------------------


@dataclass
class FakeStores:
    """Holds each store's reviews as raw items; tests add, edit and inspect them."""

    keys: Keys
    rss: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    asc: list[dict[str, Any]] = field(default_factory=list)
    asc_included: list[dict[str, Any]] = field(default_factory=list)
    google: list[dict[str, Any]] = field(default_factory=list)
    huawei: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    """(path prefix, status, headers): served, in order, instead of the real answer."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    base: str = ""
    _tokens: set[str] = field(default_factory=set)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    def with_fixtures(cls, keys: Keys) -> FakeStores:
        fake = cls(keys)
        rss = fixture_json("apple_rss_cn_page1.json")["feed"]["entry"]
        fake.rss["cn"] = rss[1:]
        page1 = fixture_json("asc_customer_reviews_page1.json")
        fake.asc = page1["data"] + fixture_json("asc_customer_reviews_page2.json")["data"]
        fake.asc_included = page1["included"]
        fake.google = (
            fixture_json("google_reviews_page1.json")["reviews"]
            + fixture_json("google_reviews_page2.json")["reviews"]
        )
        fake.huawei = fixture_json("huawei_reviews_page1.json")["data"]["reviewList"]
        return fake

    def fail(self, path_prefix: str, status: int, *, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.failures.append((path_prefix, status, headers))

    def fill(self, count: int, *, newest: datetime | None = None) -> None:
        """`count` generated reviews in every store, one minute apart."""
        top = newest or datetime.now(UTC) - timedelta(minutes=1)
        for i in range(count):
            at = top - timedelta(minutes=i)
            self.asc.append(asc_item(f"00000099-bench-{i:08d}", at, i))
            self.google.append(google_item(f"gp:bench-{i:08d}", at, i))
            self.huawei.append(huawei_item(f"hw-bench-{i:08d}", at, i))
            if i < 500:
                self.rss.setdefault("cn", []).append(rss_entry(str(12000000000 + i), at, i))

    # --- the web app ---------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/{cc}/rss/customerreviews/{rest:.*}", self._rss)
        app.router.add_get("/v1/apps/{app}/customerReviews", self._asc)
        app.router.add_post("/token", self._google_token)
        app.router.add_get("/androidpublisher/v3/applications/{pkg}/reviews", self._google)
        app.router.add_post("/api/oauth2/v1/token", self._huawei_token)
        app.router.add_get("/api/reviews/v1/manage/dev/reviews", self._huawei)
        app.router.add_get("/api/marketing-api/v2/reviews/manage/dev/reviews", self._huawei)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        for n, (prefix, status, headers) in enumerate(self.failures):
            if request.path.startswith(prefix):
                del self.failures[n]
                body = fixture("asc_error_429.json") if status == 429 else b"<html>503</html>"
                return web.Response(status=status, body=body, headers=headers)
        response: web.StreamResponse = await handler(request)
        return response

    def _issue(self) -> str:
        token = f"fake-access-token-{next(self._counter)}"
        self._tokens.add(token)
        return token

    def _bearer_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "").removeprefix("Bearer ") in self._tokens

    # Apple RSS ----------------------------------------------------------------------

    async def _rss(self, request: web.Request) -> web.Response:
        cc, rest = request.match_info["cc"], request.match_info["rest"]
        parts = dict(p.split("=", 1) for p in rest.split("/") if "=" in p)
        number = int(parts.get("page", "1"))
        if parts.get("id") != APPLE_APP or not 1 <= number <= 10:
            return web.Response(status=400, text="<html>CustomerReviews RSS page not found</html>")
        doc = copy.deepcopy(fixture_json("apple_rss_cn_page1.json"))
        entries = sorted(self.rss.get(cc, []), key=lambda e: e["updated"]["label"], reverse=True)
        last = max(1, min(10, -(-len(entries) // RSS_PAGE)))
        page = entries[(number - 1) * RSS_PAGE : number * RSS_PAGE]
        if number == 1 and page:
            page = [doc["feed"]["entry"][0], *page]  # the app's metadata entry first
        if page:
            doc["feed"]["entry"] = page[0] if len(page) == 1 else page
        else:
            del doc["feed"]["entry"]
        for link in doc["feed"]["link"]:
            if link["attributes"]["rel"] == "last":
                link["attributes"]["href"] = link["attributes"]["href"].replace(
                    "page=1/", f"page={last}/", 1
                )
        return web.json_response(body=orjson.dumps(doc))

    # App Store Connect ----------------------------------------------------------------

    def _asc_auth(self, request: web.Request) -> bool:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            header, claims = verify_jwt(token, self.keys.asc.public_key())
        except ValueError:
            return False
        return (
            header.get("kid") == ASC_KEY_ID
            and header.get("typ") == "JWT"
            and claims.get("iss") == ASC_ISSUER
            and claims.get("aud") == "appstoreconnect-v1"
            and 0 < claims["exp"] - claims["iat"] <= 1200
        )

    async def _asc(self, request: web.Request) -> web.Response:
        if not self._asc_auth(request):
            return web.Response(status=401, body=fixture("asc_error_401.json"))
        if request.match_info["app"] != APPLE_APP:
            return web.Response(
                status=404, body=b'{"errors":[{"status":"404","code":"NOT_FOUND"}]}'
            )
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("cursor", "0"))
        items = sorted(self.asc, key=lambda i: i["attributes"]["createdDate"], reverse=True)
        page = items[offset : offset + limit]
        url = f"{self.base}/v1/apps/{APPLE_APP}/customerReviews"
        query = f"include=response&limit={limit}&sort=-createdDate"
        doc: dict[str, Any] = {
            "data": page,
            "links": {"self": f"{url}?{request.query_string}"},
            "meta": {"paging": {"total": len(items), "limit": limit}},
        }
        if offset + limit < len(items):
            doc["links"]["next"] = f"{url}?cursor={offset + limit}&{query}"
        wanted = {
            i["relationships"]["response"].get("data", {}).get("id")
            for i in page
            if "relationships" in i
        }
        if request.query.get("include") == "response":
            doc["included"] = [r for r in self.asc_included if r["id"] in wanted]
        return web.json_response(body=orjson.dumps(doc))

    # Google ---------------------------------------------------------------------------

    async def _google_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            _, claims = verify_jwt(str(form.get("assertion", "")), self.keys.google.public_key())
            valid = (
                form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer"
                and claims.get("iss") == SA_EMAIL
                and claims.get("aud") == f"{self.base}/token"
                and claims.get("scope") == "https://www.googleapis.com/auth/androidpublisher"
            )
        except ValueError:
            valid = False
        if not valid:
            return web.Response(status=400, body=fixture("google_token_invalid_grant.json"))
        body = {"access_token": self._issue(), "expires_in": 3599, "token_type": "Bearer"}
        return web.json_response(body)

    async def _google(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request):
            error = {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}
            return web.json_response({"error": error}, status=401)
        if request.match_info["pkg"] != PACKAGE:
            error = {"code": 404, "message": "Package not found", "status": "NOT_FOUND"}
            return web.json_response({"error": error}, status=404)
        size = int(request.query.get("maxResults", "100"))
        offset = int(request.query.get("token", "p0").removeprefix("p"))

        def modified(item: dict[str, Any]) -> tuple[int, int]:
            stamp = item["comments"][0]["userComment"]["lastModified"]
            return int(stamp["seconds"]), int(stamp.get("nanos", 0))

        items = sorted(self.google, key=modified, reverse=True)
        doc: dict[str, Any] = {"reviews": items[offset : offset + size]}
        if offset + size < len(items):
            doc["tokenPagination"] = {"nextPageToken": f"p{offset + size}"}
        return web.json_response(body=orjson.dumps(doc))

    # Huawei ---------------------------------------------------------------------------

    async def _huawei_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (
            body.get("grant_type") != "client_credentials"
            or body.get("client_id") != HUAWEI_CLIENT_ID
            or body.get("client_secret") != HUAWEI_SECRET
        ):
            return web.Response(body=fixture("huawei_token_error.json"))
        return web.json_response({"access_token": self._issue(), "expires_in": 172799})

    async def _huawei(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request) or request.headers.get("client_id") != HUAWEI_CLIENT_ID:
            error = {"ret": {"code": 205524993, "msg": "client token auth failed"}}
            return web.json_response(error, status=401)
        q = request.query
        if q.get("appId") != HUAWEI_APP:
            no = {"ret": {"rtnCode": 50010028, "rtnDesc": "user or app auth validate failed"}}
            return web.json_response(no)
        begin, end = int(q["beginTime"]), int(q["endTime"])
        if end - begin > 180 * 86_400_000:
            return web.json_response({"ret": {"rtnCode": 1, "rtnDesc": "time span too long"}})
        number, limit = int(q.get("page", "1")), int(q.get("limit", "50"))
        items = [i for i in self.huawei if begin <= int(i["dateline"]) <= end]
        items.sort(key=lambda i: int(i["dateline"]), reverse=True)
        page = items[(number - 1) * limit : number * limit]
        has_next = 1 if number * limit < len(items) else 0
        data = {"total": len(items), "hasNext": has_next, "reviewList": page}
        doc = {"ret": {"rtnCode": 0, "rtnDesc": "success"}, "data": data}
        return web.json_response(body=orjson.dumps(doc))


@asynccontextmanager
async def running(fake: FakeStores) -> Any:
    """The fake on a random local port; `fake.base` is its URL while it runs."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.base = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()


# --- connector tables for the fake --------------------------------------------------


def rss_options(fake: FakeStores, **extra: Any) -> dict[str, Any]:
    return {"app_id": APPLE_APP, "countries": ["cn"], "rss_base": fake.base, **extra}


def asc_options(fake: FakeStores, **extra: Any) -> dict[str, Any]:
    return {
        "app_id": APPLE_APP,
        "source": "connect_api",
        "issuer_id": ASC_ISSUER,
        "key_id": ASC_KEY_ID,
        "private_key": fake.keys.asc_pem,
        "api_base": fake.base,
        "backfill_days": 3650,
        **extra,
    }


def google_options(fake: FakeStores, **extra: Any) -> dict[str, Any]:
    return {
        "package_name": PACKAGE,
        "service_account_json": fake.keys.service_account_json(f"{fake.base}/token"),
        "api_base": fake.base,
        "backfill_days": 3650,
        **extra,
    }


def huawei_options(fake: FakeStores, **extra: Any) -> dict[str, Any]:
    return {
        "app_id": HUAWEI_APP,
        "client_id": HUAWEI_CLIENT_ID,
        "client_secret": HUAWEI_SECRET,
        "api_base": fake.base,
        "backfill_days": 3650,
        **extra,
    }
