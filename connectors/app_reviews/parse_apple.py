"""Apple: the public customer-reviews RSS feed (JSON flavour) and App Store Connect
`customerReviews` pages → reviews. Pure; channels.md §2.1/§2.2 list the shapes.

RSS quirks handled: every value wrapped as {"label": …}; `feed.entry` an object when
there is one review, absent when there are none; an app-metadata entry first in older
responses (kept out: only entries with `im:rating` are reviews); `updated` missing in
older responses (then `fetched_at` stands in); pagination links pointing at `/xml`
(only the page number of `last` is read from them).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from connectors.app_reviews.cursor import Found
from connectors.app_reviews.parse import (
    APP_STORE,
    Page,
    Skip,
    each_item,
    iso_time,
    load_object,
    obj,
    opt_int,
    opt_str,
    rating,
    review_event,
    review_id,
    title_and_body,
)

_PAGE_IN_URL = re.compile(r"/page=(\d+)/")


def _label(entry: dict[str, Any], *path: str) -> str:
    """The `label` at `path`, "" when absent; a wrong type is a PermanentError."""
    node: Any = entry
    for key in path:
        if node is None:
            return ""
        node = obj(node, ".".join(path)).get(key)
    if node is None:
        return ""
    return opt_str(obj(node, ".".join(path)).get("label"), ".".join((*path, "label")))


def parse_rss(
    data: bytes, *, app_id: str, country: str, fetched_at: datetime, connector: str
) -> Page:
    """One page of `/{cc}/rss/customerreviews/page=N/id=…/sortby=mostrecent/json`."""
    feed = obj(load_object(data, "RSS feed").get("feed"), "feed")
    entries = feed.get("entry")
    if isinstance(entries, dict):
        entries = [entries]
    page = Page(last_page=_last_page(feed.get("link")))

    def one(entry: Any) -> Found:
        entry = obj(entry, "entry")
        if "im:rating" not in entry:
            raise Skip()  # the app's own metadata entry
        rid = review_id(_label(entry, "id"), "entry.id")
        updated = _label(entry, "updated")
        at = iso_time(updated, "entry.updated") if updated else fetched_at
        meta = {
            "country": country,
            "app_version": _label(entry, "im:version") or None,
            "title": _label(entry, "title") or None,
            "vote_sum": opt_int(_label(entry, "im:voteSum") or None, "im:voteSum"),
            "vote_count": opt_int(_label(entry, "im:voteCount") or None, "im:voteCount"),
            "feed": "rss",
            "time_from_fetch": None if updated else True,
        }
        found = review_event(
            store=APP_STORE,
            app=app_id,
            review_id=rid,
            text=title_and_body(_label(entry, "title"), _label(entry, "content")),
            at=at,
            author=_label(entry, "author", "name"),
            rating=rating(_label(entry, "im:rating"), "im:rating"),
            meta=meta,
            connector=connector,
        )
        # Without `updated` the fetch time stands in for received_at, but must not make
        # the review look changed on every poll: its cursor stamp is a constant 0.
        return found if updated else replace(found, at_ms=0)

    each_item(entries, page, one, ref=lambda e: f"rss {country} entry")
    page.has_more = bool(page.found) or page.skipped > 0
    return page


def _last_page(links: Any) -> int | None:
    """`feed.link[rel=last]` names the last page (its URL says /xml even for JSON)."""
    if isinstance(links, dict):
        links = [links]
    if not isinstance(links, list):
        return None
    for link in links:
        attributes = link.get("attributes") if isinstance(link, dict) else None
        if isinstance(attributes, dict) and attributes.get("rel") == "last":
            match = _PAGE_IN_URL.search(str(attributes.get("href", "")))
            return int(match.group(1)) if match else None
    return None


def parse_connect(data: bytes, *, app_id: str, connector: str) -> Page:
    """One page of `GET /v1/apps/{id}/customerReviews?include=response`: `data[]`,
    `included[]` (developer responses), `links.next`, `meta.paging.total`."""
    doc = load_object(data, "customerReviews page")
    responses = _responses(doc.get("included"))
    links, meta = doc.get("links"), doc.get("meta")
    page = Page()
    if isinstance(links, dict) and isinstance(links.get("next"), str):
        page.next = links["next"]
        page.has_more = True
    if isinstance(meta, dict) and isinstance(meta.get("paging"), dict):
        total = meta["paging"].get("total")
        page.total = total if isinstance(total, int) else None

    def one(item: Any) -> Found:
        item = obj(item, "data[]")
        if item.get("type") != "customerReviews":
            raise Skip()
        rid = review_id(item.get("id"), "data[].id")
        attributes = obj(item.get("attributes"), "attributes")
        title = opt_str(attributes.get("title"), "attributes.title")
        extra: dict[str, Any] = {
            "territory": opt_str(attributes.get("territory"), "attributes.territory") or None,
            "title": title or None,
            "feed": "connect_api",
            "developer_response": responses.get(_response_id(item)),
        }
        return review_event(
            store=APP_STORE,
            app=app_id,
            review_id=rid,
            text=title_and_body(title, opt_str(attributes.get("body"), "attributes.body")),
            at=iso_time(attributes.get("createdDate"), "attributes.createdDate"),
            author=opt_str(attributes.get("reviewerNickname"), "attributes.reviewerNickname"),
            rating=rating(attributes.get("rating"), "attributes.rating"),
            meta=extra,
            connector=connector,
        )

    each_item(doc.get("data"), page, one, ref=lambda i: f"customerReview {_id_of(i)}")
    return page


def _id_of(item: Any) -> str:
    return str(item.get("id", "?"))[:80] if isinstance(item, dict) else "?"


def _response_id(item: dict[str, Any]) -> str:
    relationships = item.get("relationships")
    if not isinstance(relationships, dict):
        return ""
    response = relationships.get("response")
    data = response.get("data") if isinstance(response, dict) else None
    return str(data.get("id", "")) if isinstance(data, dict) else ""


def _responses(included: Any) -> dict[str, dict[str, Any]]:
    """Developer responses by id: state, time and text, noted in the review's meta."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(included, list):
        return out
    for item in included:
        if not isinstance(item, dict) or item.get("type") != "customerReviewResponses":
            continue
        attributes = item.get("attributes")
        if not isinstance(attributes, dict):
            continue
        out[str(item.get("id", ""))] = {
            "state": attributes.get("state"),
            "last_modified": attributes.get("lastModifiedDate"),
            "body": attributes.get("responseBody"),
        }
    return out
