"""deploy/rabbitmq/policies.json: the operator policy for the work queues agrees with the
queue arguments the worker declares, applies to exactly the work queues of a real broker
(never to the parking lot), and a message past its delivery limit still ends up parked."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from typing import Any
from urllib.parse import quote, urlparse

import pytest

from ingest.bus.amqp import AmqpBus, queue_arguments
from ingest.bus.base import DLX, INGRESS, Q_DEAD, Q_PROCESS, Topology
from tests.conftest import IN_CI
from tests.deploy.helpers import DEPLOY

RABBITMQ = DEPLOY / "rabbitmq"
POLICIES = json.loads((RABBITMQ / "policies.json").read_text(encoding="utf-8"))
DEFINITIONS = json.loads((RABBITMQ / "definitions.json").read_text(encoding="utf-8"))
QUEUES = [q["name"] for q in DEFINITIONS["queues"]]


def _work_queue_policy() -> dict[str, Any]:
    (policy,) = POLICIES["policies"]
    return dict(policy)


def test_policy_covers_exactly_the_work_queues_never_the_parking_lot() -> None:
    policy = _work_queue_policy()
    assert policy["apply-to"] == "queues" and policy["vhost"] == "/"
    matched = {q for q in QUEUES if re.search(policy["pattern"], q)}
    assert matched == set(QUEUES) - {Q_DEAD}
    assert not re.search(policy["pattern"], "feedback.process.urgent.extra")


def test_policy_agrees_with_the_queue_arguments_the_worker_declares() -> None:
    """Arguments win over a policy, so a disagreement would be silently ignored: keep
    them equal; the policy adds what arguments cannot change later (the strategy)."""
    definition = _work_queue_policy()["definition"]
    for queue in set(QUEUES) - {Q_DEAD}:
        arguments = queue_arguments(queue, Topology())
        assert definition["delivery-limit"] == arguments["x-delivery-limit"]
        assert definition["dead-letter-exchange"] == arguments["x-dead-letter-exchange"] == DLX
    # at-least-once dead-lettering only holds with reject-publish overflow
    assert definition["dead-letter-strategy"] == "at-least-once"
    assert definition["overflow"] == "reject-publish"


def _rabbitmqctl() -> str:
    found = shutil.which("rabbitmqctl")
    if found is None:
        if IN_CI:
            pytest.fail("rabbitmqctl is not on this host (CI=true: a failure, not a skip)")
        pytest.skip("rabbitmqctl is not on this host")
    return found


def _for_vhost(document: dict[str, Any], vhost: str) -> str:
    text = json.dumps(document).replace('"vhost": "/"', f'"vhost": {json.dumps(vhost)}')
    return text.replace('"name": "/"', f'"name": {json.dumps(vhost)}')


@pytest.mark.integration
async def test_policies_import_and_apply_to_the_work_queues_of_a_real_broker(
    amqp_vhost_url: str,
) -> None:
    rabbitmqctl = _rabbitmqctl()
    vhost = f"feedback-policy-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [rabbitmqctl, *args],
            input=stdin,
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
        return done.stdout

    url = urlparse(amqp_vhost_url)._replace(path="/" + quote(vhost, safe="")).geturl()
    try:
        ctl("import_definitions", "--format", "json", stdin=_for_vhost(DEFINITIONS, vhost))
        ctl("import_definitions", "--format", "json", stdin=_for_vhost(POLICIES, vhost))
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        applied: dict[str, str] = {}
        async with asyncio.timeout(20):  # imports finish in the background
            while set(applied) != set(QUEUES) or "" in {applied[q] for q in QUEUES if q != Q_DEAD}:
                out = ctl("list_queues", "-p", vhost, "name", "policy", "--formatter", "json")
                applied = {row["name"]: row.get("policy") or "" for row in json.loads(out)}
                await asyncio.sleep(0.2)
        assert applied[Q_DEAD] == ""
        assert {applied[q] for q in QUEUES if q != Q_DEAD} == {"feedback-work-queues"}

        limit = Topology().delivery_limit
        async with AmqpBus(url, timeout_secs=10) as bus:  # no redeclaration conflict
            await bus.publish(INGRESS, "app.normal", b'{"poison": true}', {"x-feedback-id": "p-1"})
            for _ in range(limit):
                delivery = await bus.get(Q_PROCESS)
                assert delivery is not None
                await delivery.requeue()
            for _ in range(100):  # the broker dead-letters in the background
                if (parked := await bus.get(Q_DEAD)) is not None:
                    break
                await asyncio.sleep(0.1)
            assert parked is not None and parked.body == b'{"poison": true}'
            await parked.ack()
            assert await bus.get(Q_PROCESS) is None
    finally:
        ctl("delete_vhost", vhost)
