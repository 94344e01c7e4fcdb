"""Options of the transcripts connector (`[connectors.<name>]`, `type = "transcripts"`).

One instance is one source of calls (a hotline, a queue, a PBX): which track or
participant is the customer is a property of that source, so it is configured here,
validated once at start-up, and never guessed per file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ingest.codec import MAX_MESSAGE_BYTES
from ingest.options import Secret

Format = Literal["auto", "alibaba", "contact_lens", "generic"]
FORMATS: tuple[Format, ...] = ("auto", "alibaba", "contact_lens", "generic")

MAX_FILE_BYTES_LIMIT = 64 << 20
"""A transcript is parsed whole in memory; a bigger file is not a transcript."""
DEAD_LETTER_BYTES = MAX_MESSAGE_BYTES // 2
"""How much of a refused input is dead-lettered: a dead letter must fit in one bus
message with its envelope."""
MIN_SECRET_CHARS = 16
_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True)
class TranscriptsOptions:
    """Where transcripts come from, how to read them, and who the customer is."""

    source: str
    """The hotline / queue name of this instance, e.g. "95588信用卡中心": the event's
    `source` and part of its id, so it must not change once calls are ingested."""
    path: str = ""
    """Drop folder (one transcript JSON per file); empty: webhook only."""
    secret: Secret = field(default_factory=lambda: Secret(""))
    """Shared secret of the webhook's HMAC-SHA256 signature; empty: webhook off."""
    format: Format = "auto"
    """"auto" detects each payload's format; name one to refuse anything else."""
    alibaba_customer_channel: int = 1
    """Alibaba `ChannelId` (track) of the customer; every other track is the agent."""
    alibaba_customer_speaker: str = ""
    """Mono recordings with speaker separation (`auto_split`): the customer's `SpeakerId`.
    Set, it replaces the channel rule."""
    contact_lens_customer_role: str = "CUSTOMER"
    """Contact Lens `ParticipantRole` (or `ParticipantId`) of the customer."""
    signature_header: str = "X-Signature"
    """Webhook header carrying `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>")."""
    timestamp_header: str = "X-Signature-Timestamp"
    """Webhook header carrying the Unix time (seconds) the sender signed at."""
    replay_window_secs: int = 300
    """A signature older (or further in the future) than this is refused as stale;
    0 turns the check off, for replaying captured traffic."""
    max_file_bytes: int = 4 << 20
    """Largest transcript accepted (file or body); larger ones are dead-lettered."""
    patterns: tuple[str, ...] = ("*.json",)
    """File names read in the drop folder; `*.meta.json` sidecars are never read as
    transcripts."""
    poll_interval_secs: float = 10.0
    settle_secs: float = 2.0
    """A file modified less than this long ago is left for the next poll."""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError("source must name the hotline or queue, e.g. '95588信用卡中心'")
        if not self.path.strip() and not self.secret:
            raise ValueError("set path (drop folder), secret (webhook), or both")
        if self.secret and len(self.secret) < MIN_SECRET_CHARS:
            raise ValueError(f"secret must be at least {MIN_SECRET_CHARS} characters")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if self.alibaba_customer_channel < 0:
            raise ValueError("alibaba_customer_channel must be >= 0")
        if not self.contact_lens_customer_role.strip():
            raise ValueError("contact_lens_customer_role must not be empty")
        for name in ("signature_header", "timestamp_header"):
            if not _HEADER_RE.match(getattr(self, name)):
                raise ValueError(f"{name} must be an HTTP header name (letters, digits, '-')")
        if self.signature_header.lower() == self.timestamp_header.lower():
            raise ValueError("signature_header and timestamp_header must differ")
        if self.replay_window_secs < 0:
            raise ValueError("replay_window_secs must be >= 0 (0 turns the check off)")
        if not 0 < self.max_file_bytes <= MAX_FILE_BYTES_LIMIT:
            raise ValueError(f"max_file_bytes must be 1..{MAX_FILE_BYTES_LIMIT}")
        if not self.patterns or not all(p.strip() for p in self.patterns):
            raise ValueError("patterns must list at least one non-empty glob, e.g. ['*.json']")
        if not self.poll_interval_secs > 0:
            raise ValueError("poll_interval_secs must be > 0")
        if self.settle_secs < 0:
            raise ValueError("settle_secs must be >= 0")

    @classmethod
    def example(cls) -> TranscriptsOptions:
        """Both inputs on, formats detected: the default of docs and contract tests."""
        return cls(
            source="95588信用卡中心",
            path="/var/lib/feedback-ingest/transcripts",
            secret=Secret("change-me-0123456789abcdef"),
        )
