"""The Redis broker transport: one client per connection pool, messages as kombu's own.

kombu's Redis channel builds a new `redis.Redis` for every publish and ack;
`RedisTransport` keeps one while the channel's pool lives. Against real Redis.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from django.conf import settings
from kombu import Connection

from shopflow.broker import RedisTransport

QUEUE = "shopflow-test-transport"


@pytest.fixture
def connection() -> Any:
    with Connection(settings.CELERY_BROKER_URL, transport=RedisTransport) as conn:
        yield conn
        conn.default_channel.queue_delete(QUEUE)


def test_the_settings_pick_the_transport_for_a_redis_broker():
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert settings.CELERY_BROKER_TRANSPORT == "shopflow.broker:RedisTransport"


def test_publishes_share_one_client_while_the_pool_lives(connection, monkeypatch):
    channel = connection.default_channel
    built: list[Any] = []
    create = channel._create_client
    monkeypatch.setattr(channel, "_create_client", lambda *a, **kw: built.append(1) or create())
    queue = connection.SimpleQueue(QUEUE)

    for number in range(50):
        queue.put({"n": number})

    assert len(built) <= 1
    assert [queue.get(timeout=5).payload["n"] for _ in range(50)] == list(range(50))
    queue.close()


def test_a_new_pool_gets_a_new_client(connection):
    channel = connection.default_channel
    with channel.conn_or_acquire() as first:
        pass
    channel._disconnect_pools()  # what kombu does on a connection error
    with channel.conn_or_acquire() as second:
        second.ping()

    assert second is not first
    assert second.connection_pool is channel.pool


def test_threads_publishing_at_once_lose_no_message(connection):
    threads, per_thread = 8, 100
    barrier = threading.Barrier(threads)
    producer_channel = connection.default_channel
    errors: list[BaseException] = []

    def publish(offset: int) -> None:
        barrier.wait()
        try:
            with producer_channel.conn_or_acquire() as client:
                for number in range(per_thread):
                    client.lpush(QUEUE + "-raw", offset + number)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=publish, args=(i * per_thread,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        values = sorted(int(v) for v in raw.lrange(QUEUE + "-raw", 0, -1))
    finally:
        raw.delete(QUEUE + "-raw")
    assert not errors
    assert values == list(range(threads * per_thread))


def test_a_publish_remembers_how_deep_its_queue_is(connection):
    from shopflow.broker import queue_depth_seen

    queue = connection.SimpleQueue(QUEUE)
    for number in range(3):
        queue.put({"n": number})
    assert queue_depth_seen(QUEUE) == 3
    queue.get(timeout=5).ack()
    queue.put({"n": 3})
    assert queue_depth_seen(QUEUE) == 3
    queue.close()
