"""`outbox.deliver` messages from a template (`shopflow.broker.tasks_publish`).

On the Redis broker a thread's first message of a task to a queue is built by
`apply_async` and kept; later ones change only their own ids, arguments and
`argsrepr`. A stock worker must not see a difference, and every other broker
keeps `apply_async`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, signals
from celery._state import _task_stack
from django.db import transaction
from kombu.exceptions import OperationalError

from outbox import relay
from outbox.tasks import deliver
from shopflow import broker
from shopflow.broker import TaskMessage, queue_depth_seen, tasks_publish
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.scenarios import all_finished, effect_counts, expected_effects, probes_record

QUEUE = "shopflow-test-publish"
# What each message has of its own; everything else must be the same.
OWN_HEADERS = ("id", "root_id")
OWN_PROPERTIES = ("correlation_id", "delivery_tag")


@pytest.fixture(autouse=True)
def fresh_templates() -> Iterator[None]:
    """Each test starts without this thread's publisher, as a new process would."""
    broker._publishers.__dict__.clear()
    yield
    broker._publishers.__dict__.clear()


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    redis_client.delete(QUEUE)
    yield QUEUE
    redis_client.delete(QUEUE)


@pytest.fixture
def apply_async_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Each `deliver.apply_async` call's args, the call still made."""
    calls: list[tuple] = []
    real = deliver.apply_async

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["args"])
        return real(*args, **kwargs)

    monkeypatch.setattr(deliver, "apply_async", counted)
    return calls


def _sent(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The messages in `queue`, oldest first."""
    return [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]


def _without_own_ids(message: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in message["headers"].items() if k not in OWN_HEADERS}
    properties = {k: v for k, v in message["properties"].items() if k not in OWN_PROPERTIES}
    return {**message, "headers": headers, "properties": properties}


def test_a_message_from_the_template_equals_apply_asyncs_but_for_its_own_ids(
    queue, redis_client, apply_async_calls
):
    # given
    lease = str(uuid.uuid4())
    # when: the same message through apply_async, then twice from the template
    deliver.apply_async(args=(lease, [1, 2]), queue=queue, argsrepr="(1..2)")
    tasks_publish(deliver, [TaskMessage((lease, [1, 2]), queue, "(1..2)")] * 2)
    # then: the same in every field but the message's own ids
    by_celery, *templated = _sent(redis_client, queue)
    for message in templated:
        assert _without_own_ids(message) == _without_own_ids(by_celery)
        headers, properties = message["headers"], message["properties"]
        assert headers["id"] == headers["root_id"] == properties["correlation_id"]
        assert headers["parent_id"] is None
    ids = [m["headers"]["id"] for m in (by_celery, *templated)]
    tags = [m["properties"]["delivery_tag"] for m in (by_celery, *templated)]
    assert len(set(ids)) == len(set(tags)) == 3
    # and apply_async built the template once, sending nothing itself
    assert len(apply_async_calls) == 2
    assert queue_depth_seen(queue) == 3


def test_only_the_arguments_and_argsrepr_change_between_two_templated_messages(queue, redis_client):
    # when
    tasks_publish(
        deliver,
        [TaskMessage(("lease-a", [1]), queue, "a"), TaskMessage(("lease-b", [7, 8]), queue, "b")],
    )
    # then
    first, second = _sent(redis_client, queue)
    assert _fixed_part(first) == _fixed_part(second)
    for message, args, argsrepr in (
        (first, ["lease-a", [1]], "a"),
        (second, ["lease-b", [7, 8]], "b"),
    ):
        args_sent, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        assert (args_sent, kwargs) == (args, {})
        assert message["headers"]["argsrepr"] == message["properties"]["argsrepr"] == argsrepr


def _fixed_part(message: dict[str, Any]) -> dict[str, Any]:
    """A message without its own ids, arguments and argsrepr."""
    fixed = _without_own_ids(message)
    del fixed["body"], fixed["headers"]["argsrepr"], fixed["properties"]["argsrepr"]
    return fixed


def test_inside_a_task_the_template_names_its_parent_and_root_as_apply_async_does(
    queue, redis_client
):
    # given: a task running in this thread, as a worker relaying successors
    deliver.push_request(id="the-parent", root_id="the-root", called_directly=False)
    _task_stack.push(deliver)
    try:
        # when
        deliver.apply_async(args=("lease", [1]), queue=queue, argsrepr="r")
        tasks_publish(deliver, [TaskMessage(("lease", [1]), queue, "r")])
    finally:
        _task_stack.pop()
        deliver.pop_request()
    # then
    by_celery, templated = _sent(redis_client, queue)
    for message in (by_celery, templated):
        assert message["headers"]["parent_id"] == "the-parent"
        assert message["headers"]["root_id"] == "the-root"
    assert _without_own_ids(templated) == _without_own_ids(by_celery)


def test_receivers_of_the_publish_signals_still_get_them(queue):
    # given
    seen: list[str] = []

    def before_publish(headers: dict[str, Any], **kwargs: Any) -> None:
        seen.append(headers["id"])

    signals.before_task_publish.connect(before_publish)
    try:
        # when
        tasks_publish(deliver, [TaskMessage(("lease", [1]), queue, "r")] * 2)
    finally:
        signals.before_task_publish.disconnect(before_publish)
    # then
    assert len(seen) == 2


def test_a_broker_error_on_the_template_path_retries_the_message_through_apply_async(
    queue, redis_client, monkeypatch, apply_async_calls
):
    # given: the template's LPUSH fails, as on a dropped connection (Celery's pool is fine)
    def dropped(*args: Any) -> None:
        raise redis.exceptions.ConnectionError("dropped")

    tasks_publish(deliver, [TaskMessage(("lease", [1]), queue, "r")])
    monkeypatch.setattr(broker._publishers.publisher.channel, "message_push", dropped)
    # when
    tasks_publish(deliver, [TaskMessage(("lease", [2]), queue, "r")])
    # then: apply_async sent it (the first call was the template's)
    assert apply_async_calls == [("lease", [1]), ("lease", [2])]
    assert len(_sent(redis_client, queue)) == 2


def test_on_the_filesystem_broker_messages_go_through_apply_async(tmp_path: Path):
    # given: the embedded default's broker, and `outbox.deliver` on it
    folder = str(tmp_path)
    app = Celery("embedded", set_as_current=False)
    app.conf.update(
        broker_url="filesystem://",
        broker_transport="shopflow.broker:FilesystemTransport",
        broker_transport_options={
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": folder,
        },
        task_serializer="json",
    )
    sent: list[tuple] = []

    @app.task(name="outbox.deliver", shared=False)
    def fs_deliver(lease_id: str, delivery_ids: list[int]) -> None:
        """Never runs here."""

    real = fs_deliver.apply_async
    fs_deliver.apply_async = lambda *a, **kw: sent.append(kw["args"]) or real(*a, **kw)
    # when
    tasks_publish(fs_deliver, [TaskMessage(("lease", [n]), "events", "r") for n in (1, 2)])
    # then: one apply_async per message, each in the queue folder whole
    assert sent == [("lease", [1]), ("lease", [2])]
    files = sorted(tmp_path.glob("*.events.msg"))
    bodies = [json.loads(base64.b64decode(json.loads(f.read_text())["body"])) for f in files]
    assert sorted(body[0][1] for body in bodies) == [[1], [2]]


def test_with_redis_unreachable_a_publish_fails_as_apply_asyncs_did(monkeypatch):
    # given: a broker that refuses connections (the environment's URL would win over it)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    app = Celery("unreachable", set_as_current=False, broker="redis://127.0.0.1:1/0")
    app.conf.broker_transport = "shopflow.broker:RedisTransport"

    @app.task(name="outbox.deliver", shared=False)
    def task(lease_id: str, delivery_ids: list[int]) -> None:
        """Never runs here."""

    # when / then: kombu's error after Celery's retry policy, which the dispatcher's
    # lease hand-back and the successors' relay catch
    with pytest.raises(OperationalError):
        tasks_publish(task, [TaskMessage(("lease", [1]), "events", "r")])


@pytest.mark.django_db(transaction=True)
def test_a_worker_handles_deliveries_published_from_the_template(
    start_worker, monkeypatch, settings, apply_async_calls
):
    # given: a worker, and deliveries nobody published yet (no dispatch, no drain)
    settings.OUTBOX_DISPATCH_ON_COMMIT = False
    settings.OUTBOX_CHUNK_SIZE = 1
    monkeypatch.setattr(relay, "relay_wake", lambda: None)
    start_worker()
    rows = probes_record(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(10))
    with transaction.atomic():
        rows += probes_record([ProbeHappened(aggregate="many", seq=s) for s in (1, 2, 3)])
    # when: this thread claims and publishes them, one delivery per message
    lease_id, claimed = relay.deliveries_claim(100)
    relay.deliveries_publish(lease_id, claimed)
    # then: each handled once, the later events of `many` relayed by the worker
    assert wait_until(all_finished, timeout=30)
    assert effect_counts() == expected_effects(rows)
    # and of the 22 messages, apply_async only built the template
    assert len(claimed) == 22
    assert len(apply_async_calls) == 1
