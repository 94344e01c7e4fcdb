"""Google Play Developer API `reviews.list` pages → reviews. Pure; channels.md §2.3.

A review is `reviewId`, `authorName` and `comments[]`, each either a `userComment`
(the review: text, lastModified {seconds as a *string*, nanos}, starRating, device,
app version, deviceMetadata …) or a `developerComment` (our reply). Users edit
reviews in place: `lastModified` moves, the id stays, so the record is updated.
A review with a separate title and body has them joined by a tab.
"""

from __future__ import annotations

from typing import Any

from connectors.app_reviews.cursor import Found
from connectors.app_reviews.parse import (
    GOOGLE_PLAY,
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

_DEVICE_FIELDS = ("productName", "manufacturer", "deviceClass", "ramMb", "screenDensityDpi")


def parse_reviews(data: bytes, *, package: str, connector: str) -> Page:
    doc = load_object(data, "reviews.list page")
    page = Page()
    pagination = doc.get("tokenPagination")
    if isinstance(pagination, dict) and isinstance(pagination.get("nextPageToken"), str):
        page.next = pagination["nextPageToken"]
        page.has_more = bool(page.next)

    def one(item: Any) -> Found:
        item = obj(item, "reviews[]")
        rid = review_id(item.get("reviewId"), "reviewId")
        user, developer = _comments(item.get("comments"))
        modified = _timestamp(user.get("lastModified"), "userComment.lastModified")
        device = user.get("deviceMetadata")
        device = device if isinstance(device, dict) else {}
        meta: dict[str, Any] = {
            "app_version": opt_str(user.get("appVersionName"), "appVersionName") or None,
            "app_version_code": opt_int(user.get("appVersionCode"), "appVersionCode"),
            "device": opt_str(user.get("device"), "device") or None,
            "android_sdk": opt_int(user.get("androidOsVersion"), "androidOsVersion"),
            "reviewer_language": opt_str(user.get("reviewerLanguage"), "reviewerLanguage") or None,
            "thumbs_up": opt_int(user.get("thumbsUpCount"), "thumbsUpCount"),
            "device_metadata": {k: device[k] for k in _DEVICE_FIELDS if k in device} or None,
            "modified_at": modified.isoformat(),
            "developer_reply": developer,
        }
        text = opt_str(user.get("text"), "userComment.text").replace("\t", "\n")
        return review_event(
            store=GOOGLE_PLAY,
            app=package,
            review_id=rid,
            text=text,
            at=modified,
            author=opt_str(item.get("authorName"), "authorName"),
            rating=rating(user.get("starRating"), "userComment.starRating"),
            meta=meta,
            connector=connector,
        )

    each_item(doc.get("reviews"), page, one, ref=lambda i: f"review {_id_of(i)}")
    return page


def _id_of(item: Any) -> str:
    return str(item.get("reviewId", "?"))[:80] if isinstance(item, dict) else "?"


def _comments(comments: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The user's comment (required) and the developer's reply, if any."""
    if not isinstance(comments, list):
        raise PermanentError("comments must be an array", kind="bad_schema")
    user: dict[str, Any] | None = None
    developer: dict[str, Any] | None = None
    for comment in comments:
        if not isinstance(comment, dict):
            continue
        if user is None and isinstance(comment.get("userComment"), dict):
            user = comment["userComment"]
        elif developer is None and isinstance(comment.get("developerComment"), dict):
            reply = comment["developerComment"]
            stamp = reply.get("lastModified")
            developer = {
                "text": reply.get("text"),
                "last_modified": _timestamp(stamp, "developerComment.lastModified").isoformat()
                if stamp is not None
                else None,
            }
    if user is None:
        raise PermanentError("no userComment in comments", kind="bad_schema")
    return user, developer


def _timestamp(value: Any, name: str) -> Any:
    """Protobuf Timestamp JSON: seconds (int64, so a string) and nanos."""
    stamp = obj(value, name)
    seconds = opt_int(stamp.get("seconds"), f"{name}.seconds")
    nanos = opt_int(stamp.get("nanos"), f"{name}.nanos") or 0
    if seconds is None or not 0 <= nanos < 1_000_000_000:
        raise PermanentError(f"{name} needs seconds (and nanos < 1e9)", kind="bad_time")
    return epoch_ms_time(seconds * 1000 + nanos // 1_000_000, name)
