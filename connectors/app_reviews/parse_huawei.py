"""Huawei AppGallery Connect comment list pages → reviews. Pure.

[R] As best known, not from Huawei's own reference (channels.md §2.4): the answer is
`{"ret": {"rtnCode": 0, …}, "data": {"total", "hasNext", "reviewList": [...]}}`,
each review with `reviewId`, `content`, `rating`, `dateline` (Unix ms),
`countryCode`, `lang`, `versionName`, `phoneName`, `devReplyState`. A third-party
client records that the live API mixes numbers and strings for ids and ratings and
answers `hasNext` as a number; all are accepted. The HarmonyOS 5+ endpoint's
`{"rtnCode", "data": [...], "total"}` envelope (no `hasNext`) is accepted too. Confirm
against the AGC documentation before relying on field names; unknown fields are kept
out of meta.
"""

from __future__ import annotations

from typing import Any

from connectors.app_reviews.cursor import Found
from connectors.app_reviews.parse import (
    HUAWEI,
    Page,
    each_item,
    epoch_ms_time,
    load_object,
    obj,
    opt_int,
    opt_str,
    rating,
    review_event,
    review_id,
)
from ingest.errors import PermanentError

_AUTHOR_KEYS = ("nickName", "userName", "nickname")
"""[R] not in the known samples; read if present."""


def return_code(doc: dict[str, Any]) -> tuple[int | None, str]:
    """(code, message) of either envelope; None when the answer carries no code."""
    ret = doc.get("ret")
    if isinstance(ret, dict):
        code = ret.get("rtnCode", ret.get("code"))
        message = ret.get("rtnDesc", ret.get("msg", ""))
    else:
        code, message = doc.get("rtnCode"), doc.get("rtnDesc", "")
    try:
        return (None if code is None else int(code)), str(message)[:200]
    except (TypeError, ValueError):
        return None, str(message)[:200]


def parse_reviews(data: bytes, *, app_id: str, connector: str) -> Page:
    doc = load_object(data, "AppGallery reviews page")
    code, message = return_code(doc)
    if code not in (None, 0):
        raise PermanentError(f"AppGallery answered code {code}: {message}", kind="api_error")
    body = doc.get("data")
    page = Page()
    if isinstance(body, dict):
        items = body.get("reviewList")
        has_next = body.get("hasNext")
        page.has_more = None if has_next is None else _flag(has_next)
        page.total = opt_int(body.get("total"), "data.total")
    else:
        items = body
        page.total = opt_int(doc.get("total"), "total")

    def one(item: Any) -> Found:
        item = obj(item, "reviewList[]")
        dateline = opt_int(item.get("dateline"), "dateline")
        if dateline is None:
            raise PermanentError("dateline is missing", kind="bad_time")
        author = next((item[k] for k in _AUTHOR_KEYS if isinstance(item.get(k), str)), "")
        meta: dict[str, Any] = {
            "country": opt_str(item.get("countryCode"), "countryCode") or None,
            "app_version": opt_str(item.get("versionName"), "versionName") or None,
            "device": opt_str(item.get("phoneName"), "phoneName") or None,
            "reviewer_language": opt_str(item.get("lang"), "lang") or None,
            "developer_reply_state": opt_int(item.get("devReplyState"), "devReplyState"),
        }
        return review_event(
            store=HUAWEI,
            app=app_id,
            review_id=review_id(item.get("reviewId"), "reviewId"),
            text=opt_str(item.get("content"), "content"),
            at=epoch_ms_time(dateline, "dateline"),
            author=author,
            rating=rating(item.get("rating"), "rating"),
            meta=meta,
            connector=connector,
        )

    each_item(items, page, one, ref=lambda i: f"review {_id_of(i)}")
    return page


def _id_of(item: Any) -> str:
    return str(item.get("reviewId", "?"))[:80] if isinstance(item, dict) else "?"


def _flag(value: Any) -> bool:
    """`hasNext` arrives as true/false or 1/0."""
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
