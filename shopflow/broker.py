"""Celery transports: the filesystem one made safe, the Redis one made cheaper.

The Redis one also remembers how deep each queue was at this process's last
publish to it, so the outbox's dispatcher can tell busy workers without asking.

The filesystem transport (the embedded default) publishes each message whole.

kombu's own `_put` creates the message file in the queue folder and then writes
it; a worker that lists the folder in between moves the empty file away, fails
to decode it and stops with "Unrecoverable error: JSONDecodeError" (kombu#1551),
which takes `make run` down with it. Here the message is written under a name
consumers skip and renamed into the queue, which is atomic within one folder.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, redis
from kombu.utils.json import dumps


class FilesystemChannel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Write the message beside the queue, then rename it in: readers see all or nothing."""
        # kombu's own naming: consumers take the oldest first by sorting on the prefix.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4()}")
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class FilesystemTransport(filesystem.Transport):
    Channel = FilesystemChannel


# Seconds a queue's depth, as this process's last publish to it found it, stays current.
DEPTH_CURRENT_SECONDS = 0.2
# queue -> (messages in it right after this process's last publish, monotonic second)
_depths: dict[str, tuple[int, float]] = {}


def queue_depth_seen(queue: str) -> int:
    """Messages waiting in `queue` (this one's included) after this process's last publish to it.

    0 when this process has not published to it within DEPTH_CURRENT_SECONDS, or
    its broker is not Redis. Free: Redis' LPUSH answers with the list's length.
    """
    depth, when = _depths.get(queue, (0, 0.0))
    return depth if monotonic() - when <= DEPTH_CURRENT_SECONDS else 0


class RedisChannel(redis.Channel):
    """kombu's Redis channel, with one client per connection pool instead of one per command.

    kombu builds a new `redis.Redis` for every publish, ack and queue lookup
    (`Channel.conn_or_acquire`); redis-py 6 fills ~160 response callbacks in
    each, about a third of what a publish costs. A client over the channel's
    pool is thread-safe and holds no connection itself, so it can be kept while
    that pool lives; kombu replaces the pool on reconnect, and the client with it.
    """

    _pooled_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        kept = self._pooled_client
        if kept is None or kept.connection_pool is not pool:
            kept = self._pooled_client = self._create_client()
        yield kept

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's `_put`, keeping the queue's length that LPUSH answers (`queue_depth_seen`)."""
        priority = self._get_message_priority(message, reverse=False)
        with self.conn_or_acquire() as client:
            depth = client.lpush(self._q_for_pri(queue, priority), dumps(message))
        _depths[queue] = (int(depth), monotonic())


class RedisTransport(redis.Transport):
    Channel = RedisChannel
