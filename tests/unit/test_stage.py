"""`give_back` after a lost channel: a delivery whose ack already failed with its
channel is settled (the broker has it back) and must not be settled again."""

from __future__ import annotations

import pytest

from ingest.bus.base import Delivery
from ingest.errors import TransientError
from ingest.runtime.stage import give_back


class LostChannelDelivery(Delivery):
    """Settles like an AmqpDelivery whose channel died: the first settle fails."""

    def __init__(self) -> None:
        self.body, self.headers, self.routing_key = b"{}", {}, "k"
        self.exchange, self.queue, self.delivery_count = "", "feedback.process", 1
        self.state: str | None = None
        self.settle_calls = 0

    @property
    def settled(self) -> bool:
        return self.state is not None

    async def _settle(self, state: str) -> None:
        self.settle_calls += 1
        if self.state is not None:
            raise RuntimeError(f"already settled ({self.state})")
        self.state = "lost with its channel"
        raise TransientError(f"RabbitMQ: settling a delivery ({state}) failed")

    async def ack(self) -> None:
        await self._settle("acked")

    async def requeue(self) -> None:
        await self._settle("requeued")


async def test_give_back_after_a_failed_ack_does_not_settle_twice() -> None:
    delivery = LostChannelDelivery()
    with pytest.raises(TransientError):
        await delivery.ack()
    await give_back(delivery)  # raised "already settled" before the fix
    assert delivery.settle_calls == 1


async def test_give_back_of_an_unsettled_delivery_on_a_lost_channel_is_quiet() -> None:
    delivery = LostChannelDelivery()
    await give_back(delivery)
    assert delivery.settle_calls == 1 and delivery.settled
