"""Which library exceptions the RabbitMQ bus treats as the broker failing."""

from __future__ import annotations

from aiormq.exceptions import ChannelInvalidStateError

from ingest.bus.amqp_delivery import is_broker_error


def test_aiormqs_bare_exception_for_a_channel_closed_without_reason_is_a_broker_error() -> None:
    # aiormq's FutureStore.reject_all(None) sets `Exception` on pending futures (an ack
    # in flight when a link is cut); the chaos CI run crashed a sink role on it
    assert is_broker_error(Exception())
    assert is_broker_error(ChannelInvalidStateError("closed"))
    assert is_broker_error(ConnectionResetError())


def test_programming_errors_are_not_broker_errors() -> None:
    assert not is_broker_error(TypeError("bad argument"))
    assert not is_broker_error(KeyError("x"))
    assert not is_broker_error(ValueError("no"))
