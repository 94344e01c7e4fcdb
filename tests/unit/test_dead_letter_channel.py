"""A dead letter of input that never became an event is labelled with the connector's
channel (`x-channel`, like the events around it), not with the connector's name, which
is whatever the operator called it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from connectors.file_drop.config import FileDropOptions
from connectors.file_drop.connector import FileDropConnector
from connectors.imap.config import ImapOptions
from connectors.imap.connector import ImapConnector
from connectors.wechat.connector import WechatConnector, WecomConnector
from ingest.abc import BadInput, Batch, PullConnector
from ingest.bus.base import H_CHANNEL, Q_DEAD
from ingest.bus.memory import MemoryBus
from ingest.model import FeedbackEvent
from ingest.runtime import push
from ingest.runtime.backoff import Backoff
from ingest.runtime.publish import Publisher
from ingest.runtime.pull import PullScheduler
from ingest.testing import MemoryCursors


class OneBadLine(PullConnector):
    """One good event and one unparseable input in a single batch."""

    type = "one_bad_line"
    description = "test connector"
    Options = dict

    async def check(self) -> None:
        pass

    async def read(self, cursor: str | None) -> AsyncIterator[Batch]:
        if cursor is None:
            good = FeedbackEvent(id="e1", channel="email", text="卡被冻结了")
            yield Batch([good], cursor="1", bad=[BadInput("not a mail", b"\x00\x01")])


class Labelled(OneBadLine):
    channel = "email"


async def dead_channels(connector: PullConnector) -> list[str]:
    bus = MemoryBus()
    await bus.start()
    try:
        scheduler = PullScheduler([connector], Publisher(bus), MemoryCursors(), Backoff(0.01, 0.02))
        await scheduler.run_once()
        parked = []
        while (delivery := await bus.get(Q_DEAD)) is not None:
            parked.append(delivery.headers.get(H_CHANNEL, ""))
            await delivery.ack()
        return parked
    finally:
        await bus.close()


async def test_a_pull_connectors_dead_letter_carries_its_channel() -> None:
    assert await dead_channels(Labelled("kefu_mailbox", {})) == ["email"]


async def test_a_connector_without_a_channel_is_labelled_with_its_name() -> None:
    assert await dead_channels(OneBadLine("legacy", {})) == ["legacy"]


def test_every_shipped_connector_names_its_channel(tmp_path: Path) -> None:
    imap = ImapConnector("kefu", ImapOptions.example())
    drop = FileDropConnector("forms", FileDropOptions(path=str(tmp_path), channel="survey"))
    wx = WechatConnector("wx_main", WechatConnector.Options.example())
    wecom = WecomConnector("kf", WecomConnector.Options.example())
    assert [c.input_channel for c in (imap, drop, wx, wecom)] == [
        "email",
        "survey",
        "wechat",
        "wecom",
    ]


async def test_a_push_intake_labels_its_dead_letters_with_the_channel() -> None:
    bus = MemoryBus()
    await bus.start()
    try:
        connector = WechatConnector("wx_main", WechatConnector.Options.example())
        push.mount(web.Application(), [connector], Publisher(bus), MemoryCursors())
        await connector.intake.publish([], [BadInput("undecryptable", b"<xml/>")])
        delivery = await bus.get(Q_DEAD)
        assert delivery is not None and delivery.headers.get(H_CHANNEL) == "wechat"
        await delivery.ack()
    finally:
        await bus.close()
