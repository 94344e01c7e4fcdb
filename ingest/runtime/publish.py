"""Publishing what connectors read: events to `feedback.ingress` on their triage lane,
unparseable input straight to `feedback.dlx`, each with a broker confirm. Shared by
pull (scheduler) and push (webhook) connectors, so both keep the same guarantee."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ingest import telemetry
from ingest.abc import BadInput
from ingest.bus.base import (
    DLX,
    H_CHANNEL,
    H_ERROR,
    H_ERROR_STAGE,
    H_ID,
    H_ORIGIN_EXCHANGE,
    H_ORIGIN_ROUTING_KEY,
    H_STAGE,
    INGRESS,
    LANE_NORMAL,
    Bus,
    OutMessage,
    Topology,
)
from ingest.codec import encode_event
from ingest.log import get_logger
from ingest.model import FeedbackEvent

log = get_logger("ingest.publish")
Lane = Callable[[str], str]


def _normal_lane(_: str) -> str:
    return LANE_NORMAL


class Publisher:
    """Turns a connector's output into confirmed bus messages."""

    def __init__(self, bus: Bus, lane: Lane | None = None) -> None:
        self.bus = bus
        self.lane = lane or _normal_lane

    def event_message(self, event: FeedbackEvent, connector: str) -> OutMessage:
        lane = self.lane(event.text)
        return OutMessage(
            routing_key=Topology.ingress_routing_key(event.channel, lane),
            body=encode_event(event),
            headers={H_ID: event.id, H_CHANNEL: event.channel, H_STAGE: f"connector:{connector}"},
        )

    async def publish(
        self,
        connector: str,
        events: Sequence[FeedbackEvent],
        bad: Sequence[BadInput] = (),
        channel: str = "",
    ) -> None:
        """Return only when the broker has confirmed every message (raises TransientError)."""
        started = time.perf_counter()
        if events:
            messages = [self.event_message(e, connector) for e in events]
            await self.bus.publish_many(INGRESS, messages)
            for e in events:
                telemetry.PUBLISHED.labels(e.channel, "connector").inc()
        for item in bad:
            await self.publish_bad(connector, item, channel)
        telemetry.LATENCY.labels("connector_publish").observe(time.perf_counter() - started)

    async def publish_bad(self, connector: str, item: BadInput, channel: str = "") -> None:
        stage = f"connector:{connector}"
        headers = {
            H_ERROR: item.reason[:500],
            H_ERROR_STAGE: stage,
            H_STAGE: stage,
            H_CHANNEL: channel or connector,
            H_ORIGIN_EXCHANGE: INGRESS,
            H_ORIGIN_ROUTING_KEY: "",
            "x-error-kind": item.kind,
            "x-input-ref": item.ref[:300],
        }
        await self.bus.publish(DLX, "", item.raw, headers)
        telemetry.DEAD_LETTERED.labels(channel or connector, stage, item.kind).inc()
        log.warning(
            "input_dead_lettered",
            connector=connector,
            ref=item.ref,
            error=item.reason,
            error_kind=item.kind,
            size=len(item.raw),
        )
