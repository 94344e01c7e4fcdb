"""Prometheus metrics every component reports (names are what dashboards and alert
rules in deploy/ refer to). Labels are bounded: channel, stage, error kind, queue."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

RECEIVED = Counter(
    "feedback_received_total", "Inputs a connector received", ["channel", "connector"]
)
PUBLISHED = Counter(
    "feedback_published_total", "Messages published with broker confirm", ["channel", "stage"]
)
PROCESSED = Counter(
    "feedback_processed_total", "Messages a stage finished and acked", ["channel", "stage"]
)
FAILED = Counter(
    "feedback_failed_total",
    "Failures by stage and error kind (retried or not)",
    ["channel", "stage", "error"],
)
DEAD_LETTERED = Counter(
    "feedback_dead_lettered_total", "Inputs parked in feedback.dead", ["channel", "stage", "error"]
)
DROPPED = Counter(
    "feedback_dropped_total",
    "Inputs dropped on purpose (duplicates, ignored)",
    ["channel", "stage", "reason"],
)
LATENCY = Histogram(
    "feedback_stage_latency_seconds",
    "Time a stage spent on one message or batch",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
END_TO_END = Histogram(
    "feedback_end_to_end_seconds",
    "From ingestion by a connector to written by a sink",
    ["sink"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
DECISIONS = Counter(
    "feedback_decisions_total",
    "Classified records carrying a reason of this signal (trigger, model, escalator, "
    "calendar_fallback …): how often each rule, model or fallback took part",
    ["signal"],
)
QUEUE_DEPTH = Gauge("feedback_queue_depth", "Ready messages per queue", ["queue"])
FEED_SIZE = Gauge("feedback_feed_size", "Open items in the desk feed per level", ["urgency"])
SLA_BREACHES = Counter(
    "feedback_sla_breaches_total", "Items the SLA sweeper found past due_at", ["urgency"]
)
LEASES_EXPIRED = Counter(
    "feedback_leases_expired_total", "Claimed items returned to the feed by the sweeper"
)
CONNECTOR_UP = Gauge(
    "feedback_connector_up", "1 when the connector's last poll or check worked", ["connector"]
)
CURSOR_COMMITS = Counter(
    "feedback_cursor_commits_total", "Cursors committed after confirm", ["connector"]
)
WEBHOOK_REQUESTS = Counter(
    "feedback_webhook_requests_total",
    "Requests to push connectors by outcome (ok, rejected kind, unavailable, error)",
    ["connector", "outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "feedback_webhook_seconds",
    "Time from request to answer on a push connector's routes (includes the confirm)",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)


def render() -> tuple[bytes, str]:
    """The /metrics body and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
