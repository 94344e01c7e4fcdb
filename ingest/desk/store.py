"""What the desk needs from the SQL store, as a Protocol: `ingest` never imports
`sinks`, and `sinks.sql_store.SqlStore` provides all of it. Checked once at mount
time, so a store without these methods fails the start instead of a request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from ingest.model import FeedbackRecord


class Outcome(Protocol):
    resolution_code: str
    resolution_note: str
    resolved_by: str
    resolved_at: datetime | None
    satisfaction: int | None
    follow_up_on: date | None


@runtime_checkable
class DeskStore(Protocol):
    async def get(self, record_id: str) -> FeedbackRecord | None: ...

    async def audit(self, record_id: str) -> list[dict[str, Any]]: ...

    async def add_audit(
        self, actor: str, action: str, record_id: str | None, detail: dict[str, Any]
    ) -> None: ...

    async def record_resolution(
        self,
        record_id: str,
        code: str,
        note: str,
        resolved_by: str,
        resolved_at: datetime | None = None,
    ) -> None: ...

    async def record_satisfaction(self, record_id: str, score: int, actor: str) -> None: ...

    async def schedule_follow_up(self, record_id: str, on: date, actor: str) -> None: ...

    async def outcome(self, record_id: str) -> Any: ...

    async def customer_records(
        self, customer_ref: str, *, exclude_id: str = "", limit: int = 50
    ) -> list[FeedbackRecord]: ...

    async def record_contact_view(
        self, actor: str, record_id: str, fields: Sequence[str], reason: str = ""
    ) -> None: ...

    def export_rows(
        self, since: datetime | None = None, *, unmasked: bool = False
    ) -> AsyncIterator[dict[str, Any]]: ...
