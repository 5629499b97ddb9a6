"""Workers take messages from Redis without kombu's ack emulation; they give back what they hold."""

import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from kombu import Exchange, Queue
from kombu.message import Message

from shopflow.celery import app


@pytest.fixture
def queue() -> Iterator[Queue]:
    name = f"test-acks-{uuid.uuid4()}"
    yield Queue(name, Exchange(name, type="direct"), routing_key=name)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(name)


@pytest.fixture(autouse=True)
def _redis_only() -> None:
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("ack emulation is the Redis transport's")


def _publish(queue: Queue, count: int) -> None:
    with app.connection_for_write() as connection:
        producer = connection.Producer(serializer="json")
        for n in range(count):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=queue.routing_key,
                             declare=[queue])  # fmt: skip


def _take(queue: Queue, count: int, *, ack: bool) -> list[dict]:
    """Take `count` messages as a worker does (prefetch, no_ack=False); then ack them or not."""
    taken: list[tuple[dict, Message]] = []
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with (
        app.connection_for_read() as connection,
        connection.Consumer(
            queue, callbacks=[lambda b, m: taken.append((b, m))], prefetch_count=count
        ),  # fmt: skip
    ):
        while len(taken) < count:
            connection.drain_events(timeout=5)
        # while they are taken: no copy of any in kombu's unacked hash
        assert client.hlen("unacked") == 0
        for _, message in taken if ack else ():
            message.ack()
    return [body for body, _ in taken]


def test_a_taken_message_is_not_copied_to_the_unacked_hash(queue):
    # given
    _publish(queue, 3)
    # when
    taken = _take(queue, 3, ack=True)
    # then
    assert sorted(body["n"] for body in taken) == [0, 1, 2]
    assert redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(queue.name) == 0


def test_messages_taken_but_not_acked_go_back_to_their_queue_when_the_consumer_closes(queue):
    # given: a worker took three messages ahead and stops before running them
    _publish(queue, 3)
    _take(queue, 3, ack=False)
    # then: all three wait in the queue again
    assert redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(queue.name) == 3
