"""Prometheus metrics the relay and the workers update.

Web, workers and beat are separate processes, so the registry runs in
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set in settings).
Gauges read from the database (backlog, lag) are collected at scrape time in
`outbox.views`.
"""

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "shopflow_outbox_deliveries_total",
    "Delivery outcomes by handler, event type and outcome (done, retry, dead).",
    ["handler", "event_type", "outcome"],
)
RELAY_BATCH_SECONDS = Histogram(
    "shopflow_outbox_relay_batch_seconds",
    "Time the relay takes to claim and publish one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RELAY_CLAIMED = Counter(
    "shopflow_outbox_relay_claimed_total", "Deliveries claimed and published by the relay."
)
