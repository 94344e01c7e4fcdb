"""The generator: N events with known ids through three real connectors, plus a known
set of deliberately malformed inputs.

- file drop: JSON Lines exports (`id` column = our native id), a few bad lines in each;
- WeChat: signed, AES-encrypted pushes exactly as WeChat sends them; the sender
  retries like WeChat (the same request again) until the answer is `success`;
  signed-but-malformed messages too, once dead-lettered (any other answer makes
  WeChat retry and show the customer an error);
- transcripts: HMAC-signed webhook calls (generic format); retried until 200,
  signed-but-malformed bodies answered 400.

What each input must become is computed with the connectors' own pure parsers (the
ids they derive, the refs and bytes of what they refuse), and cross-checked against
what was generated, so no line can vanish unnoticed between the file and the parser.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from connectors.file_drop.config import FileDropOptions
from connectors.file_drop.parse import parse_jsonl
from connectors.transcripts.config import TranscriptsOptions
from connectors.transcripts.parse import parse_transcript
from connectors.transcripts.signing import sign
from connectors.wechat.parse import parse_oa_message
from ingest.abc import BadInput
from ingest.options import Secret
from tests.pipeline_helpers import GOOD_TEXTS
from tests.wechat_helpers import OA_ACCOUNT, oa_request

DROP = "drop"
WECHAT = "wx"
CALLS = "calls"
DROP_SOURCE = "chaos-export"
CALLS_SOURCE = "chaos-hotline"
CALLS_SECRET = "chaos-transcripts-hmac-0123456789"
LINES_PER_FILE = 250
MIX = {"file_drop": 0.6, "wechat": 0.25, "transcripts": 0.15}
BAD_EVERY = {"file_drop": 97, "wechat": 211, "transcripts": 157}
"""One deliberately malformed input per this many good ones (and at least one each)."""

BAD_FILE_LINES = (
    b'{"id": "chaos-bad-json", "text": "\xe6\x88\x91\xe7\x9a\x84',  # cut off
    b'{"id": "chaos-bad-utf8", "text": "\xff\xfe broken"}',
    b'{"id": "chaos-bad-type", "text": 12345}',
    b'{"id": "chaos-no-text"}',
    b'{"text": "\xe6\xb2\xa1\xe6\x9c\x89 id"}',  # no id although id_column is set
    b'["not", "an", "object"]',
)
BAD_WECHAT = (
    b"<xml><broken",
    b"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><MsgType>text</MsgType></xml>",
    b"not xml at all",
)
BAD_CALLS = (b"not json {", b'{"call_id": "chaos-bad"}', b'{"turns": "nope", "call_id": 1}')


def bad_key(ref: str, raw: bytes) -> str:
    """How a dead letter is recognised: where it came from and its exact bytes."""
    return f"{ref}#{hashlib.sha256(raw).hexdigest()[:16]}"


def drop_options(path: str) -> FileDropOptions:
    return FileDropOptions(
        path=path, id_column="id", source=DROP_SOURCE, settle_secs=0.0, poll_interval_secs=0.5
    )


def calls_options() -> TranscriptsOptions:
    return TranscriptsOptions(source=CALLS_SOURCE, secret=Secret(CALLS_SECRET))


def text_for(n: int) -> str:
    return f"{GOOD_TEXTS[n % len(GOOD_TEXTS)]}（第{n}条）"


@dataclass
class Sent:
    """What must arrive: event ids and dead-letter keys, by channel label."""

    ids: dict[str, str] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)
    file_lines: int = 0
    files: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    max_retry_secs: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def expect(self, label: str, events: list[str], bad: list[BadInput]) -> None:
        for event_id in events:
            if event_id in self.ids:
                self.problems.append(f"generator: id {event_id} generated twice")
            self.ids[event_id] = label
        for item in bad:
            self.bad[bad_key(item.ref, item.raw)] = label


@dataclass
class Plan:
    """How many of each channel, decided up front from N and the seed."""

    files: list[list[tuple[int, bytes | None]]]
    wechat: list[tuple[int, bytes | None]]
    calls: list[tuple[int, bytes | None]]


def make_plan(events: int, rng: random.Random) -> Plan:
    counts = {name: int(events * share) for name, share in MIX.items()}
    counts["file_drop"] += events - sum(counts.values())

    def with_bad(channel: str, bad_pool: tuple[bytes, ...]) -> list[tuple[int, bytes | None]]:
        items: list[tuple[int, bytes | None]] = [(n, None) for n in range(counts[channel])]
        n_bad = max(len(bad_pool), counts[channel] // BAD_EVERY[channel])
        for k in range(n_bad):
            items.insert(rng.randrange(len(items) + 1), (k, bad_pool[k % len(bad_pool)]))
        return items

    lines = with_bad("file_drop", BAD_FILE_LINES)
    files = [lines[i : i + LINES_PER_FILE] for i in range(0, len(lines), LINES_PER_FILE)]
    return Plan(files, with_bad("wechat", BAD_WECHAT), with_bad("transcripts", BAD_CALLS))


class Generator:
    def __init__(
        self, sent: Sent, inbox: Path, http_port: int, rate_per_sec: float, seed: int
    ) -> None:
        self.sent = sent
        self.inbox = inbox
        self.base = f"http://127.0.0.1:{http_port}/webhooks"
        self.rate = rate_per_sec
        self.rng = random.Random(seed)
        self.drop_options = drop_options(str(inbox))
        self.calls_options = calls_options()
        self.done = asyncio.Event()
        self.fed = 0

    async def run(self, plan: Plan) -> None:
        total = sum(len(f) for f in plan.files) + len(plan.wechat) + len(plan.calls)
        secs = total / self.rate
        connector = aiohttp.TCPConnector(limit=32, force_close=False)
        timeout = aiohttp.ClientTimeout(total=5)  # WeChat waits 5 s for an answer
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(
                self._files(plan.files, secs),
                self._webhooks(session, plan.wechat, secs, self._wechat_one, 6),
                self._webhooks(session, plan.calls, secs, self._call_one, 3),
            )
        self.done.set()

    # --- file drop -------------------------------------------------------------

    async def _files(self, files: list[list[tuple[int, bytes | None]]], secs: float) -> None:
        pause = secs / max(1, len(files))
        for number, items in enumerate(files):
            await asyncio.to_thread(self._write_file, number, items)
            self.fed += len(items)
            await asyncio.sleep(pause)

    def _write_file(self, number: int, items: list[tuple[int, bytes | None]]) -> None:
        lines = []
        wanted = set()
        for n, bad in items:
            if bad is not None:
                lines.append(bad)
                continue
            native = f"chaos-f-{n:07d}"
            wanted.add(native)
            line = {"id": native, "text": text_for(n), "author": f"c{n % 20000}@example.com"}
            lines.append(orjson.dumps(line))
        data = b"\n".join(lines) + b"\n"
        name = f"chaos-{number:05d}.jsonl"
        part = self.inbox / f".{name}.part"
        part.write_bytes(data)
        old = time.time() - 60  # settled at once
        os.utime(part, (old, old))
        mtime = datetime.fromtimestamp(os.stat(part).st_mtime_ns / 1e9, UTC)
        events, bad = parse_jsonl(
            data,
            file_id=hashlib.sha256(data).hexdigest(),
            options=self.drop_options,
            file_name=name,
            file_mtime=mtime,
            connector=DROP,
        )
        if {e.native_id for e in events} != wanted or len(events) + len(bad) != len(lines):
            self.sent.problems.append(f"generator: {name}: the parser does not see every line")
        self.sent.expect("file_drop", [e.id for e in events], bad)
        self.sent.file_lines += len(lines)
        self.sent.files += 1
        part.rename(self.inbox / name)

    # --- webhooks --------------------------------------------------------------

    async def _webhooks(self, session, items, secs, send_one, concurrency) -> None:  # type: ignore[no-untyped-def]
        queue: asyncio.Queue[tuple[int, bytes | None]] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        interval = secs / max(1, len(items)) * concurrency
        started = time.monotonic()
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while not queue.empty():
                n, bad = queue.get_nowait()
                await send_one(session, n, bad)
                sent += 1
                self.fed += 1
                ahead = started + sent * interval / concurrency - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def _wechat_one(self, session: aiohttp.ClientSession, n: int, bad: bytes | None) -> None:
        if bad is None:
            openid = f"oChaos{n % 20000:06d}Xq1a2b3c4d5e6f7"
            message = (
                f"<xml><ToUserName><![CDATA[{OA_ACCOUNT}]]></ToUserName>"
                f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                f"<Content><![CDATA[{text_for(n)}]]></Content>"
                f"<MsgId>{9_100_000_000_000_000 + n}</MsgId></xml>"
            ).encode()
        else:
            message = bad.replace(b"gh_x", f"gh_{n}".encode())  # distinct bytes per input
            if message == bad:
                message = bad + f"<!-- {n} -->".encode()
        events, refused = parse_oa_message(message, "", WECHAT)
        self.sent.expect("wechat", [e.id for e in events], list(refused))
        url = f"{self.base}/wechat/{WECHAT}"

        def request() -> tuple[URL, bytes, dict[str, str]]:
            push = oa_request(message)  # fresh timestamp and nonce
            query = urlencode(dict(push.query), quote_via=quote)
            return URL(f"{url}?{query}", encoded=True), push.body, {}

        # a signed but unusable message too is answered success, once dead-lettered
        await self._deliver(session, "wechat", request, True, lambda r: r == "success")

    async def _call_one(self, session: aiohttp.ClientSession, n: int, bad: bytes | None) -> None:
        if bad is None:
            body = orjson.dumps(
                {
                    "call_id": f"chaos-call-{n:07d}",
                    "turns": [
                        {
                            "role": "agent",
                            "text": "您好，请问有什么可以帮您",
                            "start_ms": 0,
                            "end_ms": 1500,
                        },
                        {"role": "customer", "text": text_for(n), "start_ms": 1600, "end_ms": 9000},
                    ],
                }
            )
        else:
            body = (
                bad + f" #{n}".encode()
                if bad.startswith(b"not")
                else bad.replace(b"chaos-bad", f"chaos-bad-{n}".encode()).replace(
                    b'"call_id": 1', f'"call_id": {n}'.encode()
                )
            )
        events, refused = parse_transcript(
            body,
            self.calls_options,
            received_at=datetime.now(UTC),
            ref=f"transcripts:{CALLS}/webhook",
        )
        self.sent.expect("transcripts", [e.id for e in events], list(refused))
        url = URL(f"{self.base}/transcripts/{CALLS}")

        def request() -> tuple[URL, bytes, dict[str, str]]:
            ts = str(int(time.time()))
            headers = {
                "X-Signature": sign(CALLS_SECRET, ts, body),
                "X-Signature-Timestamp": ts,
                "Content-Type": "application/json",
            }
            return url, body, headers

        await self._deliver(
            session,
            "transcripts",
            request,
            bad is None,
            lambda r: '"ok":true' in r.replace(" ", ""),
        )

    async def _deliver(self, session, label, request, good, accepted) -> None:  # type: ignore[no-untyped-def]
        """Send until the answer is final: success for a good input (and a WeChat one
        that is dead-lettered), 400 for a bad one.
        WeChat repeats the *same* request; it is rebuilt (fresh signature) only when the
        first one would be refused as stale, i.e. after minutes of outage."""
        first = time.monotonic()
        url, body, headers = request()
        signed_at = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            if time.monotonic() - signed_at > 240:
                url, body, headers = request()
                signed_at = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                status, text = 0, type(exc).__name__
            self.sent.answers[f"{label}:{status}"] += 1
            if good and status == 200 and accepted(text):
                break
            if not good and status == 400:
                break
            if status in (200, 400, 403) and attempts >= 3:  # a definite, wrong answer
                self.sent.problems.append(f"{label}: unexpected answer {status} {text[:120]!r}")
                break
            await asyncio.sleep(min(2.0, 0.1 * attempts) * (0.5 + self.rng.random()))
        if attempts > 1:
            self.sent.retries[label] += attempts - 1
            took = time.monotonic() - first
            self.sent.max_retry_secs[label] = max(self.sent.max_retry_secs.get(label, 0.0), took)
